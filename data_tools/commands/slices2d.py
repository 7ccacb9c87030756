"""`medseg-data slices2d` (STUB: to be replaced by its owner)."""

from __future__ import annotations

import argparse

HELP = "slices2d (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("medseg-data slices2d is not implemented yet")
