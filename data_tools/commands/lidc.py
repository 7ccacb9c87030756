"""``medseg-data lidc``: LIDC-IDRI XML reader outlines -> per-reader and consensus nodule masks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import existing_file

HELP = "LIDC-IDRI XML nodule outlines -> per-reader and consensus masks in the series' geometry"
DESCRIPTION = (
    "Rasterise each radiologist's nodule outlines (readingSession/unblindedReadNodule/roi edgeMaps, outline pixels "
    "included, exclusions cut out, <3 mm nodules as their single point) into uint8 masks with the shape and affine "
    "of SERIES_NIFTI (a series or slab converted by 'medseg-data dicom2nifti'; slices are matched by imageSOP_UID "
    "through its sidecar JSON, else by z). Outlines on slices that are not in the volume are skipped. Writes "
    "OUT_DIR/reader_<r>.nii.gz, reader_count.nii.gz (readers per voxel), consensus.nii.gz (>= K readers) and "
    "lidc.json."
)


def _positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--agreement must be a whole number of readers, got {value!r}") from err
    if number < 1:
        raise argparse.ArgumentTypeError(f"--agreement must be at least 1 reader, got {number}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("xml_file", metavar="XML_FILE", type=existing_file, help="LIDC XML annotation file")
    parser.add_argument(
        "series_nifti", metavar="SERIES_NIFTI", type=existing_file, help="NIfTI of the annotated CT series"
    )
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="output folder (created if needed)")
    parser.add_argument(
        "--agreement",
        metavar="K",
        type=_positive_int,
        default=None,
        help="consensus = voxels outlined by at least K readers, counting every reading session in the XML; "
        "None: half of them rounded up, i.e. 2 of 4, the usual 50%% LIDC level",
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
    from data_tools.lidc import lidc_to_nifti

    summary = lidc_to_nifti(
        args.xml_file,
        args.series_nifti,
        args.out_dir,
        agreement=args.agreement,
        sidecar=args.sidecar,
        key_file=args.key_file,
    )
    for reader in summary["readers"]:
        sys.stdout.write(f"reader {reader['reader']}: {reader['voxels']} voxels\n")
    sys.stdout.write(
        f"consensus (>= {summary['agreement']} of {summary['num_readers']} readers): "
        f"{summary['consensus_voxels']} voxels -> {Path(args.out_dir) / 'consensus.nii.gz'}\n"
    )
    return 0
