"""``medseg-data rtstruct2nifti``: RTSTRUCT contours -> one uint8 mask per ROI in the CT NIfTI's geometry."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import existing_file, progress_enabled

HELP = "DICOM RTSTRUCT contours -> OUT_DIR/<roi>.nii.gz masks in the CT series' geometry"
DESCRIPTION = (
    "Rasterise the ROIs of an RT Structure Set into uint8 0/1 masks with the shape and affine of SERIES_NIFTI (a "
    "series converted by 'medseg-data dicom2nifti'). A voxel is inside a contour when its centre is; nested "
    "contours on one slice make holes (even-odd rule). The sidecar JSON beside SERIES_NIFTI supplies the series' "
    "UIDs: an RTSTRUCT for another series, or contours referencing slices that are not in it, are errors naming "
    "the ROI and UID. Writes OUT_DIR/<roi>.nii.gz and OUT_DIR/rois.json."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("rtstruct", metavar="RTSTRUCT", type=existing_file, help="the RTSTRUCT DICOM file")
    parser.add_argument(
        "series_nifti", metavar="SERIES_NIFTI", type=existing_file, help="NIfTI of the referenced CT series"
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="output folder (created if needed)")
    parser.add_argument(
        "--roi",
        dest="rois",
        metavar="NAME",
        nargs="+",
        action="extend",
        default=None,
        help="ROI names to convert; None: all ROIs",
    )
    parser.add_argument(
        "--sidecar",
        type=existing_file,
        default=None,
        help="dicom2nifti sidecar JSON of SERIES_NIFTI; None: SERIES_NIFTI's name with .json, when present",
    )
    parser.add_argument(
        "--key-file",
        type=Path,
        default=None,
        help="the UID key file dicom2nifti used (private sidecars hold keyed UID digests; the annotation's UIDs are "
        "digested with it to check that it belongs to the series); None: <user config dir>/medseg/uid_key",
    )


def run(args: argparse.Namespace) -> int:
    from data_tools.rtstruct import rtstruct_to_nifti

    written = rtstruct_to_nifti(
        args.rtstruct,
        args.series_nifti,
        args.out_dir,
        rois=args.rois,
        sidecar=args.sidecar,
        key_file=args.key_file,
        progress=progress_enabled(args),
    )
    for item in written:
        sys.stdout.write(f"wrote {item.path} (ROI {item.roi!r}: {item.contours} contours, {item.voxels} voxels)\n")
    return 0
