"""``medseg study``: run a loss study from a study definition (thin wrapper over :mod:`medseg.study`)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

HELP = "run a study: cross-validated training runs of a bundle, paired per-image comparisons, a report"
DESCRIPTION = (
    "Prepare the study's data (idempotent), cut it into cross-validation folds, compute each fold's stats.json "
    "and plan.json on its training cases, train every run of the study on every fold through the bundle (runs "
    "'from' another start from its model: CE pre-training then fine-tuning), predict each fold's test images in "
    "their own geometry and write the report (README.md, results.json): per-image Dice/IoU with 95% bootstrap "
    "intervals, pooled IoU, paired per-image comparisons with Wilcoxon p-values. Finished runs are reused, "
    "interrupted ones resume from their last checkpoint, failed ones are recorded and retried."
)

logger = logging.getLogger(__name__)


def _seed(value: str) -> int:
    try:
        return int(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"seed {value!r} is not an integer") from err


def _fold(value: str) -> int:
    from medseg.study.runner import ALL_DATA

    if value == "all":
        return ALL_DATA
    fold = _seed(value)
    if fold < 0:
        raise argparse.ArgumentTypeError(f"fold {value!r} must be >= 0 or 'all'")
    return fold


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
    parser.add_argument(
        "--folds",
        type=_fold,
        nargs="+",
        default=None,
        help="only these cross-validation folds; 'all' trains the runs on every case (the models to ship, not "
        "evaluated; default: every cross-validation fold)",
    )
    parser.add_argument("--runs", nargs="+", default=None, help="only these runs (default: all)")
    parser.add_argument(
        "--device", default="cpu", help="cpu, cuda or cuda:N for training and prediction (default: cpu)"
    )
    parser.add_argument("--no-report", action="store_true", help="do not write the report (another process will)")
    parser.add_argument(
        "--report-only", action="store_true", help="train nothing; write the report from the runs finished so far"
    )
    parser.add_argument("--dry-run", action="store_true", help="list finished and pending runs; train nothing")


def run(args: argparse.Namespace) -> int:
    """Run the study; exit 1 when a run failed (the report is still written)."""
    from medseg.console import progress_enabled, quiet_bundle_logs
    from medseg.study import load_study_config, run_study

    cfg = load_study_config(args.config)
    if not args.dry_run:
        quiet_bundle_logs(args)
    command = "medseg study " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    result = run_study(
        cfg,
        args.work_dir,
        results_dir=args.results_dir,
        seeds=args.seeds,
        folds=args.folds,
        runs=args.runs,
        device=args.device,
        report=not args.no_report,
        report_only=args.report_only,
        dry_run=args.dry_run,
        command=command,
        num_threads=args.threads,
        progress=progress_enabled(args),
    )
    if args.dry_run:
        todo = [r for r in result.plan if not r.done]
        sys.stdout.write(f"{len(result.plan)} run(s) planned, {len(todo)} to do (work dir {result.work_dir})\n")
        for r in result.plan:
            sys.stdout.write(f"{'done' if r.done else 'todo'}\tseed {r.seed}\t{r.fold_name}\t{r.name}\t{r.run_dir}\n")
        return 0
    if not args.no_report:
        sys.stdout.write(f"report: {result.results_dir}/README.md\n")
    if result.failures:
        names = ", ".join(f"{f['run']} (fold {f['fold']})" for f in result.failures)
        sys.stderr.write(f"{len(result.failures)} run(s) failed: {names}\n")
        return 1
    return 0
