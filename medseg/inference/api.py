"""Files in, files out: :func:`predict_files` (what ``medseg predict`` and bundles call) and :func:`run_inference`.

Inputs are found by :mod:`~medseg.inference.discovery`, predicted by :func:`~medseg.inference.segment.
segment_loaded` and written by the writers of :mod:`~medseg.inference.writers`; with ``NAME`` a case's name:

======================================  =====================================================================
input                                   written under ``OUTPUT_DIR``
======================================  =====================================================================
NIfTI volume ``NAME.nii[.gz]``          ``NAME_seg.nii.gz`` (uint8 labels, the input's shape and header)
DICOM series (folder)                   ``NAME_seg.nii.gz`` (the series' grid and RAS affine); with the output
                                        types ``dicom-seg``/``rtstruct`` also ``NAME_seg.dcm`` (DICOM
                                        Segmentation) / ``NAME_rtstruct.dcm`` (RT Structure Set)
2D image ``NAME.png|jpg|bmp|tif``       ``NAME_seg.png`` (palette PNG of the labels) and ``NAME_overlay.png``
2D NIfTI slice ``NAME.nii[.gz]``        ``NAME_seg.nii.gz``
folder of frames ``NAME/``              ``NAME/FRAME_seg.png`` and ``NAME/FRAME_overlay.png`` per frame
video ``NAME.mp4|avi|mov|mkv|...``      ``NAME/frame_000000_seg.png``... and ``NAME_overlay.mp4``
every NIfTI mask                        ``NAME_seg_labels.json``: the class name of each label value
every case                              ``NAME_prediction.json``: what produced the outputs (:mod:`.provenance`)
with ``volumes=True``                   ``volumes.csv``: mL per class for every 3D case of the call
======================================  =====================================================================

With ``save_probabilities`` (see :class:`~medseg.inference.writers.MaskWriter`) a ``NAME_prob.nii.gz``
``(x, y, z, K)`` or ``NAME_prob.npy`` ``(K, H, W)`` goes next to the mask.

A case is skipped when its outputs exist and its sidecar says they were made from the same input bytes, weights
and settings; otherwise (another input of the same name, a new checkpoint, an interrupted run) it is recomputed
with one warning line. Frames of a folder or a video that an interrupted run finished are kept. A case that fails
because of its input (unreadable, 4D, NaN voxels, ...) is reported in one line and the others go on (exit code
2); a failure to write our own outputs (full disk, permissions) stops the batch (exit code 1), since every later
case would fail the same way. Temporary files that a killed run left behind are removed at the start.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.inference.checks import IntensityPolicy, NonFinitePolicy
from medseg.inference.discovery import InputCase, discover_input, split_parts
from medseg.inference.predictor import Predictor
from medseg.inference.preprocessing import InputKind, Preprocessing
from medseg.inference.provenance import (
    Provenance,
    describe,
    digest_files,
    digest_json,
    read_sidecar,
    sidecar_path,
)
from medseg.inference.reports import CaseVolumes
from medseg.inference.segment import Segmentation, segment_loaded
from medseg.inference.writers import (
    MaskWriter,
    OutputWriteError,
    OutputWriter,
    PngMaskWriter,
    VideoOverlayWriter,
    read_rgb,
    writing,
)
from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = ["INPUT_ERRORS", "CaseResult", "PredictionReport", "predict_files", "root_cause", "run_inference"]

#: Failures caused by the input (exit code 2); anything else is unexpected (exit code 1).
INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, OSError, EOFError)
Status = Literal["written", "skipped", "failed", "not run"]


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


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


@dataclass
class CaseResult:
    """What happened to one case."""

    input: str
    source: str
    status: Status
    name: str = ""
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    unexpected: bool = False
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class PredictionReport:
    """Per-case results of :func:`predict_files` (and the ``volumes.csv`` it wrote, if asked to)."""

    results: list[CaseResult] = field(default_factory=list)
    volumes_csv: Path | None = None

    def _with(self, status: Status) -> list[CaseResult]:
        return [r for r in self.results if r.status == status]

    @property
    def failed(self) -> list[CaseResult]:
        return self._with("failed")

    @property
    def written(self) -> list[CaseResult]:
        return self._with("written")

    @property
    def skipped(self) -> list[CaseResult]:
        return self._with("skipped")

    @property
    def not_run(self) -> list[CaseResult]:
        """Cases left out after a failure that stopped the batch (an output could not be written)."""
        return self._with("not run")

    @property
    def warnings(self) -> list[str]:
        return [w for r in self.results for w in r.warnings]

    @property
    def exit_code(self) -> int:
        """0 if every case succeeded or was skipped, 1 if any failed unexpectedly or on writing, else 2."""
        if not self.failed:
            return 0
        return 1 if any(r.unexpected for r in self.failed) else 2

    def summary(self) -> str:
        text = (
            f"{len(self.results)} case(s): {len(self.written)} written, {len(self.skipped)} skipped "
            f"(up to date), {len(self.failed)} failed"
        )
        if self.not_run:
            text += f", {len(self.not_run)} not run (stopped after an output error)"
        if self.volumes_csv is not None:
            text += f"; volumes in {self.volumes_csv}"
        return text


def _nifti_reference(path: Path) -> Any:
    import nibabel as nib

    try:
        ref: Any = nib.load(str(path))
    except Exception as err:
        raise ValueError(f"{path}: cannot read as NIfTI ({type(err).__name__}: {_one_line(err)[:200]})") from err
    shape = tuple(int(s) for s in ref.shape)
    if len(shape) > 3 and int(np.prod(shape[3:])) > 1:
        raise ValueError(
            f"{path}: a {len(shape)}D NIfTI of shape {shape} where a 3D volume (or a 2D slice) is expected; "
            "split the series into 3D volumes first"
        )
    return ref


_VIDEO_FRAME_OUTPUT = re.compile(r"^frame_\d{6}_(seg\.png|overlay\.png|prob\.npy)$")


def _video_frame_count(reader: Any) -> int | None:
    """The exact number of frames (ffmpeg counts them in one pass without decoding to images), else the header's."""
    try:
        count = int(reader.count_frames())
        if count > 0:
            return count
    except Exception:  # some containers cannot be counted: fall back to the header's estimate
        logger.debug("cannot count the frames of the video", exc_info=True)
    nframes = reader.get_meta_data().get("nframes")
    return int(nframes) if isinstance(nframes, (int, float)) and 0 < nframes < float("inf") else None


class _Batch:
    """Processes the cases of one :func:`predict_files` call."""

    def __init__(
        self,
        output_dir: Path,
        predictor: Predictor,
        preprocessing: Preprocessing,
        writer: MaskWriter,
        *,
        overwrite: bool,
        progress: bool,
        nonfinite: NonFinitePolicy,
        intensity_check: IntensityPolicy,
    ) -> None:
        self.out = output_dir
        self.predictor = predictor
        self.pre = preprocessing
        self.writer = writer
        self.overwrite = overwrite
        self.progress = progress
        self.nonfinite: NonFinitePolicy = nonfinite
        self.intensity_check: IntensityPolicy = intensity_check
        self._digests: tuple[str, str, str] | None = None
        self.volumes: dict[str, CaseVolumes] = {}

    # -------------------------------------------------------------- provenance
    def _fixed_digests(self) -> tuple[str, str, str]:
        if self._digests is None:
            pre = {"pipelines": describe(self.pre.pipelines), "references": describe(self.pre.references)}
            self._digests = (self.predictor.fingerprint(), digest_json(pre), digest_json(self.writer.settings()))
        return self._digests

    def _begin(
        self, case: InputCase, planned: list[Path], stale: list[Path]
    ) -> tuple[str, Provenance, dict[str, Any] | None]:
        """``"skip"`` (up to date), ``"resume"`` (current but incomplete: keep what exists) or ``"fresh"``.

        ``planned`` are the outputs the case needs; ``stale`` those to remove when the case starts afresh.
        """
        model, pre, outputs = self._fixed_digests()
        try:
            input_digest = digest_files(case.content_files, case.path if case.files else None)
        except OSError as err:
            raise ValueError(f"{case.path}: cannot read ({err.strerror or err})") from err
        prov = Provenance(input_digest, model, pre, outputs)
        side = sidecar_path(self.out, case.name)
        record = read_sidecar(side)
        if not self.overwrite and prov.matches(record):
            assert record is not None
            if record.get("state") == "complete" and all(p.exists() for p in planned):
                return "skip", prov, record
            return "resume", prov, record  # same input, model and settings: what exists is current, the rest is missing
        existing = [p for p in stale if p.exists()]
        if existing and not self.overwrite:
            what = ", ".join(prov.differences(record))
            logger.warning("%s: recomputing %d existing output(s) (%s differ)", case.name, len(existing), what)
        try:
            side.unlink(missing_ok=True)  # first: outputs without a sidecar count as unfinished
            for path in existing:
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        except OSError as err:
            raise OutputWriteError(f"cannot replace the outputs of {case.name}: {err}") from err
        self._record(side, prov, "partial")
        return "fresh", prov, None

    def _record(
        self, side: Path, prov: Provenance, state: Literal["partial", "complete"], extra: dict[str, Any] | None = None
    ) -> None:
        import json

        from medseg import __version__

        with writing(side) as tmp:
            record = {**prov.record(state, __version__), **(extra or {})}
            tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    # -------------------------------------------------------------- volumes
    def _volumes_of(self, case: InputCase, seg: Segmentation) -> dict[str, Any]:
        """The class volumes of a 3D prediction (kept for ``volumes.csv``), as recorded in the case's sidecar."""
        from medseg.inference.reports import mask_volumes

        found = mask_volumes(seg.to_nifti(), self.writer.names(seg.num_classes, seg.labels), case=case.name)
        self.volumes[case.name] = found
        return {"volumes": {"voxel_ml": found.voxel_ml, "voxels": found.voxels}}

    def _recorded_volumes(self, case: InputCase, record: dict[str, Any] | None) -> None:
        """Volumes of a skipped case: from its sidecar, else from its NIfTI mask."""
        from medseg.inference.reports import CaseVolumes, mask_volumes

        saved = (record or {}).get("volumes")
        if isinstance(saved, dict) and isinstance(saved.get("voxels"), dict):
            voxel_ml = float(saved["voxel_ml"])
            voxels = {str(k): int(v) for k, v in saved["voxels"].items()}
            self.volumes[case.name] = CaseVolumes(
                case.name, voxel_ml, voxels, {k: n * voxel_ml for k, n in voxels.items()}
            )
            return
        mask = self.out / f"{case.name}_seg.nii.gz"
        if mask.is_file() and self.writer.class_names:
            try:
                self.volumes[case.name] = mask_volumes(mask, self.writer.class_names, case=case.name)
            except ValueError as err:
                logger.warning("%s: no volumes (%s)", case.name, err)

    # -------------------------------------------------------------- prediction
    def _segment(self, raw: dict[str, Any], kind: InputKind, name: str) -> Segmentation:
        return segment_loaded(
            raw,
            kind,
            self.predictor,
            self.pre,
            name=name,
            nonfinite=self.nonfinite,
            intensity_check=self.intensity_check,
            keep_probabilities=self.writer.save_probabilities,
        )

    def _write(self, writers: list[OutputWriter], case: InputCase, seg: Segmentation, folder: Path, stem: str) -> None:
        for w in writers:
            w.write(case, seg, folder, stem)

    def volume(self, case: InputCase) -> tuple[Status, list[Path], list[str]]:
        writers = self.writer.writers_for(case)
        planned = [p for w in writers for p in w.paths(case, self.out, case.name)]
        known = self.writer.known_paths(case, self.out, case.name)
        state, prov, record = self._begin(case, planned, [*planned, *(p for p in known if p not in planned)])
        if state == "skip":
            self._recorded_volumes(case, record)
            return "skipped", planned, []
        reference = _nifti_reference(case.path) if case.source == "nifti" else None
        kind: InputKind = "image" if reference is not None and len(reference.shape) == 2 else "volume"
        raw = self.pre.read(str(case.path), kind, series_uid=case.series_uid)
        seg = self._segment(raw, kind, str(case.path))
        seg.reference = reference
        self._write(writers, case, seg, self.out, case.name)
        extra = self._volumes_of(case, seg) if kind == "volume" else None
        self._record(sidecar_path(self.out, case.name), prov, "complete", extra)
        return "written", planned, seg.warnings

    def _image_file(self, case: InputCase, path: Path, folder: Path, stem: str, writers: list[OutputWriter]) -> Any:
        raw = self.pre.read(str(path), "image")
        seg = self._segment(raw, "image", str(path))
        if any(w.kind == "overlay" for w in writers):
            seg.display = read_rgb(path)
        self._write(writers, case, seg, folder, stem)
        return seg.warnings

    def image(self, case: InputCase) -> tuple[Status, list[Path], list[str]]:
        writers = self.writer.writers_for(case)
        planned = [p for w in writers for p in w.paths(case, self.out, case.name)]
        state, prov, _ = self._begin(case, planned, planned)
        if state == "skip":
            return "skipped", planned, []
        warnings = self._image_file(case, case.path, self.out, case.name, writers)
        self._record(sidecar_path(self.out, case.name), prov, "complete")
        return "written", planned, warnings

    def _bar(self, items: Iterable[Any], total: int | None, desc: str) -> Any:
        if not self.progress:
            return items
        from tqdm.auto import tqdm

        return tqdm(items, total=total, desc=desc, unit="frame", leave=False)

    def frames(self, case: InputCase) -> tuple[Status, list[Path], list[str]]:
        folder = self.out / case.name
        writers = self.writer.writers_for(case)
        per_frame = {f: [p for w in writers for p in w.paths(case, folder, f.stem)] for f in case.files}
        planned = [p for paths in per_frame.values() for p in paths]
        state, prov, _ = self._begin(case, planned, planned)
        if state == "skip":
            return "skipped", [folder], []
        errors: list[str] = []
        warnings: list[str] = []
        for frame in self._bar(case.files, len(case.files), case.name):
            if state == "resume" and all(p.exists() for p in per_frame[frame]):
                continue
            try:
                warnings += self._image_file(case, frame, folder, frame.stem, writers)
            except OutputWriteError:
                raise
            except Exception as err:
                cause = root_cause(err)
                if not isinstance(cause, INPUT_ERRORS):
                    raise
                errors.append(_one_line(cause))
        if errors:
            raise ValueError(f"{len(errors)} of {len(case.files)} frames failed; first: {errors[0]}")
        self._record(sidecar_path(self.out, case.name), prov, "complete")
        return "written", [folder], _collapse(warnings, "frames")

    def video(self, case: InputCase) -> tuple[Status, list[Path], list[str]]:
        import imageio.v2 as imageio

        folder = self.out / case.name
        target = self.out / f"{case.name}_overlay.mp4"
        masks = PngMaskWriter(self.writer)
        old_frames = [p for p in folder.iterdir() if _VIDEO_FRAME_OUTPUT.match(p.name)] if folder.is_dir() else []
        state, prov, _ = self._begin(case, [target], [target, *old_frames])
        if state == "skip":
            return "skipped", [target, folder], []
        try:
            reader: Any = imageio.get_reader(str(case.path), format="FFMPEG")
            fps = float(reader.get_meta_data().get("fps") or 10.0)
            total = _video_frame_count(reader)
        except Exception as err:
            raise ValueError(
                f"{case.path}: cannot read as a video ({type(err).__name__}: {_one_line(err)[:200]})"
            ) from err
        warnings: list[str] = []
        with reader, VideoOverlayWriter(self.writer, target, fps) as video:
            for index, frame in enumerate(self._bar(reader, total, case.name)):
                rgb = np.asarray(frame)
                rgb = np.repeat(rgb[..., None], 3, axis=-1) if rgb.ndim == 2 else rgb[..., :3]
                stem = f"frame_{index:06d}"
                (mask_path,) = masks.paths(case, folder, stem)
                if state == "resume" and mask_path.exists():
                    from PIL import Image

                    with Image.open(mask_path) as im:
                        labels = np.asarray(im)
                else:
                    raw = self.pre.from_array(rgb, "image", name=f"{case.path} frame {index}")
                    seg = self._segment(raw, "image", f"{case.path} frame {index}")
                    masks.write(case, seg, folder, stem)
                    labels, warnings = seg.labels, warnings + seg.warnings
                video.append(rgb, labels)
            if video.frames == 0:
                raise ValueError(f"{case.path}: the video has no frames")
        self._record(sidecar_path(self.out, case.name), prov, "complete")
        return "written", [target, folder], _collapse(warnings, "frames")

    def run(self, case: InputCase) -> tuple[Status, list[Path], list[str]]:
        if case.source in ("nifti", "dicom", "volume_file"):
            return self.volume(case)
        if case.source == "image":
            return self.image(case)
        if case.source == "frames":
            return self.frames(case)
        return self.video(case)


def _collapse(warnings: list[str], what: str) -> list[str]:
    """One line for many per-frame warnings: the first, and how many more."""
    if len(warnings) <= 1:
        return warnings
    return [f"{warnings[0]} (and {len(warnings) - 1} more {what})"]


@dataclass
class _Item:
    label: str
    case: InputCase | None
    error: str | None = None


def _discover_all(inputs: Sequence[PathLike]) -> list[_Item]:
    """Every input's cases in order; an input that cannot be discovered stays one failed item."""
    items: list[_Item] = []
    for raw in inputs:
        try:
            cases = discover_input(raw)
        except INPUT_ERRORS as err:
            message = _one_line(err)
            items.append(_Item(str(raw), None, message if str(raw) in message else f"{raw}: {message}"))
            continue
        single = len(cases) == 1 and cases[0].path == Path(raw)
        items += [_Item(str(raw) if single else f"{c.path} ({c.name})", c) for c in cases]
    claimed: dict[str, str] = {}
    for item in items:
        if item.case is None:
            continue
        key = item.case.name
        if key in claimed:
            item.error = (
                f"{item.label}: its outputs would be named {key!r} like those of {claimed[key]}; rename one of "
                "them or predict them into different output folders"
            )
            item.case = None
        else:
            claimed[key] = item.label
    return items


def predict_files(
    inputs: Sequence[PathLike],
    output_dir: PathLike,
    predictor: Predictor,
    *,
    preprocessing: Preprocessing | None = None,
    writer: MaskWriter | None = None,
    overwrite: bool = False,
    progress: bool = False,
    nonfinite: NonFinitePolicy = "error",
    intensity_check: IntensityPolicy = "error",
    num_parts: int = 1,
    part_id: int = 0,
    volumes: bool = False,
) -> PredictionReport:
    """Segment every input and write masks in each input's own geometry (see the module docstring).

    Args:
        inputs: files and folders (NIfTI files or folders of them, DICOM series folders or folders of series,
            2D images, frame folders, videos).
        output_dir: where outputs go (created if needed).
        predictor: the configured :class:`~medseg.inference.Predictor`.
        preprocessing: the model's :class:`~medseg.inference.Preprocessing` (default: CT volumes with the
            lung window and 8-bit 1-channel slices).
        writer: output options (:class:`~medseg.inference.MaskWriter`); default colours, overlays on.
        overwrite: recompute every case even where its outputs are up to date.
        progress: show a progress bar over cases (and frames).
        nonfinite: ``"error"`` (default) refuses inputs with NaN/inf voxels; ``"fill"`` replaces them and warns.
        intensity_check: ``"error"`` (default), ``"warn"`` or ``"off"``: inputs whose intensities lie far
            outside the range the model expects.
        num_parts: split the cases into this many disjoint shares (one per GPU or machine), in a fixed order.
        part_id: which share this call processes (``0 <= part_id < num_parts``).
        volumes: write ``volumes.csv`` in ``output_dir``: one row per 3D case of this call (written or up to
            date), the volume of each class in mL (voxel count times the voxel volume of the mask's header).

    Returns:
        A :class:`PredictionReport`; failed cases carry a one-line ``error`` naming the input. Nothing is
        raised for a failed case.

    Raises:
        ValueError: for a bad ``num_parts``/``part_id`` or policy.
    """
    from medseg.io import remove_stale_temp_files

    if nonfinite not in ("error", "fill"):
        raise ValueError(f"nonfinite must be 'error' or 'fill', got {nonfinite!r}")
    if intensity_check not in ("error", "warn", "off"):
        raise ValueError(f"intensity_check must be 'error', 'warn' or 'off', got {intensity_check!r}")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for stale in remove_stale_temp_files(out, max_depth=2):
        logger.info("removed %s, a temporary file left by an interrupted run", stale)
    batch = _Batch(
        out,
        predictor,
        preprocessing if preprocessing is not None else Preprocessing(),
        writer or MaskWriter(),
        overwrite=overwrite,
        progress=progress,
        nonfinite=nonfinite,
        intensity_check=intensity_check,
    )
    items: Any = split_parts(_discover_all(inputs), num_parts, part_id)
    report = PredictionReport()
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="cases", unit="case")
    stopped = False
    for item in items:
        case, label = item.case, item.label
        result = CaseResult(label, case.source if case else "?", "failed", name=case.name if case else "")
        result.warnings += list(case.notes) if case else []
        start = time.perf_counter()
        if stopped:
            result.status = "not run"
        elif case is None:
            result.error = item.error
        else:
            try:
                result.status, outputs, warnings = batch.run(case)
                result.outputs = [str(p) for p in outputs]
                result.warnings += warnings
            except OutputWriteError as err:
                result.error, result.unexpected, stopped = _one_line(err), True, True
            except Exception as err:
                cause = root_cause(err)
                if isinstance(cause, INPUT_ERRORS):
                    message = _one_line(cause)
                    result.error = message if str(case.path) in message else f"{label}: {message}"
                else:  # a bug or a device failure: report it, go on with the other cases
                    logger.debug("unexpected failure on %s", label, exc_info=True)
                    result.error = f"{label}: unexpected {type(cause).__name__}: {_one_line(cause)}"
                    result.unexpected = True
        result.seconds = time.perf_counter() - start
        if result.error:
            logger.info("failed: %s", result.error)  # the caller reports failures (CLI: one line each)
        elif result.status != "not run":
            logger.info("%s: %s in %.1f s", label, result.status, result.seconds)
        report.results.append(result)
    if volumes:
        report.volumes_csv = _write_volumes(out, report, batch.volumes)
    return report


def _write_volumes(out: Path, report: PredictionReport, found: dict[str, CaseVolumes]) -> Path | None:
    """``volumes.csv`` of the cases of this call that have 3D masks (in the order of the report)."""
    from medseg.inference.reports import write_volumes_csv

    rows = [found[r.name] for r in report.results if r.status in ("written", "skipped") and r.name in found]
    if not rows:
        logger.warning("no 3D masks among the cases: volumes.csv not written")
        return None
    path = out / "volumes.csv"
    try:
        return write_volumes_csv(path, rows, overwrite=True)  # a summary of this call, like evaluate's summary
    except OSError as err:
        raise OutputWriteError(f"cannot write {path}: {err.strerror or err}") from err


def run_inference(
    inputs: Sequence[PathLike] | PathLike,
    output_dir: PathLike,
    predictor: Predictor,
    *,
    preprocessing: Preprocessing | None = None,
    writer: MaskWriter | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> PredictionReport:
    """:func:`predict_files`, then raise if any case failed: the entry point of a bundle's ``run`` id.

    ``options`` are the other keyword arguments of :func:`predict_files` (``nonfinite``, ``intensity_check``,
    ``num_parts``, ``part_id``).

    Raises:
        RuntimeError: listing the failed inputs, after every input was tried.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    if not inputs:
        logger.warning("no inputs given: set input_paths (e.g. --input_paths \"['scan.nii.gz']\")")
    report = predict_files(
        list(inputs),  # type: ignore[arg-type]
        output_dir,
        predictor,
        preprocessing=preprocessing,
        writer=writer,
        overwrite=overwrite,
        progress=progress,
        **options,
    )
    logger.info("%s", report.summary())
    for line in report.warnings:
        logger.warning("%s", line)
    if report.failed:
        for failed in report.failed:
            logger.error("%s", failed.error)
        lines = "; ".join(r.error or r.input for r in report.failed)
        raise RuntimeError(f"{len(report.failed)} of {len(report.results)} input(s) failed: {lines}")
    return report
