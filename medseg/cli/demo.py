"""``medseg demo``: the main job end to end on embedded sample data (see :mod:`medseg.demo`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from medseg.console import progress_enabled, quiet_bundle_logs

if TYPE_CHECKING:
    from medseg.demo import StageEvent

HELP = "run the main job end to end on generated sample data (or the shared real COVID-19 slices)"
DESCRIPTION = (
    "Generate synthetic CT slices, count their classes, train the covid19_ct_lesion bundle (CE pre-training, then "
    "margin-calibration fine-tuning), predict and evaluate the test slices and a CT volume, and draw overlays. "
    "Prints one line per stage. Run it again with other options and only the stages those options change are "
    "recomputed (OUTPUT/demo.json records them); the same options reuse everything."
)


def _size(value: str) -> int:
    try:
        size = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from err
    if size < 16 or size % 16:
        raise argparse.ArgumentTypeError(f"{value!r} must be a positive multiple of 16 (COPLE-Net downsamples 4x)")
    return size


def _epochs(value: str) -> int:
    try:
        epochs = int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} is not an integer") from err
    if epochs < 1:
        raise argparse.ArgumentTypeError(f"{value!r} must be at least 1")
    return epochs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=Path,
        default=Path("demo_output"),
        help="output folder: new, empty, or an earlier demo's (git-ignored in the checkout)",
    )
    parser.add_argument(
        "--real-data",
        type=Path,
        default=None,
        help="folder of the shared COVID-19 slices (../shared/data/covid19_ct_infection_medseg_infnet) "
        "to run on real data instead of synthetic slices",
    )
    parser.add_argument("--size", type=_size, default=64, help="slice size in pixels (multiple of 16)")
    parser.add_argument("--pretrain-epochs", type=_epochs, default=12, help="CE pre-training epochs")
    parser.add_argument("--finetune-epochs", type=_epochs, default=6, help="MC fine-tuning epochs")


class StagePrinter:
    """One line per demo stage on ``stream``; on a terminal the line shows while the stage runs."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.live = stream.isatty()

    def __call__(self, event: StageEvent) -> None:
        head = f"[{event.index}/{event.total}] {event.title}"
        if event.state == "running":
            if self.live:
                self.stream.write(f"{head} ...")
                self.stream.flush()
            return
        when = "reused from the earlier run" if event.state == "reused" else _duration(event.seconds)
        prefix = "\r\x1b[K" if self.live else ""
        self.stream.write(f"{prefix}{head}: {event.detail} ({when})\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    return f"{int(seconds // 60)} min {seconds % 60:02.0f} s"


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    from medseg.demo import run_demo

    if args.real_data is not None and not args.real_data.is_dir():
        raise FileNotFoundError(f"--real-data {str(args.real_data)!r} is not a folder")
    quiet_bundle_logs(args)
    result = run_demo(
        args.output,
        real_data=args.real_data,
        size=args.size,
        pretrain_epochs=args.pretrain_epochs,
        finetune_epochs=args.finetune_epochs,
        progress=progress_enabled(args),
        on_stage=StagePrinter(sys.stdout),
    )
    lines = [
        f"medseg demo finished in {_duration(time.perf_counter() - start)}: everything is in {result.output_dir} "
        "(demo.json records each stage's options).",
        "Look at predictions/*_overlay.png"
        + (" and volume/prediction/ct_volume_overlay.png" if result.volume_score is not None else "")
        + " (red: predicted lesion, green outline: reference).",
    ]
    score = result.volume_score
    if score is not None and score.false_positives_outside > 0:
        lines.append(
            f"Note: the volume's lesion IoU ({score.iou:.3f}) is low because of {score.false_positives_outside} "
            f"false-positive voxels on its {score.slices - score.lung_slices} end slices, which show no lungs "
            f"(apex and base); the 2D model saw only slices with lungs in training. Over the {score.lung_slices} "
            f"slices with lungs its lesion IoU is {score.iou_lung_slices:.3f}."
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
