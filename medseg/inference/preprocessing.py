"""Inputs -> network input, and predictions -> each input's own grid.

A :class:`Preprocessing` holds one MONAI ``Compose`` per kind of input (3D volumes: NIfTI and DICOM series;
2D images: PNG/JPEG/BMP/TIFF files, frames of a folder or of a video), normally built by the
:mod:`medseg.transforms` factories with ``keys=["image"]`` and ``train=False``, i.e. the same loading,
reorientation, resampling and intensity scaling as training. Predictions are mapped back by MONAI's ``Invertd``
over that ``Compose``: every invertible spatial step (``Orientationd``, ``Spacingd``, ``CropForegroundd``,
``Resized``, padding) is undone in reverse order, probabilities are resampled with the original interpolation
mode (bilinear), and the result lies on the voxel grid of the file as loaded (nibabel's array order for NIfTI,
``(H, W)`` for 2D images; see :mod:`medseg.transforms.readers`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch

logger = logging.getLogger(__name__)

__all__ = ["InputKind", "Preprocessing"]

#: What an input is, which decides the pipeline and the writers: a 3D volume or a 2D image.
InputKind = Literal["volume", "image"]


def _is_invertible(transform: Any) -> bool:
    from monai.transforms.inverse import InvertibleTransform

    return isinstance(transform, InvertibleTransform)


class Preprocessing:
    """The preprocessing pipelines of a model, per input kind, with the inversion of their spatial steps.

    Args:
        volume: pipeline for 3D volumes (NIfTI files, DICOM series folders): a callable on ``{"image": path}``
            returning ``{"image": MetaTensor (C, x, y, z)}``, e.g. ``medseg.transforms.ct_volume_transforms(
            ["image"], train=False, window="lung")``. ``"default"`` builds exactly that; ``None``: this model
            does not take volumes.
        image: pipeline for 2D images and video frames, returning ``(C, H, W)``, e.g.
            ``medseg.transforms.ct_slice_transforms(["image"], train=False, ...)`` or ``frame_transforms``.
            ``"default"``: ``ct_slice_transforms(["image"], train=False, resize_mode="none")`` (1 channel,
            8-bit intensities onto [0, 1], no resizing); ``None``: this model does not take 2D images.

    Raises:
        TypeError: if a pipeline is not callable.

    Example:
        >>> p = Preprocessing()
        >>> sorted(k for k in ("volume", "image") if p.accepts(k))
        ['image', 'volume']
    """

    def __init__(
        self,
        volume: Callable[[Mapping[str, Any]], Mapping[str, Any]] | Literal["default"] | None = "default",
        image: Callable[[Mapping[str, Any]], Mapping[str, Any]] | Literal["default"] | None = "default",
    ) -> None:
        if volume == "default":
            from medseg.transforms import ct_volume_transforms

            volume = ct_volume_transforms(["image"], train=False)
        if image == "default":
            from medseg.transforms import ct_slice_transforms

            image = ct_slice_transforms(["image"], train=False, resize_mode="none")
        for name, value in (("volume", volume), ("image", image)):
            if value is not None and not callable(value):
                raise TypeError(
                    f"{name} must be a transform pipeline (a callable such as a MONAI Compose) or None, got "
                    f"{type(value).__name__}"
                )
        self.pipelines: dict[str, Callable[[Mapping[str, Any]], Mapping[str, Any]] | None] = {
            "volume": volume,
            "image": image,
        }

    def accepts(self, kind: InputKind) -> bool:
        """Whether this model has a pipeline for ``kind`` inputs."""
        return self.pipelines.get(kind) is not None

    def pipeline(self, kind: InputKind) -> Callable[[Mapping[str, Any]], Mapping[str, Any]]:
        """The pipeline for ``kind``.

        Raises:
            ValueError: if the model takes no inputs of that kind.
        """
        pipe = self.pipelines.get(kind)
        if pipe is None:
            other = [k for k, v in self.pipelines.items() if v is not None]
            raise ValueError(
                f"this model has no preprocessing for {kind} inputs (it takes: {', '.join(other) or 'nothing'}); "
                "give it inputs of a supported kind or add a pipeline to the bundle's preprocessing"
            )
        return pipe

    def load(self, path: str, kind: InputKind) -> dict[str, Any]:
        """Run the ``kind`` pipeline on ``{"image": path}`` and check the result.

        Returns:
            The transformed dictionary; ``"image"`` is a channel-first MetaTensor with 3 (volume) or 2 (image)
            spatial dims.

        Raises:
            ValueError: if the result has an unexpected number of dimensions (e.g. a 4D series given where a 3D
                volume is expected).
        """
        data = dict(self.pipeline(kind)({"image": path}))
        image = data.get("image")
        if not isinstance(image, torch.Tensor):
            raise TypeError(
                f"{path}: the {kind} pipeline must return a tensor under 'image', got {type(image).__name__}"
            )
        want = 3 if kind == "volume" else 2
        if image.ndim - 1 != want:
            shape = tuple(image.shape)
            raise ValueError(
                f"{path}: expected a {want}D {kind} (channel-first {want + 1}D array) after preprocessing, got shape "
                f"{shape}; give a single {want}D {kind} (split 4D series into 3D volumes first)"
            )
        return data

    def invert(self, kind: InputKind, data: Mapping[str, Any], prediction: torch.Tensor) -> torch.Tensor:
        """Map a prediction ``(K, *spatial)`` made on ``data["image"]`` back to the input's own grid.

        Args:
            kind: the pipeline that produced ``data``.
            data: what :meth:`load` returned (its ``"image"`` carries the applied-operations trace).
            prediction: probabilities (or any per-class maps) on the preprocessed grid.

        Returns:
            ``(K, *original_spatial)`` float tensor on the CPU.
        """
        pipe = self.pipeline(kind)
        prediction = prediction.detach().to("cpu", torch.float32)
        if not _is_invertible(pipe) or not getattr(data["image"], "applied_operations", None):
            return prediction  # nothing spatial to undo
        from monai.data.meta_tensor import MetaTensor
        from monai.transforms.post.dictionary import Invertd

        # Invertd copies the image's metadata and transform trace onto the prediction, then undoes the
        # invertible steps (spatial ones; intensity steps are not invertible and are skipped).
        inverted = Invertd(keys="pred", transform=pipe, orig_keys="image", nearest_interp=False)(  # type: ignore[arg-type]
            {"image": data["image"], "pred": MetaTensor(prediction)}
        )["pred"]
        as_tensor = getattr(inverted, "as_tensor", None)
        out = as_tensor() if callable(as_tensor) else torch.as_tensor(inverted)
        return out.float()
