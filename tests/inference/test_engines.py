"""Engines: ONNX Runtime and OpenVINO give eager PyTorch's logits; missing packages and devices are named."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.inference import Predictor
from medseg.inference.engines import ENGINES, available_engines, build_engine


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.LeakyReLU(), nn.Conv2d(8, 3, 3, padding=1)
    ).eval()


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_graph_engines_match_eager(engine):
    if engine not in available_engines():
        pytest.skip(f"{engine} is not installed (pip install 'medseg[{ENGINES[engine][1]}]')")
    x = torch.rand(1, 1, 20, 18, 5)  # 5 slices; windows of 16x16 in batches of 3, then 2 (dynamic batch axis)
    eager = Predictor(_net(), roi_size=(16, 16), sw_batch_size=3, device="cpu").predict_logits(x)
    other = Predictor(_net(), roi_size=(16, 16), sw_batch_size=3, device="cpu", engine=engine)
    out = other.predict_logits(x)
    torch.testing.assert_close(out, eager, rtol=1e-4, atol=1e-4)  # float32 kernels with other summation orders
    assert len(other.forward.runners) == 1  # one export for the one window shape


def test_missing_package_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name))
    with pytest.raises(ValueError, match=r"medseg\[export\]"):
        build_engine(_net(), "onnxruntime", torch.device("cpu"))


def test_unknown_engine_and_wrong_device_are_refused():
    with pytest.raises(ValueError, match="engine must be one of"):
        build_engine(_net(), "tensorrt", torch.device("cpu"))
    if "onnxruntime" in available_engines():
        with pytest.raises(ValueError, match="runs on the CPU"):
            build_engine(_net(), "onnxruntime", torch.device("cuda"))


def test_eager_is_the_network_itself():
    net = _net()
    assert build_engine(net, "eager", torch.device("cpu")) is net


def test_onnxruntime_engine_uses_the_exporter_and_session_builder_of_medseg_export(monkeypatch):
    """One exporter and one session builder (medseg.export) serve both ``medseg export`` and the engine."""
    if "onnxruntime" not in available_engines():
        pytest.skip("onnxruntime is not installed (pip install 'medseg[export]')")
    import medseg.export as export

    calls: list[tuple[str, object]] = []
    real_model, real_session = export.onnx_model, export.onnx_session

    def model(*args, **kwargs):
        calls.append(("model", kwargs.get("dynamic_spatial")))
        return real_model(*args, **kwargs)

    def session(*args, **kwargs):
        calls.append(("session", kwargs.get("threads")))
        return real_session(*args, **kwargs)

    monkeypatch.setattr(export, "onnx_model", model)
    monkeypatch.setattr(export, "onnx_session", session)
    net = _net()
    run = build_engine(net, "onnxruntime", torch.device("cpu"))
    x = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(run(x), net(x), rtol=1e-4, atol=1e-4)
    # windows have one shape per run: the engine fixes the spatial axes; one thread per operator, as torch here
    assert calls == [("model", False), ("session", torch.get_num_threads())]
