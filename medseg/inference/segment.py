"""In memory: an image (array with its affine, or a nibabel image) in, its mask out, nothing written to disk.

:func:`segment` is the entry point for notebooks and other programs; the file-based :func:`~medseg.inference.
predict_files` and the video path call the same :func:`segment_loaded` on what they read, so every route applies
the same checks (non-finite values, intensities far from the model's range) and the same inversion of the
preprocessing.

Example:
    >>> import numpy as np, torch
    >>> from medseg.inference import Predictor, Preprocessing
    >>> net = torch.nn.Conv2d(1, 2, 1)
    >>> pre = Preprocessing(volume=None)
    >>> seg = segment(np.full((12, 10), 100, np.uint8), Predictor(net, device="cpu"), pre)
    >>> seg.labels.shape, seg.labels.dtype
    ((12, 10), dtype('uint8'))
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from medseg.inference.checks import (
    IntensityPolicy,
    NonFinitePolicy,
    check_intensities,
    fill_nonfinite,
    nonfinite_count,
)
from medseg.inference.predictor import Predictor
from medseg.inference.preprocessing import InputKind, Preprocessing
from medseg.transforms.lungs import ROI_MASK_KEY, background_outside

logger = logging.getLogger(__name__)

__all__ = ["Segmentation", "segment", "segment_loaded"]


@dataclass
class Segmentation:
    """A prediction on the input's own grid.

    Attributes:
        labels: ``(x, y, z)`` or ``(H, W)`` label map (uint8; int64 above 256 classes).
        probabilities: ``(K, *spatial)`` float32 class probabilities on the same grid.
        affine: the voxel-to-RAS affine of a volume (``None`` for 2D images).
        reference: the nibabel image whose header a NIfTI mask copies (NIfTI inputs), else ``None``.
        display: ``(H, W, 3)`` uint8 picture of a 2D input for overlays, where one is at hand.
        data: the preprocessed dictionary (``data["image"]`` carries the metadata of the input).
        warnings: one-line remarks (filled non-finite values, intensities outside the expected range).
        num_classes: classes of the model (background included; 2 for a 1-channel sigmoid network).
    """

    labels: np.ndarray
    probabilities: np.ndarray | None
    affine: np.ndarray | None = None
    reference: Any | None = None
    display: np.ndarray | None = None
    data: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    num_classes: int | None = None

    def to_nifti(self) -> Any:
        """The label map as a ``nibabel.Nifti1Image`` with the input's header (or its affine).

        Raises:
            ValueError: for a 2D image prediction without geometry.
        """
        import nibabel as nib

        if self.reference is not None:
            header = self.reference.header.copy()
            header.set_data_dtype(self.labels.dtype)
            header.set_slope_inter(1.0, 0.0)
            return nib.Nifti1Image(self.labels.reshape(self.reference.shape[:3]), self.reference.affine, header=header)
        if self.affine is None:
            raise ValueError("this prediction has no geometry (a 2D image); save labels as PNG instead")
        return nib.Nifti1Image(self.labels, self.affine)


def _check_raw(
    image: Any, name: str, reference: Any, nonfinite: NonFinitePolicy, intensity_check: IntensityPolicy
) -> tuple[Any, list[str]]:
    """Refuse or repair what would make the mask silently wrong; returns the image and the warnings."""
    warnings: list[str] = []
    if not isinstance(image, torch.Tensor):
        return image, warnings  # a pipeline without a loader step: it reads the file later
    values = image.detach().cpu().numpy()
    bad = nonfinite_count(values)
    if bad:
        if nonfinite != "fill":
            raise ValueError(
                f"{name}: {bad} of {values.size} voxels are NaN or infinite, which would make the mask meaningless; "
                "fix the input, or pass --nonfinite fill (nonfinite='fill') to replace them and predict anyway"
            )
        filled, low = fill_nonfinite(values)
        image = image.clone()
        image.copy_(torch.from_numpy(filled).to(image.dtype))
        values = filled
        warnings.append(f"{name}: {bad} NaN/infinite voxels replaced (NaN and -inf by {low:g}, the minimum)")
    if reference is not None and intensity_check != "off":
        reason = check_intensities(values, reference)
        if reason is not None:
            if intensity_check == "error":
                raise ValueError(
                    f"{name}: {reason}; convert the input, or pass --intensity-check warn "
                    "(intensity_check='warn') to predict anyway"
                )
            warnings.append(f"{name}: {reason}")
    return image, warnings


def segment_loaded(
    raw: Mapping[str, Any],
    kind: InputKind,
    predictor: Predictor,
    preprocessing: Preprocessing,
    *,
    name: str,
    nonfinite: NonFinitePolicy = "error",
    intensity_check: IntensityPolicy = "error",
    keep_probabilities: bool = True,
) -> Segmentation:
    """Check, preprocess, predict and map back what :meth:`Preprocessing.read` or ``from_array`` gave.

    Args:
        raw: ``{"image": MetaTensor (C, *spatial)}`` with raw intensities.
        kind: ``"volume"`` or ``"image"``.
        predictor: the configured predictor.
        preprocessing: the model's preprocessing.
        name: the input's name for messages.
        nonfinite: ``"error"`` (default) refuses NaN/inf voxels; ``"fill"`` replaces them and warns.
        intensity_check: ``"error"`` (default), ``"warn"`` or ``"off"`` for intensities far outside the range
            the model expects (:meth:`Preprocessing.intensity_reference`).
        keep_probabilities: return the probabilities too (they take K times the memory of the labels).

    Returns:
        The :class:`Segmentation` (``affine`` from the input's metadata for volumes).

    Raises:
        ValueError: non-finite or far-out-of-range input under the ``"error"`` policies, or an input the
            preprocessing refuses.
    """
    checked, warnings = _check_raw(
        raw.get("image"), name, preprocessing.intensity_reference(kind), nonfinite, intensity_check
    )
    data = preprocessing.prepare({**raw, "image": checked}, kind)
    probs = predictor.predict_proba(data["image"].unsqueeze(0))[0]
    roi = data.get(ROI_MASK_KEY)
    if roi is None:
        back = preprocessing.invert(kind, data, probs)
    else:  # the preprocessing's region of interest (e.g. the lungs): one inversion carries it back with the classes
        mask = torch.as_tensor(roi, dtype=probs.dtype, device=probs.device)[:1]
        both = preprocessing.invert(kind, data, torch.cat([probs, mask]))
        back = background_outside(both[:-1], both[-1:])
    labels = predictor.labels_from_proba(back.unsqueeze(0))[0, 0].numpy()
    affine = None
    if kind == "volume":
        meta = getattr(data["image"], "meta", {})
        value = meta.get("original_affine", meta.get("affine"))
        affine = None if value is None else np.asarray(value, dtype=np.float64)
        shape = tuple(int(s) for s in np.asarray(meta.get("spatial_shape", labels.shape)))
        if shape != labels.shape:
            raise ValueError(f"{name}: mask shape {labels.shape} differs from the input's {shape}")
    for line in warnings:
        logger.info("%s", line)
    return Segmentation(
        labels=labels,
        probabilities=back.numpy() if keep_probabilities else None,
        affine=affine,
        data=data,
        warnings=warnings,
        num_classes=max(int(back.shape[0]), 2),
    )


def _kind_of(array: np.ndarray, affine: Any, kind: InputKind | None) -> InputKind:
    if kind is not None:
        if kind not in ("volume", "image"):
            raise ValueError(f"kind must be 'volume' or 'image', got {kind!r}")
        return kind
    squeezed = [s for s in array.shape if s != 1]
    if array.ndim == 2 or len(squeezed) <= 2:
        return "image"
    if array.ndim == 3 and affine is None and array.shape[-1] in (3, 4):
        return "image"
    if array.ndim == 3:
        return "volume"
    raise ValueError(f"cannot tell whether an array of shape {array.shape} is a volume or an image; pass kind=")


def segment(
    image: Any,
    predictor: Predictor,
    preprocessing: Preprocessing | None = None,
    *,
    affine: Any = None,
    kind: InputKind | None = None,
    name: str = "array",
    nonfinite: NonFinitePolicy = "error",
    intensity_check: IntensityPolicy = "error",
) -> Segmentation:
    """Segment an image held in memory and return its mask on the same grid.

    Args:
        image: a nibabel image (its affine and header are used), or an array: a volume ``(x, y, z)`` in nibabel's
            index order, a 2D image ``(H, W)`` or ``(H, W, C)`` (RGB), or a torch tensor of those.
        predictor: the configured :class:`~medseg.inference.Predictor`.
        preprocessing: the model's :class:`~medseg.inference.Preprocessing` (default: CT volumes with the lung
            window and 8-bit 1-channel slices).
        affine: the ``4x4`` voxel-to-RAS affine of an array volume (identity when ``None``).
        kind: ``"volume"`` or ``"image"``; default: a nibabel image or an array with an ``affine`` of 3
            non-singleton dims is a volume, ``(H, W)`` and ``(H, W, 3|4)`` without an affine are images.
        name: shown in messages.
        nonfinite: see :func:`segment_loaded`.
        intensity_check: see :func:`segment_loaded`.

    Returns:
        The :class:`Segmentation`: ``labels`` has the input's spatial shape; for a nibabel input
        :meth:`Segmentation.to_nifti` gives the mask with the input's header.

    Raises:
        ValueError: for an input the checks or the preprocessing refuse.
    """
    pre = preprocessing if preprocessing is not None else Preprocessing()
    reference = None
    if hasattr(image, "dataobj") and hasattr(image, "affine"):
        reference = image
        array = np.asanyarray(image.dataobj)
        affine = image.affine
    elif isinstance(image, torch.Tensor):
        array = image.detach().cpu().numpy()
    else:
        array = np.asarray(image)
    chosen = _kind_of(array, affine, kind)
    if reference is not None and chosen == "image":
        array = array.reshape([s for s in array.shape if s != 1] or [1])
    raw = pre.from_array(array, chosen, affine=affine, name=name)
    seg = segment_loaded(raw, chosen, predictor, pre, name=name, nonfinite=nonfinite, intensity_check=intensity_check)
    seg.reference = reference
    if chosen == "image" and reference is None:
        from medseg.inference.writers import to_display

        seg.display = to_display(array)
    return seg
