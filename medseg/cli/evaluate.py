"""``medseg evaluate``: score a folder of predicted label maps against reference label maps.

A thin wrapper over :func:`medseg.evaluation.evaluate.evaluate_folders`; heavy imports happen in :func:`run`, and
scoring needs NumPy, nibabel and (for distances) SciPy only: torch and MONAI are never imported.
"""

from __future__ import annotations

import argparse
import sys

from medseg.console import existing_dir
from medseg.data.label_map import label_map_arg
from medseg.imageio import DEFAULT_MAX_VOXELS, max_voxels_arg

HELP = "score predicted label maps against references: dataset IoU/mIoU, per-case Dice, HD95, ASD"
DESCRIPTION = (
    "Match predictions to references by case id (file name without .nii.gz/.nii/.png; the _seg that 'medseg "
    "predict' appends is recognised, its _overlay/_prob files are skipped), accumulate ONE confusion matrix over "
    "all cases for the pooled IoU and Dice per class and their means (with and without background), and score each "
    "case (IoU, Dice, pixel accuracy, HD95 and average surface distance in mm where the reference header gives a "
    "spacing, in pixels otherwise). Volumes whose affines differ only by axis order or direction (dcm2niix, "
    "TotalSegmentator) are compared after reorienting. Writes SUMMARY.json, SUMMARY_cases.csv and SUMMARY.md "
    "(see --out). A label without prediction is an error unless --allow-missing; predictions without label are "
    "reported and skipped."
)


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from err
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 1")
    return n


def _num_classes(value: str) -> int:
    n = _positive_int(value)
    if n < 2:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 2 (background plus at least one class)")
    return n


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from err
    if not x > 0 or x == float("inf"):
        raise argparse.ArgumentTypeError(f"{value!r} must be a positive finite number")
    return x


def _percentile(value: str) -> float:
    try:
        x = float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from err
    if not 0 <= x <= 100:
        raise argparse.ArgumentTypeError(f"{value!r} must lie in [0, 100]")
    return x


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", type=existing_dir, required=True, metavar="DIR", help="predicted label maps")
    parser.add_argument("--label", type=existing_dir, required=True, metavar="DIR", help="reference label maps")
    parser.add_argument(
        "--num-classes", type=_num_classes, required=True, metavar="K", help="number of classes incl. background"
    )
    parser.add_argument(
        "--out",
        metavar="FILE",
        default=None,
        help="summary JSON path; the CSV (FILE stem + _cases.csv) and Markdown (.md) go beside it "
        "(default: PRED/summary.json)",
    )
    parser.add_argument(
        "--ignore-index", type=int, default=None, metavar="V", help="reference value left out of all metrics"
    )
    parser.add_argument(
        "--label-map",
        nargs="+",
        type=label_map_arg,
        default=None,
        metavar="MAP",
        help="map stored values to class indices in predictions and labels: a preset (binary255, endovis_parts, "
        "...), SRC:DST pairs (255:1 or 255:1,128:2), a JSON object or file; values it does not name are kept",
    )
    parser.add_argument("--class-names", nargs="+", default=None, metavar="NAME", help="K class names for tables")
    parser.add_argument(
        "--spacing",
        nargs="+",
        type=_positive_float,
        default=None,
        metavar="S",
        help="voxel size in mm per axis for every case, overriding the headers (PNG without it: pixel units)",
    )
    parser.add_argument("--no-distances", action="store_true", help="skip HD95 and ASD (faster on large 3D)")
    parser.add_argument("--percentile", type=_percentile, default=95.0, help="Hausdorff distance percentile")
    parser.add_argument(
        "--both-empty",
        choices=("nan", "perfect"),
        default="nan",
        help="per-case score of a class absent from prediction and label: undefined (skipped) or Dice 1 / dist 0",
    )
    parser.add_argument("--allow-missing", action="store_true", help="evaluate matched cases if some are missing")
    parser.add_argument(
        "--pred-suffix",
        default=None,
        metavar="TEXT",
        help="strip TEXT from the end of prediction names; None: recognise medseg predict's _seg automatically",
    )
    parser.add_argument(
        "--no-affine-check",
        action="store_true",
        help="compare volume shapes only, not their affines (no reorientation either)",
    )
    parser.add_argument("--workers", type=_positive_int, default=1, help="processes scoring cases in parallel")
    parser.add_argument(
        "--max-voxels",
        type=max_voxels_arg,
        default=DEFAULT_MAX_VOXELS,
        help="largest voxel count a file header may claim before it is read (guards against crafted headers)",
    )


def _label_map(values: list[str | dict[int, int]] | None) -> str | dict[int, int] | None:
    """One mapping from the --label-map words: a single preset/table/JSON, or several SRC:DST words joined."""
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    if not all(isinstance(v, str) and ":" in v for v in values):
        raise ValueError(f"--label-map: give one preset, JSON object or file, or several SRC:DST pairs; got {values}")
    return ",".join(str(v) for v in values)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from medseg.console import progress_enabled
    from medseg.evaluation.evaluate import EvaluationSettings, evaluate_folders, render_markdown

    out = Path(args.out) if args.out is not None else None
    if out is not None and out.exists() and out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a directory; give a file name such as {str(out / 'summary.json')!r}")
    settings = EvaluationSettings(
        num_classes=args.num_classes,
        ignore_index=args.ignore_index,
        label_map=_label_map(args.label_map),
        class_names=args.class_names,
        spacing=args.spacing,
        distances=not args.no_distances,
        percentile=args.percentile,
        both_empty=args.both_empty,
        allow_missing=args.allow_missing,
        pred_suffix=args.pred_suffix,
        check_affine=not args.no_affine_check,
        workers=args.workers,
        max_voxels=args.max_voxels,
    )
    summary = evaluate_folders(args.pred, args.label, settings, out=out, progress=progress_enabled(args))
    for what, key in (("missing prediction(s)", "missing_predictions"), ("extra prediction(s)", "extra_predictions")):
        if summary[key]:
            sys.stderr.write(f"medseg evaluate: {len(summary[key])} {what}: {', '.join(summary[key][:20])}\n")
    sys.stdout.write(render_markdown(summary))
    files = summary["files"]
    sys.stdout.write(f"\nwrote {files['summary']}, {files['cases_csv']}, {files['markdown']}\n")
    return 0
