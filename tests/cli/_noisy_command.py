"""A ``medseg``-style subcommand that makes the noise MONAI makes, for the console tests.

It warns the way MONAI does (FutureWarning/DeprecationWarning, the bundle-trust UserWarning), logs INFO lines
through a logger with its own stdout handler (like ``monai.apps.get_logger``) after setting the root logger to INFO
with a stdout handler (like a bundle's ``logging.conf``), logs one real WARNING, and prints its own result.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings

HELP = "make noise"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", default="plain", help="unused")


def run(args: argparse.Namespace) -> int:
    warnings.warn_explicit("old default", FutureWarning, "deprecate_utils.py", 1, module="monai.utils.deprecate_utils")
    warnings.warn_explicit("old api", DeprecationWarning, "x.py", 1, module="monai.x")
    warnings.warn(
        "parsing config_file ['train.json']: any `_target_` value is invoked. Only proceed if this config is from "
        "a source you trust.",
        UserWarning,
        stacklevel=1,
    )
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stdout)
    root.addHandler(handler)
    engine = logging.getLogger("noisy.engine")
    engine.propagate = False
    engine.setLevel(logging.INFO)
    engine.addHandler(logging.StreamHandler(sys.stdout))
    try:
        engine.info("Epoch: 1/12, Iter: 1/6 -- train_loss: 1.0947")
        logging.getLogger("medseg.noisy").info("library detail")
        logging.getLogger("medseg.noisy").warning("a real problem")
        sys.stdout.write("RESULT\n")
    finally:
        root.removeHandler(handler)
    return 0
