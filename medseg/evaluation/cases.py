"""One evaluation case: pairing prediction and reference files, checking their geometry, scoring the pair.

Pairing (:func:`match_cases`). A case id is a file name without its format suffix. ``medseg predict`` names its
masks ``NAME_seg.nii.gz`` / ``NAME_seg.png`` beside ``NAME_overlay.png`` and ``NAME_prob.*``, while references are
usually called ``NAME.nii.gz``; so by default (``pred_suffix=None``) a prediction ``NAME_seg`` is paired with the
reference ``NAME`` when no reference is called ``NAME_seg``, and ``*_overlay.*`` / ``*_prob.*`` files are never
taken for predictions (unless a reference carries exactly that name). An explicit ``pred_suffix`` (``""`` for
none) strips exactly that text instead.

Geometry (:func:`align_prediction`). Rasters are compared by shape. Volumes are compared by affine: two tools
writing the same series often store its axes in another order or direction (dcm2niix and TotalSegmentator versus
a reader that keeps the DICOM slice order), so when the affines differ the prediction is first reoriented to the
reference's axis order (:func:`medseg.imageio.reorient_like`, a voxel permutation, no resampling); only a
difference that survives that (spacing, origin, shape, oblique directions) is refused, and the message says which.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); (d / "p").mkdir(); (d / "l").mkdir()
    >>> for name in ("p/ct1_seg.png", "p/ct1_overlay.png", "l/ct1.png"):
    ...     _ = (d / name).write_bytes(b"")
    >>> pairs, missing, extra = match_cases(d / "p", d / "l")
    >>> [(case, p.name, t.name) for case, p, t in pairs], missing, extra
    ([('ct1', 'ct1_seg.png', 'ct1.png')], [], [])
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from medseg.evaluation.confusion import confusion_matrix
from medseg.evaluation.surface import surface_metrics_per_class
from medseg.imageio import LoadedImage, file_stem, image_suffix, read_label, reorient_like
from medseg.typing import PathLike

if TYPE_CHECKING:
    from medseg.evaluation.evaluate import EvaluationSettings

__all__ = [
    "AFFINE_ATOL",
    "AUXILIARY_SUFFIXES",
    "LABEL_SUFFIXES",
    "PREDICTION_SUFFIX",
    "CaseResult",
    "align_prediction",
    "case_id",
    "evaluate_case",
    "match_cases",
]

logger = logging.getLogger(__name__)

#: File name endings read as label maps (longest first so ``.nii.gz`` wins over ``.gz``).
LABEL_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".png")
#: What ``medseg predict`` appends to a mask's case name.
PREDICTION_SUFFIX = "_seg"
#: Stem endings of the other files ``medseg predict`` writes beside its masks (never predictions).
AUXILIARY_SUFFIXES: tuple[str, ...] = ("_overlay", "_prob")
#: Tolerance (in the affine's units, mm) for "same geometry" of prediction and reference.
AFFINE_ATOL = 1e-3

_FLAGS = "give --pred-suffix TEXT when prediction names carry another suffix, or --allow-missing to evaluate the rest"


def _label_suffix(path: Path) -> str | None:
    suffix = image_suffix(path)
    return suffix if suffix in LABEL_SUFFIXES else None


def case_id(path: PathLike, strip: str = "") -> str:
    """The case id of a label-map file: its name without the format suffix (and without ``strip`` at the end).

    Example:
        >>> case_id("ct_001.nii.gz"), case_id("ct_001_seg.nii.gz", strip="_seg"), case_id("f12.png")
        ('ct_001', 'ct_001', 'f12')
    """
    stem = file_stem(path)
    if strip and stem.endswith(strip) and len(stem) > len(strip):
        stem = stem[: -len(strip)]
    return stem


def _files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise NotADirectoryError(f"{what} folder {str(folder)!r} is not an existing directory")
    return [p for p in sorted(folder.iterdir()) if not p.name.startswith(".") and p.is_file() and _label_suffix(p)]


def _prediction_id(stem: str, labels: dict[str, Path], pred_suffix: str | None) -> str | None:
    """The case a prediction stem belongs to, or ``None`` for an auxiliary file (overlay, probabilities)."""
    if stem in labels:
        return stem
    if stem.endswith(AUXILIARY_SUFFIXES):
        return None
    if pred_suffix is not None:
        return case_id(stem, pred_suffix)
    return case_id(stem, PREDICTION_SUFFIX)


def match_cases(
    pred_dir: PathLike, label_dir: PathLike, *, pred_suffix: str | None = None
) -> tuple[list[tuple[str, Path, Path]], list[str], list[str]]:
    """Pair prediction and reference files by case id (see the module docstring for the rules).

    Args:
        pred_dir: folder of predicted label maps (NIfTI, MHA/NRRD or PNG; not searched recursively).
        label_dir: folder of reference label maps.
        pred_suffix: text removed from the end of prediction names; ``None`` (default) recognises ``medseg
            predict``'s ``_seg`` whenever the reference has the bare name; ``""`` strips nothing.

    Returns:
        ``(pairs, missing, extra)``: ``pairs`` sorted ``(case, pred_path, label_path)``; ``missing``: case ids with
        a reference but no prediction; ``extra``: predictions without a reference.

    Raises:
        NotADirectoryError: a folder does not exist.
        ValueError: no reference file at all, or two files of one folder share a case id (both named).
    """
    label_files = _files(Path(label_dir), "label")
    if not label_files:
        raise ValueError(
            f"no label files found in {str(label_dir)!r} (looked for {', '.join(LABEL_SUFFIXES)}); check --label"
        )
    labels: dict[str, Path] = {}
    for p in label_files:
        cid = case_id(p)
        if cid in labels:
            raise ValueError(
                f"label folder {str(label_dir)!r} holds two files for case {cid!r}: {labels[cid].name} and "
                f"{p.name}; keep one"
            )
        labels[cid] = p
    preds: dict[str, Path] = {}
    for p in _files(Path(pred_dir), "prediction"):
        pred_id = _prediction_id(file_stem(p), labels, pred_suffix)
        if pred_id is None:
            logger.debug("%s: not a prediction (overlay or probabilities), skipped", p)
            continue
        if pred_id in preds:
            raise ValueError(
                f"prediction folder {str(pred_dir)!r} holds two files for case {pred_id!r}: {preds[pred_id].name} "
                f"and {p.name}; keep one, or give --pred-suffix to say which names are predictions"
            )
        preds[pred_id] = p
    pairs = [(c, preds[c], labels[c]) for c in sorted(labels) if c in preds]
    missing = sorted(c for c in labels if c not in preds)
    extra = sorted(c for c in preds if c not in labels)
    if not pairs:
        seen = ", ".join(p.name for p in list(preds.values())[:3]) or "none"
        raise ValueError(
            f"no prediction in {str(pred_dir)!r} matches a label in {str(label_dir)!r} (predictions: {seen}; "
            f"labels: {', '.join(p.name for p in label_files[:3])}); {_FLAGS}"
        )
    return pairs, missing, extra


# --------------------------------------------------------------------------------------------------- geometry
def _axcodes(affine: npt.ArrayLike) -> str:
    from nibabel.orientations import aff2axcodes

    return "".join(str(c) for c in aff2axcodes(np.asarray(affine)))


def _difference(pred_affine: npt.NDArray[np.float64], label_affine: npt.NDArray[np.float64]) -> str:
    sp_p = np.linalg.norm(pred_affine[:3, :3], axis=0)
    sp_l = np.linalg.norm(label_affine[:3, :3], axis=0)
    what = []
    if not np.allclose(sp_p, sp_l, rtol=0, atol=AFFINE_ATOL):
        what.append(f"spacing {np.round(sp_p, 4).tolist()} vs {np.round(sp_l, 4).tolist()}")
    if not np.allclose(pred_affine[:3, 3], label_affine[:3, 3], rtol=0, atol=AFFINE_ATOL):
        what.append(f"origin {np.round(pred_affine[:3, 3], 3).tolist()} vs {np.round(label_affine[:3, 3], 3).tolist()}")
    if not what:
        what.append("direction cosines differ (oblique)")
    return "; ".join(what)


def align_prediction(case: str, pred: LoadedImage, label: LoadedImage, check_affine: bool = True) -> np.ndarray:
    """The prediction's array in the reference's voxel order, or an error naming the case and the mismatch.

    Args:
        case: the case id (for messages).
        pred: the prediction as read by :func:`medseg.imageio.read_label`.
        label: the reference.
        check_affine: compare volume affines (reorienting when they differ by axis permutations and flips);
            ``False`` compares shapes only.

    Raises:
        ValueError: a raster against a volume, different shapes, or (``check_affine``) affines that differ by
            more than axis order and direction; the message names the case and what differs.
    """
    if (pred.affine is None) != (label.affine is None):
        raise ValueError(
            f"case {case!r}: prediction is {pred.kind} but label is {label.kind}; their axis orders differ, "
            "convert the predictions to the label format"
        )
    arr = pred.array
    if check_affine and pred.affine is not None and label.affine is not None:
        same = np.allclose(pred.affine, label.affine, rtol=0, atol=AFFINE_ATOL)
        if same and arr.shape == label.array.shape:
            return arr
        moved, affine = reorient_like(arr, pred.affine, label.affine)
        if moved.shape == label.array.shape and np.allclose(affine, label.affine, rtol=0, atol=AFFINE_ATOL):
            logger.info(
                "case %s: prediction stored as %s, label as %s; compared after reorienting (same voxels)",
                case,
                _axcodes(pred.affine),
                _axcodes(label.affine),
            )
            return moved
        reoriented = "" if moved is arr else f" after reorienting {_axcodes(pred.affine)} to {_axcodes(label.affine)}"
        if moved.shape != label.array.shape:
            detail = f"shape {moved.shape} vs {label.array.shape}"
        else:
            detail = _difference(affine, label.affine)
        raise ValueError(
            f"case {case!r}: prediction geometry differs from the label's{reoriented}: {detail} (tolerance "
            f"{AFFINE_ATOL} mm); resample the prediction into the label's geometry, or pass --no-affine-check if "
            "the headers are known to be wrong"
        )
    if arr.shape != label.array.shape:
        raise ValueError(
            f"case {case!r}: prediction shape {arr.shape} differs from label shape {label.array.shape}; "
            "predictions must be written in the label's geometry"
        )
    return arr


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


def evaluate_case(case: str, pred_path: PathLike, label_path: PathLike, settings: EvaluationSettings) -> CaseResult:
    """Read one prediction/reference pair, check its geometry and compute its matrix and boundary distances.

    Args:
        case: the case id.
        pred_path: the predicted label map.
        label_path: the reference label map.
        settings: the evaluation's :class:`~medseg.evaluation.evaluate.EvaluationSettings`.

    Raises:
        ValueError: unreadable files, geometry mismatch or out-of-range values; the message names the case.
    """
    pred = read_label(pred_path, max_voxels=settings.max_voxels)
    label = read_label(label_path, max_voxels=settings.max_voxels)
    p = align_prediction(case, pred, label, settings.check_affine)
    t = label.array
    mapper = settings.mapper
    try:
        if mapper is not None:
            p, t = mapper(p), mapper(t)
        cm = confusion_matrix(p, t, settings.num_classes, ignore_index=settings.ignore_index)
    except ValueError as err:
        raise ValueError(f"case {case!r}: {err}") from err
    fg = settings.foreground
    if settings.spacing is not None:
        spacing: Sequence[float] | None = settings.spacing
        units = "mm"
    else:
        spacing, units = label.spacing, label.units
    if settings.distances:
        ignore_mask = (t == settings.ignore_index) if settings.ignore_index is not None else None
        if ignore_mask is not None and not ignore_mask.any():
            ignore_mask = None
        try:
            hd, asd = surface_metrics_per_class(
                p, t, fg, spacing, percentile=settings.percentile, ignore_mask=ignore_mask
            )
        except ValueError as err:
            raise ValueError(f"case {case!r}: {err}") from err
    else:
        hd = np.full(len(fg), np.nan)
        asd = np.full(len(fg), np.nan)
    return CaseResult(case, cm, hd, asd, units, tuple(t.shape))
