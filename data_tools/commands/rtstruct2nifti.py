"""`medseg-data rtstruct2nifti` (STUB: to be replaced by its owner)."""

from __future__ import annotations

import argparse

HELP = "rtstruct2nifti (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("medseg-data rtstruct2nifti is not implemented yet")
