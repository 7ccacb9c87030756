"""Writers of predictions, one class per output kind, and :class:`MaskWriter`, the output options of a bundle.

Interface (adding an output kind is one new class; the DICOM-SEG writer below is one)::

    @register_writer
    class DicomSegWriter(OutputWriter):
        kind = "dicom-seg"                          # the name --output-type uses
        role = "mask"                               # "mask": chosen by output_types; "extra": by options
        def accepts(self, case): return case.source == "dicom"
        def paths(self, case, folder, stem): return [folder / f"{stem}_seg.dcm"]
        def write(self, case, seg, folder, stem): ...   # seg: Segmentation (labels, affine, case.files, ...)

Mask kinds for volumes (``MaskWriter(output_types=...)``, ``medseg predict --output-type``):

=============  ==========================================================================================
``nifti``      ``NAME_seg.nii.gz`` (labels) and ``NAME_seg_labels.json`` (class name of each label value and
               what made the mask: :func:`~medseg.inference.reports.write_label_sidecar`)
``dicom-seg``  ``NAME_seg.dcm``: a DICOM Segmentation referencing the source series (DICOM inputs only)
``rtstruct``   ``NAME_rtstruct.dcm``: an RT Structure Set, one ROI per class (DICOM inputs only)
=============  ==========================================================================================

Segment labels, ROI names and codes come from the class names (``MaskWriter(class_names=...)``: the
checkpoint's, else the bundle's ``class_names``; :func:`~medseg.inference.dicom_outputs.segment_code`).

A writer is built with the :class:`MaskWriter` options (colours, opacity, class names) and called once per
prediction: a volume, a 2D image, or one frame of a folder or video (``folder``/``stem`` then name the frame).
``case`` is the :class:`~medseg.inference.discovery.InputCase` (source kind, DICOM series files and UID),
``seg`` the :class:`~medseg.inference.segment.Segmentation` on the input's own grid. Files are written through
:func:`medseg.io.atomic_path` (temporary name, then rename), so a file that exists is complete; an ``OSError``
while writing becomes :class:`OutputWriteError`, which stops the batch (exit code 1) since every later case
would fail the same way.

Geometry: a NIfTI mask copies the reference file's header (qform, sform and their codes, pixdim, units),
with only the data type, scaling and intent changed, so its shape and affine are exactly the input's. For a
DICOM series, the mask carries the RAS affine of the series as read (LPS converted with ``diag(-1, -1, 1)``,
see :mod:`medseg.transforms.readers`). PNG masks are palette images: the pixel values are the label indices
(what ``medseg evaluate`` reads) and the palette shows them in the label colours.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from medseg.imageio import LABEL_COLORS, write_label_png, write_png
from medseg.io import atomic_path
from medseg.typing import PathLike

if TYPE_CHECKING:
    from medseg.inference.discovery import InputCase
    from medseg.inference.segment import Segmentation

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COLORS",
    "DICOM_KINDS",
    "WRITERS",
    "DicomSegWriter",
    "MaskWriter",
    "NiftiMaskWriter",
    "OutputWriteError",
    "OutputWriter",
    "OverlayWriter",
    "PngMaskWriter",
    "ProbabilityWriter",
    "RtstructWriter",
    "VideoOverlayWriter",
    "even_frame",
    "overlay",
    "read_rgb",
    "register_writer",
    "write_nifti_like",
]

#: Label colours (RGB) used when a bundle gives none: the palette of medseg's PNG masks (background black, not
#: drawn in overlays).
DEFAULT_COLORS = LABEL_COLORS


class OutputWriteError(RuntimeError):
    """Writing one of our own outputs failed (full disk, no permission, ...): the batch stops, exit code 1."""


@contextlib.contextmanager
def writing(path: PathLike) -> Iterator[Path]:
    """:func:`medseg.io.atomic_path`, with ``OSError`` turned into :class:`OutputWriteError` naming the file."""
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except OSError as err:
        reason = err.strerror or str(err)
        raise OutputWriteError(
            f"cannot write {path}: {reason}; check the free space and permissions of the output folder"
        ) from err


def _check_colors(colors: Sequence[Sequence[int]] | None) -> np.ndarray:
    if colors is None:
        return np.asarray(DEFAULT_COLORS, dtype=np.uint8)
    try:
        table = np.asarray(colors, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"label_colors must be a list of [r, g, b] triples, got {colors!r}") from err
    if table.ndim != 2 or table.shape[1] != 3 or table.shape[0] < 1 or table.min() < 0 or table.max() > 255:
        raise ValueError(
            f"label_colors must be a list of [r, g, b] triples with values 0..255 (one per label, background "
            f"first), got {colors!r}"
        )
    return table.astype(np.uint8)


def write_nifti_like(
    path: PathLike, array: np.ndarray, reference: Any | None, affine: np.ndarray | None = None
) -> None:
    """Write ``array`` as NIfTI with the geometry of ``reference`` (a nibabel image), atomically.

    Args:
        path: output ``.nii.gz`` path.
        array: voxel data in the reference's voxel order; shape ``ref.shape`` (plus trailing dims for
            per-class maps), or the same voxels without the reference's singleton axes.
        reference: nibabel image whose header (qform/sform) is copied; ``None`` to use ``affine``.
        affine: the voxel-to-RAS affine when there is no reference (DICOM input).

    Raises:
        ValueError: if the array's spatial shape does not match the reference.
        OutputWriteError: if the file cannot be written.
    """
    import nibabel as nib

    if reference is not None:
        ref_shape = tuple(int(s) for s in reference.shape)
        spatial = tuple(array.shape[: len(ref_shape)])
        if spatial != ref_shape:
            squeezed = tuple(s for s in ref_shape if s != 1)
            if tuple(s for s in array.shape if s != 1) == squeezed and array.ndim <= len(ref_shape):
                array = array.reshape(ref_shape)
            else:
                raise ValueError(
                    f"{path}: mask shape {array.shape} does not match the input's shape {ref_shape} (internal error "
                    "in undoing the preprocessing)"
                )
        header = reference.header.copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"] = 0
        header["cal_max"] = 0
        header["intent_code"] = 0
        # No affine argument: nibabel keeps the header's qform/sform (and codes) as they are.
        image = nib.Nifti1Image(array, None, header=header)
        if array.ndim > len(ref_shape):
            image.header.set_intent("vector")
    else:
        if affine is None:
            raise ValueError("write_nifti_like needs a reference image or an affine")
        image = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
        image.header.set_qform(np.asarray(affine, dtype=np.float64), code=1)
        image.header.set_sform(np.asarray(affine, dtype=np.float64), code=1)
    with writing(path) as tmp:
        nib.save(image, str(tmp))


def read_rgb(path: PathLike) -> np.ndarray:
    """Read a 2D image as ``(H, W, 3)`` uint8 for display (gray repeated; 16-bit/float scaled by min/max)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("RGB", "L", "RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1"):
            return np.asarray(im.convert("RGB"))
        arr = np.asarray(im, dtype=np.float64)
    return to_display(arr)


def to_display(arr: np.ndarray) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` values as ``(H, W, 3)`` uint8: uint8 RGB kept, anything else min/max scaled."""
    arr = np.asarray(arr)
    if arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[-1] >= 3:
        return np.ascontiguousarray(arr[..., :3])
    values = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(values)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 0.0)
    scaled = np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo) * 255.0
    gray = np.nan_to_num(scaled).round().clip(0, 255).astype(np.uint8)
    if gray.ndim == 3:
        return gray[..., :3] if gray.shape[-1] >= 3 else np.repeat(gray[..., :1], 3, axis=-1)
    return np.repeat(gray[..., None], 3, axis=-1)


def overlay(image: np.ndarray, mask: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend label colours over an RGB image where ``mask > 0``.

    Args:
        image: ``(H, W, 3)`` uint8.
        mask: ``(H, W)`` integer labels.
        colors: ``(L, 3)`` uint8 colour table; labels beyond it reuse it cyclically.
        alpha: colour opacity in [0, 1].

    Returns:
        ``(H, W, 3)`` uint8.

    Example:
        >>> img = np.zeros((1, 2, 3), np.uint8)
        >>> overlay(img, np.array([[0, 1]]), np.array([[0, 0, 0], [255, 0, 0]], np.uint8), 0.5)[0, 1].tolist()
        [128, 0, 0]
    """
    if image.shape[:2] != mask.shape:
        raise ValueError(f"overlay: image {image.shape[:2]} and mask {mask.shape} differ in size")
    out = image.astype(np.float32)
    fg = mask > 0
    if fg.any():
        colour = colors[mask[fg].astype(np.int64) % len(colors)].astype(np.float32)
        out[fg] = (1.0 - alpha) * out[fg] + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def even_frame(frame: np.ndarray) -> np.ndarray:
    """Pad a ``(H, W, 3)`` frame by one edge row/column where H or W is odd (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")


# ---------------------------------------------------------------------------------------------------- writers
class OutputWriter(ABC):
    """One kind of output for one prediction (see the module docstring for the contract).

    Attributes:
        kind: the registry name (``"nifti"``, ``"png"``, ...); ``--output-type`` names ``role="mask"`` kinds.
        role: ``"mask"`` (the label output, chosen by ``MaskWriter(output_types=...)``) or ``"extra"``
            (overlays and probabilities, switched on by their own options).
    """

    kind: ClassVar[str]
    role: ClassVar[Literal["mask", "extra"]] = "mask"

    def __init__(self, options: MaskWriter) -> None:
        self.options = options

    @abstractmethod
    def accepts(self, case: InputCase) -> bool:
        """Whether this writer applies to ``case`` (e.g. NIfTI masks for volumes, PNG masks for 2D images)."""

    @abstractmethod
    def paths(self, case: InputCase, folder: Path, stem: str) -> list[Path]:
        """The files :meth:`write` will create for the prediction named ``stem`` in ``folder``."""

    @abstractmethod
    def write(self, case: InputCase, seg: Segmentation, folder: Path, stem: str) -> list[Path]:
        """Write them (atomically) and return their paths.

        Raises:
            OutputWriteError: the file system refused a write.
        """


#: Output writers by kind (:func:`register_writer` adds one).
WRITERS: dict[str, type[OutputWriter]] = {}


def register_writer(cls: type[OutputWriter]) -> type[OutputWriter]:
    """Class decorator: make ``cls`` available under ``cls.kind`` (a duplicate kind is an error)."""
    if cls.kind in WRITERS:
        raise ValueError(f"an output writer for {cls.kind!r} is registered already ({WRITERS[cls.kind].__name__})")
    WRITERS[cls.kind] = cls
    return cls


def mask_kinds() -> list[str]:
    """The output kinds ``output_types`` / ``--output-type`` can name."""
    return sorted(k for k, cls in WRITERS.items() if cls.role == "mask")


_VOLUME_SOURCES = ("nifti", "dicom", "volume_file")
_IMAGE_SOURCES = ("image", "frames", "video")


@register_writer
class NiftiMaskWriter(OutputWriter):
    """``STEM_seg.nii.gz`` (labels) and ``STEM_seg_labels.json`` (class names, what made the mask).

    The mask has the input's shape and header (NIfTI) or the series' grid (DICOM).
    """

    kind = "nifti"

    def accepts(self, case: InputCase) -> bool:
        return case.source in _VOLUME_SOURCES

    def paths(self, case: InputCase, folder: Path, stem: str) -> list[Path]:
        from medseg.inference.reports import label_sidecar_path

        mask = folder / f"{stem}_seg.nii.gz"
        return [mask, label_sidecar_path(mask)]

    def write(self, case: InputCase, seg: Segmentation, folder: Path, stem: str) -> list[Path]:
        from medseg.inference.reports import write_label_sidecar

        mask, sidecar = self.paths(case, folder, stem)
        try:  # the sidecar first: a mask that exists always has its names
            write_label_sidecar(
                mask,
                self.options.names(seg.num_classes, seg.labels),
                provenance={**self.options.provenance, "input": case.path.name},
                overwrite=True,
            )
        except OSError as err:
            raise OutputWriteError(f"cannot write {sidecar}: {err.strerror or err}") from err
        write_nifti_like(mask, seg.labels, seg.reference, seg.affine)
        return [mask, sidecar]


#: Mask kinds that only a DICOM series input can have (they reference its instances).
DICOM_KINDS = ("dicom-seg", "rtstruct")


class _DicomWriter(OutputWriter):
    """Shared by the DICOM-SEG and RTSTRUCT writers: the source series and the mask on its grid."""

    suffix: ClassVar[str]
    #: The function of :mod:`medseg.inference.dicom_outputs` that writes this kind.
    function: ClassVar[str]

    def accepts(self, case: InputCase) -> bool:
        return case.source == "dicom" and bool(case.files)

    def paths(self, case: InputCase, folder: Path, stem: str) -> list[Path]:
        return [folder / f"{stem}{self.suffix}"]

    def _source(self, case: InputCase) -> Any:
        from medseg.inference.dicom_outputs import read_source_series

        return read_source_series(list(case.files), series_uid=case.series_uid)

    def write(self, case: InputCase, seg: Segmentation, folder: Path, stem: str) -> list[Path]:
        (path,) = self.paths(case, folder, stem)
        if seg.affine is None:
            raise ValueError(f"{stem}: the prediction has no geometry to place on the DICOM series")
        names = self.options.names(seg.num_classes, seg.labels)
        try:
            self._write(seg, self._source(case), path, names)
        except OSError as err:
            raise OutputWriteError(
                f"cannot write {path}: {err.strerror or err}; check the free space and permissions of the output folder"
            ) from err
        return [path]

    def _write(self, seg: Segmentation, series: Any, path: Path, names: list[str]) -> None:
        from medseg.inference import dicom_outputs

        getattr(dicom_outputs, self.function)(
            seg.labels,
            seg.affine,
            series,
            path,
            names,
            algorithm_name=str(self.options.provenance.get("bundle") or "medseg"),
            overwrite=True,
        )


@register_writer
class DicomSegWriter(_DicomWriter):
    """``STEM_seg.dcm``: a DICOM Segmentation (one binary segment per class) referencing the source series."""

    kind = "dicom-seg"
    suffix = "_seg.dcm"
    function = "write_dicom_seg"


@register_writer
class RtstructWriter(_DicomWriter):
    """``STEM_rtstruct.dcm``: an RT Structure Set (one ROI per class, contours along pixel edges)."""

    kind = "rtstruct"
    suffix = "_rtstruct.dcm"
    function = "write_rtstruct"


@register_writer
class PngMaskWriter(OutputWriter):
    """``STEM_seg.png``: the label map of a 2D image or frame as a palette PNG (values = labels)."""

    kind = "png"

    def accepts(self, case: InputCase) -> bool:
        return case.source in _IMAGE_SOURCES

    def paths(self, case: InputCase, folder: Path, stem: str) -> list[Path]:
        return [folder / f"{stem}_seg.png"]

    def write(self, case: InputCase, seg: Segmentation, folder: Path, stem: str) -> list[Path]:
        (path,) = self.paths(case, folder, stem)
        labels = seg.labels if seg.labels.dtype == np.uint8 else seg.labels.astype(np.uint16)
        if labels.dtype == np.uint8:
            write_label_png(path, labels, colors=self.options.colors.tolist())
        else:
            write_png(path, labels)
        return [path]


@register_writer
class OverlayWriter(OutputWriter):
    """``STEM_overlay.png``: the label colours blended over the 2D image (``MaskWriter(save_overlays=True)``)."""

    kind = "overlay"
    role = "extra"

    def accepts(self, case: InputCase) -> bool:
        return self.options.save_overlays and case.source in ("image", "frames")

    def paths(self, case: InputCase, folder: Path, stem: str) -> list[Path]:
        return [folder / f"{stem}_overlay.png"]

    def write(self, case: InputCase, seg: Segmentation, folder: Path, stem: str) -> list[Path]:
        (path,) = self.paths(case, folder, stem)
        if seg.display is None:
            raise ValueError(f"{stem}: no display image to draw the overlay on")
        if seg.display.shape[:2] != seg.labels.shape:
            raise ValueError(f"{stem}: mask {seg.labels.shape} does not match the image size {seg.display.shape[:2]}")
        write_png(path, self.options.overlay(seg.display, seg.labels))
        return [path]


@register_writer
class ProbabilityWriter(OutputWriter):
    """Class probabilities: ``STEM_prob.nii.gz`` ``(x, y, z, K)`` for volumes, ``STEM_prob.npy`` ``(K, H, W)``."""

    kind = "probabilities"
    role = "extra"

    def accepts(self, case: InputCase) -> bool:
        return self.options.save_probabilities and case.source != "video"

    def paths(self, case: InputCase, folder: Path, stem: str) -> list[Path]:
        suffix = "nii.gz" if case.source in _VOLUME_SOURCES else "npy"
        return [folder / f"{stem}_prob.{suffix}"]

    def write(self, case: InputCase, seg: Segmentation, folder: Path, stem: str) -> list[Path]:
        (path,) = self.paths(case, folder, stem)
        if seg.probabilities is None:
            raise ValueError(f"{stem}: the prediction kept no probabilities")
        probs = seg.probabilities.astype(np.float32)
        if path.name.endswith(".nii.gz"):
            write_nifti_like(path, np.moveaxis(probs, 0, -1), seg.reference, seg.affine)
        else:
            with writing(path) as tmp, tmp.open("wb") as fh:
                np.save(fh, probs)
        return [path]


class VideoOverlayWriter:
    """``NAME_overlay.mp4``: overlays appended frame by frame (a stream, not a per-prediction writer).

    Use as a context manager around the frame loop; the file appears (atomically) when it closes without error.
    """

    def __init__(self, options: MaskWriter, path: Path, fps: float) -> None:
        self.options = options
        self.path = path
        self.fps = fps
        self._stack = contextlib.ExitStack()
        self._video: Any = None
        self.frames = 0

    def __enter__(self) -> VideoOverlayWriter:
        tmp = self._stack.enter_context(writing(self.path))
        self._video = self.options.open_video(tmp, self.fps)
        self._stack.callback(self._video.close)
        return self

    def append(self, rgb: np.ndarray, labels: np.ndarray) -> None:
        try:
            self._video.append_data(even_frame(self.options.overlay(rgb, labels)))
        except OSError as err:
            raise OutputWriteError(f"cannot write {self.path}: {err}") from err
        self.frames += 1

    def __exit__(self, *exc: object) -> None:
        self._stack.__exit__(*exc)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- options
class MaskWriter:
    """Output options of a model (the ``writer`` id of a bundle's ``inference.json``) and its writers.

    Args:
        label_colors: ``[[r, g, b], ...]`` per label, background first (drawn only for labels > 0); default
            :data:`DEFAULT_COLORS`. Also the palette of PNG masks.
        alpha: overlay opacity in [0, 1] (default 0.5).
        save_probabilities: also write the class probabilities (NIfTI ``(x, y, z, K)`` float32 next to a
            volume mask; ``.npy`` ``(K, H, W)`` float32 next to a 2D mask).
        save_overlays: write colour overlays for 2D images and frame folders (videos always get an overlay video).
        video_codec: ffmpeg encoder for overlay videos (default ``"libx264"``).
        video_fps: frame rate of overlay videos; default the input video's (10 if unknown).
        output_types: mask kinds for volumes (default ``["nifti"]``; see :func:`mask_kinds`); 2D inputs always
            get PNG masks.
        class_names: the name of each class, background first (label sidecars, DICOM segment labels and ROI
            names, volume columns); default ``background``, ``class_1``, ``class_2``, ...
        provenance: what made the masks (bundle, checkpoint name and digest), written into the label sidecars.

    Raises:
        ValueError: for bad colours, ``alpha``, an unknown output type or repeated class names.
    """

    def __init__(
        self,
        label_colors: Sequence[Sequence[int]] | None = None,
        alpha: float = 0.5,
        save_probabilities: bool = False,
        save_overlays: bool = True,
        video_codec: str = "libx264",
        video_fps: float | None = None,
        output_types: Sequence[str] = ("nifti",),
        class_names: Sequence[str] | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.colors = _check_colors(label_colors)
        self.class_names = self.check_class_names(class_names)
        self.provenance: dict[str, Any] = dict(provenance or {})
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)
        self.save_probabilities = bool(save_probabilities)
        self.save_overlays = bool(save_overlays)
        self.video_codec = video_codec
        if video_fps is not None and not float(video_fps) > 0:
            raise ValueError(f"video_fps must be positive or None, got {video_fps!r}")
        self.video_fps = video_fps
        self.output_types = self.check_output_types(output_types)

    @staticmethod
    def check_output_types(output_types: Sequence[str] | str) -> tuple[str, ...]:
        """Validate mask kinds (a list or a comma-separated string) and return them without duplicates."""
        items = output_types.split(",") if isinstance(output_types, str) else list(output_types)
        kinds = tuple(dict.fromkeys(str(k).strip() for k in items if str(k).strip()))
        known = mask_kinds()
        bad = [k for k in kinds if k not in known or k == "png"]
        if not kinds or bad:
            allowed = [k for k in known if k != "png"]
            raise ValueError(
                f"output_types must name one or more of {', '.join(allowed)} (comma-separated), got "
                f"{output_types!r}; 2D inputs always get PNG masks"
            )
        return kinds

    @staticmethod
    def check_class_names(class_names: Sequence[str] | None) -> list[str] | None:
        """Validate class names (a list of distinct strings, background first) or ``None``."""
        if class_names is None:
            return None
        if isinstance(class_names, str) or not all(isinstance(n, str) and n.strip() for n in class_names):
            raise ValueError(f"class_names must be a list of names, background first, got {class_names!r}")
        names = [str(n) for n in class_names]
        if len(set(names)) != len(names) or len(names) < 2:
            raise ValueError(f"class_names must be at least two distinct names (background first), got {names}")
        return names

    def names(self, num_classes: int | None = None, labels: np.ndarray | None = None) -> list[str]:
        """Class names for a prediction: the configured ones, extended by ``class_K`` up to the class count.

        The count is the larger of ``num_classes`` and the highest label value of ``labels`` plus one.
        """
        names = list(self.class_names or ["background"])
        count = max(num_classes or 0, int(labels.max()) + 1 if labels is not None and labels.size else 0, 2)
        if len(names) < count:
            names += [f"class_{k}" for k in range(len(names), count)]
        return names

    def overlay(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """:func:`overlay` with this writer's colours and opacity."""
        return overlay(image, mask, self.colors, self.alpha)

    def writers_for(self, case: InputCase) -> list[OutputWriter]:
        """The writers that apply to ``case``: its mask kinds, then the extras switched on.

        Raises:
            ValueError: if one of ``output_types`` cannot be written for a volume input (``dicom-seg`` or
                ``rtstruct`` for a NIfTI file).
        """
        kinds = ("png",) if case.source in _IMAGE_SOURCES else self.output_types
        writers = [WRITERS[k](self) for k in kinds]
        refused = [w.kind for w in writers if not w.accepts(case)]
        if refused:
            needs = " (they need a DICOM series input)" if set(refused) <= set(DICOM_KINDS) else ""
            raise ValueError(
                f"{case.path}: output type {', '.join(refused)} cannot be written for a {case.source} input{needs}; "
                "drop it from --output-type (output_types) for this input"
            )
        masks = writers
        extras = [cls(self) for cls in WRITERS.values() if cls.role == "extra"]
        return masks + [w for w in extras if w.accepts(case)]

    def known_paths(self, case: InputCase, folder: Path, stem: str) -> list[Path]:
        """Every file any registered writer would write for ``case``.

        A recomputed case removes them first, so no output of another kind, model or input outlives it.
        """
        import copy

        everything = copy.copy(self)  # extras as if switched on: their files of an earlier run count too
        everything.save_probabilities = everything.save_overlays = True
        paths: list[Path] = []
        for cls in WRITERS.values():
            writer = cls(everything)
            if writer.accepts(case):
                paths += [p for p in writer.paths(case, folder, stem) if p not in paths]
        return paths

    def settings(self) -> dict[str, Any]:
        """What decides the bytes of the outputs (part of a case's provenance)."""
        return {
            "colors": self.colors.tolist(),
            "alpha": self.alpha,
            "save_probabilities": self.save_probabilities,
            "save_overlays": self.save_overlays,
            "video_codec": self.video_codec,
            "video_fps": self.video_fps,
            "output_types": list(self.output_types),
            "class_names": self.class_names,
            "provenance": self.provenance,
        }

    def open_video(self, path: Path, fps: float) -> Any:
        """An imageio-ffmpeg writer for ``path`` (frames are padded to even sizes for yuv420p)."""
        import imageio.v2 as imageio

        return imageio.get_writer(
            str(path),
            format="FFMPEG",
            mode="I",
            fps=float(self.video_fps or fps or 10.0),
            codec=self.video_codec,
            macro_block_size=1,
            pixelformat="yuv420p",
            ffmpeg_log_level="error",
        )
