"""``medseg bench loss`` on a tiny shape: the result contract, stub handling, the memory probe and the CLI.

No timing is asserted (the machine is shared); only that every number is present and positive.
"""

from __future__ import annotations

import json

import pytest
import torch

from medseg.bench import loss as bench_loss
from medseg.cli.main import main
from medseg.registry import LOSSES

TINY = ["--shape", "2", "3", "8", "8", "--repeats", "1", "--warmup", "1"]


def test_every_registered_loss_gets_a_row():
    result = bench_loss.bench_losses((2, 3, 8, 8), repeats=1, warmup=1)
    assert set(LOSSES.names()) | {bench_loss.REFERENCE, "_meta"} == set(result)
    ref = result[bench_loss.REFERENCE]
    assert ref["time_ratio"] == 1.0
    assert ref["time_ms"] > 0
    assert ref["peak_mib"] > 0
    for name in LOSSES.names():
        row = result[name]
        if row["error"] is None:
            for key in ("time_ms", "time_ratio", "peak_mib", "memory_ratio"):
                assert row[key] > 0, (name, key)
        else:
            assert isinstance(row["error"], str), name
            assert row["time_ms"] is None, name
    for name in ("mc", "dice_mc", "tversky_mc"):
        assert result[name]["error"] is None, result[name]["error"]
        assert result[name]["compile_s"] == 0  # tiny inputs run the eager kernel
    assert result["_meta"]["shape"] == [2, 3, 8, 8]
    json.dumps(result)  # JSON-ready


def test_stub_and_failing_losses_become_error_rows(monkeypatch):
    def stub(**kwargs):
        raise NotImplementedError

    class Broken(torch.nn.Module):
        def forward(self, logits, target):
            raise RuntimeError("boom")

    monkeypatch.setitem(LOSSES._entries, "zz_stub", stub)
    monkeypatch.setitem(LOSSES._entries, "zz_broken", Broken)
    result = bench_loss.bench_losses((1, 2, 4, 4), repeats=1, warmup=1, names=["zz_stub", "zz_broken", "mc"])
    assert result["zz_stub"]["error"].startswith("not implemented")
    assert result["zz_broken"]["error"] == "RuntimeError: boom"
    assert result["mc"]["error"] is None
    table = bench_loss.format_table(result)
    assert "zz_stub" in table
    assert "RuntimeError: boom" in table


def test_peak_memory_probe_counts_a_known_allocation():
    def allocate():
        x = torch.empty(262144)  # 1 MiB of float32
        del x
        return torch.empty(65536)  # 0.25 MiB more, alive at the end

    peak = bench_loss._peak_bytes(allocate)
    assert 2**20 <= peak < 2**20 + 2**16


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (2, 3, 8)}, "shape"),
        ({"shape": (2, 1, 8, 8)}, "K >= 2"),
        ({"repeats": 0}, "repeats"),
        ({"warmup": 0}, "warmup"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench_loss.bench_losses(**kwargs)
    with pytest.raises(KeyError, match="Did you mean 'mc'"):
        bench_loss.bench_losses((1, 2, 4, 4), names=["mcc"])


def test_cli_json_and_table(capsys):
    assert main(["bench", "loss", *TINY, "--losses", "mc", "dice", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"mc", "dice", bench_loss.REFERENCE, "_meta"} == set(result)
    assert main(["bench", "loss", *TINY, "--losses", "mc", "--no-memory"]) == 0
    out = capsys.readouterr().out
    assert "torch.cross_entropy" in out
    assert "mc" in out


def test_cli_errors_and_help(capsys):
    assert main(["bench", "loss", "--shape", "2", "3", "8", "--json"]) == 2
    assert "--shape takes 4 or 5 sizes" in capsys.readouterr().err
    assert main(["bench", "loss", "--losses", "nope"]) == 2
    for argv in (["bench"], ["bench", "loss", "--repeats", "0"], ["bench", "loss", "--bogus"]):
        with pytest.raises(SystemExit) as exc:  # usage errors: argparse exits 2 with one line
            main(argv)
        assert exc.value.code == 2
    assert "(see --help)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["bench", "loss", "--help"])
    assert exc.value.code == 0
    assert "--json" in capsys.readouterr().out
