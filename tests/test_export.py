"""ONNX export with dynamic batch and spatial axes: ONNX Runtime must agree with PyTorch (the ``[export]`` extra).

The default suite exports a tiny network with COPLE-Net's kinds of layers (convolution, GroupNorm, pooling,
bilinear upsampling, a skip concatenation) once; the export of COPLE-Net itself takes a minute on a busy 2-core
machine and is marked slow.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

pytest.importorskip("onnx", reason="the [export] extra is not installed")
pytest.importorskip("onnxscript", reason="the [export] extra is not installed")
pytest.importorskip("onnxruntime", reason="the [export] extra is not installed")

from medseg.checkpoint import describe_checkpoint, load_model, save_checkpoint
from medseg.export import ExportReport, OnnxNetwork, export_onnx, load_onnx

META = {"bundle": "test", "classes": ["background", "infection"], "roi_size": [32, 32], "spatial_dims": 2}


class TinyUNet(nn.Module):
    """Conv + GroupNorm + LeakyReLU, max-pool, bilinear upsampling and a skip concatenation: (B, 1, H, W) -> 2."""

    def __init__(self) -> None:
        super().__init__()
        self.spatial_dims, self.in_channels = 2, 1
        self.down = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.GroupNorm(2, 4), nn.LeakyReLU(0.01))
        self.deep = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(4, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.LeakyReLU())
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.out = nn.Conv2d(12, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.down(x)
        return self.out(torch.cat([skip, self.up(self.deep(skip))], dim=1))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path, ExportReport]:
    folder = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    net = TinyUNet().eval()
    report = export_onnx(net, folder / "tiny.onnx", metadata=META)
    return net, folder / "tiny.onnx", report


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (3, 1, 64, 48), (2, 1, 48, 96), (5, 1, 16, 16)], ids=str)
def test_onnx_runtime_agrees_with_torch_at_any_batch_and_size(
    exported: tuple[nn.Module, Path, ExportReport], shape: tuple[int, ...]
) -> None:
    net, path, report = exported
    assert report.max_abs_difference is not None
    assert report.max_abs_difference < 1e-5  # checked at export time on a (3, 1, 48, 48) input
    x = torch.rand(shape, generator=torch.Generator().manual_seed(sum(shape)))
    with torch.no_grad():
        expected = net(x)
    got = load_onnx(path).model(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)  # float32 rounding only


def test_axes_are_dynamic_and_metadata_is_stored(exported: tuple[nn.Module, Path, ExportReport]) -> None:
    _, path, _ = exported
    loaded = load_model(path)  # .onnx goes to ONNX Runtime
    assert loaded.kind == "onnx"
    assert isinstance(loaded.model, OnnxNetwork)
    shape = loaded.model.session.get_inputs()[0].shape
    assert [isinstance(s, str) for s in shape] == [True, False, True, True]  # batch, 1 channel, height, width
    assert (loaded.model.spatial_dims, loaded.model.in_channels) == (2, 1)
    assert loaded.metadata is not None
    assert loaded.metadata.classes == ["background", "infection"]
    assert loaded.metadata.bundle == "test"
    assert describe_checkpoint(path).splitlines()[0].startswith("tiny.onnx: ONNX model (format 1")


def test_the_predictor_runs_an_onnx_model(exported: tuple[nn.Module, Path, ExportReport]) -> None:
    """Sliding windows over a volume with the 2D ONNX network give the PyTorch network's probabilities."""
    from medseg.inference import Predictor

    net, path, _ = exported
    volume = torch.rand(1, 1, 40, 56, 3, generator=torch.Generator().manual_seed(3))
    expected = Predictor(net, roi_size=(32, 32), sw_batch_size=2).predict_proba(volume)
    got = Predictor(load_onnx(path).model, roi_size=(32, 32), sw_batch_size=2).predict_proba(volume)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)


def test_export_refuses_to_overwrite_and_bad_arguments(exported: tuple[nn.Module, Path, ExportReport]) -> None:
    net, path, _ = exported
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_onnx(net, path)
    assert path.read_bytes() == before
    with pytest.raises(ValueError, match=r"must end in \.onnx"):
        export_onnx(net, path.with_suffix(".pt"))
    with pytest.raises(ValueError, match="2 positive entries"):
        export_onnx(net, path.with_name("other.onnx"), example_size=(32, 32, 32))
    with pytest.raises(FileNotFoundError):
        load_onnx(path.with_name("missing.onnx"))


@pytest.mark.slow
def test_coplenet_checkpoint_exports_and_agrees(tmp_path: Path) -> None:
    from medseg.networks import CopleNet

    torch.manual_seed(0)
    net = CopleNet(2, 1, 2, features=(8, 16, 32, 64, 128), norm=("group", {"num_groups": 2})).eval()
    save_checkpoint(tmp_path / "model.pt", net, {"classes": ["background", "infection"], "roi_size": [32, 32]})
    report = export_onnx(tmp_path / "model.pt", tmp_path / "model.onnx")
    assert report.max_abs_difference is not None
    assert report.max_abs_difference < 1e-4
    loaded = load_onnx(tmp_path / "model.onnx")
    assert loaded.metadata is not None
    assert loaded.metadata.network is not None
    assert loaded.metadata.network["features"] == [8, 16, 32, 64, 128]
    for shape in [(1, 1, 32, 32), (3, 1, 64, 48)]:
        x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            torch.testing.assert_close(loaded.model(x), net(x), atol=1e-4, rtol=1e-4)
