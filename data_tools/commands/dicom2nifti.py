"""`medseg-data dicom2nifti` (STUB: to be replaced by its owner)."""

from __future__ import annotations

import argparse

HELP = "dicom2nifti (not yet available)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise NotImplementedError("medseg-data dicom2nifti is not implemented yet")
