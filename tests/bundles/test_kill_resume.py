"""A training process killed with SIGKILL mid-run, restarted with the same command, continues from ``last.pt``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _bundle_helpers import BUNDLES, FEATURES, REPO_ROOT, SIZE, history_rows

pytestmark = [pytest.mark.bundle, pytest.mark.slow]

COVID = "covid19_ct_lesion"


def _command(data: Path, run_dir: Path, epochs: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(BUNDLES / COVID / "configs" / "train.json"),
        "--logging_file",
        str(BUNDLES / COVID / "configs" / "logging.conf"),
        "--bundle_root",
        str(run_dir),
        "--dataset_dir",
        str(data),
        "--num_epochs",
        str(epochs),
        "--batch_size",
        "2",
        "--spatial_size",
        f"[{SIZE},{SIZE}]",
        "--network_def#features",
        str(FEATURES).replace(" ", ""),
    ]


def test_killed_run_resumes_where_it_stopped(tmp_path: Path) -> None:
    from medseg.data.plan import plan_datalist
    from medseg.data.synthetic import make_ct_slices

    data = tmp_path / "data"
    datalist = make_ct_slices(data, num_cases=6, size=(SIZE, SIZE), seed=0)
    plan_datalist(datalist, 2, data / "plan.json")  # train.json reads dataset_dir/plan.json
    run_dir = tmp_path / "run"
    command = _command(data, run_dir, epochs=6)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    log_file = (tmp_path / "first.log").open("w")
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    history = run_dir / "runs" / "history.csv"
    deadline = time.monotonic() + 600
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if history.is_file() and len(history_rows(history)) >= 2:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the run finished or failed before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
        log_file.close()

    # what the killed run left behind is intact
    killed_rows = history_rows(history)
    last = torch.load(run_dir / "models" / "last.pt", map_location="cpu", weights_only=True)
    saved_epoch = int(last["trainer"]["iteration"]) // int(last["trainer"]["epoch_length"])
    assert 1 <= saved_epoch < 6
    assert len(killed_rows) >= saved_epoch

    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert f"at epoch {saved_epoch}" in log  # ResumeFromCheckpoint's message
    rows = history_rows(history)
    assert [r["epoch"] for r in rows] == [str(e) for e in range(1, 7)]
    # epochs finished before the kill are kept as they were
    for before, after in zip(killed_rows[:saved_epoch], rows[:saved_epoch], strict=True):
        assert before == after
        assert before["train_loss"]
        assert before["val_miou"]
    final = torch.load(run_dir / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert int(final["trainer"]["iteration"]) == 6 * int(final["trainer"]["epoch_length"])
