"""Inputs -> network input, and predictions -> each input's own grid.

A :class:`Preprocessing` holds one MONAI ``Compose`` per kind of input (3D volumes: NIfTI and DICOM series;
2D images: PNG/JPEG/BMP/TIFF files, frames of a folder or of a video), normally built by the
:mod:`medseg.transforms` factories with ``keys=["image"]`` and ``train=False``, i.e. the same loading,
reorientation, resampling and intensity scaling as training. Predictions are mapped back by MONAI's ``Invertd``
over that ``Compose``: every invertible spatial step (``Orientationd``, ``Spacingd``, ``CropForegroundd``,
``Resized``, padding) is undone in reverse order, probabilities are resampled with the original interpolation
mode (bilinear), and the result lies on the voxel grid of the file as loaded (nibabel's array order for NIfTI,
``(H, W)`` for 2D images; see :mod:`medseg.transforms.readers`).

Each pipeline is used in two steps: :meth:`Preprocessing.read` (its leading loader: raw intensities, which the
input checks of :mod:`medseg.inference.checks` look at) or :meth:`Preprocessing.from_array` (the same from an
array in memory, e.g. a video frame), then :meth:`Preprocessing.prepare` (the rest of the pipeline).

A :class:`Preprocessing` is also a MONAI ``Compose`` of its *primary* pipeline (volumes when it takes them, else
2D images): the ``preprocessing`` id of a bundle's ``inference.json`` is then both what ``medseg predict`` uses
and the transform list that MONAI's model-zoo conventions expect under that id (the ``transform`` of the
bundle's ``dataset``, inverted by ``Invertd`` in its ``postprocessing``; what MONAI Label and MONAI Deploy read).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Literal

import torch
from monai.transforms.compose import Compose

from medseg.inference.checks import IntensityReference

logger = logging.getLogger(__name__)

__all__ = ["InputKind", "Preprocessing"]

#: What an input is, which decides the pipeline and the writers: a 3D volume or a 2D image.
InputKind = Literal["volume", "image"]


def _is_loader(transform: Any) -> bool:
    from monai.transforms.io.dictionary import LoadImaged

    from medseg.transforms.readers import LoadMedicalImaged

    return isinstance(transform, (LoadMedicalImaged, LoadImaged))


def _reference(spec: Any, kind: str) -> IntensityReference | None:
    if spec is None or isinstance(spec, IntensityReference):
        return spec
    if isinstance(spec, Mapping):
        return IntensityReference.from_summary(spec)
    try:
        low, high = (float(v) for v in spec)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"intensity_reference[{kind!r}] must be [low, high], a percentile summary "
            f'({{"percentile_00_5": ..., "percentile_99_5": ...}}) or null, got {spec!r}'
        ) from err
    return IntensityReference(low, high, "the given intensity reference")


def _is_invertible(transform: Any) -> bool:
    from monai.transforms.inverse import InvertibleTransform

    return isinstance(transform, InvertibleTransform)


class Preprocessing(Compose):
    """The preprocessing pipelines of a model, per input kind, with the inversion of their spatial steps.

    As a MONAI ``Compose`` it runs the primary pipeline's steps (``primary``), so it can be a dataset's
    ``transform`` and ``Invertd``'s ``transform`` (see the module docstring).

    Args:
        volume: pipeline for 3D volumes (NIfTI files, DICOM series folders): a callable on ``{"image": path}``
            returning ``{"image": MetaTensor (C, x, y, z)}``, e.g. ``medseg.transforms.ct_volume_transforms(
            ["image"], train=False, window="lung")``. ``"default"`` builds exactly that; ``None``: this model
            does not take volumes.
        image: pipeline for 2D images and video frames, returning ``(C, H, W)``, e.g.
            ``medseg.transforms.ct_slice_transforms(["image"], train=False, ...)`` or ``frame_transforms``.
            ``"default"``: ``ct_slice_transforms(["image"], train=False, resize_mode="none")`` (1 channel,
            8-bit intensities onto [0, 1], no resizing); ``None``: this model does not take 2D images.
        intensity_reference: per kind (``"volume"``, ``"image"``), the raw intensities the model expects:
            ``[low, high]`` or a percentile summary of the training data (``{"percentile_00_5": ...,
            "percentile_99_5": ...}``); default: the range of each pipeline's fixed intensity scaling.
        primary: the kind whose pipeline this ``Compose`` runs (``"volume"`` or ``"image"``); default: volumes
            when the model takes them, else 2D images.

    Raises:
        TypeError: if a pipeline is not callable.
        ValueError: for unknown ``intensity_reference`` keys or a ``primary`` kind without a pipeline.

    Example:
        >>> p = Preprocessing()
        >>> sorted(k for k in ("volume", "image") if p.accepts(k))
        ['image', 'volume']
    """

    def __init__(
        self,
        volume: Callable[[Mapping[str, Any]], Mapping[str, Any]] | Literal["default"] | None = "default",
        image: Callable[[Mapping[str, Any]], Mapping[str, Any]] | Literal["default"] | None = "default",
        intensity_reference: Mapping[str, Any] | None = None,
        primary: InputKind | None = None,
    ) -> None:
        if volume == "default":
            from medseg.transforms import ct_volume_transforms

            volume = ct_volume_transforms(["image"], train=False)
        if image == "default":
            from medseg.transforms import ct_slice_transforms

            image = ct_slice_transforms(["image"], train=False, resize_mode="none")
        refs = dict(intensity_reference or {})
        unknown = sorted(set(refs) - {"volume", "image"})
        if unknown:
            raise ValueError(f"intensity_reference keys must be 'volume' and/or 'image', got {unknown}")
        self.references: dict[str, IntensityReference | None] = {k: _reference(v, k) for k, v in refs.items()}
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
        if primary is None:
            primary = "volume" if volume is not None else "image"
        if primary not in ("volume", "image"):
            raise ValueError(f"primary must be 'volume' or 'image', got {primary!r}")
        main = self.pipelines[primary]
        if main is None and (volume is not None or image is not None):
            raise ValueError(f"primary={primary!r}, but this preprocessing has no {primary} pipeline")
        self.primary: InputKind = primary
        steps = getattr(main, "transforms", None)
        super().__init__(list(steps) if isinstance(steps, (list, tuple)) else [] if main is None else [main])

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

    # ------------------------------------------------------------------ reading and preparing
    def _split(self, kind: InputKind) -> tuple[Callable[..., Any] | None, Callable[..., Any]]:
        """(loader, rest) of the ``kind`` pipeline; loader ``None`` when it does not start with one."""
        pipe = self.pipeline(kind)
        steps = getattr(pipe, "transforms", None)
        if isinstance(steps, (list, tuple)) and steps and _is_loader(steps[0]):
            from monai.transforms.compose import Compose

            return steps[0], Compose(list(steps[1:]))
        return None, pipe

    def read(self, path: str, kind: InputKind, *, series_uid: str | None = None) -> dict[str, Any]:
        """Load ``path`` with the ``kind`` pipeline's loader only: ``{"image": MetaTensor (C, *spatial)}``, raw values.

        Args:
            path: a file, or a DICOM series folder.
            kind: which pipeline's loader to use.
            series_uid: for a folder holding several DICOM series, the one to read.

        Returns:
            The loaded dictionary (or ``{"image": path}`` for a pipeline without a leading loader, which then
            loads in :meth:`prepare`).
        """
        loader, _ = self._split(kind)
        if loader is None:
            if series_uid is not None:
                raise ValueError(f"{path}: the {kind} pipeline has no loader step, so it cannot pick a DICOM series")
            return {"image": path}
        if series_uid is None:
            return dict(loader({"image": path}))
        from medseg.transforms.readers import LoadMedicalImage

        settings = dict(getattr(getattr(loader, "loader", None), "settings", {}))
        one = LoadMedicalImage(
            dtype=settings.get("dtype", "float32"),
            ensure_channel_first=settings.get("ensure_channel_first", True),
            series_uid=series_uid,
            check_spacing=settings.get("check_spacing", True),
        )
        return {"image": one(path)}

    def from_array(self, array: Any, kind: InputKind, *, affine: Any = None, name: str = "array") -> dict[str, Any]:
        """What :meth:`read` gives for a file, from an array in memory (no file is written).

        Args:
            array: a volume ``(x, y, z)`` in nibabel's index order, or a 2D image ``(H, W)`` / ``(H, W, C)``.
            kind: ``"volume"`` or ``"image"``.
            affine: the volume's ``4x4`` voxel-to-RAS affine (identity when ``None``); ignored for 2D images.
            name: shown in messages (``filename_or_obj``).

        Raises:
            ValueError: for an array of the wrong number of dimensions, a bad affine, or a pipeline without a
                leading loader step (it can only read files).
        """
        import numpy as np
        from monai.data.meta_tensor import MetaTensor

        if self._split(kind)[0] is None:
            raise ValueError(f"the {kind} pipeline has no loader step to replace; it can only read files")
        arr = np.asarray(array)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name}: expected a numeric array, got dtype {arr.dtype}")
        arr = arr.astype(np.float32, copy=False)
        if kind == "volume":
            while arr.ndim > 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            if arr.ndim != 3:
                raise ValueError(f"{name}: a volume must be 3D (x, y, z), got shape {arr.shape}")
            aff = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
            if aff.shape != (4, 4) or not np.isfinite(aff).all():
                raise ValueError(f"{name}: affine must be a finite 4x4 matrix, got shape {aff.shape}")
            data = arr[None]
            meta = {
                "affine": torch.as_tensor(aff, dtype=torch.float64),
                "original_affine": aff,
                "spatial_shape": np.asarray(arr.shape),
                "space": "RAS",
                "original_channel_dim": float("nan"),
                "filename_or_obj": name,
            }
        else:
            if arr.ndim == 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            if arr.ndim not in (2, 3):
                raise ValueError(f"{name}: a 2D image must be (H, W) or (H, W, C), got shape {arr.shape}")
            data = arr[None] if arr.ndim == 2 else np.moveaxis(arr, -1, 0)
            meta = {
                "affine": torch.eye(4, dtype=torch.float64),
                "spatial_shape": np.asarray(arr.shape[:2]),
                "original_channel_dim": float("nan") if arr.ndim == 2 else -1,
                "filename_or_obj": name,
            }
        return {"image": MetaTensor(torch.from_numpy(np.ascontiguousarray(data)), meta=meta)}

    def prepare(self, raw: Mapping[str, Any], kind: InputKind) -> dict[str, Any]:
        """Run the rest of the ``kind`` pipeline on what :meth:`read` or :meth:`from_array` gave, and check it.

        Returns:
            The transformed dictionary; ``"image"`` is a channel-first MetaTensor with 3 (volume) or 2 (image)
            spatial dims.

        Raises:
            ValueError: if the result has an unexpected number of dimensions (e.g. a 4D series given where a 3D
                volume is expected).
        """
        _, rest = self._split(kind)
        data = dict(rest(dict(raw)))
        image = data.get("image")
        name = str(getattr(image, "meta", {}).get("filename_or_obj", raw.get("image", "")))
        if not isinstance(image, torch.Tensor):
            raise TypeError(
                f"{name}: the {kind} pipeline must return a tensor under 'image', got {type(image).__name__}"
            )
        want = 3 if kind == "volume" else 2
        if image.ndim - 1 != want:
            shape = tuple(image.shape)
            raise ValueError(
                f"{name}: expected a {want}D {kind} (channel-first {want + 1}D array) after preprocessing, got shape "
                f"{shape}; give a single {want}D {kind} (split 4D series into 3D volumes first)"
            )
        return data

    def load(self, path: str, kind: InputKind) -> dict[str, Any]:
        """:meth:`read` then :meth:`prepare` (the whole pipeline on ``{"image": path}``)."""
        return self.prepare(self.read(path, kind), kind)

    def _scaling(self, kind: InputKind) -> tuple[float, float] | None:
        """``(a_min, a_max)`` of the ``kind`` pipeline's first fixed scaling onto [0, 1], if it has one."""
        steps = getattr(self.pipelines.get(kind), "transforms", None) or []
        for step in steps:
            scaler = getattr(step, "scaler", step)
            a_min, a_max = getattr(scaler, "a_min", None), getattr(scaler, "a_max", None)
            if type(scaler).__name__ == "ScaleIntensityRange" and a_min is not None and a_max is not None:
                return float(a_min), float(a_max)
        return None

    def use_training_intensities(self, intensity: Any, source: str = "training data") -> list[str]:
        """Compare inputs with the training data's intensities instead of the pipelines' ranges.

        Args:
            intensity: the training plan's fingerprint intensities (``plan["fingerprint"]["intensity"]``): one
                ``{"percentile_00_5": lo, "percentile_99_5": hi, ...}`` per channel (or one such mapping), on
                the [0, 1] scale that each pipeline's fixed scaling (8-bit range, CT window) maps the raw values
                onto. They are mapped back through each pipeline's scaling to raw units (the percentiles over
                all channels).
            source: named in messages.

        Returns:
            The kinds whose reference now comes from the training data (not those given to the constructor or
            without a fixed scaling).

        Raises:
            ValueError: if ``intensity`` holds no percentile pair.
        """
        items = [intensity] if isinstance(intensity, Mapping) else list(intensity or [])
        try:
            pairs = [IntensityReference.from_summary(item) for item in items]
        except (TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"training intensities {intensity!r}: expected percentile summaries per channel") from err
        if not pairs:
            raise ValueError("training intensities: no channel summaries given")
        low, high = min(p.low for p in pairs), max(p.high for p in pairs)
        used: list[str] = []
        for kind in ("volume", "image"):
            scaling = self._scaling(kind)
            if self.references.get(kind) is not None or scaling is None or not scaling[1] > scaling[0]:
                continue
            a_min, a_max = scaling
            raw_low, raw_high = a_min + low * (a_max - a_min), a_min + high * (a_max - a_min)
            if raw_high > raw_low:
                self.references[kind] = IntensityReference(raw_low, raw_high, source)
                used.append(kind)
        return used

    def intensity_reference(self, kind: InputKind) -> IntensityReference | None:
        """The raw intensity range the ``kind`` pipeline expects (see :mod:`medseg.inference.checks`).

        The one given to the constructor, else the input range of the pipeline's first fixed scaling
        (``ScaleIntensityRange``: a CT window or an 8-bit range), else ``None`` (nothing to compare with).
        """
        given = self.references.get(kind)
        if given is not None:
            return given
        scaling = self._scaling(kind)
        if scaling is not None and scaling[1] > scaling[0]:
            return IntensityReference(scaling[0], scaling[1], "the model's intensity scaling")
        return None

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
