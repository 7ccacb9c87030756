"""``medseg-data plan``: fingerprint the training split of a datalist and write the training plan -> plan.json."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import CliError, existing_file, progress_enabled
from medseg.data.label_map import label_map_arg

HELP = "data fingerprint -> training plan (plan.json: normalisation, sizes, batch, schedule, augmentation)"
DESCRIPTION = (
    "Read the training split of DATALIST through the bundles' deterministic preprocessing and measure it (image "
    "sizes, spacings, intensity percentiles and moments, class frequencies); derive the training plan from fixed "
    "rules (z-score normalisation with clipping, input size, COPLE-Net widths, batch size, epochs for a compute "
    "budget, AdamW with warm-up and cosine decay, strong augmentation, Dice + CE loss, flip TTA) and write "
    "plan.json. The bundles' train.json read it from the dataset folder; every value can be overridden there."
)


def _pair(value: str) -> list[float]:
    try:
        lo, hi = (float(v) for v in value.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{value!r} must be two numbers 'LOW,HIGH'") from err
    return [lo, hi]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("datalist", metavar="DATALIST", type=existing_file, help="datalist JSON")
    parser.add_argument("--num-classes", type=int, required=True, help="number of classes K (with background)")
    parser.add_argument("--out", type=Path, default=None, help="plan.json to write (default: beside DATALIST)")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="size the plan for a CPU or a GPU (default: cpu)"
    )
    parser.add_argument("--split", default="training", help="datalist list to measure (default: training)")
    parser.add_argument(
        "--label-map",
        type=label_map_arg,
        default=None,
        help="the training's label mapping (binary, binary255, covid_multiclass, ...; default: stored values)",
    )
    parser.add_argument(
        "--intensity-range",
        type=_pair,
        default=[0.0, 255.0],
        metavar="LOW,HIGH",
        help="raw intensities mapped onto [0, 1] (default: 0,255 for 8-bit images)",
    )
    parser.add_argument(
        "--window",
        default=None,
        help="CT window for data in HU instead of --intensity-range: 'lung' or 'WIDTH,LEVEL' (default: none)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing plan file")


def run(args: argparse.Namespace) -> int:
    from medseg.data.plan import plan_datalist

    out = args.out if args.out is not None else Path(args.datalist).parent / "plan.json"
    if out.exists() and not args.overwrite:
        raise CliError(f"{out} exists; pass --overwrite to replace it")
    window = args.window
    if window is not None and window != "lung":
        window = _pair(window)
    plan = plan_datalist(
        args.datalist,
        args.num_classes,
        out,
        split=args.split,
        label_map=args.label_map,
        intensity_range=args.intensity_range,
        window=window,
        device=args.device,
        progress=progress_enabled(args),
    )
    fp = plan["fingerprint"]
    sys.stdout.write(
        f"{plan['num_cases']} cases, median shape {fp['shape']['median']}, input {plan['spatial_size']}, "
        f"{plan['num_epochs']} epochs x batch {plan['batch_size']} -> {out}\n"
    )
    return 0
