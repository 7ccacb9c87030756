"""Shared plumbing for the ``medseg`` and ``medseg-data`` console scripts.

Exit codes (DESIGN.md): 0 success, 2 bad usage or bad input (one readable line on stderr), 1 unexpected failure
(one line too; the traceback only with ``--debug``). Each subcommand module exposes ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``, and imports heavy modules inside ``run`` so ``--help`` is
instant.

Without ``-v`` a command prints its own output and real problems only: log records below WARNING are dropped
(MONAI's bundle runner installs the bundle's ``logging.conf``, which would otherwise print every engine
iteration), and the FutureWarnings/DeprecationWarnings of libraries and MONAI's warning that a bundle config runs
code are hidden. ``-v`` shows all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

__all__ = [
    "CliError",
    "HelpFormatter",
    "OneLineParser",
    "build_parser",
    "existing_dir",
    "existing_file",
    "existing_path",
    "main_for",
    "progress_enabled",
    "quiet_bundle_logs",
    "version_text",
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


_MENTIONS_DEFAULT = re.compile(r"\bdefault\b", re.IGNORECASE)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Append ``(default: X)`` to an option's help unless its text already states the default.

    ``argparse.ArgumentDefaultsHelpFormatter`` appends it to every option, so help that explains its default in
    words read "(default: parts) (default: None)". Here the appended default is left out when the help mentions
    a default, and for flags, counters and ``None`` defaults, where "(default: False)" or "(default: None)" says
    nothing the help does not.
    """

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if "%(default)" in text or _MENTIONS_DEFAULT.search(text):
            return text
        if action.default is None or action.default is argparse.SUPPRESS or action.nargs == 0:
            return text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return text
        if action.default == "":
            return f"{text} (default: empty)"
        return super()._get_help_string(action)


def version_text(prog: str) -> str:
    """``PROG X.Y.Z (MONAI a.b.c, PyTorch d.e.f, Python g.h.i)`` from package metadata (no torch import)."""
    from importlib import metadata

    import medseg

    def installed(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "not installed"

    python = ".".join(str(v) for v in sys.version_info[:3])
    return f"{prog} {medseg.__version__} (MONAI {installed('monai')}, PyTorch {installed('torch')}, Python {python})"


class _VersionAction(argparse.Action):
    """``--version``: like argparse's, with the text built only when asked (it reads package metadata)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        sys.stdout.write(version_text(parser.prog) + "\n")
        parser.exit(0)


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


#: Warnings a user of the command line cannot act on, hidden unless ``-v``: library deprecations, and MONAI's
#: notice that parsing a bundle config runs its code (the shipped bundles are ours; ``-v`` shows it for any).
_QUIET_WARNINGS: tuple[tuple[str, type[Warning]], ...] = (
    ("", FutureWarning),
    ("", DeprecationWarning),
    (r"(?s).*source you trust", UserWarning),
)

#: MONAI log records that are not problems: a bundle run with a loss overlay from another folder is how medseg
#: works (monai.bundle.workflows warns that "not all config files are in" the bundle's configs folder).
_QUIET_RECORDS = ("Not all config files are in",)


class _QuietRecords(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(text in message for text in _QUIET_RECORDS)


def quiet_bundle_logs(args: argparse.Namespace) -> None:
    """Hide MONAI's bundle-runner notices that are no problem (see ``_QUIET_RECORDS``) unless ``-v``.

    Call it in a command that runs ``monai.bundle`` workflows (it imports ``monai.bundle.workflows``, whose
    logger has its own handler, so the filter goes on that logger).
    """
    if getattr(args, "verbose", 0) > 0:
        return
    import monai.bundle.workflows  # noqa: F401  - creates the logger the filter goes on

    target = logging.getLogger("monai.bundle.workflows")
    if not any(isinstance(f, _QuietRecords) for f in target.filters):
        target.addFilter(_QuietRecords())


@contextlib.contextmanager
def _logging(verbosity: int) -> Iterator[None]:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger().setLevel(level)
    with contextlib.ExitStack() as stack:
        stack.enter_context(warnings.catch_warnings())
        if verbosity <= 0:
            for message, category in _QUIET_WARNINGS:
                warnings.filterwarnings("ignore", message=message, category=category)
            # Levels alone do not hold: monai.bundle applies the bundle's logging.conf (root at INFO) and MONAI's
            # own loggers carry INFO levels and stdout handlers; logging.disable holds across both.
            logging.disable(logging.INFO)
            stack.callback(logging.disable, logging.NOTSET)
        try:
            from tqdm.contrib.logging import logging_redirect_tqdm
        except ImportError:  # pragma: no cover - tqdm is a dependency
            yield
            return
        with logging_redirect_tqdm():
            yield


def build_parser(prog: str, description: str, commands: dict[str, str]) -> tuple[OneLineParser, dict[str, ModuleType]]:
    """The parser of a console script with one subcommand per ``commands`` entry (name -> module path).

    Returns:
        The parser and the imported subcommand modules by name.
    """
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--version", action=_VersionAction, help="show the versions of medseg, MONAI, PyTorch, Python")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    modules = {}
    for name, module_path in commands.items():
        module = importlib.import_module(module_path)
        modules[name] = module
        p = sub.add_parser(
            name,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=HelpFormatter,
        )
        module.add_arguments(p)
        _common_options(p)
    return parser, modules


def main_for(prog: str, description: str, commands: dict[str, str], argv: Sequence[str] | None = None) -> int:
    """Build the parser from ``commands`` (name -> module path), run the chosen one, map errors to exit codes."""
    parser, modules = build_parser(prog, description, commands)
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
        except BrokenPipeError:
            # the reader of our output went away (`medseg bundle list | head`): stop quietly, as Python's docs advise
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
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
