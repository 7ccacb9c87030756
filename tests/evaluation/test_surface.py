from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.evaluation.surface import squeeze_spatial, surface_distances, surface_metrics_per_class


def test_single_voxels_anisotropic_spacing() -> None:
    # one voxel each, 3 slices apart along the last axis with 2 mm slices: every distance is 3 * 2 = 6 mm
    pred = np.zeros((4, 4, 6), bool)
    label = np.zeros((4, 4, 6), bool)
    pred[1, 1, 0] = True
    label[1, 1, 3] = True
    hd, asd = surface_distances(pred, label, spacing=(1.0, 1.0, 2.0))
    assert hd == pytest.approx(6.0)
    assert asd == pytest.approx(6.0)
    # in voxel units the same pair is 3 apart
    assert surface_distances(pred, label)[0] == pytest.approx(3.0)


def test_block_shifted_by_one_slice() -> None:
    # 3x3x2 blocks shifted by one slice (3 mm): a 2-voxel-thick block is all boundary (18 voxels each).
    # pred->label: the 9 shared voxels are at 0, the other 9 at 3 mm; label->pred the same.
    # HD95 = 95th percentile of {0 x 9, 3 x 9} = 3; ASD = (18 * 3) / 36 = 1.5
    label = np.zeros((8, 8, 6), bool)
    pred = np.zeros((8, 8, 6), bool)
    label[2:5, 2:5, 1:3] = True
    pred[2:5, 2:5, 2:4] = True
    hd, asd = surface_distances(pred, label, spacing=(1.0, 1.0, 3.0))
    assert hd == pytest.approx(3.0)
    assert asd == pytest.approx(1.5)


@pytest.mark.parametrize(
    ("has_pred", "has_label", "expected"),
    [(False, False, "nan"), (False, True, "inf"), (True, False, "inf")],
    ids=["both-empty", "empty-prediction", "empty-label"],
)
def test_empty_mask_conventions(has_pred: bool, has_label: bool, expected: str) -> None:
    pred = np.zeros((6, 6), bool)
    label = np.zeros((6, 6), bool)
    pred[1:3, 1:3] = has_pred
    label[2:4, 2:4] = has_label
    hd, asd = surface_distances(pred, label)
    check = math.isnan if expected == "nan" else math.isinf
    assert check(hd)
    assert check(asd)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("touch_border", [False, True], ids=["inside", "touching-border"])
def test_matches_monai_compute_functions(ndim: int, touch_border: bool) -> None:
    """Independent implementation check: MONAI's own HD95 and symmetric ASD on the same masks."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    rng = np.random.default_rng(ndim)
    shape = (20, 18) if ndim == 2 else (14, 12, 10)
    spacing = (0.7, 1.3) if ndim == 2 else (0.8, 1.0, 2.5)
    grid = np.indices(shape)
    centre = np.zeros(ndim) if touch_border else np.array(shape) / 2
    r = np.sqrt(sum(((g - c) * s) ** 2 for g, c, s in zip(grid, centre, spacing, strict=True)))
    label = r < 5.0
    pred = (r < 4.0) | (rng.random(shape) < 0.02)  # smaller blob plus a few outliers
    hd, asd = surface_distances(pred, label, spacing=spacing)
    yp = torch.from_numpy(pred)[None, None].float()
    yt = torch.from_numpy(label)[None, None].float()
    ref_hd = compute_hausdorff_distance(yp, yt, include_background=True, percentile=95, spacing=spacing)
    ref_asd = compute_average_surface_distance(yp, yt, include_background=True, symmetric=True, spacing=spacing)
    assert hd == pytest.approx(float(ref_hd), rel=1e-5)
    assert asd == pytest.approx(float(ref_asd), rel=1e-5)


def test_singleton_axis_is_dropped() -> None:
    label = np.zeros((10, 10), bool)
    label[2:7, 2:7] = True
    pred = np.roll(label, 2, axis=0)
    two_d = surface_distances(pred, label, spacing=(0.5, 0.8))
    three_d = surface_distances(pred[..., None], label[..., None], spacing=(0.5, 0.8, 5.0))
    assert three_d == pytest.approx(two_d)
    arr, sp = squeeze_spatial(np.zeros((3, 1, 4)), (1.0, 2.0, 3.0))
    assert arr.shape == (3, 4)
    assert sp == (1.0, 3.0)


def test_per_class_and_ignore_mask() -> None:
    label = np.zeros((10, 10), int)
    pred = np.zeros((10, 10), int)
    label[1:4, 1:4] = 1
    pred[1:4, 1:4] = 1  # class 1 perfect
    label[6:9, 6:9] = 2  # class 2 missed entirely
    hd, asd = surface_metrics_per_class(pred, label, [1, 2])
    assert hd[0] == 0.0
    assert asd[0] == 0.0
    assert math.isinf(hd[1])
    # ignoring the region of class 2 leaves nothing to measure: both empty -> NaN
    hd, _ = surface_metrics_per_class(pred, label, [1, 2], ignore_mask=label == 2)
    assert math.isnan(hd[1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"spacing": (1.0,)}, "spacing must give one"), ({"percentile": 120.0}, "percentile")],
    ids=["spacing-length", "percentile-range"],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        surface_distances(np.ones((3, 3), bool), np.ones((3, 3), bool), **kwargs)
    with pytest.raises(ValueError, match="same shape"):
        surface_distances(np.ones((3, 3), bool), np.ones((3, 4), bool))


def test_per_class_boxes_equal_full_volume_computation() -> None:
    """The bounding-box shortcut must not change any number: compare with whole-volume masks per class."""
    rng = np.random.default_rng(11)
    shape = (16, 14, 9)
    grid = np.indices(shape)
    label = np.zeros(shape, np.uint8)
    pred = np.zeros(shape, np.uint8)
    for c in range(1, 6):
        centre = rng.uniform(0, shape)
        r = np.sqrt(sum((g - x) ** 2 for g, x in zip(grid, centre, strict=True)))
        label[r < rng.uniform(2, 5)] = c
        pred[np.roll(r, int(rng.integers(-2, 3)), axis=int(rng.integers(0, 3))) < rng.uniform(2, 5)] = c
    pred[0, 0, 0] = 4  # a stray voxel far from class 4's blob, at the volume corner
    classes = [1, 2, 3, 4, 5, 6]  # class 6 absent from both
    ignore = rng.random(shape) < 0.05
    hd, asd = surface_metrics_per_class(pred, label, classes, (0.9, 1.1, 2.0), ignore_mask=ignore)
    for i, c in enumerate(classes):
        ref = surface_distances((pred == c) & ~ignore, (label == c) & ~ignore, (0.9, 1.1, 2.0))
        np.testing.assert_allclose([hd[i], asd[i]], ref, rtol=1e-12)
    assert math.isnan(hd[5])
