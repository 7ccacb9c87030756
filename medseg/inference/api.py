"""Plain API over files: :func:`predict_files` (what ``medseg predict`` and bundles call) and :func:`predict_case`.

Inputs and outputs, with ``NAME`` the input's file name without its suffix (or the folder name):

======================================  =====================================================================
input                                   written under ``OUTPUT_DIR``
======================================  =====================================================================
NIfTI volume ``NAME.nii[.gz]``          ``NAME_seg.nii.gz`` (uint8 labels, the input's shape and header)
DICOM series folder ``NAME/``           ``NAME_seg.nii.gz`` (the series' grid and RAS affine)
2D image ``NAME.png|jpg|bmp|tif``       ``NAME_seg.png`` (labels) and ``NAME_overlay.png``
2D NIfTI slice ``NAME.nii[.gz]``        ``NAME_seg.nii.gz``
folder of frames ``NAME/``              ``NAME/FRAME_seg.png`` and ``NAME/FRAME_overlay.png`` per frame
video ``NAME.mp4|avi|mov|mkv|...``      ``NAME/frame_000000_seg.png``... and ``NAME_overlay.mp4``
======================================  =====================================================================

With ``save_probabilities`` (see :class:`~medseg.inference.writers.MaskWriter`) a ``NAME_prob.nii.gz``
``(x, y, z, K)`` or ``NAME_prob.npy`` ``(K, H, W)`` goes next to the mask.

Existing outputs are kept unless ``overwrite=True``: finished cases (and finished frames of a folder or video)
are skipped, so a batch that was interrupted continues where it stopped. A case that fails (unreadable file,
4D series, wrong channel count, ...) is reported with a one-line message naming it, and the others are still
processed.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.inference.predictor import Predictor
from medseg.inference.preprocessing import InputKind, Preprocessing
from medseg.inference.writers import MaskWriter, even_frame, read_rgb, write_nifti_like, write_png
from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = [
    "CasePrediction",
    "CaseResult",
    "InputCase",
    "PredictionReport",
    "discover_input",
    "predict_case",
    "predict_files",
    "run_inference",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")
VOLUME_SUFFIXES = (".dcm", ".mha", ".mhd", ".nrrd", ".nhdr")
SourceKind = Literal["nifti", "dicom", "image", "frames", "video", "volume_file"]

#: Failures caused by the input (exit code 2); anything else is unexpected (exit code 1).
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, OSError, EOFError)


def root_cause(err: BaseException) -> BaseException:
    """The innermost input error under wrappers such as MONAI's ``RuntimeError("applying transform ...")``.

    Returns ``err`` itself when no input error (see :data:`INPUT_ERRORS`) is in its cause chain.
    """
    chain: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and all(current is not c for c in chain):
        chain.append(current)
        current = current.__cause__
    for candidate in reversed(chain):
        if isinstance(candidate, INPUT_ERRORS):
            return candidate
    return err


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _lower(path: Path) -> str:
    return path.name.lower()


def _is_dicom_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


@dataclass(frozen=True)
class InputCase:
    """One input as classified by :func:`discover_input`.

    Attributes:
        path: the file or folder.
        source: ``"nifti"``, ``"dicom"`` (series folder), ``"volume_file"`` (``.dcm``/``.mha``/``.nrrd``),
            ``"image"``, ``"frames"`` (folder of 2D images) or ``"video"``.
        name: the output base name.
        files: the frame files of a ``"frames"`` folder, in natural order.
    """

    path: Path
    source: SourceKind
    name: str
    files: tuple[Path, ...] = ()


def discover_input(path: PathLike) -> InputCase:
    """Classify an input path by suffix or folder content.

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: if it is no supported kind of input.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    low = _lower(p)
    if p.is_file():
        if low.endswith(NIFTI_SUFFIXES):
            name = p.name[: -len(".nii.gz")] if low.endswith(".nii.gz") else p.stem
            return InputCase(p, "nifti", name)
        if low.endswith(IMAGE_SUFFIXES):
            return InputCase(p, "image", p.stem)
        if low.endswith(VIDEO_SUFFIXES):
            return InputCase(p, "video", p.stem)
        if low.endswith(VOLUME_SUFFIXES) or _is_dicom_file(p):
            return InputCase(p, "volume_file", p.stem if p.suffix else p.name)
        raise ValueError(
            f"{p}: not a supported input (NIfTI {'/'.join(NIFTI_SUFFIXES)}, DICOM, 2D image "
            f"{'/'.join(IMAGE_SUFFIXES)}, video {'/'.join(VIDEO_SUFFIXES)}, or a folder of DICOM files or frames)"
        )
    entries = sorted((e for e in p.iterdir() if e.is_file() and not e.name.startswith(".")), key=lambda e: e.name)
    images = [e for e in entries if _lower(e).endswith(IMAGE_SUFFIXES)]
    if any(_lower(e).endswith(".dcm") or _is_dicom_file(e) for e in entries):
        return InputCase(p, "dicom", p.name)
    if images:
        return InputCase(p, "frames", p.name, tuple(sorted(images, key=lambda e: _natural_key(e.name))))
    hint = (
        " (it has sub-folders: give the series or frame folder itself)" if any(e.is_dir() for e in p.iterdir()) else ""
    )
    raise ValueError(f"{p}: folder holds neither DICOM files nor 2D images (frames); nothing to segment{hint}")


@dataclass
class CaseResult:
    """What happened to one input."""

    input: str
    source: str
    status: Literal["written", "skipped", "failed"]
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    unexpected: bool = False
    seconds: float = 0.0


@dataclass
class PredictionReport:
    """Per-case results of :func:`predict_files`."""

    results: list[CaseResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == "failed"]

    @property
    def written(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == "written"]

    @property
    def skipped(self) -> list[CaseResult]:
        return [r for r in self.results if r.status == "skipped"]

    @property
    def exit_code(self) -> int:
        """0 if every case succeeded or was skipped, 1 if any failed unexpectedly, else 2 (bad inputs)."""
        if not self.failed:
            return 0
        return 1 if any(r.unexpected for r in self.failed) else 2

    def summary(self) -> str:
        return (
            f"{len(self.results)} input(s): {len(self.written)} written, {len(self.skipped)} skipped "
            f"(outputs exist), {len(self.failed)} failed"
        )


@dataclass
class CasePrediction:
    """A prediction mapped back to the input's own grid.

    Attributes:
        labels: ``(x, y, z)`` or ``(H, W)`` label map (uint8).
        probabilities: ``(K, *spatial)`` float32 probabilities on the same grid.
        data: the preprocessed dictionary (``data["image"]`` holds the metadata of the input).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    data: dict[str, Any]


def predict_case(path: PathLike, predictor: Predictor, preprocessing: Preprocessing, kind: InputKind) -> CasePrediction:
    """Load, preprocess, predict and map the prediction back onto ``path``'s own grid.

    Args:
        path: a volume (NIfTI file, DICOM series folder) or a 2D image file.
        predictor: the configured :class:`~medseg.inference.Predictor`.
        preprocessing: the model's :class:`~medseg.inference.Preprocessing`.
        kind: ``"volume"`` or ``"image"``: which pipeline to use.

    Returns:
        The labels and probabilities on the input's grid.
    """
    data = preprocessing.load(str(path), kind)
    image = data["image"]
    probs = predictor.predict_proba(image.unsqueeze(0))[0]
    back = preprocessing.invert(kind, data, probs)
    labels = predictor.labels_from_proba(back.unsqueeze(0))[0, 0]
    return CasePrediction(labels.numpy().astype(np.uint8), back.numpy(), data)


def _nifti_reference(path: Path) -> Any:
    import nibabel as nib

    try:
        ref: Any = nib.load(str(path))
    except Exception as err:
        raise ValueError(
            f"{path}: cannot read as NIfTI ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
        ) from err
    shape = tuple(int(s) for s in ref.shape)
    if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
        raise ValueError(
            f"{path}: a {len(shape)}D NIfTI of shape {shape} where a 3D volume (or a 2D slice) is expected; "
            "split the series into 3D volumes first"
        )
    return ref


class _Runner:
    """Processes the cases of one :func:`predict_files` call."""

    def __init__(
        self,
        output_dir: Path,
        predictor: Predictor,
        preprocessing: Preprocessing,
        writer: MaskWriter,
        overwrite: bool,
        progress: bool,
    ) -> None:
        self.out = output_dir
        self.predictor = predictor
        self.pre = preprocessing
        self.writer = writer
        self.overwrite = overwrite
        self.progress = progress

    def _todo(self, *paths: Path) -> bool:
        return self.overwrite or not all(p.exists() for p in paths)

    # -------------------------------------------------------------- volumes (and 2D NIfTI)
    def volume(self, case: InputCase) -> tuple[str, list[str]]:
        seg = self.out / f"{case.name}_seg.nii.gz"
        prob = self.out / f"{case.name}_prob.nii.gz"
        wanted = [seg, prob] if self.writer.save_probabilities else [seg]
        if not self._todo(*wanted):
            return "skipped", [str(p) for p in wanted]
        reference = _nifti_reference(case.path) if case.source == "nifti" else None
        kind: InputKind = "image" if reference is not None and len(reference.shape) == 2 else "volume"
        result = predict_case(case.path, self.predictor, self.pre, kind)
        affine = None
        if reference is None:
            meta = getattr(result.data["image"], "meta", {})
            affine = np.asarray(meta.get("original_affine", meta.get("affine")), dtype=np.float64)
            shape = tuple(int(s) for s in np.asarray(meta.get("spatial_shape", result.labels.shape)))
            if shape != result.labels.shape:
                raise ValueError(f"{case.path}: mask shape {result.labels.shape} differs from the series' {shape}")
        write_nifti_like(seg, result.labels, reference, affine)
        if self.writer.save_probabilities:
            write_nifti_like(prob, np.moveaxis(result.probabilities, 0, -1).astype(np.float32), reference, affine)
        return "written", [str(p) for p in wanted]

    # -------------------------------------------------------------- 2D images
    def _image_outputs(self, folder: Path, stem: str) -> list[Path]:
        paths = [folder / f"{stem}_seg.png"]
        if self.writer.save_overlays:
            paths.append(folder / f"{stem}_overlay.png")
        if self.writer.save_probabilities:
            paths.append(folder / f"{stem}_prob.npy")
        return paths

    def _image_file(self, path: Path, folder: Path, stem: str) -> bool:
        outputs = self._image_outputs(folder, stem)
        if not self._todo(*outputs):
            return False
        result = predict_case(path, self.predictor, self.pre, "image")
        write_png(outputs[0], result.labels)
        rest = outputs[1:]
        if self.writer.save_overlays:
            rgb = read_rgb(path)
            if rgb.shape[:2] != result.labels.shape:
                raise ValueError(f"{path}: mask {result.labels.shape} does not match the image size {rgb.shape[:2]}")
            write_png(rest.pop(0), self.writer.overlay(rgb, result.labels))
        if self.writer.save_probabilities:
            from medseg.io import atomic_path

            with atomic_path(rest.pop(0)) as tmp, tmp.open("wb") as fh:
                np.save(fh, result.probabilities.astype(np.float32))
        return True

    def image(self, case: InputCase) -> tuple[str, list[str]]:
        wrote = self._image_file(case.path, self.out, case.name)
        return ("written" if wrote else "skipped"), [str(p) for p in self._image_outputs(self.out, case.name)]

    def _bar(self, items: Iterable[Any], total: int | None, desc: str) -> Any:
        if not self.progress:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, total=total, desc=desc, unit="frame", leave=False)

    def frames(self, case: InputCase) -> tuple[str, list[str]]:
        folder = self.out / case.name
        errors: list[str] = []
        wrote = 0
        for frame in self._bar(case.files, len(case.files), case.name):
            try:
                wrote += self._image_file(frame, folder, frame.stem)
            except Exception as err:
                cause = root_cause(err)
                if not isinstance(cause, INPUT_ERRORS):
                    raise
                errors.append(" ".join(str(cause).split()))
        if errors:
            raise ValueError(f"{len(errors)} of {len(case.files)} frames failed; first: {errors[0]}")
        return ("written" if wrote else "skipped"), [str(folder)]

    # -------------------------------------------------------------- videos
    def video(self, case: InputCase) -> tuple[str, list[str]]:
        import imageio.v2 as imageio

        from medseg.io import atomic_path

        folder = self.out / case.name
        target = self.out / f"{case.name}_overlay.mp4"
        if not self._todo(target):
            return "skipped", [str(target), str(folder)]
        try:
            reader: Any = imageio.get_reader(str(case.path), format="FFMPEG")
            fps = float(reader.get_meta_data().get("fps") or 10.0)
        except Exception as err:
            raise ValueError(
                f"{case.path}: cannot read as a video ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
            ) from err
        count = 0
        with reader, tempfile.TemporaryDirectory(prefix="medseg-frames-") as tmp_dir, atomic_path(target) as tmp_video:
            video = self.writer.open_video(tmp_video, fps)
            try:
                for index, frame in enumerate(self._bar(reader, None, case.name)):
                    rgb = np.asarray(frame)[..., :3]
                    if rgb.ndim == 2:
                        rgb = np.repeat(rgb[..., None], 3, axis=-1)
                    mask_path = folder / f"frame_{index:06d}_seg.png"
                    if self.overwrite or not mask_path.exists():
                        frame_png = Path(tmp_dir) / f"frame_{index:06d}.png"
                        write_png(frame_png, rgb)
                        result = predict_case(frame_png, self.predictor, self.pre, "image")
                        frame_png.unlink()
                        mask = result.labels
                        write_png(mask_path, mask)
                    else:
                        from PIL import Image

                        with Image.open(mask_path) as im:
                            mask = np.asarray(im)
                    video.append_data(even_frame(self.writer.overlay(rgb, mask)))
                    count += 1
            finally:
                video.close()
            if count == 0:
                raise ValueError(f"{case.path}: the video has no frames")
        return "written", [str(target), str(folder)]

    def run(self, case: InputCase) -> tuple[str, list[str]]:
        if case.source in ("nifti", "dicom", "volume_file"):
            return self.volume(case)
        if case.source == "image":
            return self.image(case)
        if case.source == "frames":
            return self.frames(case)
        return self.video(case)


def predict_files(
    inputs: Sequence[PathLike],
    output_dir: PathLike,
    predictor: Predictor,
    *,
    preprocessing: Preprocessing | None = None,
    writer: MaskWriter | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> PredictionReport:
    """Segment every input and write masks in each input's own geometry (see the module docstring).

    Args:
        inputs: files and folders (NIfTI, DICOM series folders, 2D images, frame folders, videos).
        output_dir: where outputs go (created if needed).
        predictor: the configured :class:`~medseg.inference.Predictor`.
        preprocessing: the model's :class:`~medseg.inference.Preprocessing` (default: CT volumes with the
            lung window and 8-bit 1-channel slices).
        writer: output options (:class:`~medseg.inference.MaskWriter`); default colours, overlays on.
        overwrite: recompute cases whose outputs exist (default: skip them).
        progress: show a progress bar over cases (and frames).

    Returns:
        A :class:`PredictionReport`; failed cases carry a one-line ``error`` naming the input. Nothing is
        raised for a failed case.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    runner = _Runner(out, predictor, preprocessing or Preprocessing(), writer or MaskWriter(), overwrite, progress)
    report = PredictionReport()
    claimed: dict[str, str] = {}
    items: Any = list(inputs)
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="cases", unit="case")
    for raw in items:
        start = time.perf_counter()
        result = CaseResult(input=str(raw), source="?", status="failed")
        try:
            case = discover_input(raw)
            result.source = case.source
            key = case.name
            if key in claimed:
                raise ValueError(
                    f"its outputs would be named {key!r} like those of {claimed[key]}; rename one of them or "
                    "predict them into different output folders"
                )
            claimed[key] = str(raw)
            result.status, result.outputs = runner.run(case)  # type: ignore[assignment]
        except Exception as err:
            cause = root_cause(err)
            if isinstance(cause, INPUT_ERRORS):
                message = " ".join(str(cause).split())
                result.error = message if str(raw) in message else f"{raw}: {message}"
            else:  # a bug or a device failure: report it, go on with the other cases
                logger.debug("unexpected failure on %s", raw, exc_info=True)
                result.error = f"{raw}: unexpected {type(cause).__name__}: {' '.join(str(cause).split())}"
                result.unexpected = True
        result.seconds = time.perf_counter() - start
        if result.error:
            logger.info("failed: %s", result.error)  # the caller reports failures (CLI: one line each)
        else:
            logger.info("%s: %s in %.1f s", raw, result.status, result.seconds)
        report.results.append(result)
    return report


def run_inference(
    inputs: Sequence[PathLike],
    output_dir: PathLike,
    predictor: Predictor,
    *,
    preprocessing: Preprocessing | None = None,
    writer: MaskWriter | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> PredictionReport:
    """:func:`predict_files`, then raise if any case failed: the entry point of a bundle's ``run`` id.

    Raises:
        RuntimeError: listing the failed inputs, after every input was tried.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        logger.warning("no inputs given: set input_paths (e.g. --input_paths \"['scan.nii.gz']\")")
    report = predict_files(
        inputs,
        output_dir,
        predictor,
        preprocessing=preprocessing,
        writer=writer,
        overwrite=overwrite,
        progress=progress,
    )
    logger.info("%s", report.summary())
    if report.failed:
        for failed in report.failed:
            logger.error("%s", failed.error)
        lines = "; ".join(r.error or r.input for r in report.failed)
        raise RuntimeError(f"{len(report.failed)} of {len(report.results)} input(s) failed: {lines}")
    return report
