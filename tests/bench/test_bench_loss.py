"""``medseg bench loss`` on a tiny shape: the result contract, stub handling, the memory probe and the CLI.

No timing is asserted (the machine is shared); only that every number is present and positive.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medseg.bench import loss as bench_loss
from medseg.cli.main import main
from medseg.registry import CLASS_COUNTS, LOSSES

TINY = ["--shape", "2", "3", "8", "8", "--repeats", "1", "--warmup", "1", "--no-first-step", "--no-compiled"]
QUICK = {"repeats": 1, "warmup": 1, "first_step": False, "compiled": False}


def test_every_registered_loss_gets_a_row_at_every_thread_count():
    result = bench_loss.bench_losses((2, 3, 8, 8), threads=(1, 2), **QUICK)
    assert set(LOSSES.names()) | {bench_loss.REFERENCE, "_meta"} == set(result)
    ref = result[bench_loss.REFERENCE]
    assert ref["steady"]["1"]["ratio"] == 1.0
    assert ref["steady"]["2"]["time_ms"] > 0
    assert ref["peak_mib"] > 0
    for name in LOSSES.names():
        row = result[name]
        assert row["error"] is None, (name, row["error"])
        for t in ("1", "2"):
            steady = row["steady"][t]
            for key in ("time_ms", "ref_ms", "ratio", "ratio_min", "ratio_max", "ratio_of_medians"):
                assert steady[key] > 0, (name, t, key)
            assert steady["ratio_min"] <= steady["ratio"] <= steady["ratio_max"]
        assert row["peak_mib"] > 0
        assert row["memory_ratio"] > 0
    meta = result["_meta"]
    assert meta["shape"] == [2, 3, 8, 8]
    assert meta["threads"] == [1, 2]
    assert len(meta["load_start"]) == 3
    assert torch.get_num_threads() >= 1  # the caller's thread count is restored
    json.dumps(result)  # JSON-ready


def test_compiled_rows_for_the_losses_built_from_class_counts(monkeypatch):
    # the compiled rows run the margin-calibration kernel with backend="compile"; torch.compile is replaced by the
    # uncompiled fused kernel here (a real compile takes minutes on a busy machine: see the slow MC tests)
    from medseg.losses import _mc_kernel

    monkeypatch.setattr(_mc_kernel, "_make_compiled", lambda config: _mc_kernel.mc_fused)
    monkeypatch.setattr(_mc_kernel, "_compiled", {})
    result = bench_loss.bench_losses(
        (2, 3, 8, 8), threads=(1,), names=["mc", "ce"], repeats=1, warmup=1, first_step=False, measure_memory=False
    )
    assert {"mc", "mc[compiled]", "ce"} <= set(result)
    assert "ce[compiled]" not in result
    assert result["mc[compiled]"]["error"] is None
    assert result["mc[compiled]"]["steady"]["1"]["ratio"] > 0
    assert LOSSES.needing(CLASS_COUNTS) == ["dice_mc", "mc", "tversky_mc"]


def test_first_step_in_a_fresh_process(tmp_path: Path):
    out = bench_loss.first_step_cpu(
        bench_loss.REFERENCE, threads=1, shape=(1, 2, 4, 4), seed=0, cache_dir=tmp_path / "cache"
    )
    assert out["cpu_s"] > 0
    assert out["wall_s"] > 0
    with pytest.raises(KeyError, match="unknown loss 'nope'"):  # refused before a process is started
        bench_loss.first_step_cpu("nope", threads=1, shape=(1, 2, 4, 4), seed=0, cache_dir=tmp_path / "cache")


@pytest.mark.slow
def test_first_step_rows_cold_and_warm():
    result = bench_loss.bench_losses((1, 2, 8, 8), threads=(1,), names=["mc", "dice"], compiled=False, repeats=1)
    mc = result["mc"]["first_step"]["1"]
    for kind in ("cold", "warm", "compile_cold", "compile_warm"):
        assert mc[kind]["cpu_s"] > 0
        assert mc[kind]["ratio"] > 0
    assert set(result["dice"]["first_step"]["1"]) == {"cold"}  # nothing compiles: no cache to warm
    assert result[bench_loss.REFERENCE]["first_step"]["1"]["cpu_s"] > 0


def test_stub_and_failing_losses_become_error_rows(monkeypatch):
    def stub(**kwargs):
        raise NotImplementedError

    class Broken(torch.nn.Module):
        def forward(self, logits, target):
            raise RuntimeError("boom")

    monkeypatch.setitem(LOSSES._entries, "zz_stub", stub)
    monkeypatch.setitem(LOSSES._entries, "zz_broken", Broken)
    result = bench_loss.bench_losses((1, 2, 4, 4), names=["zz_stub", "zz_broken", "mc"], threads=(1,), **QUICK)
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
        ({"threads": ()}, "threads"),
        ({"threads": (0,)}, "threads"),
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
    assert result["_meta"]["command"].startswith("medseg bench loss --shape 2 3 8 8 --repeats 1")
    assert "--no-first-step" in result["_meta"]["command"]
    assert main(["bench", "loss", *TINY, "--losses", "mc", "--no-memory", "--threads", "1"]) == 0
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


def test_bfloat16_logits_on_the_cpu():
    result = bench_loss.bench_losses((1, 3, 8, 8), threads=(1,), names=["mc", "dice"], dtype="bfloat16", **QUICK)
    assert result["_meta"]["dtype"] == "bfloat16"
    assert result["_meta"]["device"] == "cpu"
    assert result["_meta"]["timer"] == "time.perf_counter"
    for name in ("mc", "dice"):
        assert result[name]["error"] is None, result[name]["error"]
        assert result[name]["steady"]["1"]["ratio"] > 0
    assert "bfloat16 on CPU" in bench_loss.format_table(result)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "float64"}, "dtype must be one of float32, bfloat16, float16, got 'float64'"),
        ({"device": "tpu"}, "is not a device"),
        ({"device": "mps"}, "MPS is not available|device must be cpu, cuda or cuda:N"),
    ],
)
def test_bad_device_or_dtype(kwargs, match):
    with pytest.raises(ValueError, match=match):
        bench_loss.bench_losses((1, 2, 4, 4), **QUICK, **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_cuda_asked_for_where_there_is_none(capsys):
    with pytest.raises(ValueError, match="CUDA is not available here"):
        bench_loss.bench_losses((1, 2, 4, 4), device="cuda", **QUICK)
    assert main(["bench", "loss", *TINY, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "CUDA is not available here" in err[0]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_losses_on_cuda(dtype):
    result = bench_loss.bench_losses((2, 3, 32, 32), names=["mc", "dice"], device="cuda", dtype=dtype, **QUICK)
    meta = result["_meta"]
    assert meta["device"].startswith("cuda")
    assert meta["timer"] == "CUDA events"
    assert meta["gpu"]
    assert result[bench_loss.REFERENCE]["peak_mib"] > 0
    for name in ("mc", "dice"):
        assert result[name]["error"] is None, result[name]["error"]
        assert result[name]["steady"][str(meta["threads"][0])]["time_ms"] > 0
        assert result[name]["peak_mib"] > 0
    with pytest.raises(ValueError, match="first_step"):
        bench_loss.bench_losses((1, 2, 4, 4), device="cuda", repeats=1, warmup=1, first_step=True)
