"""A tiny bundle: ``medseg predict --bundle`` and ``monai.bundle run`` write identical masks; CLI exit codes."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from medseg.cli.main import main
from medseg.inference import inference_config, load_bundle

NETWORK_DEF = {
    "_target_": "medseg.networks.CopleNet",
    "spatial_dims": 2,
    "in_channels": 1,
    "out_channels": 2,
    "features": [4, 8, 16, 32, 64],
    "norm": ["group", {"num_groups": 2}],
}


@pytest.fixture
def bundle(tmp_path):
    """configs/inference.json per the contract, and a randomly initialised network as models/model.pt."""
    from medseg.networks import CopleNet

    root = tmp_path / "tiny_bundle"
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    config = inference_config(NETWORK_DEF, predictor={"roi_size": [16, 16], "sw_batch_size": 4})
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(0)
    kwargs = {k: v for k, v in NETWORK_DEF.items() if k != "_target_"}
    torch.save(CopleNet(**kwargs).state_dict(), root / "models" / "model.pt")
    return root


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    vol = rng.integers(-1400, 200, size=(32, 24, 3)).astype(np.int16)
    affine = np.array([[-0.8, 0.1, 0, 5], [0.1, 0.9, 0, -3], [0, 0, 2.5, 1], [0, 0, 0, 1]], dtype=float)
    nib.save(nib.Nifti1Image(vol, affine), str(tmp_path / "ct.nii.gz"))
    Image.fromarray(rng.integers(0, 255, size=(20, 36), dtype=np.uint8)).save(tmp_path / "slice.png")
    return [tmp_path / "ct.nii.gz", tmp_path / "slice.png"]


def test_cli_and_monai_bundle_run_write_identical_masks(bundle, inputs, tmp_path, capsys):
    from monai.bundle import run as bundle_run

    code = main(
        ["predict", "--bundle", str(bundle), "--trust-bundle", "-i", *map(str, inputs), "-o", str(tmp_path / "cli")]
    )
    assert code == 0, capsys.readouterr().err
    bundle_run(
        config_file=str(bundle / "configs" / "inference.json"),
        bundle_root=str(bundle),
        input_paths=[str(p) for p in inputs],
        output_dir=str(tmp_path / "monai"),
        logging_file=False,
    )
    a = nib.load(str(tmp_path / "cli" / "ct_seg.nii.gz"))
    b = nib.load(str(tmp_path / "monai" / "ct_seg.nii.gz"))
    assert a.shape == (32, 24, 3)
    np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
    np.testing.assert_array_equal(a.affine, b.affine)
    png_a = np.asarray(Image.open(tmp_path / "cli" / "slice_seg.png"))
    png_b = np.asarray(Image.open(tmp_path / "monai" / "slice_seg.png"))
    assert png_a.shape == (20, 36)
    np.testing.assert_array_equal(png_a, png_b)


def test_cli_overrides_reach_the_predictor(bundle):
    loaded = load_bundle(bundle, tta=True, device="cpu", trust=True)
    assert loaded.predictor.flips == [(), (0,), (1,), (0, 1)]
    assert loaded.predictor.roi_size == (16, 16)
    assert loaded.predictor.device.type == "cpu"


def test_bundle_without_weights_is_one_line_exit_2(bundle, inputs, tmp_path, capsys):
    (bundle / "models" / "model.pt").unlink()
    code = main(["predict", "--bundle", str(bundle), "--trust-bundle", "-i", str(inputs[0]), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "model.pt" in err
    assert len(err.strip().splitlines()) == 1


def test_one_bad_input_exit_2_others_written(bundle, inputs, tmp_path, capsys):
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    args = ["predict", "--bundle", str(bundle), "--trust-bundle", "-i", str(tmp_path / "broken.nii.gz"), str(inputs[1])]
    code = main([*args, "-o", str(tmp_path / "o"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 2
    errors = [ln for ln in captured.err.splitlines() if "error" in ln]
    assert len(errors) == 1
    assert "broken.nii.gz" in errors[0]
    assert (tmp_path / "o" / "slice_seg.png").is_file()
    assert "1 written" in captured.out


def test_skip_then_overwrite_through_the_cli(bundle, inputs, tmp_path, capsys):
    args = ["predict", "--bundle", str(bundle), "--trust-bundle", "-i", str(inputs[1]), "-o", str(tmp_path / "o")]
    assert main(args) == 0
    assert main(args) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert main([*args, "--overwrite", "--tta", "--probabilities"]) == 0
    assert (tmp_path / "o" / "slice_prob.npy").is_file()


def test_predict_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", "--help"])
    assert info.value.code == 0
    assert "--bundle" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main(["predict", "--bundle", "/no/such/bundle", "-i", "x", "-o", "y"])
    assert info.value.code == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_cuda_without_cuda_is_exit_2(bundle, inputs, tmp_path, capsys):
    args = ["predict", "--bundle", str(bundle), "--trust-bundle", "-i", str(inputs[1]), "-o", str(tmp_path / "o")]
    code = main([*args, "--device", "cuda"])
    assert code == 2
    assert "CUDA is not available" in capsys.readouterr().err
