"""``medseg-data check``: geometry, label range, NaN and empty-image report for a datalist."""

from __future__ import annotations

import argparse
import sys

from medseg.console import CliError, existing_file, progress_enabled
from medseg.data.label_map import label_map_arg
from medseg.imageio import DEFAULT_MAX_VOXELS, max_voxels_arg

HELP = "report image/label geometry mismatches, bad label values, NaN/inf, empty or unreadable files"
DESCRIPTION = (
    "Read every image and label of DATALIST once and print one line per problem, each naming its file: "
    "missing or unreadable files, image/label shape or affine mismatches, label values outside the declared "
    "classes (after --label-map), non-integer labels, NaN/inf, empty or constant images, duplicate entries. "
    "Exit 2 when anything is wrong; 0 with a one-line OK summary otherwise."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("datalist", metavar="DATALIST", type=existing_file, help="datalist JSON to check")
    parser.add_argument("--num-classes", type=int, default=None, help="declared classes K: labels must lie in 0..K-1")
    parser.add_argument(
        "--label-map",
        type=label_map_arg,
        default=None,
        help="label mapping the training applies (MapLabels preset, 'src:dst,...', JSON object or file)",
    )
    parser.add_argument("--ignore-index", type=int, default=None, help="label value allowed besides the classes")
    parser.add_argument(
        "--max-voxels",
        type=max_voxels_arg,
        default=DEFAULT_MAX_VOXELS,
        help="largest voxel count a file header may claim before it is read (guards against crafted headers)",
    )
    parser.add_argument(
        "--split",
        dest="splits",
        action="append",
        choices=("training", "validation", "test"),
        default=None,
        help="check only this split (repeatable; default: all present)",
    )


def run(args: argparse.Namespace) -> int:
    from medseg.data.check import check_datalist

    report = check_datalist(
        args.datalist,
        num_classes=args.num_classes,
        label_map=args.label_map,
        ignore_index=args.ignore_index,
        splits=args.splits,
        max_voxels=args.max_voxels,
        progress=progress_enabled(args),
    )
    for problem in report.problems:
        sys.stdout.write(problem.line() + "\n")
    if not report.ok:
        raise CliError(report.summary())
    sys.stdout.write(report.summary() + "\n")
    return 0
