"""``medseg-data dicom2nifti``: every DICOM image series under a folder -> one NIfTI + sidecar JSON per series."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import CliError, existing_path, progress_enabled

HELP = "DICOM series (any folder layout) -> one NIfTI + sidecar JSON per series; private by default"
DESCRIPTION = (
    "Walk IN_DIR, group DICOM image files by SeriesInstanceUID, sort slices along the slice normal (never by "
    "InstanceNumber), apply RescaleSlope/Intercept (CT in HU; int16 when lossless, else int32/float32) and write "
    "OUT_DIR/<SeriesNumber>_<Modality>_<digest>.nii.gz (RAS affine) with a .json sidecar (modality, spacing, kVp, "
    "slice count, UID digests for rtstruct2nifti/lidc). Spacing comes from ImagePositionPatient, not SliceThickness. "
    "Outputs are private by default (DICOM PS3.15 Basic Application Level Confidentiality Profile): no names, IDs, "
    "dates, institutions, source paths or free text, and UIDs as digests keyed with a secret key file kept outside "
    "OUT_DIR. Existing outputs are never replaced without --overwrite. Series with missing slices or irregular "
    "spacing are reported and skipped unless --allow-nonuniform. Exit codes: 0 all converted; 2 some series or files "
    "failed as input (listed on stderr; the others are still converted); 1 an output could not be written (full "
    "disk, no permission): the batch stops there."
)


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--max-interpolated must be a fraction like 0.1, got {value!r}") from err
    if not 0.0 <= number <= 1.0:
        raise argparse.ArgumentTypeError(f"--max-interpolated must lie in [0, 1], got {number}")
    return number


def _threads(value: str) -> int:
    try:
        number = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--threads must be a whole number, got {value!r}") from err
    if number < 1:
        raise argparse.ArgumentTypeError(f"--threads must be at least 1, got {number}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from data_tools.dicom.deid import KEEPABLE_TEXT  # light: no numpy/pydicom, --help stays instant

    parser.add_argument("in_dir", metavar="IN_DIR", type=existing_path, help="folder tree with DICOM files")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="output folder (created if needed)")
    parser.add_argument(
        "--keep-phi",
        action="store_true",
        help="also write protected health information: patient name, ID, sex, age, dates, institution, free text, "
        "plain UIDs and source paths in the sidecar, the series description in the file name",
    )
    parser.add_argument(
        "--keep-text",
        metavar="FIELD",
        nargs="+",
        action="extend",
        choices=list(KEEPABLE_TEXT),
        default=None,
        help=f"free-text fields to keep in private sidecars, scrubbed of the header's names, IDs and dates (never in "
        f"file names): {', '.join(KEEPABLE_TEXT)}; None: drop them all",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="secret key of the UID digests (created with permissions 0600 if absent; must lie outside OUT_DIR; "
        "rtstruct2nifti and lidc need the same key); None: <user config dir>/medseg/uid_key",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace outputs that exist (default: such a series fails)"
    )
    parser.add_argument(
        "--allow-nonuniform",
        action="store_true",
        help="resample series with missing slices or irregular spacing onto a uniform grid at the median spacing "
        "(linear interpolation along the slice direction; listed in the sidecar) instead of skipping them",
    )
    parser.add_argument(
        "--max-interpolated",
        metavar="FRACTION",
        type=_fraction,
        default=None,
        help="with --allow-nonuniform, refuse a series that needs more than this fraction of interpolated slices; "
        "None: 0.1",
    )
    parser.add_argument(
        "--threads",
        type=_threads,
        default=None,
        help="gzip compression threads; None: every CPU this process may use",
    )


def _summary(paths: list[Path], what: str) -> str:
    names = ", ".join(str(p) for p in paths[:3]) + (f" (+{len(paths) - 3} more)" if len(paths) > 3 else "")
    return f"skipped {len(paths)} {what}: {names}\n"


def run(args: argparse.Namespace) -> int:
    from data_tools.dicom.convert import DEFAULT_MAX_INTERPOLATED, OutputWriteError, dicom_to_nifti

    if args.keep_phi and args.keep_text:
        raise CliError("--keep-text has no effect with --keep-phi (all text is kept); give one of them")
    try:
        report = dicom_to_nifti(
            args.in_dir,
            args.out_dir,
            keep_phi=args.keep_phi,
            keep_text=args.keep_text or (),
            key_file=args.key_file,
            overwrite=args.overwrite,
            allow_nonuniform=args.allow_nonuniform,
            max_interpolated=DEFAULT_MAX_INTERPOLATED if args.max_interpolated is None else args.max_interpolated,
            threads=args.threads,
            progress=progress_enabled(args),
        )
        stopped: OutputWriteError | None = None
    except OutputWriteError as err:
        report, stopped = err.report, err
    for item in report.converted:
        shape = "x".join(str(v) for v in item.shape)
        spacing = " x ".join(f"{v:.4g}" for v in item.spacing)
        sys.stdout.write(f"wrote {item.nifti} ({shape}, {spacing} mm, {item.dtype})\n")
    if report.misnamed_non_dicom:
        sys.stderr.write(_summary(report.misnamed_non_dicom, "files named like DICOM that are not DICOM"))
    for failure in report.failed:
        sys.stderr.write(f"failed: {failure.reason}\n")
    if stopped is not None:
        raise CliError(
            f"{stopped}; stopped after {len(report.converted)} series converted (nothing partial left behind)", code=1
        )
    if report.failed:
        raise CliError(
            f"{len(report.failed)} series/file(s) failed (listed above); {len(report.converted)} series converted"
        )
    return 0
