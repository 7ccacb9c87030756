"""Shared plumbing for the ``medseg`` and ``medseg-data`` console scripts.

Exit codes (DESIGN.md): 0 success, 2 bad usage or bad input (one readable line on stderr), 1 unexpected failure
(one line too; the traceback only with ``--debug``). Each subcommand module exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``, and imports heavy modules inside ``run`` so ``--help`` is
instant.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "CliError",
    "OneLineParser",
    "existing_dir",
    "existing_file",
    "existing_path",
    "main_for",
    "progress_enabled",
]

logger = logging.getLogger(__name__)

#: Exceptions that mean "the user's input is wrong": exit code 2.
INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    FileNotFoundError,
    FileExistsError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)


class CliError(Exception):
    """An error with a ready message and exit code, raised by a command to stop cleanly."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _path_checker(kind: str) -> Any:
    def check(value: str) -> Path:
        p = Path(value)
        ok = {"file": p.is_file(), "dir": p.is_dir(), "path": p.exists()}[kind]
        if not ok:
            what = {"file": "an existing file", "dir": "an existing directory", "path": "an existing path"}[kind]
            raise argparse.ArgumentTypeError(f"{value!r} is not {what}")
        return p

    return check


existing_file = _path_checker("file")
existing_dir = _path_checker("dir")
existing_path = _path_checker("path")


def progress_enabled(args: argparse.Namespace) -> bool:
    """Progress bars show unless ``--no-progress`` was given or stderr is not a terminal."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars (default: shown on a tty)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv: debug)")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")


@contextlib.contextmanager
def _logging(verbosity: int) -> Iterator[None]:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)
    try:
        from tqdm.contrib.logging import logging_redirect_tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        yield
        return
    with logging_redirect_tqdm():
        yield


def main_for(prog: str, description: str, commands: dict[str, str], argv: Sequence[str] | None = None) -> int:
    """Build the parser from ``commands`` (name -> module path), run the chosen one, map errors to exit codes."""
    parser = OneLineParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    modules = {}
    for name, module_path in commands.items():
        module = importlib.import_module(module_path)
        modules[name] = module
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        module.add_arguments(p)
        _common_options(p)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    with _logging(args.verbose):
        try:
            return int(modules[args.command].run(args) or 0)
        except KeyboardInterrupt:
            sys.stderr.write(f"{prog} {args.command}: interrupted\n")
            return 130
        except CliError as err:
            if args.debug:
                raise
            sys.stderr.write(f"{prog} {args.command}: error: {err}\n")
            return err.code
        except INPUT_ERRORS as err:
            if args.debug:
                raise
            msg = err.args[0] if isinstance(err, KeyError) and err.args else err
            sys.stderr.write(f"{prog} {args.command}: error: {msg}\n")
            return 2
        except Exception as err:
            if args.debug:
                raise
            sys.stderr.write(
                f"{prog} {args.command}: unexpected failure: {type(err).__name__}: {err} (rerun with --debug)\n"
            )
            return 1
