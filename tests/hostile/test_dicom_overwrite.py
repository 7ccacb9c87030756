"""Hostile input: two patients whose series look alike, converted into one folder, must not replace each other.

Crafted here: two patients, each with one series numbered 0 and without a description (the old name for both was
``000.nii.gz``), converted one after the other into the same OUT_DIR, privately and with ``--keep-phi``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_tools"))
from dicom_factory import write_ct_series

from data_tools.cli import main


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


def _patient(folder: Path, name: str, pid: str, seed: int) -> None:
    write_ct_series(folder, series_number=0, description="", patient_name=name, patient_id=pid, seed=seed)


def _contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("extra", [[], ["--keep-phi"]], ids=["private", "keep-phi"])
def test_second_patient_does_not_replace_the_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str]
) -> None:
    _patient(tmp_path / "alice", "Smith^Alice", "P-1", seed=1)
    _patient(tmp_path / "bob", "Jones^Bob", "P-2", seed=2)
    out = tmp_path / "out"
    assert main(["dicom2nifti", str(tmp_path / "alice"), str(out), "--no-progress", *extra]) == 0
    first = _contents(out)
    assert main(["dicom2nifti", str(tmp_path / "bob"), str(out), "--no-progress", *extra]) == 0
    both = _contents(out)
    # Two series, two NIfTIs and two sidecars; the first patient's files are byte for byte what they were.
    assert len(both) == 4
    assert sum(name.endswith(".nii.gz") for name in both) == 2
    assert all(both[name] == data for name, data in first.items())


def test_converting_again_refuses_unless_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _patient(tmp_path / "alice", "Smith^Alice", "P-1", seed=1)
    out = tmp_path / "out"
    assert main(["dicom2nifti", str(tmp_path / "alice"), str(out), "--no-progress"]) == 0
    capsys.readouterr()
    before = _contents(out)
    (out / next(n for n in before if n.endswith(".json"))).write_text("{}")  # mark it, to see a replacement
    marked = _contents(out)
    # Same series again: nothing replaced, one line says which file exists and how to replace it; exit 2 (input).
    assert main(["dicom2nifti", str(tmp_path / "alice"), str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "exists" in err
    assert "--overwrite" in err
    assert _contents(out) == marked
    assert main(["dicom2nifti", str(tmp_path / "alice"), str(out), "--no-progress", "--overwrite"]) == 0
    assert _contents(out) == before
