"""Fixtures for the inference tests: deterministic "networks" whose output is known exactly, synthetic inputs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def cpu_unless_gpu_test(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """``device="auto"`` (the default) means the CPU here, so CPU references hold on machines with a GPU too."""
    if request.node.get_closest_marker("gpu") is None:
        monkeypatch.setattr("medseg.inference.devices._auto_device", lambda: torch.device("cpu"))


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: one thread avoids OpenMP synchronisation costs on a busy machine (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class ThresholdNet(nn.Module):
    """A 1x1 convolution whose 2-class argmax is exactly ``mean over channels of x > threshold``.

    logits = (-s·m + s·t, s·m - s·t) with m the channel mean, so class 1 wins iff m > t (s = 50 keeps the
    probabilities far from 0.5 except within 0.01 of the threshold, which the synthetic data avoids).
    """

    def __init__(self, in_channels: int = 1, threshold: float = 0.5, spatial_dims: int = 2, scale: float = 50.0):
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.spatial_dims = spatial_dims
        self.conv = conv(in_channels, 2, 1)
        with torch.no_grad():
            w = scale / in_channels
            self.conv.weight.zero_()
            self.conv.weight[0] = -w
            self.conv.weight[1] = w
            self.conv.bias.copy_(torch.tensor([scale * threshold, -scale * threshold]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


@pytest.fixture
def threshold_net() -> type[ThresholdNet]:
    return ThresholdNet
