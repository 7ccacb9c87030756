"""``medseg predict``: segment files with a bundle (thin wrapper over :func:`medseg.inference.predict_with_bundle`)."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from medseg.console import existing_file, progress_enabled

logger = logging.getLogger(__name__)

HELP = "segment NIfTI/DICOM volumes, 2D images, frame folders and videos with a bundle"
DESCRIPTION = (
    "Segment inputs with a MONAI bundle's configs/inference.json and write masks in each input's own geometry: "
    "NIfTI/DICOM -> NAME_seg.nii.gz (the input's shape and affine) + NAME_seg_labels.json (class names), with "
    "--output-type also a DICOM-SEG (NAME_seg.dcm) and an RTSTRUCT (NAME_rtstruct.dcm) for DICOM series, "
    "images -> NAME_seg.png + NAME_overlay.png, "
    "frame folders -> NAME/FRAME_seg.png + overlays, videos -> NAME/frame_N_seg.png + NAME_overlay.mp4; "
    "NAME_prediction.json records what produced them. A folder may hold NIfTI volumes, one or several DICOM series, or "
    "sub-folders of them (one mask per volume or series). Up-to-date outputs are skipped (--overwrite recomputes "
    "them); outputs made from another input, model or settings are recomputed. A bad input is reported in one "
    "line and the others are still processed (exit code 2); a failure to write outputs stops the batch (exit "
    "code 1). Bundles not shipped with medseg are code and run only with --trust-bundle. The model file (--ckpt, "
    "else the bundle's models/model.pt) may be a medseg checkpoint, a last.pt, a state dict, a TorchScript (.ts) "
    "or an ONNX file; what it records (network, input size, normalisation, window, class names) wins over the "
    "bundle's config unless --override sets the id, and each difference is reported in one warning line."
)


def bundle_ref(value: str) -> Path:
    """A shipped bundle's name or a bundle folder (checked while arguments are parsed)."""
    from medseg.resources import bundle_dir

    try:
        return bundle_dir(value)
    except FileNotFoundError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def device_spec(value: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (availability is checked when the model is built)."""
    from medseg.inference.devices import check_device_spec

    try:
        return check_device_spec(value, "--device")
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def override(value: str) -> tuple[str, object]:
    """``ID=VALUE``: a config id of the bundle's inference.json and its value (JSON, else a string)."""
    from medseg.inference.bundle import parse_override

    try:
        return parse_override(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def output_types(value: str) -> tuple[str, ...]:
    """Comma-separated mask kinds for volumes (``nifti``, ``dicom-seg``, ``rtstruct``)."""
    from medseg.inference.writers import MaskWriter

    try:
        return MaskWriter.check_output_types(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _count(minimum: int) -> Callable[[str], int]:
    def check(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value!r}")
        return number

    return check


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
        "--ckpt",
        type=existing_file,
        default=None,
        metavar="FILE",
        help="model to use instead of the bundle's models/model.pt: a medseg checkpoint (.pt), a last.pt, a state "
        "dict, a TorchScript (.ts, monai.bundle ckpt_export) or an ONNX file (.onnx, medseg export)",
    )
    parser.add_argument(
        "--override",
        type=override,
        action="append",
        default=None,
        metavar="ID=VALUE",
        help="set a config id of the bundle's inference.json (repeatable; VALUE is JSON, else a string), e.g. "
        "--override spatial_size=[128,128] --override predictor#overlap=0.25",
    )
    parser.add_argument("--tta", action="store_true", help="test-time augmentation by flips (slower)")
    parser.add_argument(
        "--device",
        type=device_spec,
        default=None,
        metavar="auto|cpu|cuda[:N]|mps",
        help="where the network runs; auto: CUDA when present, else MPS, else CPU (None: the bundle's, auto for "
        "the shipped ones)",
    )
    parser.add_argument("--overwrite", action="store_true", help="recompute cases even where outputs are up to date")
    parser.add_argument(
        "--probabilities", action="store_true", help="also write class probabilities (NAME_prob.nii.gz / .npy)"
    )
    parser.add_argument(
        "--output-type",
        type=output_types,
        default=None,
        metavar="TYPES",
        help="comma-separated mask kinds for volumes: nifti, dicom-seg, rtstruct (the last two for DICOM series "
        "inputs only), e.g. nifti,dicom-seg,rtstruct (None: the bundle's, nifti); 2D inputs get PNG",
    )
    parser.add_argument(
        "--volumes",
        action="store_true",
        help="also write OUT_DIR/volumes.csv: the volume of each class in mL for every 3D case",
    )
    parser.add_argument(
        "--engine",
        choices=("eager", "compile", "onnxruntime", "openvino"),
        default=None,
        help="what runs the network: eager PyTorch, torch.compile, or (CPU, pip extras medseg[export] / "
        "medseg[openvino]) ONNX Runtime / OpenVINO (None: the bundle's, eager)",
    )
    parser.add_argument(
        "--trust-bundle",
        action="store_true",
        help="run a bundle that is not shipped with medseg: its configs are Python code",
    )
    parser.add_argument(
        "--nonfinite",
        choices=("error", "fill"),
        default="error",
        help="inputs with NaN/inf voxels: refuse them, or fill them (NaN and -inf by the minimum) with a warning",
    )
    parser.add_argument(
        "--intensity-check",
        choices=("error", "warn", "off"),
        default="error",
        help="inputs whose intensities lie far outside the model's range (e.g. 16-bit PNGs, CT rescaled to [0, 1])",
    )
    parser.add_argument(
        "--num-parts", type=_count(1), default=1, metavar="N", help="split the cases into N shares (GPUs, machines)"
    )
    parser.add_argument(
        "--part-id", type=_count(0), default=0, metavar="I", help="the share this process predicts, 0..N-1"
    )


def run(args: argparse.Namespace) -> int:
    from medseg.console import CliError
    from medseg.inference.bundle import predict_with_bundle

    if args.part_id >= args.num_parts:
        raise CliError(
            f"--part-id must be in 0..{args.num_parts - 1} for --num-parts {args.num_parts}, got {args.part_id}"
        )
    report = predict_with_bundle(
        args.bundle,
        list(args.input),
        args.output,
        ckpt=args.ckpt,
        overrides=dict(args.override) if args.override else None,
        device=args.device,
        tta=True if args.tta else None,
        overwrite=args.overwrite,
        save_probabilities=True if args.probabilities else None,
        progress=progress_enabled(args),
        trust=args.trust_bundle,
        output_types=args.output_type,
        engine=args.engine,
        nonfinite=args.nonfinite,
        intensity_check=args.intensity_check,
        num_parts=args.num_parts,
        part_id=args.part_id,
        volumes=args.volumes,
    )
    for line in report.warnings:
        sys.stderr.write(f"medseg predict: warning: {line}\n")
    for result in report.failed:
        sys.stderr.write(f"medseg predict: error: {result.error}\n")
    sys.stdout.write(report.summary() + "\n")
    return report.exit_code
