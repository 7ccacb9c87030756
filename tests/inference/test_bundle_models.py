"""``medseg predict --bundle --ckpt``: every kind of model file, checkpoints that win over the bundle's config
(widths, input size, normalisation, class names), one warning line per difference, ``--override``, and the
intensity check against the training data recorded in the checkpoint's plan."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from medseg.checkpoint import save_checkpoint
from medseg.cli.main import main
from medseg.inference import load_bundle, predict_with_bundle
from medseg.networks import CopleNet

COVID = "covid19_ct_lesion"
FEATURES = [8, 16, 32, 64, 128]  # the bundle says 16..256: a checkpoint with these widths needs rebuilding
CLASSES = ["background", "ground-glass opacity", "consolidation"]
NORMALIZATION = {"kind": "zscore", "clip": [0.05, 0.95], "mean": 0.4, "std": 0.25}


def _network(out_channels: int = 3) -> CopleNet:
    torch.manual_seed(0)
    return CopleNet(2, 1, out_channels, features=FEATURES, norm=("group", {"num_groups": 4})).eval()


def _checkpoint(path: Path, **metadata: Any) -> Path:
    meta = {
        "bundle": COVID,
        "classes": CLASSES,
        "roi_size": [32, 32],
        "preprocessing": {"window": None, "intensity_range": [0, 255], "normalization": NORMALIZATION},
        **metadata,
    }
    save_checkpoint(path, _network(len(meta["classes"])), meta)
    return path


def _png(path: Path, low: int = 20, high: int = 200, size: tuple[int, int] = (40, 48)) -> Path:
    img = np.full(size, low, np.uint8)
    img[8:30, 10:36] = high
    Image.fromarray(img).save(path)
    return path


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and r.name == "medseg.inference.bundle"
    ]


def test_a_checkpoint_rebuilds_its_network_and_its_settings_win(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt")
    with caplog.at_level(logging.WARNING):
        loaded = load_bundle(COVID, ckpt=ckpt, device="cpu")
    network = loaded.predictor.network
    assert isinstance(network, CopleNet)
    assert list(network.features) == FEATURES  # not the bundle's 16..256
    assert loaded.predictor.roi_size == (32, 32)
    assert loaded.writer.class_names == CLASSES
    assert loaded.model is not None
    assert loaded.model.rebuilt
    lines = _warnings(caplog)
    assert lines == loaded.notes
    assert all("\n" not in line for line in lines)
    expected = {
        "network arguments differ (out_channels, features)": "running the checkpoint's network",
        "checkpoint trained at 32x32, bundle runs at 256x240": "using the checkpoint's",
        "checkpoint has 3 classes, bundle 2": "using the checkpoint's",
        "preprocessing normalization differs": "using the checkpoint's",
    }
    assert len(lines) == len(expected), lines
    for start, outcome in expected.items():
        (line,) = [ln for ln in lines if ln.startswith(start)]
        assert line.endswith(outcome), line
    # the 2D pipeline resizes slices to the checkpoint's size and standardises with its statistics: a pixel of
    # value 200 becomes clip(200/255, 0.05, 0.95) = 0.7843, (0.7843 - 0.4) / 0.25 = 1.5373
    png = _png(tmp_path / "slice.png")
    image = loaded.preprocessing.load(str(png), "image")["image"]
    assert tuple(image.shape[1:]) == (32, 32)
    assert float(image.max()) == pytest.approx((200 / 255 - 0.4) / 0.25, abs=1e-4)


def test_overrides_apply_before_the_comparison_and_keep_their_value(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt")
    with caplog.at_level(logging.WARNING):
        loaded = load_bundle(
            COVID, ckpt=ckpt, device="cpu", overrides={"spatial_size": [48, 48], "class_names": CLASSES}
        )
    assert loaded.predictor.roi_size == (48, 48)
    lines = _warnings(caplog)
    assert "checkpoint trained at 32x32, bundle runs at 48x48: using the overridden value" in lines
    assert not [ln for ln in lines if ln.startswith(("class names differ", "checkpoint has"))]  # overridden to agree


def test_a_bare_state_dict_loads_into_the_bundle_network_with_one_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from monai.bundle import ConfigParser

    from medseg.resources import bundle_dir

    parser = ConfigParser()
    parser.read_config(str(bundle_dir(COVID) / "configs" / "inference.json"))
    parser["network_def#features"] = FEATURES
    torch.save(parser.get_parsed_content("network_def").state_dict(), tmp_path / "weights.pt")
    with caplog.at_level(logging.WARNING):
        loaded = load_bundle(
            COVID, ckpt=tmp_path / "weights.pt", device="cpu", overrides={"network_def#features": FEATURES}
        )
    notes = [r.getMessage() for r in caplog.records if "no medseg metadata" in r.getMessage()]
    assert len(notes) == 1
    assert loaded.model is not None
    assert loaded.model.metadata is None
    assert loaded.predictor.roi_size == (256, 240)  # the bundle's: nothing else to go by
    assert loaded.writer.class_names == ["background", "infection"]  # the bundle's class_names


def _masks(out: Path) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(out.glob("*_seg.png"))}


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_torchscript_and_onnx_files_predict_like_the_checkpoint(tmp_path: Path, kind: str) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt", classes=["background", "infection"])
    if kind == "torchscript":
        from monai.bundle import ckpt_export

        from medseg.resources import bundle_dir

        configs = bundle_dir(COVID) / "configs"
        model = tmp_path / "model.ts"
        ckpt_export(
            net_id="network_def",
            filepath=str(model),
            ckpt_file=str(ckpt),
            key_in_ckpt="state_dict",
            meta_file=str(configs / "metadata.json"),
            config_file=str(configs / "inference.json"),
            **{"network_def#features": FEATURES, "spatial_size": [32, 32]},
        )
    else:
        pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")
        from medseg.export import export_onnx

        model = export_onnx(ckpt, tmp_path / "model.onnx").path
    (tmp_path / "in").mkdir()
    png = _png(tmp_path / "in" / "slice.png")
    base = ["predict", "--bundle", COVID, "-i", str(png), "--device", "cpu", "--no-progress"]
    assert main([*base, "--ckpt", str(ckpt), "-o", str(tmp_path / "pt")]) == 0
    # ckpt_export embeds the bundle's config files as written, without the training's settings (input size,
    # normalisation): they are given as overrides, as a user of such a file must
    normalization = "normalization=" + json.dumps(NORMALIZATION)
    extra = ["--override", normalization, "--override", "spatial_size=[32,32]"]
    assert (
        main([*base, "--ckpt", str(model), "-o", str(tmp_path / kind), *(extra if kind == "torchscript" else [])]) == 0
    )
    ours, theirs = _masks(tmp_path / "pt"), _masks(tmp_path / kind)
    assert list(ours) == ["slice_seg.png"]
    agreement = float((ours["slice_seg.png"] == theirs["slice_seg.png"]).mean())
    assert agreement > 0.995  # float32 kernels of another runtime may flip a pixel at a 50:50 boundary


def test_the_checkpoint_plan_sets_the_intensity_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Training slices were dark (0.5-99.5th percentiles 0.0-0.2 on [0, 1], i.e. 0-51 of 255): a bright image
    that the bundle's 0-255 range would accept lies far outside the training data."""
    plan = {"fingerprint": {"intensity": [{"percentile_00_5": 0.0, "percentile_99_5": 0.2, "mean": 0.1, "std": 0.05}]}}
    ckpt = _checkpoint(tmp_path / "model.pt", plan=plan)
    loaded = load_bundle(COVID, ckpt=ckpt, device="cpu")
    reference = loaded.preprocessing.intensity_reference("image")
    assert reference is not None
    assert (reference.low, reference.high) == pytest.approx((0.0, 0.2 * 255))
    assert "training data" in reference.source
    bright = _png(tmp_path / "bright.png", low=180, high=250)
    report = predict_with_bundle(COVID, [bright], tmp_path / "out", ckpt=ckpt, device="cpu")
    assert report.exit_code == 2
    assert "far outside" in (report.failed[0].error or "")
    assert "training data" in (report.failed[0].error or "")
    # without a plan, the bundle's 0-255 range applies and the same image passes
    plain = _checkpoint(tmp_path / "plain.pt")
    assert predict_with_bundle(COVID, [bright], tmp_path / "out2", ckpt=plain, device="cpu").exit_code == 0


def test_override_option_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = _checkpoint(tmp_path / "model.pt")
    png = _png(tmp_path / "slice.png")
    args = [
        "predict",
        "--bundle",
        COVID,
        "--ckpt",
        str(ckpt),
        "-i",
        str(png),
        "-o",
        str(tmp_path / "o"),
        "--device",
        "cpu",
    ]
    assert main([*args, "--override", "spatial_size=[48,48]", "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "checkpoint trained at 32x32, bundle runs at 48x48: using the overridden value" in err
    with pytest.raises(SystemExit) as info:
        main([*args, "--override", "spatial_size"])
    assert info.value.code == 2
    assert "ID=VALUE" in capsys.readouterr().err


def test_a_training_resume_file_runs_like_its_model(tmp_path: Path) -> None:
    """``last.pt`` (network, optimizer, trainer state and the metadata) predicts with the network it holds."""
    from medseg.checkpoint import METADATA_KEY, CheckpointMetadata

    network = _network(2)
    meta = CheckpointMetadata.from_dict({"classes": ["background", "infection"], "roi_size": [32, 32]})
    spec = {"_target_": "medseg.networks.CopleNet", "spatial_dims": 2, "in_channels": 1, "out_channels": 2}
    spec |= {"features": FEATURES, "norm": ["group", {"num_groups": 4}]}
    last = {
        "network": network.state_dict(),
        "optimizer": {"state": {}, "param_groups": []},
        "tag": "ce",
        METADATA_KEY: meta.replace(network=spec).to_json(),
    }
    torch.save(last, tmp_path / "last.pt")
    loaded = load_bundle(COVID, ckpt=tmp_path / "last.pt", device="cpu")
    assert loaded.model is not None
    assert loaded.model.rebuilt
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.predictor.network(x), network(x))
