"""``medseg predict``: segment files with a bundle (thin wrapper over :func:`medseg.inference.predict_with_bundle`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medseg.console import existing_file, progress_enabled

logger = logging.getLogger(__name__)

HELP = "segment NIfTI/DICOM volumes, 2D images, frame folders and videos with a bundle"
DESCRIPTION = (
    "Segment inputs with a MONAI bundle's configs/inference.json and write masks in each input's own geometry: "
    "NIfTI/DICOM -> NAME_seg.nii.gz (the input's shape and affine), images -> NAME_seg.png + NAME_overlay.png, "
    "frame folders -> NAME/FRAME_seg.png + overlays, videos -> NAME/frame_N_seg.png + NAME_overlay.mp4. "
    "Existing outputs are skipped unless --overwrite, so an interrupted batch continues. A bad input is "
    "reported in one line and the others are still processed; the exit code is then 2."
)


def bundle_ref(value: str) -> Path:
    """A shipped bundle's name or a bundle folder (checked while arguments are parsed)."""
    from medseg.resources import bundle_dir

    try:
        return bundle_dir(value)
    except FileNotFoundError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        required=True,
        type=bundle_ref,
        metavar="NAME_OR_DIR",
        help="a shipped bundle's name (covid19_ct_lesion, robotic_instrument) or a bundle folder with "
        "configs/inference.json",
    )
    parser.add_argument(
        "-i",
        "--input",
        required=True,
        nargs="+",
        metavar="PATH",
        help="NIfTI files, DICOM series folders, 2D images, folders of frames, or video files",
    )
    parser.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder (created if needed)")
    parser.add_argument(
        "--ckpt", type=existing_file, default=None, metavar="FILE", help="weights to use instead of models/model.pt"
    )
    parser.add_argument("--tta", action="store_true", help="test-time augmentation by flips (slower)")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="where the network runs (default: the bundle's)"
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute cases whose outputs already exist")
    parser.add_argument(
        "--probabilities", action="store_true", help="also write class probabilities (NAME_prob.nii.gz / .npy)"
    )


def run(args: argparse.Namespace) -> int:
    from medseg.inference.bundle import predict_with_bundle

    report = predict_with_bundle(
        args.bundle,
        list(args.input),
        args.output,
        ckpt=args.ckpt,
        device=args.device,
        tta=True if args.tta else None,
        overwrite=args.overwrite,
        save_probabilities=True if args.probabilities else None,
        progress=progress_enabled(args),
    )
    for result in report.failed:
        sys.stderr.write(f"medseg predict: error: {result.error}\n")
    sys.stdout.write(report.summary() + "\n")
    return report.exit_code
