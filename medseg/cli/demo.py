"""``medseg demo``: the main job end to end on embedded sample data (see :mod:`medseg.demo`)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import progress_enabled

HELP = "run the main job end to end on generated sample data (or the shared real COVID-19 slices)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, default=Path("demo_output"), help="output folder")
    parser.add_argument(
        "--real-data",
        type=Path,
        default=None,
        help="folder of the shared COVID-19 slices (../shared/data/covid19_ct_infection_medseg_infnet) "
        "to run on real data instead of synthetic slices",
    )
    parser.add_argument("--size", type=int, default=64, help="slice size in pixels (multiple of 16)")
    parser.add_argument("--pretrain-epochs", type=int, default=12, help="CE pre-training epochs")
    parser.add_argument("--finetune-epochs", type=int, default=6, help="MC fine-tuning epochs")


def run(args: argparse.Namespace) -> int:
    from medseg.demo import run_demo

    if args.real_data is not None and not args.real_data.is_dir():
        raise FileNotFoundError(f"--real-data {str(args.real_data)!r} is not a folder")
    for name in ("pretrain_epochs", "finetune_epochs"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    result = run_demo(
        args.output,
        real_data=args.real_data,
        size=args.size,
        pretrain_epochs=args.pretrain_epochs,
        finetune_epochs=args.finetune_epochs,
        progress=progress_enabled(args),
    )
    ds = result.evaluation.get("dataset", result.evaluation)
    lines = [
        "medseg demo finished.",
        f"  data + datalist:     {result.datalist}",
        f"  class statistics:    {result.stats_file}",
        f"  CE pre-training:     {result.runs['pretrain']['run_dir']}  (history.csv, curves.png, models/)",
        f"  MC fine-tuning:      {result.runs['finetune']['run_dir']}  (history.csv, curves.png, models/)",
        f"  test-slice masks:    {result.prediction_dir}",
        f"  evaluation:          {result.output_dir / 'evaluation'}  (summary.json, per-case CSV, Markdown)",
        f"  test mIoU (dataset level, background included): {_fmt(ds, 'pooled_iou')}; lesion IoU "
        f"{_fmt(ds.get('per_class', {}).get('1', {}), 'iou')}",
    ]
    if result.volume_evaluation:
        vds = result.volume_evaluation.get("dataset", result.volume_evaluation)
        lines.append(
            f"  CT volume mask:      {result.output_dir / 'volume' / 'prediction'}  (input geometry; "
            f"lesion IoU {_fmt(vds.get('per_class', {}).get('1', {}), 'iou')})"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _fmt(summary: object, key: str) -> str:
    value = summary.get(key) if isinstance(summary, dict) else None
    return f"{value:.3f}" if isinstance(value, int | float) else "n/a"
