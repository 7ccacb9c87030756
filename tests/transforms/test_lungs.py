"""The lung mask and the lung crop of CT volumes, on phantoms whose anatomy is known voxel by voxel."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from medseg.inference import Predictor, Preprocessing, segment
from medseg.transforms import ct_volume_transforms
from medseg.transforms.lungs import ROI_MASK_KEY, LungMaskd, lung_mask

SPACING = (5.0, 5.0, 5.0)


def _chest() -> tuple[np.ndarray, np.ndarray]:
    """A (60, 50, 6) chest phantom in HU and its true lungs: padding, air, body, two lungs, a nodule, a gas pocket."""
    hu = np.full((60, 50, 6), -2048.0, np.float32)  # outside the field of view (padding value)
    x, y = np.mgrid[:60, :50]
    hu[(x - 30) ** 2 / 28**2 + (y - 25) ** 2 / 24**2 <= 1] = -1000.0  # air inside the field of view
    hu[(x - 30) ** 2 / 24**2 + (y - 25) ** 2 / 18**2 <= 1] = 40.0  # the body
    lungs = np.zeros(hu.shape, bool)
    lungs[12:26, 15:36] = True
    lungs[34:48, 15:36] = True
    hu[lungs] = -850.0
    hu[18:21, 24:27, 2:4] = 30.0  # a nodule inside the right lung: part of the lungs
    hu[28:30, 40:42, 1] = -1000.0  # a small gas pocket in the body (8 voxels): not lung
    return hu, lungs


def test_lung_mask_keeps_the_lungs_and_what_they_enclose() -> None:
    hu, lungs = _chest()
    mask = lung_mask(hu, SPACING, closing_mm=10.0)
    assert mask is not None
    assert np.array_equal(mask, lungs)  # the nodule is inside, the body, air, padding and gas pocket are not


def test_gas_larger_than_the_lungs_is_not_lung() -> None:
    """An abdominal CT: colon gas (pure air, -1000 HU) outweighs the lung bases (aerated lung, -850 HU)."""
    hu, lungs = _chest()
    gas = np.zeros_like(lungs)
    gas[20:40, 37:39] = True  # a 20 x 2 x 6 gas-filled bowel loop below the lungs, walled in by the body
    hu[gas] = -1000.0
    assert gas.sum() > 0.1 * lungs.sum() / 2  # bigger than a tenth of one lung: size alone would keep it
    walls = ndi.binary_dilation(gas, structure=ndi.generate_binary_structure(3, 1)) & ~gas
    assert (hu[walls] > -320).all()  # not connected to the air outside the body or to the lungs
    mask = lung_mask(hu, SPACING, closing_mm=5.0)
    assert mask is not None
    assert not (mask & gas).any()
    assert (mask & lungs).sum() == lungs.sum()


def test_lung_mask_none_without_lungs() -> None:
    hu, lungs = _chest()
    hu[lungs] = 40.0  # solid body: no air inside it
    hu[28:30, 40:42, 1] = -1000.0
    assert lung_mask(hu, SPACING) is None  # 8 voxels of gas (1 mL) are under min_ml


@pytest.mark.parametrize(
    ("array", "spacing", "match"),
    [
        (np.zeros((4, 4)), SPACING, "3D"),
        (np.zeros((4, 4, 4)), (1.0, 0.0, 1.0), "spacing"),
        (np.zeros((4, 4, 4)), (1.0, 1.0), "spacing"),
    ],
)
def test_lung_mask_rejects_bad_input(array: np.ndarray, spacing: tuple[float, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        lung_mask(array, spacing)


def test_lung_maskd_warns_and_keeps_everything_without_lungs(caplog: pytest.LogCaptureFixture) -> None:
    hu = np.full((1, 20, 20, 3), 40.0, np.float32)
    with caplog.at_level(logging.WARNING, logger="medseg.transforms.lungs"):
        out = LungMaskd("image")({"image": torch.from_numpy(hu)})
    assert torch.all(out[ROI_MASK_KEY] == 1)
    assert "found no lungs" in caplog.text


def test_crop_lungs_is_for_inference() -> None:
    with pytest.raises(ValueError, match="crop_lungs is for inference"):
        ct_volume_transforms(["image", "label"], train=True, roi_size=[8, 8, 1], crop_lungs=True)


def _everything_foreground() -> torch.nn.Module:
    """A 2D 'network' that votes foreground everywhere (logits 0 and 10)."""

    class Foreground(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.cat([torch.zeros_like(x), torch.full_like(x, 10.0)], dim=1)

    return Foreground()


def test_lung_crop_segments_only_the_lungs_on_the_input_grid() -> None:
    """Crop to the lungs, resize to the model's size, predict, map back: foreground only inside the lungs."""
    hu, lungs = _chest()
    pre = Preprocessing(
        volume=ct_volume_transforms(
            ["image"], train=False, window=[1475, -450], orientation="PLS", crop_lungs=True, plane_size=[32, 32]
        )
    )
    predictor = Predictor(_everything_foreground(), roi_size=[32, 32])
    seg = segment(hu, predictor, pre, affine=np.diag([*SPACING, 1.0]), intensity_check="off")
    assert seg.labels.shape == hu.shape
    fg = seg.labels == 1
    # the lung mask bounds the foreground; its trip to the model's grid and back (56x41 -> 32x32 -> 56x41)
    # moves its edge by at most one voxel
    near_lungs = ndi.binary_dilation(lungs, structure=np.ones((3, 3, 1), bool))
    assert not fg[~near_lungs].any()
    dice = 2 * (fg & lungs).sum() / (fg.sum() + lungs.sum())
    assert dice > 0.95


def test_without_lungs_the_whole_volume_is_segmented(caplog: pytest.LogCaptureFixture) -> None:
    hu = np.full((20, 20, 3), 40.0, np.float32)
    pre = Preprocessing(volume=ct_volume_transforms(["image"], train=False, crop_lungs=True, plane_size=[16, 16]))
    with caplog.at_level(logging.WARNING):
        seg = segment(hu, Predictor(_everything_foreground(), roi_size=[16, 16]), pre, affine=np.eye(4))
    assert seg.labels.shape == hu.shape
    assert (seg.labels == 1).all()
    assert "found no lungs" in caplog.text
