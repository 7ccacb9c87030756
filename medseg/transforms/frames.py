"""Compose factory for RGB video frames (robotic / endoscopic instrument segmentation).

Output: ``image`` float32 ``(3, H, W)`` (row, column order; see :mod:`medseg.transforms.readers`), normalised
with ImageNet statistics or left in [0, 1]; labels ``(1, H, W)`` integer-valued (``label_dtype``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

from monai.transforms.compose import Compose

from medseg.transforms._build import (
    ResizeMode,
    check_axes,
    check_dtype,
    check_nonneg,
    check_prob,
    check_size,
    compose,
    final_block,
    label_map_block,
    load_block,
    resize_block,
    spatial_aug_2d,
    split_keys,
)
from medseg.transforms.channels import AdaptChannelsd, EnsureSpatialDimsd
from medseg.transforms.intensity import RandColorJitterd, imagenet_normalize, intensity_range_transform
from medseg.transforms.labels import LabelMapSpec

logger = logging.getLogger(__name__)

__all__ = ["frame_transforms"]

Normalize = Literal["imagenet", "unit"]


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
    flip_prob: float = 0.5,
    flip_axes: Sequence[int] = (1,),
    affine_prob: float = 0.3,
    rotate_deg: float = 10.0,
    scale: float = 0.1,
    jitter_prob: float = 0.8,
    brightness: float = 0.2,
    contrast: float = 0.2,
    saturation: float = 0.2,
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
        normalize: ``"imagenet"`` (subtract mean / divide by std per channel) or ``"unit"`` (keep [0, 1]).
        intensity_range: raw ``[low, high]`` mapped onto [0, 1] (8-bit frames: ``[0, 255]``).
        flip_prob: probability of a flip along each of ``flip_axes`` (0 = up-down, 1 = left-right).
        flip_axes: spatial axes that may be flipped.
        affine_prob: probability of a random rotation/scaling.
        rotate_deg: rotation drawn from ``U(-rotate_deg, rotate_deg)`` degrees.
        scale: zoom factor drawn from ``1 + U(-scale, scale)``.
        jitter_prob: probability of colour jitter; 0 disables it.
        brightness: jitter strength: factor drawn from ``[1 - b, 1 + b]``.
        contrast: as ``brightness``.
        saturation: as ``brightness``.
        label_dtype: dtype of the label tensors at the end (``None``: keep float32).
        seed: seed the random transforms.

    Returns:
        A MONAI ``Compose`` over dictionaries ``{"image": path, "label": path, ...}``.

    Raises:
        ValueError: invalid sizes, probabilities, normalisation name or label mapping.

    Example:
        >>> t = frame_transforms(train=True, spatial_size=[64, 80], label_map="endovis_parts", seed=1)
        >>> [type(x).__name__ for x in t.transforms][4:10]
        ['MapLabelsd', 'ScaleIntensityRanged', 'Resized', 'RandFlipd', 'RandAffined', 'RandColorJitterd']
    """
    name = "frame_transforms"
    image_key, label_keys = split_keys(keys, name)
    size = check_size("spatial_size", spatial_size, 2, name, allow_none=resize_mode == "none")
    if normalize not in ("imagenet", "unit"):
        raise ValueError(f"{name}: normalize must be 'imagenet' or 'unit', got {normalize!r}")
    flip_prob = check_prob("flip_prob", flip_prob, name)
    affine_prob = check_prob("affine_prob", affine_prob, name)
    jitter_prob = check_prob("jitter_prob", jitter_prob, name)
    rotate = check_nonneg("rotate_deg", rotate_deg, name)
    zoom = check_nonneg("scale", scale, name)
    axes = check_axes("flip_axes", flip_axes, 2, name)
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
        t += spatial_aug_2d(
            image_key,
            label_keys,
            flip_prob=flip_prob,
            flip_axes=axes,
            affine_prob=affine_prob,
            rotate_deg=rotate,
            scale=zoom,
        )
        if jitter_prob > 0:
            t.append(
                RandColorJitterd(
                    image_key,
                    prob=jitter_prob,
                    brightness=check_nonneg("brightness", brightness, name),
                    contrast=check_nonneg("contrast", contrast, name),
                    saturation=check_nonneg("saturation", saturation, name),
                )
            )
    if normalize == "imagenet":
        t.append(imagenet_normalize(image_key))
    t += final_block(image_key, label_keys, label_dtype)
    return compose(t, seed)
