"""Compose factory for RGB video frames (robotic / endoscopic instrument segmentation).

Output: ``image`` float32 ``(3, H, W)`` (row, column order; see :mod:`medseg.transforms.readers`), normalised
with ImageNet statistics or left in [0, 1]; labels ``(1, H, W)`` integer-valued (``label_dtype``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from monai.transforms.compose import Compose

from medseg.transforms._build import (
    ResizeMode,
    check_dtype,
    check_size,
    compose,
    final_block,
    label_map_block,
    load_block,
    resize_block,
    split_keys,
)
from medseg.transforms.augment import AugmentationSpec, resolve_augmentation
from medseg.transforms.channels import AdaptChannelsd, EnsureSpatialDimsd
from medseg.transforms.intensity import channel_normalize, intensity_range_transform
from medseg.transforms.labels import LabelMapSpec

logger = logging.getLogger(__name__)

__all__ = ["frame_transforms"]

Normalize = Literal["imagenet", "unit"] | Mapping[str, Any] | None


def frame_transforms(
    keys: Sequence[str] | str = ("image", "label"),
    *,
    train: bool,
    spatial_size: Sequence[int] | int | None = (256, 320),
    resize_mode: ResizeMode = "resize",
    label_map: LabelMapSpec = None,
    ignore_index: int | None = None,
    normalize: Normalize = "imagenet",
    intensity_range: Sequence[float] = (0.0, 255.0),
    augmentation: AugmentationSpec = "light",
    label_dtype: str | None = "int64",
    seed: int | None = None,
) -> Compose:
    """Pipeline for RGB frames: load, map labels, resize, augment (training), normalise.

    Steps: load ``(H, W, 3)`` PNG/JPEG -> ``(3, H, W)`` (alpha dropped, gray repeated) -> labels to one
    channel (an RGB mask with three equal channels is accepted, a colour mask is refused) -> map label values
    -> ``intensity_range`` onto [0, 1] -> resize or pad/crop to ``spatial_size`` (labels nearest) ->
    *training only:* random flips, small rotation/scaling, colour jitter (brightness/contrast/saturation) ->
    ImageNet normalisation (``normalize="imagenet"``) -> cast.

    Args:
        keys: the image key, then label keys (``["image"]`` at inference).
        train: add the random augmentation.
        spatial_size: output ``[H, W]`` (default 256 x 320, the 4:5 aspect of the 1024 x 1280 EndoVis crop).
        resize_mode: ``"resize"``, ``"pad_crop"`` or ``"none"`` (see :func:`~medseg.transforms.ct_slice_transforms`).
        label_map: mapping for raw masks, e.g. ``"endovis_parts"`` (10/20/30/40 -> 1..4) or
            ``"endovis_binary"``; ``None`` when labels already hold class indices (``medseg-data endovis``
            output).
        ignore_index: label value passed through the mapping untouched.
        normalize: ``"imagenet"`` (subtract ImageNet's mean / divide by its std per channel), ``"unit"`` (keep
            [0, 1]) or ``{"mean": [r, g, b], "std": [r, g, b]}`` (the dataset's statistics, as the
            ``normalization`` of a ``plan.json``).
        intensity_range: raw ``[low, high]`` mapped onto [0, 1] (8-bit frames: ``[0, 255]``).
        augmentation: a preset (``"none"``, ``"flips"``, ``"light"``, ``"strong"``) or a mapping (see
            :func:`~medseg.transforms.augment.resolve_augmentation`); used with ``train=True`` only. Colour
            frames take colour jitter in place of the gray-level brightness/shift/contrast/gamma steps.
        label_dtype: dtype of the label tensors at the end (``None``: keep float32).
        seed: seed the random transforms.

    Returns:
        A MONAI ``Compose`` over dictionaries ``{"image": path, "label": path, ...}``.

    Raises:
        ValueError: invalid sizes, probabilities, normalisation name or label mapping.

    Example:
        >>> t = frame_transforms(train=True, spatial_size=[64, 80], label_map="endovis_parts", seed=1)
        >>> [type(x).__name__ for x in t.transforms][4:10]
        ['MapLabelsd', 'ScaleIntensityRanged', 'Resized', 'RandFlipd', 'RandAffined', 'RandGaussianNoised']
    """
    name = "frame_transforms"
    image_key, label_keys = split_keys(keys, name)
    size = check_size("spatial_size", spatial_size, 2, name, allow_none=resize_mode == "none")
    norm = channel_normalize(image_key, normalize, name)
    aug = resolve_augmentation(augmentation)
    label_dtype = check_dtype("label_dtype", label_dtype, name)

    t = load_block(image_key, label_keys)
    t.append(EnsureSpatialDimsd([image_key, *label_keys], spatial_dims=2))
    t.append(AdaptChannelsd(image_key, num_channels=3))
    if label_keys:
        t.append(AdaptChannelsd(label_keys, num_channels=1, mode="strict"))
    t += label_map_block(label_keys, label_map, ignore_index)
    t.append(intensity_range_transform(image_key, intensity_range))
    t += resize_block(image_key, label_keys, resize_mode, size, name)
    if train:
        t += aug.spatial(image_key, label_keys, size)
        t += aug.intensity(image_key, color=True)
    t += norm
    t += final_block(image_key, label_keys, label_dtype)
    return compose(t, seed)
