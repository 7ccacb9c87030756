"""Evaluate a folder of predicted label maps against a folder of reference label maps.

The API behind ``medseg evaluate``. Cases are streamed one at a time: each pair is read, its confusion matrix is
added to ONE dataset accumulator, its per-case metrics are written as one CSV row (to a temporary file renamed at
the end), and only running sums are kept. Memory is therefore flat in the number of cases: one case's arrays, a
``(K, K)`` matrix and a few numbers per class.

Outputs (all written atomically with :mod:`medseg.io`), for ``out="results/summary.json"``:

- ``results/summary.json``: dataset-level metrics from the accumulated matrix (the papers' IoU per class and mIoU
  with and without background, 000 Eq. 1-3), per-case means ± std, the matrix itself, and the run's settings;
- ``results/summary_cases.csv``: one row per case: pixel accuracy, IoU and Dice per class, HD95 and ASD per
  foreground class, reference and predicted voxel counts;
- ``results/summary.md``: a Markdown table of the same summary.

Files are matched by case id, the file name without ``.nii.gz``/``.nii``/``.png`` (and without an optional
prediction suffix such as ``_seg``). A label without prediction is an error unless ``allow_missing``; a prediction
without label is reported and skipped. Both lists go into the summary.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "pred").mkdir(); (d / "label").mkdir()
    >>> lab = np.zeros((8, 8), np.uint8); lab[2:6, 2:6] = 255  # a 0/255 mask as often stored in PNG
    >>> Image.fromarray(lab).save(d / "label" / "a.png")
    >>> Image.fromarray((lab > 0).astype(np.uint8)).save(d / "pred" / "a.png")
    >>> s = evaluate_folders(d / "pred", d / "label", 2, out=d / "summary.json", label_map={255: 1})
    >>> s["dataset"]["mean_iou"], s["num_cases"]
    (1.0, 1)
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import logging
import math
import multiprocessing
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from medseg.evaluation import metrics as M
from medseg.evaluation.confusion import _check_ignore_index, check_num_classes, confusion_matrix
from medseg.evaluation.surface import surface_metrics_per_class
from medseg.io import atomic_path, write_json, write_text
from medseg.typing import PathLike

__all__ = [
    "SUPPORTED_SUFFIXES",
    "CaseResult",
    "Segmentation",
    "apply_label_map",
    "case_id",
    "evaluate_case",
    "evaluate_folders",
    "match_cases",
    "output_paths",
    "parse_label_map",
    "read_segmentation",
    "render_markdown",
]

logger = logging.getLogger(__name__)

#: File name endings read as label maps, longest first so ``.nii.gz`` wins over ``.gz``.
SUPPORTED_SUFFIXES = (".nii.gz", ".nii", ".png")
_FORMAT = {".nii.gz": "nifti", ".nii": "nifti", ".png": "png"}
#: Tolerance (in the affine's units, mm) for "same geometry" of prediction and reference.
AFFINE_ATOL = 1e-3

EmptyPolicy = Literal["nan", "perfect"]


# --------------------------------------------------------------------------------------------------- file handling
def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for s in SUPPORTED_SUFFIXES:
        if name.endswith(s) and len(name) > len(s):
            return s
    return None


def case_id(path: PathLike, strip: str = "") -> str:
    """The case id of a label-map file: its name without the format suffix (and without ``strip`` at the end).

    Example:
        >>> case_id("ct_001.nii.gz"), case_id("ct_001_seg.nii.gz", strip="_seg"), case_id("f12.png")
        ('ct_001', 'ct_001', 'f12')
    """
    p = Path(path)
    s = _suffix(p)
    stem = p.name[: -len(s)] if s else p.stem
    if strip and stem.endswith(strip) and len(stem) > len(strip):
        stem = stem[: -len(strip)]
    return stem


def _index_folder(folder: Path, strip: str, what: str) -> dict[str, Path]:
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} folder {str(folder)!r} is not an existing directory")
    found: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.name.startswith(".") or not p.is_file() or _suffix(p) is None:
            continue
        cid = case_id(p, strip)
        if cid in found:
            raise ValueError(
                f"{what} folder {str(folder)!r} holds two files for case {cid!r}: {found[cid].name} and {p.name}; "
                "keep one"
            )
        found[cid] = p
    return found


def match_cases(
    pred_dir: PathLike, label_dir: PathLike, *, pred_suffix: str = ""
) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pair prediction and reference files by case id.

    Args:
        pred_dir: folder of predicted label maps (``*.nii.gz``, ``*.nii``, ``*.png``; not searched recursively).
        label_dir: folder of reference label maps.
        pred_suffix: text removed from the end of prediction case ids (e.g. ``"_seg"`` for ``ct_seg.nii.gz``).

    Returns:
        ``(pairs, missing, extra)``: ``pairs`` sorted ``(case, pred_path, label_path)``; ``missing``: case ids with
        a reference but no prediction; ``extra``: predictions without a reference.

    Raises:
        NotADirectoryError: a folder does not exist.
        ValueError: no reference file at all, or two files of one folder share a case id.
    """
    preds = _index_folder(Path(pred_dir), pred_suffix, "prediction")
    labels = _index_folder(Path(label_dir), "", "label")
    if not labels:
        raise ValueError(
            f"no label files found in {str(label_dir)!r} (looked for {', '.join(SUPPORTED_SUFFIXES)}); check --label"
        )
    pairs = [(c, preds[c], labels[c]) for c in sorted(labels) if c in preds]
    missing = sorted(c for c in labels if c not in preds)
    extra = sorted(c for c in preds if c not in labels)
    return pairs, missing, extra


@dataclass
class Segmentation:
    """A label map read from disk: the array, its voxel spacing, affine (NIfTI only) and format."""

    array: npt.NDArray[Any]
    spacing: tuple[float, ...] | None
    affine: npt.NDArray[np.float64] | None
    kind: str
    units: str


def read_segmentation(path: PathLike) -> Segmentation:
    """Read an integer label map from NIfTI (nibabel) or PNG (Pillow).

    NIfTI: the data array in voxel order, spacing from the header zooms (mm), the affine; a trailing singleton 4th
    axis is dropped. PNG: a 2D array of grey or palette indices (an RGB(A) image whose channels are equal is read
    as grey); spacing is unknown (``None``: pixel units).

    Raises:
        ValueError: unsupported name, unreadable file, more than 3 spatial axes, colour-coded PNG, or
            non-integer values. The message names the file.
    """
    p = Path(path)
    s = _suffix(p)
    if s is None:
        raise ValueError(f"{str(p)!r}: unsupported file type; use one of {', '.join(SUPPORTED_SUFFIXES)}")
    kind = _FORMAT[s]
    try:
        if kind == "nifti":
            import nibabel as nib

            img = nib.load(str(p))
            if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
                raise ValueError(f"not a NIfTI image ({type(img).__name__})")
            arr = np.asanyarray(img.dataobj)
            while arr.ndim > 3 and arr.shape[-1] == 1:
                arr = arr[..., 0]
            spacing = tuple(float(z) for z in img.header.get_zooms()[: arr.ndim])
            affine = np.asarray(img.affine, dtype=np.float64)
            unit = img.header.get_xyzt_units()[0]
            units = unit if unit in ("mm", "micron", "meter") else "mm"
        else:
            from PIL import Image

            with Image.open(p) as im:
                arr = np.asarray(im)
            spacing, affine, units = None, None, "pixel"
            if arr.ndim == 3:
                if not all(np.array_equal(arr[..., 0], arr[..., c]) for c in range(1, min(arr.shape[-1], 3))):
                    raise ValueError("colour-coded mask (RGB channels differ); convert colours to class indices first")
                arr = arr[..., 0]
    except ValueError as err:
        raise ValueError(f"{str(p)!r}: {err}") from err
    except Exception as err:
        raise ValueError(f"{str(p)!r}: cannot read as {kind} ({type(err).__name__}: {err})") from err
    if arr.ndim not in (2, 3):
        raise ValueError(f"{str(p)!r}: expected a 2D or 3D label map, got shape {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.array_equal(arr, np.round(arr)):
            raise ValueError(f"{str(p)!r}: label map holds non-integer values (dtype {arr.dtype}); expected classes")
        arr = arr.astype(np.int32)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{str(p)!r}: unsupported dtype {arr.dtype} for a label map")
    return Segmentation(arr, spacing, affine, kind, units)


def parse_label_map(spec: Mapping[Any, Any] | Sequence[str] | str | None) -> dict[int, int]:
    """Parse a value-to-class map: ``{255: 1}``, ``"255:1,128:2"`` or ``["255:1", "128:2"]``.

    Raises:
        ValueError: malformed entries or a source value given twice.
    """
    if spec is None:
        return {}
    if isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        parts = spec.split(",") if isinstance(spec, str) else [x for s in spec for x in str(s).split(",")]
        items = []
        for part in (x.strip() for x in parts):
            if not part:
                continue
            src, sep, dst = part.partition(":")
            if not sep:
                raise ValueError(f"label map entry {part!r} must look like SRC:DST (e.g. 255:1)")
            items.append((src.strip(), dst.strip()))
    out: dict[int, int] = {}
    for src, dst in items:
        try:
            s, d = int(src), int(dst)
        except (TypeError, ValueError) as err:
            raise ValueError(f"label map entry {src}:{dst} must map an integer to an integer") from err
        if s in out:
            raise ValueError(f"label map gives source value {s} twice")
        out[s] = d
    return out


def apply_label_map(array: npt.NDArray[Any], mapping: Mapping[int, int]) -> npt.NDArray[Any]:
    """Replace stored values by class indices (simultaneously: ``{1: 2, 2: 1}`` swaps); other values are kept."""
    if not mapping:
        return array
    out = array.astype(np.int32, copy=True)
    for src, dst in mapping.items():
        out[array == src] = dst
    return out


# --------------------------------------------------------------------------------------------------- one case
@dataclass
class CaseResult:
    """Per-case numbers: the confusion matrix and boundary distances of the foreground classes."""

    case: str
    matrix: npt.NDArray[np.int64]
    hd: npt.NDArray[np.float64]
    asd: npt.NDArray[np.float64]
    units: str
    shape: tuple[int, ...] = field(default=())


def _check_geometry(case: str, pred: Segmentation, label: Segmentation, check_affine: bool) -> None:
    if pred.kind != label.kind:
        raise ValueError(
            f"case {case!r}: prediction is {pred.kind} but label is {label.kind}; their axis orders differ, "
            "convert the predictions to the label format"
        )
    if pred.array.shape != label.array.shape:
        raise ValueError(
            f"case {case!r}: prediction shape {pred.array.shape} differs from label shape {label.array.shape}; "
            "predictions must be written in the label's geometry"
        )
    if check_affine and pred.affine is not None and label.affine is not None:
        diff = float(np.abs(pred.affine - label.affine).max())
        if diff > AFFINE_ATOL:
            raise ValueError(
                f"case {case!r}: prediction affine differs from label affine (max |difference| {diff:.4g} > "
                f"{AFFINE_ATOL}); resample the prediction into the label's geometry, or disable the affine check"
            )


def evaluate_case(
    case: str,
    pred_path: PathLike,
    label_path: PathLike,
    num_classes: int,
    *,
    ignore_index: int | None = None,
    label_map: Mapping[int, int] | None = None,
    spacing: Sequence[float] | None = None,
    distances: bool = True,
    percentile: float = 95.0,
    background_index: int = 0,
    check_affine: bool = True,
) -> CaseResult:
    """Read one prediction/reference pair, check its geometry and compute its matrix and boundary distances.

    Args: see :func:`evaluate_folders`.

    Raises:
        ValueError: unreadable files, geometry mismatch or out-of-range values; the message names the case.
    """
    pred = read_segmentation(pred_path)
    label = read_segmentation(label_path)
    _check_geometry(case, pred, label, check_affine)
    lmap = dict(label_map or {})
    p = apply_label_map(pred.array, lmap)
    t = apply_label_map(label.array, lmap)
    try:
        cm = confusion_matrix(p, t, num_classes, ignore_index=ignore_index)
    except ValueError as err:
        raise ValueError(f"case {case!r}: {err}") from err
    fg = [c for c in range(num_classes) if c != background_index]
    sp = tuple(spacing) if spacing is not None else label.spacing
    units = "given" if spacing is not None else label.units
    if distances:
        ignore_mask = (t == ignore_index) if ignore_index is not None else None
        if ignore_mask is not None and not ignore_mask.any():
            ignore_mask = None
        try:
            hd, asd = surface_metrics_per_class(p, t, fg, sp, percentile=percentile, ignore_mask=ignore_mask)
        except ValueError as err:
            raise ValueError(f"case {case!r}: {err}") from err
    else:
        hd = np.full(len(fg), np.nan)
        asd = np.full(len(fg), np.nan)
    return CaseResult(case, cm, hd, asd, units, tuple(t.shape))


# --------------------------------------------------------------------------------------------------- aggregation
class _Running:
    """Count, mean and std of the finite values of a stream, plus how many were NaN or inf (flat memory)."""

    __slots__ = ("n", "n_inf", "n_nan", "s", "s2")

    def __init__(self) -> None:
        self.n = self.n_nan = self.n_inf = 0
        self.s = self.s2 = 0.0

    def add(self, x: float) -> None:
        if math.isnan(x):
            self.n_nan += 1
        elif math.isinf(x):
            self.n_inf += 1
        else:
            self.n += 1
            self.s += x
            self.s2 += x * x

    def summary(self) -> dict[str, Any]:
        mean = self.s / self.n if self.n else None
        std = math.sqrt(max(self.s2 / self.n - (self.s / self.n) ** 2, 0.0)) if self.n else None
        return {"mean": mean, "std": std, "n": self.n, "n_nan": self.n_nan, "n_inf": self.n_inf}


def _fmt(x: float) -> str:
    return "nan" if math.isnan(x) else ("inf" if math.isinf(x) else f"{x:.6g}")


def output_paths(out: PathLike) -> tuple[Path, Path, Path]:
    """``(summary_json, cases_csv, markdown)`` for a summary path: ``x.json`` -> ``x.json, x_cases.csv, x.md``."""
    o = Path(out)
    stem = o.name[: -len(".json")] if o.name.lower().endswith(".json") else o.name
    return o, o.with_name(f"{stem}_cases.csv"), o.with_name(f"{stem}.md")


def _ordered_map(
    fn: Callable[..., CaseResult], jobs: Iterable[tuple[Any, ...]], kwargs: dict[str, Any], workers: int
) -> Iterator[CaseResult]:
    """``fn(*job, **kwargs)`` for each job, in order; with ``workers > 1`` in processes, at most 2x workers queued."""
    if workers <= 1:
        for job in jobs:
            yield fn(*job, **kwargs)
        return
    ctx = multiprocessing.get_context("spawn")  # fork after torch/OpenMP initialisation is unsafe
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pending: list[cf.Future[CaseResult]] = []
        it = iter(jobs)
        for job in it:
            pending.append(pool.submit(fn, *job, **kwargs))
            if len(pending) >= 2 * workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def evaluate_folders(
    pred_dir: PathLike,
    label_dir: PathLike,
    num_classes: int,
    *,
    out: PathLike | None = None,
    ignore_index: int | None = None,
    label_map: Mapping[int, int] | Sequence[str] | str | None = None,
    class_names: Sequence[str] | None = None,
    spacing: Sequence[float] | None = None,
    distances: bool = True,
    percentile: float = 95.0,
    both_empty: EmptyPolicy = "nan",
    allow_missing: bool = False,
    pred_suffix: str = "",
    check_affine: bool = True,
    background_index: int = 0,
    workers: int = 1,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate every reference label map in ``label_dir`` against its prediction in ``pred_dir``.

    Args:
        pred_dir: folder of predicted label maps (NIfTI or PNG, class indices).
        label_dir: folder of reference label maps, matched by case id (see :func:`match_cases`).
        num_classes: number of classes K (>= 2) after ``label_map``.
        out: summary JSON path; the CSV and Markdown go beside it (see :func:`output_paths`). Default
            ``pred_dir/summary.json``.
        ignore_index: reference value excluded from every count and from the boundaries (e.g. 255).
        label_map: stored value -> class index, applied to predictions AND references (``{255: 1}`` for 0/255
            masks); unmapped values are kept.
        class_names: K names used in the CSV columns and tables (default ``"0" .. "K-1"``).
        spacing: voxel size per axis for every case, overriding NIfTI headers (PNG has none: pixel units).
        distances: compute HD and ASD (the slow part on large 3D volumes).
        percentile: Hausdorff percentile (95 -> HD95).
        both_empty: per-case Dice/IoU (and distances) of a class absent from both prediction and reference:
            ``"nan"`` (undefined, skipped by means; default) or ``"perfect"`` (Dice = IoU = 1, distances 0).
            Dataset-level metrics always use NaN for a class absent from the whole dataset.
        allow_missing: evaluate the matched cases when some references have no prediction (listed in the
            summary) instead of failing.
        pred_suffix: removed from the end of prediction case ids (``"_seg"``).
        check_affine: fail if a NIfTI prediction's affine differs from its reference's.
        background_index: class left out of the foreground means and of the distances.
        workers: processes reading and scoring cases (1: in this process).
        progress: show a tqdm bar over cases.

    Returns:
        The summary dict written to ``out`` (see the module docstring).

    Raises:
        ValueError: missing predictions (unless ``allow_missing``), bad arguments, or a case that cannot be
            evaluated (the message names it).
    """
    k = check_num_classes(num_classes)
    ignore_index = _check_ignore_index(ignore_index, k)
    lmap = parse_label_map(label_map)
    names = [str(i) for i in range(k)] if class_names is None else [str(n) for n in class_names]
    if len(names) != k or len(set(names)) != k:
        raise ValueError(f"class_names must be {k} distinct names (num_classes={k}), got {list(names)}")
    if both_empty not in ("nan", "perfect"):
        raise ValueError(f"both_empty must be 'nan' or 'perfect', got {both_empty!r}")
    if not 0 <= background_index < k:
        raise ValueError(f"background_index must lie in [0, {k}), got {background_index!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    if spacing is not None:
        spacing = tuple(float(s) for s in spacing)
        if not spacing or not all(math.isfinite(s) and s > 0 for s in spacing):
            raise ValueError(f"spacing must be positive finite voxel sizes, got {spacing!r}")

    pairs, missing, extra = match_cases(pred_dir, label_dir, pred_suffix=pred_suffix)
    if extra:
        logger.warning("%d prediction(s) have no label and are skipped: %s", len(extra), ", ".join(extra[:10]))
    if missing:
        msg = f"{len(missing)} label(s) have no prediction in {str(pred_dir)!r}: {', '.join(missing[:10])}"
        msg += " ..." if len(missing) > 10 else ""
        if not allow_missing:
            raise ValueError(msg + "; predict them, or allow missing predictions to evaluate the rest")
        logger.warning(msg)
    if not pairs:
        raise ValueError(f"no prediction in {str(pred_dir)!r} matches a label in {str(label_dir)!r}")

    json_path, csv_path, md_path = output_paths(out if out is not None else Path(pred_dir) / "summary.json")
    fg = [c for c in range(k) if c != background_index]
    header = ["case", "num_pixels", "pixel_accuracy", "mean_iou_foreground", "mean_dice_foreground"]
    header += [f"{m}_{names[c]}" for m in ("iou", "dice") for c in range(k)]
    header += [f"{m}_{names[c]}" for m in ("hd95" if percentile == 95 else f"hd{percentile:g}", "asd") for c in fg]
    header += [f"{m}_{names[c]}" for m in ("label_voxels", "pred_voxels") for c in fg]

    total = np.zeros((k, k), dtype=np.int64)
    run: dict[str, _Running] = {h: _Running() for h in header[2:] if "voxels" not in h}
    units: set[str] = set()
    kwargs = {
        "num_classes": k,
        "ignore_index": ignore_index,
        "label_map": lmap,
        "spacing": spacing,
        "distances": distances,
        "percentile": percentile,
        "background_index": background_index,
        "check_affine": check_affine,
    }
    from tqdm.auto import tqdm

    with atomic_path(csv_path) as tmp_csv, tmp_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        results = _ordered_map(evaluate_case, ((c, p, t) for c, p, t in pairs), kwargs, workers)
        for res in tqdm(results, total=len(pairs), desc="evaluate", unit="case", disable=not progress):
            total += res.matrix
            units.add(res.units)
            iou, dice = M.iou_per_class(res.matrix), M.dice_per_class(res.matrix)
            hd, asd = res.hd.copy(), res.asd.copy()
            if both_empty == "perfect":
                iou[np.isnan(iou)] = 1.0
                dice[np.isnan(dice)] = 1.0
                if distances:
                    hd[np.isnan(hd)] = 0.0
                    asd[np.isnan(asd)] = 0.0
            values = [
                M.pixel_accuracy(res.matrix),
                M.nanmean(np.delete(iou, background_index)),
                M.nanmean(np.delete(dice, background_index)),
                *iou,
                *dice,
                *hd,
                *asd,
            ]
            for h, v in zip(header[2:], values, strict=False):
                run[h].add(float(v))
            ref, prd = res.matrix.sum(axis=1), res.matrix.sum(axis=0)
            row = [res.case, str(int(res.matrix.sum())), *(_fmt(float(v)) for v in values)]
            row += [str(int(ref[c])) for c in fg] + [str(int(prd[c])) for c in fg]
            writer.writerow(row)
            fh.flush()

    dataset = M.summarize_confusion(total, class_names=names, background_index=background_index)
    dataset["confusion_matrix"] = total.tolist()
    per_case = {h: r.summary() for h, r in run.items()}
    summary: dict[str, Any] = {
        "pred_dir": str(pred_dir),
        "label_dir": str(label_dir),
        "num_classes": k,
        "class_names": names,
        "background_index": background_index,
        "ignore_index": ignore_index,
        "label_map": {str(a): b for a, b in lmap.items()},
        "num_cases": len(pairs),
        "missing_predictions": missing,
        "extra_predictions": extra,
        "distances": distances,
        "hd_percentile": percentile,
        "distance_units": "/".join(sorted(units)) if distances else None,
        "both_empty": both_empty,
        "dataset": dataset,
        "per_case": per_case,
        "files": {"summary": str(json_path), "cases_csv": str(csv_path), "markdown": str(md_path)},
    }
    write_json(json_path, summary)
    write_text(md_path, render_markdown(summary))
    logger.info("evaluated %d case(s): mIoU %s -> %s", len(pairs), dataset["mean_iou"], json_path)
    return summary


# --------------------------------------------------------------------------------------------------- report
def _num(x: float | None, digits: int = 4) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _stat(s: Mapping[str, Any] | None, digits: int = 4) -> str:
    out = "n/a" if s is None or s["mean"] is None else f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"
    if s is not None and s.get("n_inf"):
        out += f" ({s['n_inf']} inf)"
    return out


def render_markdown(summary: Mapping[str, Any]) -> str:
    """A Markdown report of an :func:`evaluate_folders` summary: one row per class, then the means."""
    names: list[str] = summary["class_names"]
    ds = summary["dataset"]
    pc = summary["per_case"]
    hd_key = "hd95" if summary["hd_percentile"] == 95 else f"hd{summary['hd_percentile']:g}"
    units = summary["distance_units"] or "-"
    lines = [
        f"# Evaluation of `{summary['pred_dir']}` against `{summary['label_dir']}`",
        "",
        f"{summary['num_cases']} case(s), {summary['num_classes']} classes"
        + (f", ignore_index {summary['ignore_index']}" if summary["ignore_index"] is not None else "")
        + ". Dataset-level columns come from ONE confusion matrix accumulated over all cases (IJCV 2021 Eq. 1-3);"
        " per-case columns are mean ± std over the cases where the value is defined.",
        "",
        f"| class | IoU (dataset) | Dice (dataset) | IoU per case | Dice per case | "
        f"{hd_key.upper()} per case [{units}] | ASD per case [{units}] |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, n in enumerate(names):
        c = ds["per_class"][n]
        fg = i != summary["background_index"]
        hd = _stat(pc.get(f"{hd_key}_{n}"), 2) if fg and summary["distances"] else "-"
        asd = _stat(pc.get(f"asd_{n}"), 2) if fg and summary["distances"] else "-"
        lines.append(
            f"| {n} | {_num(c['iou'])} | {_num(c['dice'])} | {_stat(pc[f'iou_{n}'])} | {_stat(pc[f'dice_{n}'])} "
            f"| {hd} | {asd} |"
        )
    lines += [
        "",
        "| summary | value |",
        "|---|---|",
        f"| mIoU, all classes (dataset) | {_num(ds['mean_iou'])} |",
        f"| mIoU, foreground (dataset) | {_num(ds['mean_iou_foreground'])} |",
        f"| mean Dice, foreground (dataset) | {_num(ds['mean_dice_foreground'])} |",
        f"| pixel accuracy (dataset) | {_num(ds['pixel_accuracy'])} |",
        f"| foreground IoU per case | {_stat(pc['mean_iou_foreground'])} |",
        f"| foreground Dice per case | {_stat(pc['mean_dice_foreground'])} |",
    ]
    if summary["missing_predictions"] or summary["extra_predictions"]:
        lines += [
            "",
            f"Missing predictions: {len(summary['missing_predictions'])}; "
            f"predictions without label (skipped): {len(summary['extra_predictions'])}.",
        ]
    return "\n".join(lines) + "\n"
