"""``medseg-data dicom2nifti``: every DICOM image series under a folder -> one NIfTI + sidecar JSON per series."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import CliError, existing_path, progress_enabled

HELP = "DICOM series (any folder layout) -> one NIfTI + sidecar JSON per series"
DESCRIPTION = (
    "Walk IN_DIR, group DICOM image files by SeriesInstanceUID, sort slices along the slice normal (never by "
    "InstanceNumber), apply RescaleSlope/Intercept (CT in HU; int16 when lossless, else int32/float32) and write "
    "OUT_DIR/<SeriesNumber>_<SeriesDescription>.nii.gz (RAS affine) with a .json sidecar (modality, spacing, kVp, "
    "kernel, slice count, UIDs for rtstruct2nifti/lidc). Spacing comes from ImagePositionPatient, not SliceThickness. "
    "Series with missing slices or irregular spacing are reported and skipped unless --allow-nonuniform. Failed "
    "series and unreadable files are listed on stderr; the others are still converted; the exit code is then 2."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("in_dir", metavar="IN_DIR", type=existing_path, help="folder tree with DICOM files")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="output folder (created if needed)")
    parser.add_argument(
        "--deidentify",
        action="store_true",
        help="no patient names, IDs, birth dates, dates, institutions or source paths in file names or sidecars; "
        "UIDs stored as SHA-256 digests (still usable by rtstruct2nifti and lidc)",
    )
    parser.add_argument(
        "--allow-nonuniform",
        action="store_true",
        help="resample series with missing slices or irregular spacing onto a uniform grid at the median spacing "
        "(linear interpolation along the slice direction; listed in the sidecar) instead of skipping them",
    )


def run(args: argparse.Namespace) -> int:
    from data_tools.dicom import dicom_to_nifti

    report = dicom_to_nifti(
        args.in_dir,
        args.out_dir,
        deidentify=args.deidentify,
        allow_nonuniform=args.allow_nonuniform,
        progress=progress_enabled(args),
    )
    for item in report.converted:
        shape = "x".join(str(v) for v in item.shape)
        spacing = " x ".join(f"{v:.4g}" for v in item.spacing)
        sys.stdout.write(f"wrote {item.nifti} ({shape}, {spacing} mm, {item.dtype})\n")
    for failure in report.failed:
        sys.stderr.write(f"failed: {failure.reason}\n")
    if report.failed:
        raise CliError(
            f"{len(report.failed)} series/file(s) failed (listed above); {len(report.converted)} series converted"
        )
    return 0
