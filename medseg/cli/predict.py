"""`medseg predict` (STUB: to be replaced by its owner)."""

from __future__ import annotations

import argparse

HELP = "predict (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("medseg predict is not implemented yet")
