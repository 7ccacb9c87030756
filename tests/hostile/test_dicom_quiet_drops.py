"""Hostile input: what dicom2nifti drops or invents must be said, and resampling has a limit.

Crafted here: files named ``*.dcm`` that are not DICOM beside a good series (they were skipped without a word),
and a series whose slices alternate 2.9 and 2.1 mm apart, so that resampling onto the median 2.5 mm grid would
interpolate 5 of its 11 slices (``--allow-nonuniform`` used to interpolate without limit).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_tools"))
from dicom_factory import write_ct_series

from data_tools.cli import main


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


def test_non_dicom_files_named_dcm_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_ct_series(tmp_path / "in")
    (tmp_path / "in" / "notes.dcm").write_text("not an image")
    (tmp_path / "in" / "SCAN0001.DCM").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "in" / "readme.txt").write_text("a text file, not claiming to be DICOM")
    assert main(["dicom2nifti", str(tmp_path / "in"), str(tmp_path / "out"), "--no-progress"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "not DICOM" in line]
    assert len(lines) == 1, err  # one summary line with the count and the names
    assert "skipped 2 files" in lines[0]
    assert "notes.dcm" in lines[0]
    assert "SCAN0001.DCM" in lines[0]
    assert "readme.txt" not in err


def _jittered(folder: Path) -> None:
    # Slice s at 2.5 s mm, odd slices moved +0.4 mm: steps 2.9, 2.1, 2.9, ... (median 2.5). On the 2.5 mm grid the
    # 6 even slices are copied and the 5 odd ones interpolated: 5 of 11 = 45 %.
    write_ct_series(folder, n_slices=11, offsets={s: 0.4 for s in range(1, 11, 2)})


def test_allow_nonuniform_refuses_above_the_cap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _jittered(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["dicom2nifti", str(tmp_path / "in"), str(out), "--allow-nonuniform", "--no-progress"]) == 2
    err = capsys.readouterr().err
    failure = [line for line in err.splitlines() if line.startswith("failed:")]
    assert len(failure) == 1
    assert "5 of 11 slices (45%)" in failure[0]
    assert "--max-interpolated" in failure[0]
    assert not out.exists() or not any(out.iterdir())
    # Raising the cap accepts it, and the sidecar lists the interpolated slices.
    assert main(["dicom2nifti", str(tmp_path / "in"), str(out), "--allow-nonuniform", "--max-interpolated", "0.5"]) == 0
    side = json.loads(next(out.glob("*.json")).read_text())
    assert side["interpolated_slices"] == [1, 3, 5, 7, 9]


def test_max_interpolated_is_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _jittered(tmp_path / "in")
    with pytest.raises(SystemExit) as exc:
        main(["dicom2nifti", str(tmp_path / "in"), str(tmp_path / "out"), "--max-interpolated", "1.5"])
    assert exc.value.code == 2
    assert "--max-interpolated must lie in [0, 1]" in capsys.readouterr().err
