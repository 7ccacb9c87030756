"""Hostile input: identifying text planted in free-text DICOM attributes must not reach file names or sidecars.

Crafted here: a series whose SeriesDescription carries a date and an institution, whose ContrastBolusAgent names
the patient, and whose Manufacturer and ConvolutionKernel text name the hospital and the patient. Converted with
the default (private) settings, none of it may appear in any output, and the UID digests must be keyed: not the
plain SHA-256 anyone can recompute, and different under another key.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_tools"))
from dicom_factory import write_ct_series

from data_tools.cli import main

# Strings with letters or dashes, so that none can occur by chance inside a hexadecimal digest.
PLANTED = ("2023-05-14", "Mary", "Hospital", "Jane", "Smith", "Oakwood")


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


def _planted_series(folder: Path) -> str:
    spec = write_ct_series(
        folder, description="CT chest 2023-05-14 St Mary Hospital", patient_name="Smith^Jane", seed=4
    )
    for path in spec.files:
        ds = pydicom.dcmread(path)
        ds.ContrastBolusAgent = "Omnipaque 350 for Jane Smith"
        ds.Manufacturer = "Oakwood St Mary Hospital scanner 2"
        ds.ConvolutionKernel = "SMITH_B30f"
        ds.InstitutionName = "St Mary Hospital"
        ds.save_as(path, enforce_file_format=True)
    return spec.series_uid


def _outputs(out: Path) -> dict[str, str]:
    return {p.name: p.read_text(errors="replace") if p.suffix == ".json" else "" for p in out.iterdir()}


def test_free_text_and_names_carry_no_planted_identifiers(tmp_path: Path) -> None:
    series_uid = _planted_series(tmp_path / "in")
    out = tmp_path / "out"
    assert main(["dicom2nifti", str(tmp_path / "in"), str(out), "--no-progress"]) == 0
    files = _outputs(out)
    for name, content in files.items():
        for value in PLANTED:
            assert value.lower() not in name.lower(), (value, name)
            assert value.lower() not in content.lower(), (value, name)
    side = json.loads(next(c for n, c in files.items() if n.endswith(".json")))
    # Keyed: not the plain SHA-256 of the UID (which anyone holding the DICOM can recompute).
    assert side["series_instance_uid"] != "sha256:" + hashlib.sha256(series_uid.encode()).hexdigest()[:32]
    assert hashlib.sha256(series_uid.encode()).hexdigest()[:12] not in json.dumps(side)
    assert side["series_instance_uid"].startswith("hmac-sha256:")
    # Another key gives other digests: they cannot be re-linked without the key.
    other = tmp_path / "out2"
    key2 = tmp_path / "second_key"
    assert main(["dicom2nifti", str(tmp_path / "in"), str(other), "--no-progress", "--key-file", str(key2)]) == 0
    side2 = json.loads(next(p for p in other.iterdir() if p.suffix == ".json").read_text())
    assert side2["series_instance_uid"] != side["series_instance_uid"]
    assert {p.name for p in out.iterdir()}.isdisjoint(p.name for p in other.iterdir())
    # The key itself is in no output.
    secret = key2.read_text().strip()
    assert all(secret not in p.read_bytes().decode("latin-1") for p in other.iterdir())


def test_kept_free_text_is_scrubbed(tmp_path: Path) -> None:
    _planted_series(tmp_path / "in")
    out = tmp_path / "out"
    keep = ["--keep-text", "series_description", "contrast_bolus_agent", "manufacturer"]
    assert main(["dicom2nifti", str(tmp_path / "in"), str(out), "--no-progress", *keep]) == 0
    side_path = next(p for p in out.iterdir() if p.suffix == ".json")
    side = json.loads(side_path.read_text())
    # Kept on request, but without the patient's name, the institution's name or the date; never in file names.
    assert side["series_description"] == "CT chest"
    assert side["contrast_bolus_agent"] == "Omnipaque 350 for"
    assert side["manufacturer"] == "Oakwood scanner 2"  # "Oakwood" is not in any identifying tag: user's decision
    assert "chest" not in side_path.name
