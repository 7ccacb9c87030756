"""Hostile conditions: failing to write our own outputs is exit 1 and stops the batch; bad input is exit 2.

Crafted here: two good series, converted while creating output files fails the way a read-only folder, a
read-only file system or a full disk makes it fail (patched ``tempfile.mkstemp``, since the tests run as root, for
whom permissions do not apply), and once for real: a child process whose file-size limit (RLIMIT_FSIZE) makes the
kernel refuse the write with EFBIG.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_tools"))
from dicom_factory import write_ct_series

from data_tools.cli import main


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


def _two_series(folder: Path) -> None:
    write_ct_series(folder, series_number=1, seed=1, prefix="a")
    write_ct_series(folder, series_number=2, seed=2, prefix="b")


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC], ids=["eacces", "erofs", "enospc"])
def test_output_write_failure_is_exit_1_and_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], code: int
) -> None:
    _two_series(tmp_path / "in")
    # A first run creates the UID key: its one-time notice is not part of what is checked here.
    assert main(["dicom2nifti", str(tmp_path / "in"), str(tmp_path / "warm"), "--no-progress"]) == 0
    capsys.readouterr()
    out = tmp_path / "out"
    real_mkstemp = tempfile.mkstemp
    calls: list[str] = []

    def failing_mkstemp(*args: Any, **kwargs: Any) -> Any:
        if Path(str(kwargs.get("dir", ""))).resolve() == out.resolve():
            calls.append(str(kwargs.get("prefix")))
            error = PermissionError if code == errno.EACCES else OSError
            raise error(code, os.strerror(code), str(out / "x"))
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", failing_mkstemp)
    assert main(["dicom2nifti", str(tmp_path / "in"), str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line
    assert os.strerror(code) in err
    assert "stopped" in err
    assert "--debug" not in err  # an expected failure, said plainly, not an "unexpected failure"
    assert len(calls) == 1  # the second series was not attempted
    assert not out.exists() or not any(out.iterdir())


def _limit_file_size() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


@pytest.mark.skipif(not hasattr(resource, "RLIMIT_FSIZE"), reason="needs RLIMIT_FSIZE (POSIX)")
def test_real_write_failure_from_the_kernel(tmp_path: Path) -> None:
    _two_series(tmp_path / "in")
    out = tmp_path / "out"
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    # The key is written before the limit applies (it is created by an earlier, unlimited run).
    subprocess.run(
        [sys.executable, "-m", "data_tools", "dicom2nifti", str(tmp_path / "in"), str(tmp_path / "warm")],
        env=env,
        check=True,
        capture_output=True,
    )
    result = subprocess.run(
        [sys.executable, "-m", "data_tools", "dicom2nifti", str(tmp_path / "in"), str(out), "--no-progress"],
        env=env,
        capture_output=True,
        text=True,
        preexec_fn=_limit_file_size,
    )
    assert result.returncode == 1, result.stderr
    assert "File too large" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not any(out.iterdir())  # nothing partial: the temporary files were removed
