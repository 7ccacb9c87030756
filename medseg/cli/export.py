"""``medseg export``: describe a model file, or export a checkpoint to ONNX (thin wrapper over :mod:`medseg.export`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import CliError, existing_file

HELP = "describe a model file (.pt/.ts/.onnx), export a medseg checkpoint to ONNX, or write a float16 copy"
DESCRIPTION = (
    "--describe prints what a model file records: network and its arguments, classes, trained input size, "
    "preprocessing, loss, plan, versions. --onnx FILE exports a medseg checkpoint (model.pt written by training) "
    "to ONNX with dynamic batch and spatial axes, stores the checkpoint's metadata in it, and checks that ONNX "
    "Runtime reproduces the PyTorch logits. Needs the export extra: pip install 'medseg[export]'."
)


def _positive(value: str) -> int:
    try:
        n = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from err
    if n < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be >= 1")
    return n


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=existing_file, metavar="MODEL", help="a .pt checkpoint (or .ts/.onnx file)")
    parser.add_argument("--describe", action="store_true", help="print what the file records")
    parser.add_argument("--onnx", type=Path, default=None, metavar="FILE", help="write an ONNX model to FILE (.onnx)")
    parser.add_argument(
        "--half", type=Path, default=None, metavar="FILE", help="write a float16 copy of the checkpoint to FILE (.pt)"
    )
    parser.add_argument(
        "--example-size",
        type=_positive,
        nargs="+",
        default=None,
        metavar="N",
        help="spatial size of the tracing input (default: the checkpoint's roi_size, else 64 per axis)",
    )
    parser.add_argument("--opset", type=_positive, default=18, help="ONNX opset version")
    parser.add_argument("--no-check", action="store_true", help="skip comparing ONNX Runtime with PyTorch")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing FILE")


def run(args: argparse.Namespace) -> int:
    if not args.describe and args.onnx is None and args.half is None:
        raise CliError("nothing to do: give --describe, --onnx FILE or --half FILE")
    if args.half is not None:
        from medseg.export import half_precision_copy

        try:
            half_precision_copy(args.model, args.half, overwrite=args.overwrite)
        except FileExistsError as err:
            raise CliError(str(err)) from err
        sys.stdout.write(f"wrote {args.half} (float16 weights, same metadata)\n")
    from medseg.checkpoint import describe_checkpoint

    if args.onnx is not None:
        from medseg.export import export_onnx

        try:
            report = export_onnx(
                args.model,
                args.onnx,
                example_size=args.example_size,
                opset=args.opset,
                check=not args.no_check,
                overwrite=args.overwrite,
            )
        except ImportError as err:
            raise CliError(str(err)) from err
        check = (
            f"max |ONNX Runtime - PyTorch| = {report.max_abs_difference:.2g}"
            if report.max_abs_difference is not None
            else "not checked"
        )
        sys.stdout.write(f"wrote {report.path} (opset {report.opset}; {check})\n")
    if args.describe:
        sys.stdout.write(describe_checkpoint(args.model) + "\n")
    return 0
