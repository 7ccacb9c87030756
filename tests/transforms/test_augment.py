"""Augmentation presets and specs, z-score and per-channel normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medseg.transforms import ct_slice_transforms, frame_transforms
from medseg.transforms.augment import PRESETS, resolve_augmentation
from medseg.transforms.intensity import channel_normalize, zscore_transforms


def test_presets_and_overrides() -> None:
    assert resolve_augmentation("none") == PRESETS["none"]
    spec = resolve_augmentation({"preset": "strong", "rotate_deg": 30, "gamma": [0.8, 1.2]})
    assert spec.rotate_deg == 30
    assert spec.gamma == (0.8, 1.2)
    assert spec.translate == PRESETS["strong"].translate
    assert resolve_augmentation({"flip_prob": 1.0}).affine_prob == 0.0  # no preset: starts from "none"


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("wild", "preset 'wild' is unknown"),
        ({"flip_prob": 1.5}, "flip_prob must be a probability"),
        ({"rotate": 10}, "unknown field"),
        ({"gamma": [1.5, 0.7]}, "low <= high"),
        ({"flip_axes": [2]}, "flip_axes"),
    ],
)
def test_bad_specs_name_the_field(spec: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        resolve_augmentation(spec)  # type: ignore[arg-type]


def test_strong_preset_builds_the_nnunet_steps() -> None:
    names = [
        type(t).__name__
        for t in ct_slice_transforms(train=True, spatial_size=[32, 32], augmentation="strong").transforms
    ]
    for step in (
        "RandFlipd",
        "RandAffined",
        "RandGaussianNoised",
        "RandGaussianSmoothd",
        "RandScaleIntensityd",
        "RandScaleIntensityFixedMeand",
        "RandAdjustContrastd",
    ):
        assert step in names
    frames = [
        type(t).__name__ for t in frame_transforms(train=True, spatial_size=[32, 32], augmentation="strong").transforms
    ]
    assert "RandColorJitterd" in frames
    assert "RandAdjustContrastd" not in frames  # colour jitter replaces the gray-level steps


def test_translation_is_a_fraction_of_the_input_size() -> None:
    pipeline = ct_slice_transforms(train=True, spatial_size=[64, 32], augmentation="strong")
    affine = next(t for t in pipeline.transforms if type(t).__name__ == "RandAffined")
    # MONAI draws each shift from U(-r, r): r = 6 % of 64 and of 32 pixels
    assert list(affine.rand_affine.rand_affine_grid.translate_range) == pytest.approx([3.84, 1.92])


def test_zscore_clips_then_standardises() -> None:
    steps = zscore_transforms("image", {"clip": [0.2, 0.8], "mean": 0.5, "std": 0.25})
    x = {"image": torch.tensor([[[0.0, 0.5, 1.0]]])}
    for s in steps:
        x = s(x)
    # clip to [0.2, 0.8] -> (0.2, 0.5, 0.8); (v - 0.5) / 0.25 -> (-1.2, 0, 1.2)
    np.testing.assert_allclose(np.asarray(x["image"]).ravel(), [-1.2, 0.0, 1.2], atol=1e-6)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"mean": 0.5}, "needs 'mean' and 'std'"),
        ({"mean": 0.5, "std": 0}, "std must be > 0"),
        ({"mean": 0.5, "std": 1, "clip": [1, 0]}, "lo < hi"),
    ],
)
def test_bad_zscore_specs(spec: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        zscore_transforms("image", spec)


def test_channel_normalize_dataset_statistics() -> None:
    (step,) = channel_normalize("image", {"mean": [0.5, 0.4, 0.3], "std": [0.1, 0.2, 0.3]})
    out = step({"image": torch.tensor([0.6, 0.6, 0.6]).reshape(3, 1, 1)})["image"]
    np.testing.assert_allclose(np.asarray(out).ravel(), [1.0, 1.0, 1.0], atol=1e-6)
    assert channel_normalize("image", None) == []
    assert channel_normalize("image", "unit") == []
    with pytest.raises(ValueError, match="3 finite means"):
        channel_normalize("image", {"mean": [0.5], "std": [0.1]})
