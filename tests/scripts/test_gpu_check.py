"""scripts/gpu_check.sh: valid bash, a working --help, and its refusals (the steps themselves: the CPU dry run)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("script", [SCRIPT, SCRIPT.with_name("gpu_wheels.sh")])
def test_the_scripts_parse(script: Path):
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def test_help_lists_the_steps_and_options():
    done = _run("--help")
    assert done.returncode == 0, done.stderr
    for word in ("pytest_gpu", "loss_bfloat16", "infer", "train_<bundle>", "study", "--tiny", "--data", "--budget"):
        assert word in done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bogus",), "unknown option '--bogus'"),
        (("--device", "tpu"), "--device must be cpu, cuda or cuda:N, got 'tpu'"),
        (("--budget", "8m"), "--budget must be whole seconds, got '8m'"),
    ],
)
def test_bad_options_exit_2_with_one_line(args, message):
    done = _run(*args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"gpu_check.sh: {message}")


def test_a_used_out_folder_and_missing_data_are_refused(tmp_path: Path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "gpu.json").write_text("{}", encoding="utf-8")
    done = _run("--device", "cpu", "--out", str(tmp_path / "out"))
    assert done.returncode == 2
    assert "is not empty" in done.stderr
    done = _run("--device", "cpu", "--out", str(tmp_path / "new"), "--data", str(tmp_path / "nodata"))
    assert done.returncode == 2
    assert "has no imgs/ folder" in done.stderr
    assert not (tmp_path / "new").exists()
