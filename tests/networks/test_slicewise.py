from __future__ import annotations

import pytest
import torch
from monai.inferers import SliceInferer
from torch import nn

from medseg.networks import CopleNet, SliceWise

TINY = (8, 16, 32, 64, 128)
TINY_NORM = ("group", {"num_groups": 2})


@pytest.fixture(scope="module")
def net2d() -> CopleNet:
    torch.manual_seed(0)
    return CopleNet(2, 2, 3, features=TINY, norm=TINY_NORM).eval()


def loop_over_slices(net: nn.Module, volume: torch.Tensor, axis: int) -> torch.Tensor:
    """Reference: index one slice at a time with select() and stack the 2D outputs back on ``axis``."""
    outs = [net(volume.select(axis, k)) for k in range(volume.shape[axis])]
    return torch.stack(outs, dim=axis)


@pytest.mark.parametrize("slice_batch", [1, 3, None], ids=["sb1", "sb3", "all"])
@pytest.mark.parametrize(
    ("axis", "shape"),
    [(-1, (2, 2, 32, 16, 5)), (2, (1, 2, 4, 16, 32)), (-2, (1, 2, 16, 3, 32))],
    ids=["last", "first", "middle"],
)
def test_equals_looping_the_2d_network(
    net2d: CopleNet, axis: int, shape: tuple[int, ...], slice_batch: int | None
) -> None:
    volume = torch.randn(shape)
    with torch.no_grad():
        got = SliceWise(net2d, axis=axis, slice_batch=slice_batch)(volume)
        expected = loop_over_slices(net2d, volume, axis % 5)
    expected_shape = list(shape)
    expected_shape[1] = 3
    assert list(got.shape) == expected_shape
    torch.testing.assert_close(got, expected)


def test_matches_monai_slice_inferer(net2d: CopleNet) -> None:
    # Independent implementation: MONAI's SliceInferer with a full-slice ROI (spatial_dim 2 = last axis).
    volume = torch.randn(1, 2, 32, 16, 4)
    inferer = SliceInferer(roi_size=(32, 16), sw_batch_size=2, spatial_dim=2, progress=False)
    with torch.no_grad():
        expected = inferer(volume, net2d)
        got = SliceWise(net2d, axis=-1, slice_batch=2)(volume)
    torch.testing.assert_close(got, expected)


def test_four_d_batch_passes_through(net2d: CopleNet) -> None:
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(SliceWise(net2d)(x), net2d(x))


def test_gradients_flow_to_the_wrapped_network() -> None:
    net = CopleNet(2, 1, 2, features=TINY, norm=TINY_NORM)
    wrapper = SliceWise(net, slice_batch=2).train()
    wrapper(torch.randn(1, 1, 16, 16, 3)).mean().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert set(wrapper.state_dict()) == {"network." + k for k in net.state_dict()}


def test_torchscript(net2d: CopleNet) -> None:
    wrapper = SliceWise(net2d, axis=-1, slice_batch=2).eval()
    scripted = torch.jit.script(wrapper)
    volume = torch.randn(1, 2, 16, 16, 3)
    with torch.jit.optimized_execution(False), torch.no_grad():
        torch.testing.assert_close(scripted(volume), wrapper(volume))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"axis": 1}, ValueError, "axis must be the slice axis"),
        ({"axis": -4}, ValueError, "axis must be the slice axis"),
        ({"slice_batch": 0}, ValueError, "slice_batch must be a positive int or None"),
        ({"network": "coplenet"}, TypeError, "network must be a torch.nn.Module"),
    ],
    ids=["axis1", "axis-4", "batch0", "not-module"],
)
def test_invalid_arguments(net2d: CopleNet, kwargs: dict[str, object], error: type, match: str) -> None:
    args: dict[str, object] = {"network": net2d} | kwargs
    with pytest.raises(error, match=match):
        SliceWise(**args)  # type: ignore[arg-type]


def test_rejects_a_3d_network_and_bad_rank(net2d: CopleNet) -> None:
    with pytest.raises(ValueError, match="spatial_dims=3"):
        SliceWise(CopleNet(3, 1, 2, features=TINY, norm=TINY_NORM))
    with pytest.raises(ValueError, match=r"got shape \[1, 2, 16\]"):
        SliceWise(net2d)(torch.zeros(1, 2, 16))
