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
    # 32x32x2 volume, 16x16 windows at overlap 0.5 (interval 8): 3 x 3 windows per slice, 2 slices
    assert result["windows_per_run"] == 18
    assert result["flops_per_voxel"] > 0
    for name in ROWS:
        assert result["rows"][name]["tflops"] > 0
        assert result["rows"][name]["peak_fraction"] is None  # no peak figure on a CPU
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
        (["--amp", "bf16"], "--amp bf16 needs --device cuda"),
        (["--stitch-cpu"], "--stitch-cpu needs --device cuda"),
    ],
)
def test_bad_arguments(argv, match):
    with pytest.raises(ValueError, match=match):
        infer.benchmark(_parse(argv))


def test_through_the_medseg_cli(capsys):
    from medseg.cli.main import main

    assert main(["bench", "infer", "--json", *TINY]) == 0
    assert "rows" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_cuda_asked_for_where_there_is_none(capsys):
    from medseg.cli.main import main

    assert main(["bench", "infer", *TINY, "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "CUDA is not available here" in err[0]


@pytest.mark.gpu
def test_cuda_rows_agree_with_monai_plain(capsys):
    # every row on the GPU (fp32 stitched on the GPU and in host memory, bf16 autocast) against MONAI plain on the
    # GPU: the masks agree and the fp32 logits match to TF32/cuDNN rounding
    argv = ["--json", "--shape", "64", "64", "4", "--roi", "32", "32", "--sw-batch-size", "4", "--repeats", "1"]
    assert infer.run(_parse([*argv, "--device", "cuda", "--stitch-cpu", "--amp", "bf16"])) == 0
    gpu = json.loads(capsys.readouterr().out)
    assert gpu["device_name"]
    assert gpu["windows_per_run"] == 36  # 3 x 3 windows of 32 at interval 16 on a 64 x 64 slice, 4 slices
    for name in ("monai_best", "medseg", "monai_best_stitch_cpu", "medseg_stitch_cpu"):
        assert gpu["rows"][name]["agreement"] >= 0.99, name
        assert gpu["rows"][name]["max_abs_logit_diff"] < 1e-2, name
        assert gpu["rows"][name]["peak_bytes"] > 0
    for name in ("monai_best_amp_bf16", "medseg_amp_bf16"):
        assert gpu["rows"][name]["agreement"] >= 0.95, name
        assert gpu["rows"][name]["precision"] == "bf16"


@pytest.mark.gpu
def test_cuda_against_cpu_on_the_same_weights():
    from monai.inferers.utils import sliding_window_inference

    from medseg.networks import create_network

    torch.manual_seed(0)
    net = create_network("coplenet_small", spatial_dims=2, in_channels=1, out_channels=2).eval()
    volume = infer.synthetic_ct((64, 64, 1))[..., 0]
    with torch.no_grad():
        ref = sliding_window_inference(volume, (32, 32), 4, net, overlap=0.5, mode="gaussian")
        out = sliding_window_inference(
            volume, (32, 32), 4, net.cuda(), overlap=0.5, mode="gaussian", sw_device="cuda", device="cpu"
        )
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, ref, atol=1e-2, rtol=1e-2)
