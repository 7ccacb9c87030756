"""Hostile input: converting without any option must write no protected health information (private by default).

Crafted here: a series with patient name, ID, birth date, sex, age, study/series dates, accession number,
institution and UIDs, stored under a folder named after the patient. The default conversion must write none of
them (UIDs only as keyed digests, no source paths); ``--keep-phi`` writes them (the control that shows the checks
can fail). The UID checks of ``rtstruct2nifti`` must still work on the private outputs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_tools"))
from dicom_factory import ContourSpec, write_ct_series, write_rtstruct

from data_tools.cli import main


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


def _series(folder: Path):  # type: ignore[no-untyped-def]
    spec = write_ct_series(folder, patient_name="Doe^Jane", patient_id="PID-98765", birth_date="19600214", seed=3)
    for path in spec.files:
        ds = pydicom.dcmread(path)
        ds.PatientSex = "F"
        ds.PatientAge = "063Y"
        ds.SeriesDate = "20240103"
        ds.AccessionNumber = "ACC-55555"
        ds.InstitutionName = "Northgate Clinic"
        ds.save_as(path, enforce_file_format=True)
    return spec


def _identifiers(spec) -> list[str]:  # type: ignore[no-untyped-def]
    return [
        "Doe",
        "Jane",
        "PID-98765",
        "19600214",
        "20240102",  # StudyDate written by the factory
        "20240103",
        "ACC-55555",
        "Northgate",
        "063Y",
        '"F"',
        spec.series_uid,
        spec.study_uid,
        spec.frame_uid,
        spec.sop_uids[0],
        str(spec.folder),
    ]


def test_default_conversion_writes_no_phi(tmp_path: Path) -> None:
    spec = _series(tmp_path / "Doe_Jane_PID-98765")
    private, phi = tmp_path / "private", tmp_path / "phi"
    assert main(["dicom2nifti", str(spec.folder), str(private), "--no-progress"]) == 0
    private_files = list(private.iterdir())
    private_text = "".join(p.name + p.read_text() for p in private_files if p.suffix == ".json")
    for value in _identifiers(spec):
        assert value not in private_text, value
        assert all(value not in p.name for p in private_files), value
    side = json.loads(next(p for p in private_files if p.suffix == ".json").read_text())
    assert side["deidentified"] is True
    assert "source_files" not in side
    assert side["uid_digest"]["scheme"] == "hmac-sha256"
    # Control: --keep-phi writes every one of them, so the checks above can fail.
    assert main(["dicom2nifti", str(spec.folder), str(phi), "--no-progress", "--keep-phi"]) == 0
    phi_text = "".join(p.name + p.read_text() for p in phi.iterdir() if p.suffix == ".json")
    assert all(value in phi_text for value in _identifiers(spec))


def test_rtstruct_checks_still_work_on_private_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _series(tmp_path / "ct")
    assert main(["dicom2nifti", str(spec.folder), str(tmp_path / "nifti"), "--no-progress"]) == 0
    nifti = next((tmp_path / "nifti").glob("*.nii.gz"))
    square = [ContourSpec(1, [(1.5, 1.5), (3.5, 1.5), (3.5, 3.5), (1.5, 3.5)])]
    right = write_rtstruct(tmp_path / "right.dcm", spec, {"lesion": square})
    assert main(["rtstruct2nifti", str(right), str(nifti), str(tmp_path / "m1"), "--no-progress"]) == 0
    # An RTSTRUCT of another series, a contour on an image that is not a slice of this one: both refused by UID.
    wrong_series = write_rtstruct(
        tmp_path / "wrong.dcm", spec, {"lesion": square}, referenced_series_uid="1.2.826.0.1.3680043.99.7"
    )
    assert main(["rtstruct2nifti", str(wrong_series), str(nifti), str(tmp_path / "m2")]) == 2
    assert "1.2.826.0.1.3680043.99.7" in capsys.readouterr().err
    ghost = [ContourSpec(1, square[0].points_cr, sop_uid="1.2.826.0.1.3680043.99.8")]
    wrong_slice = write_rtstruct(tmp_path / "ghost.dcm", spec, {"lesion": ghost})
    assert main(["rtstruct2nifti", str(wrong_slice), str(nifti), str(tmp_path / "m3")]) == 2
    assert "not a slice" in capsys.readouterr().err
