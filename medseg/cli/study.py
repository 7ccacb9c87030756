"""``medseg study``: run a loss study from a study definition (thin wrapper over :mod:`medseg.study`)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

HELP = "run a loss study: CE pre-training, fine-tune each loss from it, evaluate, write a report"
DESCRIPTION = (
    "Prepare the study's data (idempotent), count the training split's classes (stats.json), pre-train COPLE-Net "
    "with CE once per seed, fine-tune every listed loss from that checkpoint with the same budget, evaluate each on "
    "the held-back test split and write the report (README.md, results.json, curves, bound table). Finished runs "
    "are reused, interrupted ones resume from their last checkpoint, failed ones are recorded and retried."
)

logger = logging.getLogger(__name__)


def _seed(value: str) -> int:
    try:
        return int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"seed {value!r} is not an integer") from err


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medseg study``."""
    parser.description = DESCRIPTION
    parser.add_argument(
        "config", help="study definition: a JSON file or the name of a shipped study (e.g. covid19_binary)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="runs, converted data, predictions (default: runs/study/<name>)"
    )
    parser.add_argument(
        "--results-dir", type=Path, default=None, help="where the report goes (default: <work-dir>/report)"
    )
    parser.add_argument("--seeds", type=_seed, nargs="+", default=None, help="seeds to run (default: the config's)")
    parser.add_argument(
        "--threads",
        type=_seed,
        default=1,
        help="torch CPU threads (default: 1; more threads were much slower on a shared CPU, see medseg.study.runner)",
    )
    parser.add_argument("--dry-run", action="store_true", help="list finished and pending runs; train nothing")


def run(args: argparse.Namespace) -> int:
    """Run the study; exit 1 when a run failed (the report is still written)."""
    from medseg.console import progress_enabled
    from medseg.study import load_study_config, run_study

    cfg = load_study_config(args.config)
    command = "medseg study " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    result = run_study(
        cfg,
        args.work_dir,
        results_dir=args.results_dir,
        seeds=args.seeds,
        dry_run=args.dry_run,
        command=command,
        num_threads=args.threads,
        progress=progress_enabled(args),
    )
    if args.dry_run:
        todo = [r for r in result.plan if not r.done]
        sys.stdout.write(f"{len(result.plan)} run(s) planned, {len(todo)} to do (work dir {result.work_dir})\n")
        for r in result.plan:
            sys.stdout.write(f"{'done' if r.done else 'todo'}\tseed {r.seed}\t{r.name}\t{r.run_dir}\n")
        return 0
    sys.stdout.write(f"report: {result.results_dir}/README.md\n")
    if result.failures:
        sys.stderr.write(f"{len(result.failures)} run(s) failed: {', '.join(f['name'] for f in result.failures)}\n")
        return 1
    return 0
