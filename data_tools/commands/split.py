"""``medseg-data split``: deterministic training/validation/test splits of a datalist."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import CliError, existing_file

HELP = "deterministic training/validation/test split of a datalist (by case, sequence or frame order)"
DESCRIPTION = (
    "Pool every entry of DATALIST and redistribute them into training/validation/test. --by case: whole "
    "cases (group from --group-key, --group-pattern, a 'case'/'patient' key, else the file stem) shuffled "
    "with --seed; --by sequence: whole video sequences ('sequence' key or parent folder); --by frame-order: "
    "consecutive blocks in frame order, no shuffling (the papers' 1200/200/400 robotic split: --counts 1200 "
    "200 400). Sizes count groups for case/sequence and entries for frame-order. Writes atomically to --out "
    "(default: DATALIST itself)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("datalist", metavar="DATALIST", type=existing_file, help="datalist JSON to split")
    parser.add_argument("--by", choices=("case", "sequence", "frame-order"), default="case", help="what stays together")
    parser.add_argument("--seed", type=int, default=None, help="shuffle seed for case/sequence splits (default: 0)")
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        metavar=("TRAIN", "VAL", "TEST"),
        default=None,
        help="split fractions summing to 1 (default: 0.7 0.15 0.15)",
    )
    sizes.add_argument(
        "--counts", type=int, nargs=3, metavar=("TRAIN", "VAL", "TEST"), default=None, help="split sizes"
    )
    parser.add_argument("--group-key", default=None, help="entry key holding the case/sequence id")
    parser.add_argument(
        "--group-pattern",
        default=None,
        help="regex searched in the image path; its first group (else the match) is the group id",
    )
    parser.add_argument(
        "--order",
        choices=("frame", "sequence", "datalist"),
        default=None,
        help="frame-order only: sort by (frame, sequence), (sequence, frame) or keep the file order (default: frame)",
    )
    parser.add_argument("--out", type=Path, default=None, help="output datalist (default: overwrite DATALIST)")


def run(args: argparse.Namespace) -> int:
    from medseg.data.split import split_datalist

    if args.by == "frame-order":
        if args.seed is not None:
            raise CliError("--seed has no effect with --by frame-order (no shuffling); drop it")
    elif args.order is not None:
        raise CliError(f"--order applies to --by frame-order only, not --by {args.by}; drop it")
    if args.group_key is not None and args.group_pattern is not None:
        raise CliError("give either --group-key or --group-pattern, not both")
    summary = split_datalist(
        args.datalist,
        args.out,
        by=args.by,
        seed=0 if args.seed is None else args.seed,
        fractions=args.fractions,
        counts=args.counts,
        group_key=args.group_key,
        group_pattern=args.group_pattern,
        order=args.order or "frame",
    )
    sys.stdout.write(f"{summary.line()} -> {summary.path}\n")
    return 0
