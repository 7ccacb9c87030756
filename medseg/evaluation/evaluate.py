"""Evaluate a folder of predicted label maps against a folder of reference label maps.

The API behind ``medseg evaluate``: :class:`EvaluationSettings` (validated when built) and
:func:`evaluate_folders`. Cases are streamed one at a time: each pair is read, its confusion matrix is added to ONE
dataset accumulator, its per-case metrics are written as one CSV row (to a temporary file renamed at the end), and
only running sums are kept. Memory is therefore flat in the number of cases: one case's arrays, a ``(K, K)``
matrix and a few numbers per class.

Two kinds of figures, named for what they are:

- **pooled** (``summary["dataset"]``): from the one confusion matrix summed over every case, i.e. every voxel of
  the dataset counts once (the dataset-level IoU per class and mIoU of Yu et al., "Distribution-aware Margin
  Calibration for Semantic Segmentation in Images", IJCV 2021, Eq. (1)-(3)): ``pooled_iou``,
  ``pooled_iou_foreground``, ``pooled_dice``, ``pooled_dice_foreground`` (means over classes of the pooled
  per-class scores), ``pixel_accuracy`` and ``per_class``;
- **per case** (``summary["per_case"]``): each CSV column's mean ± std over the cases where it is defined, e.g.
  ``per_case["dice_foreground"]["mean"]``, the mean over cases of each case's foreground Dice. Large and small
  cases weigh the same here, so it differs from the pooled figure (0.704 against 0.761 in one COVID run).

Outputs (all written atomically with :mod:`medseg.io`), for ``out="results/summary.json"``:

- ``results/summary.json``: both kinds of figures, the matrix itself, and the run's settings;
- ``results/summary_cases.csv``: one row per case: pixel accuracy, the case's foreground IoU and Dice (mean over
  its foreground classes), IoU and Dice per class, HD95 and ASD per foreground class, reference and predicted
  voxel counts;
- ``results/summary.md``: a Markdown table of the same summary.

Distances are in mm when the reference carries a spacing (NIfTI/ITK headers, or ``spacing``), in pixels otherwise
(``summary["distance_units"]``). Files are paired as :func:`medseg.evaluation.cases.match_cases` describes; a
label without prediction is an error unless ``allow_missing``; a prediction without label is reported and
skipped. Both lists go into the summary.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "pred").mkdir(); (d / "label").mkdir()
    >>> lab = np.zeros((8, 8), np.uint8); lab[2:6, 2:6] = 255  # a 0/255 mask as often stored in PNG
    >>> Image.fromarray(lab).save(d / "label" / "a.png")
    >>> Image.fromarray((lab > 0).astype(np.uint8)).save(d / "pred" / "a_seg.png")
    >>> settings = EvaluationSettings(num_classes=2, label_map="binary255")
    >>> s = evaluate_folders(d / "pred", d / "label", settings, out=d / "summary.json")
    >>> s["dataset"]["pooled_iou"], s["num_cases"], s["distance_units"]
    (1.0, 1, 'pixel')
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import logging
import math
import multiprocessing
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.data.label_map import LabelMap, parse_label_map_text
from medseg.evaluation import metrics as M
from medseg.evaluation.cases import CaseResult, evaluate_case, match_cases
from medseg.evaluation.confusion import _check_ignore_index, check_num_classes
from medseg.io import atomic_path, write_json, write_text
from medseg.typing import PathLike

__all__ = ["EmptyPolicy", "EvaluationSettings", "evaluate_folders", "output_paths", "render_markdown"]

logger = logging.getLogger(__name__)

EmptyPolicy = Literal["nan", "perfect"]


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name}: got {value!r} ({type(value).__name__}); give a positive integer")
    return int(value)


@dataclass(frozen=True)
class EvaluationSettings:
    """What :func:`evaluate_folders` computes and how; validated (and normalised) when built.

    Args:
        num_classes: number of classes K (>= 2) after ``label_map``.
        ignore_index: reference value excluded from every count and from the boundaries (e.g. 255).
        label_map: stored value -> class index, applied to predictions AND references: a preset (``binary255``),
            ``"255:1,128:2"``, a list of ``"SRC:DST"`` words, a mapping or a
            :class:`~medseg.data.label_map.LabelMap`. Values it does not name are kept (so ``255:1`` works on
            0/255 masks); values that are then outside ``0..K-1`` are an error.
        class_names: K names used in the CSV columns and tables (default ``"0" .. "K-1"``).
        spacing: voxel size per axis in mm for every case, overriding the headers (rasters have none: pixels).
        distances: compute HD and ASD (the slow part on large 3D volumes).
        percentile: Hausdorff percentile in [0, 100] (95 -> HD95).
        both_empty: per-case Dice/IoU (and distances) of a class absent from both prediction and reference:
            ``"nan"`` (undefined, skipped by means; default) or ``"perfect"`` (Dice = IoU = 1, distances 0).
            Pooled metrics always use NaN for a class absent from the whole dataset.
        allow_missing: evaluate the matched cases when some references have no prediction (listed in the
            summary) instead of failing.
        pred_suffix: removed from the end of prediction names; ``None`` (default) recognises ``medseg predict``'s
            ``_seg``; ``""`` removes nothing (see :func:`~medseg.evaluation.cases.match_cases`).
        check_affine: refuse volume pairs whose geometry differs beyond axis order and direction (which are
            reoriented); ``False`` compares shapes only.
        background_index: class left out of the foreground means and of the distances.
        workers: processes reading and scoring cases (1: in this process).
        max_voxels: largest voxel count a file header may claim (default
            :data:`medseg.imageio.DEFAULT_MAX_VOXELS`).

    Raises:
        ValueError: a value outside what its parameter allows; the message names the parameter and the value.

    Example:
        >>> EvaluationSettings(num_classes=3, label_map=["255:1", "128:2"]).mapper.table
        {255: 1, 128: 2}
    """

    num_classes: int
    ignore_index: int | None = None
    label_map: Any = None
    class_names: Sequence[str] | None = None
    spacing: Sequence[float] | None = None
    distances: bool = True
    percentile: float = 95.0
    both_empty: EmptyPolicy = "nan"
    allow_missing: bool = False
    pred_suffix: str | None = None
    check_affine: bool = True
    background_index: int = 0
    workers: int = 1
    max_voxels: int | None = None
    _mapper: LabelMap | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        k = check_num_classes(self.num_classes)
        ignore = _check_ignore_index(self.ignore_index, k)
        names = [str(i) for i in range(k)] if self.class_names is None else [str(n) for n in self.class_names]
        if len(names) != k or len(set(names)) != k:
            raise ValueError(f"class_names: got {names}; give {k} distinct names (num_classes={k})")
        spacing = None
        if self.spacing is not None:
            spacing = tuple(float(s) for s in self.spacing)
            if not spacing or not all(math.isfinite(s) and s > 0 for s in spacing):
                raise ValueError(f"spacing: got {self.spacing!r}; give positive finite voxel sizes in mm")
        if not 0.0 <= float(self.percentile) <= 100.0:
            raise ValueError(f"percentile: got {self.percentile!r}; give a value in [0, 100] (95 for HD95)")
        if self.both_empty not in ("nan", "perfect"):
            raise ValueError(f"both_empty: got {self.both_empty!r}; allowed: 'nan' or 'perfect'")
        if isinstance(self.background_index, bool) or not 0 <= self.background_index < k:
            raise ValueError(f"background_index: got {self.background_index!r}; give a class in [0, {k})")
        if self.pred_suffix is not None and not isinstance(self.pred_suffix, str):
            raise ValueError(f"pred_suffix: got {self.pred_suffix!r}; give a string or None (recognise '_seg')")
        set_ = object.__setattr__  # frozen: normalised values are stored once, here
        set_(self, "num_classes", k)
        set_(self, "ignore_index", ignore)
        set_(self, "class_names", tuple(names))
        set_(self, "spacing", spacing)
        set_(self, "percentile", float(self.percentile))
        set_(self, "workers", _positive_int("workers", self.workers))
        set_(self, "max_voxels", None if self.max_voxels is None else _positive_int("max_voxels", self.max_voxels))
        set_(self, "_mapper", self._build_mapper(ignore))

    def _build_mapper(self, ignore: int | None) -> LabelMap | None:
        spec = self.label_map
        if spec is None or isinstance(spec, LabelMap):
            return spec
        try:
            if not isinstance(spec, str | Mapping):
                spec = parse_label_map_text([str(s) for s in spec])
            return LabelMap(spec, ignore_index=ignore, keep_unmapped=True)
        except (TypeError, ValueError) as err:
            raise ValueError(f"label_map: {err}") from err

    @property
    def mapper(self) -> LabelMap | None:
        """The label mapping applied to predictions and references (``None``: values used as stored)."""
        return self._mapper

    @property
    def names(self) -> tuple[str, ...]:
        """The K class names."""
        return tuple(self.class_names or ())

    @property
    def foreground(self) -> list[int]:
        """Every class but the background, in order."""
        return [c for c in range(self.num_classes) if c != self.background_index]

    @property
    def hd_key(self) -> str:
        """Column prefix of the Hausdorff distance: ``hd95`` (or ``hd<percentile>``)."""
        return "hd95" if self.percentile == 95 else f"hd{self.percentile:g}"

    def columns(self) -> list[str]:
        """The per-case CSV header."""
        names, fg = self.names, self.foreground
        header = ["case", "num_pixels", "pixel_accuracy", "iou_foreground", "dice_foreground"]
        header += [f"{m}_{names[c]}" for m in ("iou", "dice") for c in range(self.num_classes)]
        header += [f"{m}_{names[c]}" for m in (self.hd_key, "asd") for c in fg]
        header += [f"{m}_{names[c]}" for m in ("label_voxels", "pred_voxels") for c in fg]
        return header

    def label_map_json(self) -> Any:
        """The label mapping as JSON (a preset name, a table, or ``None``)."""
        m = self._mapper
        if m is None:
            return None
        return m.name if m.name != "custom" else {str(a): b for a, b in (m.table or {}).items()}


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


def _scored_cases(pairs: Iterable[tuple[str, Path, Path]], settings: EvaluationSettings) -> Iterator[CaseResult]:
    """:func:`evaluate_case` for each pair, in order; with several workers in processes, at most 2x queued."""
    if settings.workers <= 1:
        for case, pred, label in pairs:
            yield evaluate_case(case, pred, label, settings)
        return
    ctx = multiprocessing.get_context("spawn")  # fork after torch/OpenMP initialisation is unsafe
    with cf.ProcessPoolExecutor(max_workers=settings.workers, mp_context=ctx) as pool:
        pending: list[cf.Future[CaseResult]] = []
        for case, pred, label in pairs:
            pending.append(pool.submit(evaluate_case, case, pred, label, settings))
            if len(pending) >= 2 * settings.workers:
                yield pending.pop(0).result()
        for fut in pending:
            yield fut.result()


def _case_values(res: CaseResult, settings: EvaluationSettings) -> list[float]:
    """The per-case CSV values from ``pixel_accuracy`` to the last ASD, in :meth:`EvaluationSettings.columns` order."""
    bg = settings.background_index
    iou, dice = M.iou_per_class(res.matrix), M.dice_per_class(res.matrix)
    hd, asd = res.hd.copy(), res.asd.copy()
    if settings.both_empty == "perfect":
        iou[np.isnan(iou)] = 1.0
        dice[np.isnan(dice)] = 1.0
        if settings.distances:
            hd[np.isnan(hd)] = 0.0
            asd[np.isnan(asd)] = 0.0
    fg_iou, fg_dice = M.nanmean(np.delete(iou, bg)), M.nanmean(np.delete(dice, bg))
    return [float(v) for v in (M.pixel_accuracy(res.matrix), fg_iou, fg_dice, *iou, *dice, *hd, *asd)]


def _pooled(total: np.ndarray, settings: EvaluationSettings) -> dict[str, Any]:
    """The pooled figures of the summed confusion matrix, named as such."""
    d = M.summarize_confusion(total, class_names=list(settings.names), background_index=settings.background_index)
    return {
        "pixel_accuracy": d["pixel_accuracy"],
        "pooled_iou": d["mean_iou"],
        "pooled_iou_foreground": d["mean_iou_foreground"],
        "pooled_dice": d["mean_dice"],
        "pooled_dice_foreground": d["mean_dice_foreground"],
        "num_pixels": d["num_pixels"],
        "per_class": d["per_class"],
        "confusion_matrix": total.tolist(),
    }


def _check_missing(missing: list[str], pred_dir: PathLike, settings: EvaluationSettings) -> None:
    if not missing:
        return
    msg = f"{len(missing)} label(s) have no prediction in {str(pred_dir)!r}: {', '.join(missing[:10])}"
    msg += " ..." if len(missing) > 10 else ""
    if not settings.allow_missing:
        raise ValueError(
            f"{msg}; predict them, give --pred-suffix TEXT when prediction names carry another suffix than _seg, "
            "or --allow-missing to evaluate the rest"
        )
    logger.warning(msg)


def evaluate_folders(
    pred_dir: PathLike,
    label_dir: PathLike,
    settings: EvaluationSettings,
    *,
    out: PathLike | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Evaluate every reference label map in ``label_dir`` against its prediction in ``pred_dir``.

    Args:
        pred_dir: folder of predicted label maps (NIfTI, MHA/NRRD or PNG, class indices).
        label_dir: folder of reference label maps, paired by case id (see
            :func:`~medseg.evaluation.cases.match_cases`).
        settings: what to compute (:class:`EvaluationSettings`).
        out: summary JSON path; the CSV and Markdown go beside it (see :func:`output_paths`). Default
            ``pred_dir/summary.json``.
        progress: show a tqdm bar over cases.

    Returns:
        The summary dict written to ``out`` (see the module docstring).

    Raises:
        TypeError: ``settings`` is not an :class:`EvaluationSettings`.
        ValueError: missing predictions (unless ``allow_missing``), no matching case, or a case that cannot be
            evaluated (the message names it).
    """
    from tqdm.auto import tqdm

    if not isinstance(settings, EvaluationSettings):
        raise TypeError(f"settings: got {type(settings).__name__}; build an EvaluationSettings(num_classes=...)")
    pairs, missing, extra = match_cases(pred_dir, label_dir, pred_suffix=settings.pred_suffix)
    if extra:
        logger.warning("%d prediction(s) have no label and are skipped: %s", len(extra), ", ".join(extra[:10]))
    _check_missing(missing, pred_dir, settings)
    json_path, csv_path, md_path = output_paths(out if out is not None else Path(pred_dir) / "summary.json")
    header = settings.columns()
    k, fg = settings.num_classes, settings.foreground
    total = np.zeros((k, k), dtype=np.int64)
    run = {h: _Running() for h in header[2:] if "voxels" not in h}
    units: set[str] = set()
    with atomic_path(csv_path) as tmp_csv, tmp_csv.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        results = _scored_cases(pairs, settings)
        for res in tqdm(results, total=len(pairs), desc="evaluate", unit="case", disable=not progress):
            total += res.matrix
            units.add(res.units)
            values = _case_values(res, settings)
            for h, v in zip(header[2:], values, strict=False):
                run[h].add(v)
            ref, prd = res.matrix.sum(axis=1), res.matrix.sum(axis=0)
            row = [res.case, str(int(res.matrix.sum())), *(_fmt(v) for v in values)]
            writer.writerow(row + [str(int(ref[c])) for c in fg] + [str(int(prd[c])) for c in fg])
            fh.flush()
    summary: dict[str, Any] = {
        "pred_dir": str(pred_dir),
        "label_dir": str(label_dir),
        "num_classes": k,
        "class_names": list(settings.names),
        "background_index": settings.background_index,
        "ignore_index": settings.ignore_index,
        "label_map": settings.label_map_json(),
        "num_cases": len(pairs),
        "missing_predictions": missing,
        "extra_predictions": extra,
        "distances": settings.distances,
        "hd_percentile": settings.percentile,
        "distance_units": "/".join(sorted(units)) if settings.distances else None,
        "both_empty": settings.both_empty,
        "dataset": _pooled(total, settings),
        "per_case": {h: r.summary() for h, r in run.items()},
        "files": {"summary": str(json_path), "cases_csv": str(csv_path), "markdown": str(md_path)},
    }
    write_json(json_path, summary)
    write_text(md_path, render_markdown(summary))
    logger.info("evaluated %d case(s): pooled mIoU %s -> %s", len(pairs), summary["dataset"]["pooled_iou"], json_path)
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
    """A Markdown report of an :func:`evaluate_folders` summary: one row per class, then the headline figures."""
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
        + ". *Pooled* columns come from ONE confusion matrix summed over all cases (Yu et al., IJCV 2021, "
        "Eq. (1)-(3)): every voxel counts once. *Per case* columns are mean ± std over the cases where the value "
        f"is defined: every case counts once. Distances in {units}.",
        "",
        f"| class | IoU (pooled) | Dice (pooled) | IoU per case | Dice per case | "
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
        "| figure | value |",
        "|---|---|",
        f"| mIoU, all classes, pooled (`pooled_iou`) | {_num(ds['pooled_iou'])} |",
        f"| mIoU, foreground, pooled (`pooled_iou_foreground`) | {_num(ds['pooled_iou_foreground'])} |",
        f"| Dice, foreground, pooled (`pooled_dice_foreground`) | {_num(ds['pooled_dice_foreground'])} |",
        f"| IoU, foreground, mean over cases (`per_case.iou_foreground`) | {_stat(pc['iou_foreground'])} |",
        f"| Dice, foreground, mean over cases (`per_case.dice_foreground`) | {_stat(pc['dice_foreground'])} |",
        f"| pixel accuracy, pooled | {_num(ds['pixel_accuracy'])} |",
    ]
    if summary["missing_predictions"] or summary["extra_predictions"]:
        lines += [
            "",
            f"Missing predictions: {len(summary['missing_predictions'])}; "
            f"predictions without label (skipped): {len(summary['extra_predictions'])}.",
        ]
    return "\n".join(lines) + "\n"
