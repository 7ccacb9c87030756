"""CPU mixed precision for the bundles' engines (AutocastInferer)."""

from __future__ import annotations

import pytest
import torch

import medseg.training.amp as amp
from medseg.training.amp import AutocastInferer


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(4, 2, 1))


def test_bf16_forward_is_close_to_float32_and_returns_float32() -> None:
    if not amp.cpu_supports_bf16():
        pytest.skip("this CPU has no bfloat16 instructions")
    net, x = _net(), torch.randn(2, 1, 16, 16)
    out = AutocastInferer("bf16")(x, net)
    assert out.dtype == torch.float32
    # bfloat16 keeps 8 mantissa bits: relative error ~2**-8 per rounding; a few roundings stay within 5e-2 here
    torch.testing.assert_close(out, net(x), rtol=5e-2, atol=5e-2)
    assert not torch.equal(out, net(x))  # it did run in lower precision


def test_gradients_flow_through_autocast() -> None:
    net, x = _net(), torch.randn(2, 1, 8, 8)
    AutocastInferer("bf16")(x, net).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())


def test_fp32_and_unsupported_cpus_run_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x = _net(), torch.randn(1, 1, 8, 8)
    assert torch.equal(AutocastInferer("fp32")(x, net), net(x))
    monkeypatch.setattr(amp, "cpu_supports_bf16", lambda: False)
    assert torch.equal(AutocastInferer("bf16")(x, net), net(x))


def test_bad_precision() -> None:
    with pytest.raises(ValueError, match="precision"):
        AutocastInferer("fp16")  # type: ignore[arg-type]
