"""``medseg bench infer`` on a tiny case: the JSON contract and the agreement between the rows (no timing asserts)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from medseg.bench import infer

TINY = ["--shape", "32", "32", "2", "--roi", "16", "16", "--sw-batch-size", "4", "--repeats", "1", "--threads", "1"]
ROWS = ("monai_plain", "monai_best", "medseg")


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    infer.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_json_has_the_three_rows(capsys):
    assert infer.run(_parse(["--json", *TINY])) == 0
    result = json.loads(capsys.readouterr().out)
    assert tuple(result["rows"]) == ROWS
    for name in ROWS:
        row = result["rows"][name]
        assert row["seconds"] > 0
        assert row["voxels_per_s"] > 0
        for key in ("ratio_vs_monai_plain", "ratio_vs_monai_best"):
            median, low, high = row[key]
            assert low <= median <= high
        # Same windows, weights and blending: the masks agree and the logits match to float rounding.
        assert row["agreement"] >= 0.999
        assert row["voxel_agreement"] >= 0.999
        assert row["max_abs_logit_diff"] < 1e-3
    assert result["rows"]["monai_plain"]["ratio_vs_monai_plain"] == [1.0, 1.0, 1.0]
    assert result["shape"] == [32, 32, 2]
    assert len(result["load_average"]) == 2


def test_3d_network(capsys):
    argv = ["--json", "--spatial-dims", "3", "--shape", "16", "16", "16", "--roi", "16", "16", "16", "--repeats", "1"]
    assert infer.run(_parse([*argv, "--threads", "1", "--sw-batch-size", "2"])) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["rows"]["medseg"]["agreement"] >= 0.999


def test_text_output(capsys):
    assert infer.run(_parse(TINY)) == 0
    out = capsys.readouterr().out
    assert "vs monai_best" in out
    assert "medseg" in out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--roi", "16", "16", "16"], "--roi needs 2 values"),
        (["--repeats", "0"], "--repeats must be >= 1"),
        (["--device", "tpu"], "is not a device"),
        (["--amp", "bf16"], "--amp needs --device cuda"),
    ],
)
def test_bad_arguments(argv, match):
    with pytest.raises(ValueError, match=match):
        infer.benchmark(_parse(argv))


def test_through_the_medseg_cli(capsys):
    from medseg.cli.main import main

    assert main(["bench", "infer", "--json", *TINY]) == 0
    assert "rows" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
