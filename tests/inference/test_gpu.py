"""CUDA paths: windows on the GPU, stitching on the CPU, mixed precision (skipped without CUDA)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from medseg.inference import Predictor

pytestmark = pytest.mark.gpu


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.GroupNorm(2, 8), nn.ReLU(), nn.Conv2d(8, 3, 3, padding=1))


def test_gpu_windows_cpu_stitching_matches_cpu():
    x = torch.randn(1, 1, 40, 36, 6)
    cpu = Predictor(_net(), roi_size=(16, 16), sw_batch_size=8).predict_logits(x)
    gpu = Predictor(_net(), roi_size=(16, 16), sw_batch_size=8, device="cuda", stitch_device="cpu")
    out = gpu.predict_logits(x.cuda())
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, cpu, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_amp_keeps_the_labels(amp):
    if amp == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("no bf16 on this GPU")
    x = torch.randn(1, 1, 64, 64, 4)
    ref = Predictor(_net(), roi_size=(32, 32)).predict_labels(x)
    got = Predictor(_net(), roi_size=(32, 32), device="cuda", amp=amp).predict_labels(x.cuda()).cpu()
    assert (got == ref).float().mean() > 0.99
