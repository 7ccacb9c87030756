"""``medseg bundle list|path|copy``: find the shipped MONAI bundles and get an editable copy of one."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import HelpFormatter, OneLineParser

HELP = "list the shipped bundles, print a bundle's folder, or copy a bundle to edit and train it"
DESCRIPTION = (
    "The bundles ship inside the medseg package (medseg.resources). `list` names them, `path NAME` prints a "
    "bundle's folder (for `python -m monai.bundle run --config_file \"$(medseg bundle path NAME)/configs/"
    "train.json\"`), `copy NAME DIR` writes an editable copy to DIR/NAME (like MONAI's `bundle download`; "
    "never replaces an existing folder), to run with --bundle_root DIR/NAME."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="bundle_command", metavar="{list,path,copy}", parser_class=OneLineParser)
    sub.required = True
    sub.add_parser("list", help="the shipped bundles and their folders", formatter_class=HelpFormatter)
    path = sub.add_parser("path", help="print a bundle's folder", formatter_class=HelpFormatter)
    path.add_argument("name", metavar="NAME", help="a shipped bundle's name (see `medseg bundle list`)")
    copy = sub.add_parser("copy", help="copy a bundle to DIR/NAME to edit and train it", formatter_class=HelpFormatter)
    copy.add_argument("name", metavar="NAME", help="a shipped bundle's name or a bundle folder")
    copy.add_argument("dest", type=Path, metavar="DIR", help="parent folder of the copy (created if needed)")


def run(args: argparse.Namespace) -> int:
    from medseg.resources import bundle_dir, bundle_names, copy_bundle

    if args.bundle_command == "list":
        for name in bundle_names():
            sys.stdout.write(f"{name}\t{bundle_dir(name)}\n")
    elif args.bundle_command == "path":
        sys.stdout.write(f"{bundle_dir(args.name)}\n")
    else:
        target = copy_bundle(args.name, args.dest)
        sys.stdout.write(
            f"{target}\ntrain it with: python -m monai.bundle run --config_file {target}/configs/train.json "
            f"--bundle_root {target} --dataset_dir DATA_DIR\n"
        )
    return 0
