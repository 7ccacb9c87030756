"""`medseg evaluate` (STUB: to be replaced by its owner)."""

from __future__ import annotations

import argparse

HELP = "evaluate (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("medseg evaluate is not implemented yet")
