"""``medseg bench loss|infer|train|gpu-summary``: benchmarks against named references (thin wrapper).

``loss`` is :mod:`medseg.bench.loss`, ``infer`` :mod:`medseg.bench.infer`, ``train`` :mod:`medseg.bench.train`,
``gpu-summary`` :mod:`medseg.bench.gpu_summary`; each is imported only when the ``bench`` parser is built, so
``medseg bench loss`` keeps working where the inference benchmark is not installed.
"""

from __future__ import annotations

import argparse
import importlib
import logging
from types import ModuleType

from medseg.console import CliError, HelpFormatter, OneLineParser

logger = logging.getLogger(__name__)

HELP = "benchmarks: loss (vs cross-entropy), infer (vs MONAI), train (images/s)"
DESCRIPTION = (
    "Benchmarks that print ratios against named references. `loss`: forward+backward time and peak memory of "
    "every registered loss vs PyTorch's cross_entropy. `infer`: the inference benchmark. `train`: a bundle's "
    "training throughput on synthetic data. `gpu-summary`: the summary of scripts/gpu_check.sh's folder. --json "
    "prints one JSON object."
)

_SUBCOMMANDS = {
    "loss": ("medseg.bench.loss", "time and peak memory of every registered loss vs F.cross_entropy"),
    "infer": ("medseg.bench.infer", "inference benchmark"),
    "train": ("medseg.bench.train", "training throughput (images/s) of a bundle on synthetic data"),
    "gpu-summary": ("medseg.bench.gpu_summary", "gpu.json and gpu.md from a scripts/gpu_check.sh folder"),
}


def _import(name: str) -> ModuleType | None:
    module_path = _SUBCOMMANDS[name][0]
    try:
        return importlib.import_module(module_path)
    except ImportError as err:
        if err.name is not None and module_path.startswith(err.name):
            logger.debug("%s is not available: %s", module_path, err)
            return None
        raise


def _common_options(parser: argparse.ArgumentParser) -> None:
    # The top-level `bench` parser gets --no-progress/-v/--debug from medseg.console; repeat them here so they
    # also work after the sub-command. SUPPRESS keeps a value given before the sub-command.
    parser.add_argument("--no-progress", action="store_true", default=argparse.SUPPRESS, help="hide progress bars")
    parser.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="full tracebacks")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the benchmark sub-commands and their options."""
    sub = parser.add_subparsers(
        dest="bench_command", metavar="{loss,infer,train,gpu-summary}", parser_class=OneLineParser
    )
    sub.required = True
    for name, (_, help_text) in _SUBCOMMANDS.items():
        module = _import(name)
        if module is None:
            help_text += " (not available in this installation)"
        p = sub.add_parser(
            name,
            help=help_text,
            description=getattr(module, "__doc__", None) or help_text,
            formatter_class=HelpFormatter,
        )
        if module is not None:
            module.add_arguments(p)
        _common_options(p)


def run(args: argparse.Namespace) -> int:
    """Dispatch to the chosen benchmark's ``run(args)``."""
    name = args.bench_command
    module = _import(name)
    if module is None:
        raise CliError(f"`medseg bench {name}` is not available: {_SUBCOMMANDS[name][0]} is not installed", code=1)
    return int(module.run(args) or 0)
