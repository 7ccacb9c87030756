"""``medseg-data slices2d``: 2D CT slice folders -> NIfTI/PNG pairs with integer labels + a datalist."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medseg.console import CliError, existing_dir, progress_enabled
from medseg.data.label_map import label_map_arg

HELP = "2D slice images + masks -> NIfTI/PNG pairs with integer labels + datalist.json"
DESCRIPTION = (
    "Pair slice images and masks by file stem, convert to grayscale images and integer label maps "
    "(binary 0/255 -> 0/1, or palette indices kept), and write OUT_DIR/images, OUT_DIR/labels and a "
    "datalist (all pairs in 'training'; use 'medseg-data split' next). Failed pairs are reported and "
    "skipped; the exit code is then 2."
)

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("img_dir", metavar="IMG_DIR", type=existing_dir, help="folder of slice images")
    parser.add_argument("mask_dir", metavar="MASK_DIR", type=existing_dir, help="folder of masks (same stems)")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="output folder")
    parser.add_argument("--format", dest="fmt", choices=("nifti", "png"), default="nifti", help="output format")
    parser.add_argument(
        "--mask-type",
        choices=("binary", "palette"),
        default="binary",
        help="binary: 0/255 (or 0/1) -> 0/1; palette: raw class indices kept",
    )
    parser.add_argument(
        "--label-map",
        type=label_map_arg,
        default=None,
        help="map label values after reading: a MapLabels preset (binary, covid_multiclass, ...), "
        'an inline JSON object \'{"1": 1, "2": 1}\' or a JSON file',
    )
    parser.add_argument(
        "--threshold", type=int, default=None, help="binary masks: foreground = value >= T (for soft masks)"
    )
    parser.add_argument("--mask-suffix", default="", help="mask stem = image stem + this suffix (e.g. _mask)")
    parser.add_argument(
        "--image-dtype",
        choices=("uint8", "float32"),
        default="uint8",
        help="stored image dtype; intensities are kept as given either way",
    )
    parser.add_argument(
        "--spacing",
        type=float,
        nargs=2,
        metavar=("ROW_MM", "COL_MM"),
        default=None,
        help="pixel spacing for the NIfTI affine (default: 1 1; JPEG slices carry no spacing)",
    )
    parser.add_argument("--datalist", default="datalist.json", help="datalist file name inside OUT_DIR")


def run(args: argparse.Namespace) -> int:
    from medseg.data.slices2d import convert_slices

    report = convert_slices(
        args.img_dir,
        args.mask_dir,
        args.out_dir,
        fmt=args.fmt,
        mask_type=args.mask_type,
        label_map=args.label_map,
        threshold=args.threshold,
        mask_suffix=args.mask_suffix,
        image_dtype=args.image_dtype,
        spacing=args.spacing,
        datalist_name=args.datalist,
        progress=progress_enabled(args),
    )
    for line in report.failure_lines():
        sys.stderr.write(f"failed: {line}\n")
    if report.converted == 0:
        raise CliError(f"no pair converted ({len(report.failures)} failed); nothing written")
    sys.stdout.write(f"converted {report.converted} pairs -> {report.datalist}\n")
    if report.failures:
        raise CliError(f"{len(report.failures)} item(s) failed (listed above); the datalist has the others")
    return 0
