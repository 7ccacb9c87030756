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


# --------------------------------------------------------------------------------------------- run verbatim
def _everyday_block() -> list[str]:
    """The commands of the README's "Everyday commands" block, continuation lines joined, comments dropped."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Everyday commands") :]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block is not None
    lines = []
    for line in block.group(1).replace("\\\n", " ").splitlines():
        code = line.split("   #", 1)[0].split("  # ", 1)[0].strip()
        if code and not code.startswith("#"):
            lines.append(" ".join(code.split()))
    return lines


def _line(start: str) -> str:
    (line,) = [ln for ln in _everyday_block() if ln.startswith(start)]
    return line


def _generated_case(cwd: Path, work: Path) -> None:
    """``scan.nii.gz`` (a synthetic CT volume in HU) in ``cwd`` and its reference at ``$WORK/labels/scan.nii.gz``."""
    import shutil

    from medseg.data.synthetic import make_ct_volume

    volume = make_ct_volume(cwd / "scan.nii.gz", shape=(40, 40, 4), seed=3, label_path=cwd / "ref.nii.gz")
    (work / "labels").mkdir(parents=True)
    shutil.copy(volume.label, work / "labels" / "scan.nii.gz")


def test_readme_predict_then_evaluate_run_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The README's predict and evaluate lines, verbatim but for $WORK, work together on generated data: evaluate
    pairs predict's NAME_seg masks with the labels (``--pred-suffix _seg``) and ignores the sidecars."""
    import json

    import torch

    from medseg.checkpoint import save_checkpoint
    from medseg.cli.main import main
    from medseg.networks import CopleNet

    work = tmp_path / "work"
    monkeypatch.chdir(tmp_path)
    _generated_case(tmp_path, work)
    torch.manual_seed(0)
    network = CopleNet(2, 1, 2, features=(8, 16, 32, 64, 128), norm=("group", {"num_groups": 4}))
    save_checkpoint(  # what the README's training commands leave in $WORK/runs/mc/models/model.pt (tiny here)
        work / "runs" / "mc" / "models" / "model.pt",
        network,
        {"bundle": "covid19_ct_lesion", "classes": ["background", "infection"], "roi_size": [32, 32]},
    )
    for start in ("medseg predict ", "medseg evaluate "):
        tokens = shlex.split(_line(start).replace("$WORK", str(work)))
        code = main([*tokens[1:], "--no-progress"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        assert "extra" not in captured.err  # no sidecar or overlay taken for an unmatched prediction
    masks = sorted(p.name for p in (work / "masks").iterdir())
    assert masks == ["scan_prediction.json", "scan_seg.nii.gz", "scan_seg_labels.json"]
    summary = json.loads((work / "eval" / "summary.json").read_text(encoding="utf-8"))
    assert summary["num_cases"] == 1
    assert summary["missing_predictions"] == []
    assert summary["extra_predictions"] == []  # the label sidecar and the provenance record are not predictions


@pytest.mark.slow
def test_readme_everyday_commands_run_end_to_end(tmp_path: Path) -> None:
    """Every everyday command that applies to generated data, verbatim, in one bash session: slices2d, split,
    check, stats, plan on synthetic slices; both training stages (1 epoch each: the only addition); predict;
    evaluate."""
    import os
    import shutil
    import subprocess
    import sys

    from medseg.data.synthetic import make_ct_slices

    make_ct_slices(tmp_path / "src", num_cases=10, size=(32, 32), seed=0, fmt="png")
    shutil.copytree(tmp_path / "src" / "images", tmp_path / "imgs")  # what `imgs/ masks/` name in the README
    shutil.copytree(tmp_path / "src" / "labels", tmp_path / "masks")
    work = tmp_path / "work"
    _generated_case(tmp_path, work)
    wanted = ("B=", "medseg-data slices2d", "medseg-data split", "medseg-data check", "medseg-data stats")
    wanted += ("medseg-data plan", "python -m monai.bundle run", "medseg predict", "medseg evaluate")
    script = ["set -euo pipefail"]
    for line in _everyday_block():
        if line.startswith(wanted):
            script.append(f"{line} --num_epochs 1" if line.startswith("python -m monai.bundle run") else line)
    assert len(script) == 11, script  # set -e, B=, 5 data commands, 2 training stages, predict, evaluate
    env = {**os.environ, "WORK": str(work), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env["OMP_NUM_THREADS"] = "1"
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert (work / "runs" / "mc" / "models" / "model.pt").is_file()
    assert (work / "masks" / "scan_seg.nii.gz").is_file()
    assert (work / "eval" / "summary.json").is_file()
