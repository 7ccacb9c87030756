"""`medseg-data check` (STUB: to be replaced by its owner)."""

from __future__ import annotations

import argparse

HELP = "check (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("medseg-data check is not implemented yet")
