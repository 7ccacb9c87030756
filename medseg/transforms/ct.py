"""Compose factories for CT: 3D volumes (NIfTI or DICOM series folders) and 2D slices.

Both factories return a MONAI ``Compose`` whose deterministic part (loading, label mapping, reorientation,
resampling, windowing, resizing) comes before the first random transform, so ``CacheDataset`` and
``PersistentDataset`` cache all the expensive work (see :func:`medseg.data.make_dataset`).

Every argument is JSON-representable, so a bundle builds a pipeline with::

    {"_target_": "medseg.transforms.ct_slice_transforms", "train": true, "spatial_size": [256, 256]}

Output: ``image`` float32 ``(1, *spatial)`` in [0, 1] (before intensity augmentation); labels ``(1, *spatial)``
integer-valued, cast to ``label_dtype`` (int64 by default); both MetaTensors with their geometry.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from monai.transforms.compose import Compose
from monai.transforms.croppad.dictionary import CropForegroundd, RandCropByPosNegLabeld, SpatialPadd
from monai.transforms.intensity.dictionary import (
    RandGaussianNoised,
    RandScaleIntensityd,
    RandShiftIntensityd,
)
from monai.transforms.spatial.dictionary import Orientationd, RandFlipd, Resized, Spacingd
from monai.transforms.utility.dictionary import SqueezeDimd

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
    split_keys,
)
from medseg.transforms.augment import AugmentationSpec, resolve_augmentation
from medseg.transforms.channels import AdaptChannelsd, EnsureSpatialDimsd
from medseg.transforms.intensity import WindowSpec, intensity_range_transform, window_transform, zscore_transforms
from medseg.transforms.labels import LabelMapSpec
from medseg.transforms.lungs import ROI_MASK_KEY, LungMaskd

logger = logging.getLogger(__name__)

__all__ = ["ct_slice_transforms", "ct_volume_transforms", "intensity_aug"]


def intensity_aug(
    image_key: str, *, prob: float, scale: float = 0.1, shift: float = 0.1, noise_std: float = 0.01
) -> list[Callable[..., Any]]:
    """Random intensity scaling ``x (1 + U(-scale, scale))``, shift ``x + U(-shift, shift)`` and Gaussian noise.

    Each is applied independently with probability ``prob`` (MONAI's ``RandScaleIntensityd``,
    ``RandShiftIntensityd``, ``RandGaussianNoised``), on images already scaled to [0, 1].
    """
    if prob <= 0:
        return []
    out: list[Callable[..., Any]] = []
    if scale > 0:
        out.append(RandScaleIntensityd(image_key, factors=scale, prob=prob))
    if shift > 0:
        out.append(RandShiftIntensityd(image_key, offsets=shift, prob=prob))
    if noise_std > 0:
        out.append(RandGaussianNoised(image_key, prob=prob, mean=0.0, std=noise_std))
    return out


def ct_volume_transforms(
    keys: Sequence[str] | str = ("image", "label"),
    *,
    train: bool,
    orientation: str | None = "RAS",
    spacing: Sequence[float] | None = None,
    window: WindowSpec = "lung",
    crop_foreground: bool = False,
    foreground_margin: int = 0,
    roi_size: Sequence[int] | int | None = None,
    num_samples: int = 4,
    pos: float = 1.0,
    neg: float = 1.0,
    to_2d: bool = False,
    label_map: LabelMapSpec = None,
    ignore_index: int | None = None,
    flip_prob: float = 0.5,
    flip_axes: Sequence[int] = (0, 1, 2),
    intensity_prob: float = 0.15,
    normalize: Mapping[str, Any] | None = None,
    label_dtype: str | None = "int64",
    series_uid: str | None = None,
    check_spacing: bool = True,
    crop_lungs: bool = False,
    lung_margin: int = 10,
    plane_size: Sequence[int] | None = None,
    seed: int | None = None,
) -> Compose:
    """Pipeline for CT volumes: load, reorient, resample, window, crop; random crops and flips for training.

    Steps: load NIfTI or a DICOM series folder channel-first (:class:`~medseg.transforms.readers.
    LoadMedicalImaged`) -> map label values -> ``Orientationd(orientation)`` -> ``Spacingd(spacing)``
    (bilinear image, nearest labels) -> window onto [0, 1] (``ScaleIntensityRanged`` with clipping) ->
    ``CropForegroundd`` on the windowed image (optional) -> *training only:* pad to ``roi_size``,
    ``RandCropByPosNegLabeld`` (``num_samples`` crops, centred on foreground with odds ``pos : neg``), random
    flips, random intensity scale/shift/noise -> cast.

    Args:
        keys: the image key, then label keys (``["image"]`` for inference without labels).
        train: add the random crop and augmentation (``roi_size`` is then required).
        orientation: axis codes to reorient to (``"RAS"``); ``None`` keeps the file's orientation.
        spacing: target voxel size in mm per axis (e.g. ``[0.8, 0.8, 2.5]``); ``None`` keeps the spacing.
        window: ``"lung"`` (W1500/L-650 HU), a ``[width, level]`` pair in HU, or ``None`` (no scaling).
        crop_foreground: crop to the bounding box of windowed intensity > 0 (drops the air around the body).
        foreground_margin: voxels kept around that box.
        roi_size: training crop size (3 ints, or ``[H, W, 1]`` with ``to_2d``).
        num_samples: crops per volume per epoch (the dataset then yields a list of samples).
        pos: relative odds of a crop centred on a foreground voxel (label > 0).
        neg: relative odds of a crop centred on a background voxel.
        to_2d: training crops are single slices along the last axis (``roi_size[2] == 1``), squeezed to
            ``(1, H, W)`` for a 2D network applied slice-wise.
        label_map: label mapping applied after loading (see :class:`~medseg.transforms.labels.MapLabels`).
        ignore_index: label value passed through the mapping untouched.
        flip_prob: probability of a flip along each of ``flip_axes`` (training).
        flip_axes: spatial axes that may be flipped.
        intensity_prob: probability of each random intensity change (training); 0 disables them.
        normalize: z-score after the window (``{"clip": [lo, hi], "mean": m, "std": s}`` on the [0, 1] scale, as
            a ``plan.json``'s ``normalization``), so a 2D network trained on windowed slices sees the same
            intensities; ``None`` keeps [0, 1].
        label_dtype: dtype of the label tensors at the end (``None``: keep float32).
        series_uid: DICOM series to read when a folder holds several.
        check_spacing: refuse DICOM series with uneven slice spacing.
        crop_lungs: for a 2D model trained on slices cropped around the lungs (inference): compute the lung mask
            on the HU image (:class:`~medseg.transforms.lungs.LungMaskd`), crop to its bounding box plus
            ``lung_margin`` voxels in-plane (``CropForegroundd``) and keep it under ``roi_mask`` (predictions
            outside it are background). Both undone by ``Invertd``.
        lung_margin: in-plane voxels kept around the lungs' bounding box.
        plane_size: ``[H, W]``: resize every slice to this size after the crop (``Resized``, the slice count
            kept), the input size of a 2D model trained on resized slices.
        seed: seed the random transforms (reproducible sequence); ``None`` leaves MONAI's global state.

    Returns:
        A MONAI ``Compose`` over dictionaries ``{"image": path, "label": path, ...}``.

    Raises:
        ValueError: invalid sizes, probabilities, window, label mapping, or ``train=True`` without
            ``roi_size``.

    Example:
        >>> t = ct_volume_transforms(["image", "label"], train=True, roi_size=[32, 32, 16], seed=0)
        >>> [type(x).__name__ for x in t.transforms][:5]
        ['LoadMedicalImaged', 'Orientationd', 'ScaleIntensityRanged', 'SpatialPadd', 'RandCropByPosNegLabeld']
    """
    name = "ct_volume_transforms"
    image_key, label_keys = split_keys(keys, name)
    spacing_list = None if spacing is None else [float(s) for s in spacing]
    if spacing_list is not None and (len(spacing_list) != 3 or min(spacing_list) <= 0):
        raise ValueError(f"{name}: spacing must be 3 positive numbers in mm, got {spacing!r}")
    roi = check_size("roi_size", roi_size, 3, name, allow_none=not train)
    if train and to_2d and roi is not None and roi[2] != 1:
        raise ValueError(f"{name}: to_2d=True needs roi_size [H, W, 1], got {roi_size!r}")
    if train and not label_keys:
        raise ValueError(f"{name}: train=True needs a label key for the foreground-balanced crop; keys={keys!r}")
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"{name}: num_samples must be an int >= 1, got {num_samples!r}")
    if check_nonneg("pos", pos, name) + check_nonneg("neg", neg, name) <= 0:
        raise ValueError(f"{name}: pos and neg cannot both be 0")
    flip_prob = check_prob("flip_prob", flip_prob, name)
    intensity_prob = check_prob("intensity_prob", intensity_prob, name)
    axes = check_axes("flip_axes", flip_axes, 3, name)
    label_dtype = check_dtype("label_dtype", label_dtype, name)
    all_keys = [image_key, *label_keys]
    modes = ["bilinear"] + ["nearest"] * len(label_keys)

    t = load_block(image_key, label_keys, series_uid=series_uid, check_spacing=check_spacing)
    t += label_map_block(label_keys, label_map, ignore_index)
    if orientation is not None:
        t.append(Orientationd(all_keys, axcodes=orientation))
    if spacing_list is not None:
        t.append(Spacingd(all_keys, pixdim=spacing_list, mode=modes, dtype="float32"))
    plane = check_size("plane_size", plane_size, 2, name, allow_none=True)
    if crop_lungs and train:
        raise ValueError(f"{name}: crop_lungs is for inference (it crops to a mask computed from HU); use train=False")
    if crop_lungs:
        t.append(LungMaskd(image_key, ROI_MASK_KEY))
    if window is not None:
        t.append(window_transform(image_key, window))
    zscore = zscore_transforms(image_key, normalize, name)
    if crop_lungs:
        margin = int(lung_margin)
        if margin < 0:
            raise ValueError(f"{name}: lung_margin must be >= 0 voxels, got {lung_margin!r}")
        t.append(
            CropForegroundd(
                [*all_keys, ROI_MASK_KEY],
                source_key=ROI_MASK_KEY,
                margin=[margin, margin, 0],
                allow_smaller=True,
                start_coord_key=None,
                end_coord_key=None,
            )
        )
    if plane is not None:
        t.append(
            Resized(
                [*all_keys, *([ROI_MASK_KEY] if crop_lungs else [])],
                spatial_size=[*plane, -1],
                # "nearest-exact" samples pixel centres; torch's "nearest" would shift the masks by half a pixel
                mode=["bilinear"] + ["nearest-exact"] * (len(all_keys) - 1 + int(crop_lungs)),
            )
        )
    if crop_foreground:
        t.append(
            CropForegroundd(
                all_keys,
                source_key=image_key,
                margin=int(foreground_margin),
                allow_smaller=True,
                start_coord_key=None,
                end_coord_key=None,
            )
        )
    if train and roi is not None:  # roi is required (checked above) when train is set
        t += [
            SpatialPadd(all_keys, spatial_size=roi),
            RandCropByPosNegLabeld(
                all_keys,
                label_key=label_keys[0],
                spatial_size=roi,
                pos=pos,
                neg=neg,
                num_samples=num_samples,
                image_key=image_key,
                image_threshold=0.0,
                allow_smaller=False,
            ),
        ]
        if to_2d:
            t.append(SqueezeDimd(all_keys, dim=-1))
        spatial_axes = axes if not to_2d else [a for a in axes if a < 2]
        if flip_prob > 0:
            t += [RandFlipd(all_keys, prob=flip_prob, spatial_axis=a) for a in spatial_axes]
        t += intensity_aug(image_key, prob=intensity_prob)
    t += zscore
    t += final_block(image_key, label_keys, label_dtype)
    return compose(t, seed)


def ct_slice_transforms(
    keys: Sequence[str] | str = ("image", "label"),
    *,
    train: bool,
    window: WindowSpec = None,
    intensity_range: Sequence[float] | None = (0.0, 255.0),
    spatial_size: Sequence[int] | int | None = (256, 256),
    resize_mode: ResizeMode = "resize",
    label_map: LabelMapSpec = None,
    ignore_index: int | None = None,
    normalize: Mapping[str, Any] | None = None,
    augmentation: AugmentationSpec = "light",
    label_dtype: str | None = "int64",
    seed: int | None = None,
) -> Compose:
    """Pipeline for 2D CT slices (1 channel): 8-bit PNG/JPEG slices or 2D NIfTI (0-255 or HU).

    Steps: load ``(H, W)`` (row, column; see :mod:`medseg.transforms.readers`) -> ``(1, H, W)`` (RGB slices
    with equal channels keep one, others become BT.601 luma; ``(H, W, 1)`` NIfTI is squeezed) -> map label
    values -> intensity onto [0, 1]: a CT ``window`` if given (HU data), else ``intensity_range`` -> optional
    z-score ``normalize`` (clip, subtract the mean, divide by the std: the statistics of ``medseg-data plan``)
    -> resize or pad/crop to ``spatial_size`` (labels nearest) -> *training only:* ``augmentation`` (spatial,
    then intensity; see :mod:`medseg.transforms.augment`) -> cast.

    Args:
        keys: the image key, then label keys (``["image"]`` at inference).
        train: add the random augmentation.
        window: ``"lung"`` or ``[width, level]`` in HU for slices stored in HU; takes precedence over
            ``intensity_range``.
        intensity_range: ``[low, high]`` mapped onto [0, 1] with clipping (``[0, 255]`` for 8-bit slices such
            as ``medseg-data slices2d`` output); ``None`` with ``window=None`` leaves intensities as loaded.
        spatial_size: output ``[H, W]`` (needed unless ``resize_mode="none"``).
        resize_mode: ``"resize"`` (interpolate to ``spatial_size``; aspect ratio not kept), ``"pad_crop"``
            (centre pad/crop, no interpolation) or ``"none"`` (keep the size, e.g. for sliding-window
            inference).
        label_map: label mapping (``"binary255"`` for raw 0/255 masks, ``"covid_multiclass"``, a table, ...).
        ignore_index: label value passed through the mapping untouched.
        normalize: ``None`` keeps [0, 1]; ``{"clip": [lo, hi], "mean": m, "std": s}`` (values on the [0, 1]
            scale) clips and standardises, as the ``normalization`` of a ``plan.json``.
        augmentation: a preset (``"none"``, ``"flips"``, ``"light"``, ``"strong"``) or a mapping (see
            :func:`~medseg.transforms.augment.resolve_augmentation`); used with ``train=True`` only.
        label_dtype: dtype of the label tensors at the end (``None``: keep float32).
        seed: seed the random transforms.

    Returns:
        A MONAI ``Compose`` over dictionaries ``{"image": path, "label": path, ...}``.

    Raises:
        ValueError: invalid sizes, probabilities, window/intensity range or label mapping.

    Example:
        >>> t = ct_slice_transforms(train=False, spatial_size=[64, 64])
        >>> [type(x).__name__ for x in t.transforms][4:]
        ['ScaleIntensityRanged', 'Resized', 'EnsureTyped', 'CastToTyped']
    """
    name = "ct_slice_transforms"
    image_key, label_keys = split_keys(keys, name)
    size = check_size("spatial_size", spatial_size, 2, name, allow_none=resize_mode == "none")
    aug = resolve_augmentation(augmentation)
    zscore = zscore_transforms(image_key, normalize, name)
    label_dtype = check_dtype("label_dtype", label_dtype, name)

    t = load_block(image_key, label_keys)
    t.append(EnsureSpatialDimsd([image_key, *label_keys], spatial_dims=2))
    t.append(AdaptChannelsd(image_key, num_channels=1, mode="luma"))
    if label_keys:
        t.append(AdaptChannelsd(label_keys, num_channels=1, mode="strict"))
    t += label_map_block(label_keys, label_map, ignore_index)
    if window is not None:
        t.append(window_transform(image_key, window))
    elif intensity_range is not None:
        t.append(intensity_range_transform(image_key, intensity_range))
    t += zscore
    t += resize_block(image_key, label_keys, resize_mode, size, name)
    if train:
        t += aug.spatial(image_key, label_keys, size)
        t += aug.intensity(image_key)
    t += final_block(image_key, label_keys, label_dtype)
    return compose(t, seed)
