"""``medseg bundle list|path|overlay|copy``: find the shipped bundles and loss overlays; copy a bundle to edit it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import HelpFormatter, OneLineParser

HELP = "list the shipped bundles and loss overlays, print their paths, or copy a bundle to edit and train it"
DESCRIPTION = (
    "The bundles and loss overlays ship inside the medseg package (medseg.resources). `list` names them, "
    "`path NAME` prints a bundle's folder (for `python -m monai.bundle run --config_file \"$(medseg bundle path "
    "NAME)/configs/train.json\"`), `overlay LOSS` prints a loss overlay's file (merged after train.json), "
    "`copy NAME DIR` writes an editable copy to DIR/NAME (like MONAI's `bundle download`; never replaces an "
    "existing folder), to run with --bundle_root DIR/NAME."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bundle_command", metavar="{list,path,overlay,copy}", parser_class=OneLineParser)
    sub.required = True
    sub.add_parser("list", help="the shipped bundles and loss overlays with their paths", formatter_class=HelpFormatter)
    path = sub.add_parser("path", help="print a bundle's folder", formatter_class=HelpFormatter)
    path.add_argument("name", metavar="NAME", help="a shipped bundle's name (see `medseg bundle list`)")
    overlay = sub.add_parser("overlay", help="print a loss overlay's file", formatter_class=HelpFormatter)
    overlay.add_argument(
        "loss", metavar="LOSS", help="a loss with a shipped overlay, e.g. mc (see `medseg bundle list`)"
    )
    copy = sub.add_parser("copy", help="copy a bundle to DIR/NAME to edit and train it", formatter_class=HelpFormatter)
    copy.add_argument("name", metavar="NAME", help="a shipped bundle's name or a bundle folder")
    copy.add_argument("dest", type=Path, metavar="DIR", help="parent folder of the copy (created if needed)")


def run(args: argparse.Namespace) -> int:
    from medseg.resources import bundle_dir, bundle_names, copy_bundle, loss_overlay, loss_overlay_names

    if args.bundle_command == "list":
        for name in bundle_names():
            sys.stdout.write(f"bundle\t{name}\t{bundle_dir(name)}\n")
        for name in loss_overlay_names():
            sys.stdout.write(f"overlay\t{name}\t{loss_overlay(name)}\n")
    elif args.bundle_command == "path":
        sys.stdout.write(f"{bundle_dir(args.name)}\n")
    elif args.bundle_command == "overlay":
        sys.stdout.write(f"{loss_overlay(args.loss)}\n")
    else:
        target = copy_bundle(args.name, args.dest)
        sys.stdout.write(
            f"{target}\ntrain it with: python -m monai.bundle run --config_file {target}/configs/train.json "
            f"--bundle_root {target} --dataset_dir DATA_DIR\n"
        )
    return 0
