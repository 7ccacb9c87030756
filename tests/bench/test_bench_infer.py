"""``medseg bench infer`` on a tiny case: the JSON contract and the agreement with MONAI (no timing asserts)."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from medseg.bench import infer

TINY = ["--shape", "32", "32", "2", "--roi", "16", "16", "--sw-batch-size", "4", "--repeats", "1", "--threads", "1"]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    infer.add_arguments(parser)
    return parser.parse_args(argv)


@pytest.fixture(autouse=True)
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_json_has_ratio_agreement_and_throughput(capsys):
    assert infer.run(_parse(["--json", *TINY])) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("ratio", "ratio_range", "agreement", "monai_voxels_per_s", "ours_voxels_per_s", "voxel_agreement"):
        assert key in result
    assert result["ratio"] > 0
    assert result["monai_voxels_per_s"] > 0
    assert result["ours_voxels_per_s"] > 0
    # Same windows, weights and blending: the masks agree and the logits match to float rounding.
    assert result["agreement"] >= 0.999
    assert result["voxel_agreement"] >= 0.999
    assert result["max_abs_logit_diff"] < 1e-3
    assert result["shape"] == [32, 32, 2]


def test_text_output(capsys):
    assert infer.run(_parse(TINY)) == 0
    out = capsys.readouterr().out
    assert "ratio (ours / MONAI" in out
    assert "voxels/s" in out


@pytest.mark.parametrize(
    ("argv", "match"),
    [(["--roi", "16", "16", "16"], "--roi needs 2 values"), (["--repeats", "0"], "--repeats must be >= 1")],
)
def test_bad_arguments(argv, match):
    with pytest.raises(ValueError, match=match):
        infer.benchmark(_parse(argv))


def test_through_the_medseg_cli(capsys):
    from medseg.cli import bench as bench_cli

    if "STUB" in (bench_cli.__doc__ or ""):
        pytest.skip("the `medseg bench` dispatcher (medseg/cli/bench.py) is not written yet")
    from medseg.cli.main import main

    assert main(["bench", "infer", "--json", *TINY]) == 0
    assert "agreement" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])
