"""Entry point of the ``medseg-data`` console script."""

from __future__ import annotations

from collections.abc import Sequence

from medseg.console import main_for

COMMANDS = {
    "dicom2nifti": "data_tools.commands.dicom2nifti",
    "rtstruct2nifti": "data_tools.commands.rtstruct2nifti",
    "lidc": "data_tools.commands.lidc",
    "slices2d": "data_tools.commands.slices2d",
    "endovis": "data_tools.commands.endovis",
    "split": "data_tools.commands.split",
    "stats": "data_tools.commands.stats",
    "plan": "data_tools.commands.plan",
    "check": "data_tools.commands.check",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medseg-data`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    return main_for("medseg-data", "Clinical dataset preprocessing for medseg.", COMMANDS, argv)
