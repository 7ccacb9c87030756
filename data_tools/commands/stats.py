"""``medseg-data stats``: per-class pixel counts of a datalist split + margin-calibration offsets -> stats.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import existing_file, progress_enabled
from medseg.data.label_map import label_map_arg
from medseg.imageio import DEFAULT_MAX_VOXELS, max_voxels_arg

HELP = "per-class pixel counts over a split + margin offsets -> stats.json"
DESCRIPTION = (
    "Stream the labels of one split of DATALIST (default: training), one case at a time, apply the training's "
    "label mapping (--label-map), leave out --ignore-index, count pixels per class (int64), compute the "
    "margin-calibration offsets rho_neg/rho_pos with tau and v (Yu et al., IJCV 2021, Algorithm 1) and write "
    "stats.json: num_classes, class_counts, num_pixels, tau, v, rho_neg, rho_pos, num_cases, split, datalist."
)


def _positive_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from err
    if not (x > 0 and x != float("inf")):
        raise argparse.ArgumentTypeError(f"{value!r} must be a positive finite number")
    return x


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("datalist", metavar="DATALIST", type=existing_file, help="datalist JSON")
    parser.add_argument("--num-classes", type=int, required=True, help="number of classes K (with background)")
    parser.add_argument("--tau", type=_positive_float, default=10.0, help="margin scale tau of Algorithm 1")
    parser.add_argument("--v", type=_positive_float, default=1.0, help="nu of Algorithm 1")
    parser.add_argument("--split", default="training", help="datalist list to count")
    parser.add_argument(
        "--label-map",
        type=label_map_arg,
        default=None,
        help="the training's label mapping: MapLabels preset (binary, binary255, endovis_parts, ...), "
        "'src:dst,...', a JSON object or a JSON file (default: stored values)",
    )
    parser.add_argument("--ignore-index", type=int, default=None, help="label value left out of the counts")
    parser.add_argument(
        "--max-voxels",
        type=max_voxels_arg,
        default=DEFAULT_MAX_VOXELS,
        help="largest voxel count a file header may claim before it is read (guards against crafted headers)",
    )
    parser.add_argument(
        "--empty",
        choices=("error", "zero"),
        default="error",
        help="a class without pixels: error, or zero offsets for it",
    )
    parser.add_argument("--out", type=Path, required=True, help="stats.json to write (atomically)")


def run(args: argparse.Namespace) -> int:
    from medseg.data.statistics import compute_stats, write_stats

    stats = compute_stats(
        args.datalist,
        args.num_classes,
        split=args.split,
        tau=args.tau,
        v=args.v,
        label_map=args.label_map,
        ignore_index=args.ignore_index,
        empty=args.empty,
        max_voxels=args.max_voxels,
        progress=progress_enabled(args),
    )
    out = write_stats(args.out, stats)
    total = stats["num_pixels"]
    fractions = ", ".join(f"{c / total:.4f}" for c in stats["class_counts"]) if total else "-"
    sys.stdout.write(f"{stats['num_cases']} cases, {total} pixels, class fractions [{fractions}] -> {out}\n")
    return 0
