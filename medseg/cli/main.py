"""Entry point of the ``medseg`` console script."""

from __future__ import annotations

from collections.abc import Sequence

from medseg.console import main_for

COMMANDS = {
    "predict": "medseg.cli.predict",
    "evaluate": "medseg.cli.evaluate",
    "bench": "medseg.cli.bench",
    "demo": "medseg.cli.demo",
    "study": "medseg.cli.study",
    "bundle": "medseg.cli.bundle",
    "export": "medseg.cli.export",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``medseg`` with ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    return main_for("medseg", "Medical-image segmentation with margin-calibrated losses on MONAI.", COMMANDS, argv)
