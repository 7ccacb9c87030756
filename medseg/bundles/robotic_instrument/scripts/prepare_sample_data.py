"""Write this bundle's embedded sample data: synthetic RGB instrument frames, a datalist and the stats files.

Usage (from the repository root)::

    python medseg/bundles/robotic_instrument/scripts/prepare_sample_data.py [--out DIR] [--num-frames N] [--size H W]

Writes ``DIR/images/<sequence>/``, ``DIR/labels/<sequence>/``, ``DIR/datalist.json`` (sequential 60/20/20
split by frame order, as in the papers), ``DIR/stats.json`` (instrument vs background, 2 classes: what
``train.json`` reads) and ``DIR/stats_parts.json`` (background, shaft, wrist, claspers, probe: 5 classes, what
the ``parts.json`` overlay reads). The labels are part indices (1 shaft, 2 wrist, 3 claspers), so the same data
serves both tasks (``label_map`` ``binary`` merges the parts). The synthetic tools have no probe, so its count is
0 and its margin offsets are 0 (``--empty zero`` of ``medseg-data stats``). No download: everything is generated
by :mod:`medseg.data.synthetic`, deterministically for a seed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=BUNDLE / "sample_data", help="output folder (default: %(default)s)")
    parser.add_argument("--num-frames", type=int, default=30, help="number of frames (default: %(default)s)")
    parser.add_argument(
        "--size", type=int, nargs=2, default=(96, 128), metavar=("H", "W"), help="frame size (default: 96 128)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)

    from medseg.data.plan import plan_datalist
    from medseg.data.statistics import compute_stats, write_stats
    from medseg.data.synthetic import make_instrument_frames

    datalist = make_instrument_frames(
        args.out, num_frames=args.num_frames, size=tuple(args.size), seed=args.seed, task="parts"
    )
    write_stats(args.out / "stats.json", compute_stats(datalist, num_classes=2, label_map="binary"))
    plan_datalist(datalist, 2, args.out / "plan.json", label_map="binary")
    write_stats(
        args.out / "stats_parts.json", compute_stats(datalist, num_classes=5, label_map="identity", empty="zero")
    )
    sys.stdout.write(f"sample data: {datalist}\nstats: {args.out / 'stats.json'}, {args.out / 'stats_parts.json'}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
