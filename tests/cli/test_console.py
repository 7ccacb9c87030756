"""The console plumbing both scripts share: help texts, ``--version``, and quiet output without ``-v``."""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.console import HelpFormatter, build_parser, quiet_bundle_logs

HERE = Path(__file__).resolve().parent


def _parsers(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    """``parser`` and every sub-command parser below it (``medseg bench loss`` included)."""
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += _parsers(sub, f"{name} {sub_name}")
    return found


def _all_parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    from data_tools.cli import COMMANDS as DATA_COMMANDS
    from medseg.cli.main import COMMANDS

    found = []
    for prog, commands in (("medseg", COMMANDS), ("medseg-data", DATA_COMMANDS)):
        parser, _ = build_parser(prog, "", commands)
        found += _parsers(parser, prog)
    return found


def _option_entries(help_text: str) -> list[str]:
    """The help text of each option/positional, joined over its wrapped lines."""
    entries: list[str] = []
    for line in help_text.splitlines():
        if re.match(r"^  \S", line):
            entries.append(line.strip())
        elif re.match(r"^\s{3,}\S", line) and entries:
            entries[-1] += " " + line.strip()
        else:
            entries.append("")
    return [e for e in entries if e]


def test_every_subcommand_is_scanned() -> None:
    names = {name for name, _ in _all_parsers()}
    assert {"medseg predict", "medseg bench loss", "medseg bench infer", "medseg bundle copy"} <= names
    assert {"medseg-data endovis", "medseg-data split", "medseg-data check"} <= names


@pytest.mark.parametrize(("name", "parser"), _all_parsers(), ids=lambda v: v if isinstance(v, str) else "")
def test_help_states_each_default_once(name: str, parser: argparse.ArgumentParser) -> None:
    text = parser.format_help()
    for entry in _option_entries(text):
        assert len(re.findall(r"\bdefault\b", entry, flags=re.IGNORECASE)) <= 1, f"{name}: {entry}"
        assert "(default: None)" not in entry, f"{name}: {entry}"
        assert "(default: False)" not in entry, f"{name}: {entry}"


def test_formatter_adds_the_default_only_where_the_text_does_not_say_it() -> None:
    parser = argparse.ArgumentParser(prog="p", formatter_class=HelpFormatter)
    parser.add_argument("--task", default=None, help="what to do (default: parts)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--suffix", default="", help="strip this")
    parser.add_argument("--flag", action="store_true", help="a switch")
    text = " ".join(parser.format_help().split())
    assert "what to do (default: parts) --seed" in text
    assert "random seed (default: 0)" in text
    assert "strip this (default: empty)" in text
    assert "a switch" in text
    assert "a switch (default" not in text


@pytest.mark.parametrize("script", ["medseg", "medseg-data"])
def test_version(script: str) -> None:
    import medseg

    module = "medseg.cli.main" if script == "medseg" else "data_tools.cli"
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; from {module} import main; sys.exit(main(['--version']))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{script} {medseg.__version__} (MONAI "), done.stdout
    # --version reads package metadata only: it imports neither torch nor MONAI
    light = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, contextlib, io\nfrom {module} import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: main(['--version'])\n    except SystemExit: pass\n"
            "print('torch' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert light.stdout.strip() == "False", light.stderr


def _noisy(*flags: str) -> subprocess.CompletedProcess[str]:
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); from medseg.console import main_for; "
        f"sys.exit(main_for('prog', 'test', {{'noisy': '_noisy_command'}}, ['noisy', *{list(flags)!r}]))"
    )
    return subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=120, check=False
    )


def test_quiet_without_verbose() -> None:
    done = _noisy()
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert "RESULT" in done.stdout
    assert "a real problem" in out
    for noise in ("old default", "old api", "source you trust", "Epoch: 1/12", "library detail"):
        assert noise not in out, (noise, out)


def test_verbose_shows_everything() -> None:
    done = _noisy("-v")
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    for text in ("RESULT", "a real problem", "old default", "old api", "source you trust", "Epoch: 1/12"):
        assert text in out, (text, out)


def test_console_state_is_restored_after_a_command() -> None:
    from medseg.console import main_for

    sys.path.insert(0, str(HERE))
    try:
        assert main_for("prog", "test", {"noisy": "_noisy_command"}, ["noisy"]) == 0
    finally:
        sys.path.remove(str(HERE))
    assert logging.root.manager.disable == logging.NOTSET


def test_quiet_bundle_logs_drops_only_the_config_folder_notice() -> None:
    target = logging.getLogger("monai.bundle.workflows")
    before = list(target.filters)
    try:
        quiet_bundle_logs(argparse.Namespace(verbose=0))
        notice = target.makeRecord(target.name, logging.WARNING, "f", 1, "Not all config files are in X.", (), None)
        problem = target.makeRecord(target.name, logging.WARNING, "f", 1, "Cannot find the config file", (), None)
        assert not target.filter(notice)
        assert target.filter(problem)
    finally:
        target.filters[:] = before
    quiet_bundle_logs(argparse.Namespace(verbose=1))
    assert target.filters == before
