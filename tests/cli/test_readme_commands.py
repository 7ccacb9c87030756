"""The README's command lines name subcommands and options that exist, and write outside the checkout."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from medseg.console import build_parser

README = Path(__file__).resolve().parents[2] / "README.md"


def _command_lines() -> list[str]:
    """``medseg``/``medseg-data`` lines of the README's bash blocks, continuation lines joined."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    lines = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line.startswith(("medseg ", "medseg-data ")):
                lines.append(line)
    return lines


def _parser_for(tokens: list[str]) -> argparse.ArgumentParser:
    from data_tools.cli import COMMANDS as DATA_COMMANDS
    from medseg.cli.main import COMMANDS

    commands = COMMANDS if tokens[0] == "medseg" else DATA_COMMANDS
    parser: argparse.ArgumentParser = build_parser(tokens[0], "", commands)[0]
    for token in tokens[1:]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or token not in subs[0].choices:
            break
        parser = subs[0].choices[token]
    return parser


def test_readme_has_commands() -> None:
    assert len(_command_lines()) >= 10


@pytest.mark.parametrize("line", _command_lines())
def test_readme_command_options_exist(line: str) -> None:
    tokens = shlex.split(line.replace("[", " ").replace("]", " ").replace("...", " "))
    parser = _parser_for(tokens)
    known = {s for a in parser._actions for s in a.option_strings}
    unknown = [t for t in tokens if t.startswith("--") and t.split("=", 1)[0] not in known]
    assert not unknown, f"{line}: {unknown} not options of `{parser.prog}`"


@pytest.mark.parametrize("line", _command_lines())
def test_readme_outputs_go_outside_the_checkout(line: str) -> None:
    tokens = shlex.split(line)
    for flag in ("--output", "--out", "--work-dir", "--results-dir", "-o"):
        if flag in tokens:
            assert tokens[tokens.index(flag) + 1].startswith("$WORK"), line
    if tokens[0] == "medseg-data" and tokens[1] in ("dicom2nifti", "rtstruct2nifti", "lidc", "slices2d", "endovis"):
        # the README writes positionals first: IN ... OUT_DIR, then options
        options_at = next((i for i, t in enumerate(tokens) if t.startswith(("-", "["))), len(tokens))
        assert tokens[options_at - 1].startswith("$WORK"), line
