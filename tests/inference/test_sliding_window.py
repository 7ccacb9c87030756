"""The blending core against MONAI's sliding_window_inference (the independent reference)."""

from __future__ import annotations

import itertools

import pytest
import torch
from monai.data.utils import compute_importance_map, dense_patch_slices
from monai.inferers import sliding_window_inference

from medseg.inference.sliding_window import (
    importance_map,
    normalisation_map,
    scan_interval,
    sliding_window_predict,
    window_starts,
)

CASES = [
    # (input shape, roi, overlap, sw_batch_size)
    ((2, 2, 21, 17), (8, 8), 0.5, 3),  # 2D, odd sizes, windows from two images mixed in one batch
    ((1, 1, 5, 30), (8, 8), 0.25, 4),  # input smaller than the window along one axis: padded, then cropped
    ((1, 2, 13, 11, 9), (6, 5, 4), 0.5, 5),  # 3D, anisotropic window
    ((1, 1, 16, 16, 6), (8, 8, 8), 0.0, 2),  # no overlap along two axes, padding along the third
]


@pytest.mark.parametrize(("shape", "roi", "overlap", "batch"), CASES, ids=["2d-odd", "2d-pad", "3d", "3d-no-overlap"])
@pytest.mark.parametrize("mode", ["gaussian", "constant"])
def test_matches_monai_sliding_window(shape, roi, overlap, batch, mode):
    torch.manual_seed(0)
    conv = torch.nn.Conv2d if len(shape) == 4 else torch.nn.Conv3d
    net = conv(shape[1], 3, 3, padding=1)
    x = torch.randn(shape)
    with torch.no_grad():
        ref = sliding_window_inference(x, roi, batch, net, overlap=overlap, mode=mode)
        ours = sliding_window_predict(x, net, roi, sw_batch_size=batch, overlap=overlap, mode=mode)
    assert ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("size", "roi", "overlap"),
    [((10,), (4,), 0.5), ((37, 29), (16, 16), 0.5), ((16, 9, 5), (16, 4, 2), 0.25), ((7, 100), (7, 33), 0.6)],
)
def test_window_grid_is_monais(size, roi, overlap):
    ov = (overlap,) * len(size)
    starts = window_starts(size, roi, ov)
    grid = sorted(tuple(s.start for s in sl) for sl in dense_patch_slices(size, roi, scan_interval(size, roi, ov)))
    ours = sorted(tuple(c) for c in itertools.product(*starts))
    assert ours == grid


@pytest.mark.parametrize("roi", [(8, 8), (5, 12), (6, 5, 4), (1, 16)])
def test_importance_map_is_monais(roi):
    ref = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125)
    torch.testing.assert_close(importance_map(roi), ref, rtol=0, atol=0)


def test_normalisation_map_sums_the_weights_by_hand():
    # 1D: size 6, roi 4, overlap 0.5 -> windows at 0 and 2. Constant weights: coverage 1,1,2,2,1,1.
    norm = normalisation_map((6,), (4,), 0.5, mode="constant")
    assert norm is not None
    torch.testing.assert_close(norm[0], torch.tensor([1.0, 1.0, 0.5, 0.5, 1.0, 1.0]))
    # Windows that tile the image without overlap need no normalisation.
    assert normalisation_map((8, 8), (4, 4), 0.0) is None
    assert normalisation_map((8, 8), (8, 8), 0.5) is None


def test_whole_image_window_returns_the_network_output_exactly():
    torch.manual_seed(1)
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    x = torch.randn(5, 1, 12, 10)
    with torch.no_grad():
        out = sliding_window_predict(x, net, None, sw_batch_size=2)
        assert torch.equal(out, net(x))


def test_stitching_device_and_dtype():
    x = torch.rand(1, 1, 9, 9)
    out = sliding_window_predict(x, lambda w: w.double(), (4, 4), device="cpu", sw_device="cpu")
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, x.double())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"overlap": 1.0}, "overlap must be in"),
        ({"sw_batch_size": 0}, "sw_batch_size must be a positive int"),
        ({"padding_mode": "wrap"}, "padding_mode must be one of"),
    ],
)
def test_bad_settings_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        sliding_window_predict(torch.zeros(1, 1, 4, 4), lambda w: w, (2, 2), **kwargs)


def test_network_changing_the_window_size_is_refused():
    with pytest.raises(ValueError, match="same spatial size as the window"):
        sliding_window_predict(torch.zeros(1, 1, 8, 8), lambda w: w[..., :2, :2], (4, 4))


def test_roi_with_wrong_number_of_dims_is_refused():
    with pytest.raises(ValueError, match="one entry per spatial dim"):
        sliding_window_predict(torch.zeros(1, 1, 8, 8), lambda w: w, (4, 4, 4))
