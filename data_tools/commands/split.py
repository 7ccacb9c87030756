"""`medseg-data split` (STUB: to be replaced by its owner)."""

from __future__ import annotations

import argparse

HELP = "split (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("medseg-data split is not implemented yet")
