"""Devices: auto picks CUDA, else MPS, else CPU; explicit devices are checked with a clear error."""

from __future__ import annotations

import pytest
import torch

from medseg.inference import Predictor, resolve_device
from medseg.inference.devices import _auto_device, check_device_spec

REAL_AUTO = _auto_device  # conftest pins "auto" to the CPU for the other tests


@pytest.fixture
def real_auto(monkeypatch):
    monkeypatch.setattr("medseg.inference.devices._auto_device", REAL_AUTO)


def test_auto_without_accelerators_is_cpu(monkeypatch, real_auto):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("medseg.inference.devices._mps_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(None) == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch, real_auto):
    monkeypatch.setattr("medseg.inference.devices._mps_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize("spec", ["cpu", "CPU", "cuda", "cuda:0", "cuda:12", "mps", "auto"])
def test_spellings_accepted(spec):
    assert check_device_spec(spec) == spec.lower()


@pytest.mark.parametrize("spec", ["opencl", "cuda:", "cuda:x", "tpu", "", "cuda0"])
def test_bad_spellings_name_the_choices(spec):
    with pytest.raises(ValueError, match=r"auto, cpu, cuda, cuda:N, mps"):
        check_device_spec(spec)


def test_unavailable_devices_are_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("medseg.inference.devices._mps_available", lambda: False)
    with pytest.raises(ValueError, match=r"CUDA is not available here \(available: cpu\)"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match="MPS is not available"):
        resolve_device("mps")


def test_cuda_index_beyond_the_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match="there are 2 CUDA device"):
        resolve_device("cuda:2")


def test_predictor_defaults_to_auto_and_amp_is_off_on_cpu(monkeypatch, real_auto):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("medseg.inference.devices._mps_available", lambda: False)
    predictor = Predictor(torch.nn.Conv2d(1, 2, 1))
    assert predictor.device == torch.device("cpu")
    assert predictor.amp_dtype is None  # amp="auto" means CUDA only


@pytest.mark.parametrize("bundle", ["covid19_ct_lesion", "robotic_instrument"])
def test_shipped_bundles_default_to_auto(bundle):
    import json

    from medseg.resources import bundle_dir

    config = json.loads((bundle_dir(bundle) / "configs" / "inference.json").read_text())
    assert config["device"] == "auto"
    assert config["predictor"]["amp"] == "auto"
