"""Resuming a bundle run: the same random sequence as an uninterrupted run; a damaged ``last.pt`` is one line.

The covid bundle trains with the plan's "strong" augmentation (random MONAI transforms) and shuffled batches, so
an interrupted run matches an uninterrupted one only when ``last.pt`` carries every random state.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _bundle_helpers import BUNDLES, REPO_ROOT, Dataset, bundle_configs, history_rows, run_workflow, small_overrides

pytestmark = pytest.mark.bundle

COVID = "covid19_ct_lesion"


def _train(data: Dataset, run_dir: Path, epochs: int) -> None:
    run_workflow(COVID, bundle_configs(COVID), small_overrides(data, run_dir, num_epochs=epochs))


def test_two_epochs_straight_equal_one_then_a_resumed_one(covid_data: Dataset, tmp_path: Path) -> None:
    _train(covid_data, tmp_path / "straight", 2)
    _train(covid_data, tmp_path / "split", 1)
    _train(covid_data, tmp_path / "split", 2)  # a new workflow: resumes from last.pt after epoch 1
    straight = history_rows(tmp_path / "straight" / "runs" / "history.csv")
    split = history_rows(tmp_path / "split" / "runs" / "history.csv")
    assert [r["epoch"] for r in split] == ["1", "2"]
    assert split == straight  # training loss, learning rate and every validation metric, to 6 digits
    a = torch.load(tmp_path / "straight" / "models" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "split" / "models" / "last.pt", weights_only=True)
    for key, value in a["network"].items():
        torch.testing.assert_close(b["network"][key], value, rtol=0, atol=0, msg=key)
    assert len(a["rng_state"]["transforms"]) > 1  # the augmentation's random transforms were found


def test_a_truncated_last_pt_is_one_line_without_traceback(covid_data: Dataset, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _train(covid_data, run_dir, 1)
    last = run_dir / "models" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])
    overrides = small_overrides(covid_data, run_dir, num_epochs=2)
    command = [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(BUNDLES / COVID / "configs" / "train.json"),
    ]
    for key, value in overrides.items():
        command += [f"--{key}", str(value).replace(" ", "") if isinstance(value, list) else str(value)]
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode != 0
    assert "Traceback" not in done.stdout + done.stderr
    lines = [ln for ln in done.stderr.splitlines() if "cannot resume" in ln]
    assert len(lines) == 1, done.stderr[-3000:]
    assert f"{last} is damaged" in lines[0]
    assert "--pretrained_ckpt" in lines[0]
    assert "--resume False" in lines[0]
