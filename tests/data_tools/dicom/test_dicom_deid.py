"""Tests of data_tools.dicom.deid: the UID key file, keyed digests, the privacy policy and scrubbing."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from pathlib import Path

import pytest
from dicom_factory import write_ct_series

from data_tools.cli import main
from data_tools.dicom import dicom_to_nifti, load_key
from data_tools.dicom.deid import KEEPABLE_TEXT, Privacy, UidKey, default_key_file, scrub_text


def test_key_file_is_created_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "medseg" / "uid_key"
    key = load_key(path, create=True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert len(key.secret) == 32
    assert load_key(path).secret == key.secret  # read back, not replaced
    assert load_key(path, create=True).secret == key.secret


def test_default_key_file_follows_xdg_config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert default_key_file() == tmp_path / "medseg" / "uid_key"
    with pytest.raises(FileNotFoundError, match="--key-file"):
        load_key()


def test_bad_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("not a key")
    with pytest.raises(ValueError, match="not a medseg UID key"):
        load_key(tmp_path / "k")


def test_digest_is_hmac_sha256_of_the_uid() -> None:
    key = UidKey(b"\x01" * 32, Path("k"))
    # Independent computation with the standard library's hmac: HMAC-SHA256(key, uid), first 32 hex digits.
    expected = hmac.new(b"\x01" * 32, b"1.2.840.99", hashlib.sha256).hexdigest()[:32]
    assert key.digest("1.2.840.99") == f"hmac-sha256:{expected}"
    assert key.digest("1.2.840.99") != "sha256:" + hashlib.sha256(b"1.2.840.99").hexdigest()[:32]


def test_key_is_kept_out_of_outputs(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in")
    with pytest.raises(ValueError, match="inside OUT_DIR"):
        dicom_to_nifti(tmp_path / "in", tmp_path / "out", key_file=tmp_path / "out" / "key")
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out", key_file=tmp_path / "key")
    secret = (tmp_path / "key").read_text().strip()
    for path in (report.converted[0].nifti, report.converted[0].sidecar):
        assert secret.encode() not in path.read_bytes()
    side = json.loads(report.converted[0].sidecar.read_text())
    assert side["uid_digest"] == {"scheme": "hmac-sha256", "key_id": load_key(tmp_path / "key").key_id}


def test_private_sidecar_is_an_allow_list(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", description="Doe PID-98765 chest 19600214")
    side = json.loads(dicom_to_nifti(tmp_path / "in", tmp_path / "out").converted[0].sidecar.read_text())
    for field in KEEPABLE_TEXT:
        assert side[field] is None, field
    assert side["modality"] == "CT"
    assert side["kvp"] == 120.0
    assert side["kept_text"] == []
    assert not {"patient_id", "patient_name", "study_date", "source_files"} & set(side)


def test_keep_phi_keeps_everything(tmp_path: Path) -> None:
    spec = write_ct_series(tmp_path / "in", description="Doe chest")
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out", keep_phi=True)
    side = json.loads(report.converted[0].sidecar.read_text())
    assert side["patient_name"] == "Doe^Jane"
    assert side["series_instance_uid"] == spec.series_uid
    assert str(spec.folder) in side["source_files"][0]
    assert side["convolution_kernel"] == "B30f"
    assert side["uid_digest"] is None
    assert "Doe_chest" in report.converted[0].nifti.name


def test_kept_text_is_scrubbed_and_never_named(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", description="Doe PID-98765 chest 19600214 2021-03-04")
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out", keep_text=["series_description", "convolution_kernel"])
    side = json.loads(report.converted[0].sidecar.read_text())
    assert side["series_description"] == "chest"  # name part, ID, birth date and the other date removed
    assert side["convolution_kernel"] == "B30f"
    assert side["kept_text"] == ["convolution_kernel", "series_description"]
    assert "chest" not in report.converted[0].nifti.name


@pytest.mark.parametrize(
    ("value", "identifying", "expected"),
    [
        ("CT 2023-05-14 thorax", [], "CT thorax"),
        ("scan 14.05.2023 and 5/14/23", [], "scan and"),
        ("20230514 Smith", ["Smith"], ""),
        ("B30f", ["Doe"], "B30f"),
        ("kernel 3.0 mm", [], "kernel 3.0 mm"),  # not a date
    ],
)
def test_scrub_text(value: str, identifying: list[str], expected: str) -> None:
    assert scrub_text(value, identifying) == expected


def test_privacy_options_are_validated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="unknown field"):
        Privacy(keep_text=frozenset({"patient_name"}), key=UidKey(bytes(32), Path("k")))
    with pytest.raises(ValueError, match="no effect with --keep-phi"):
        Privacy(keep_phi=True, keep_text=frozenset({"manufacturer"}))
    write_ct_series(tmp_path / "in")
    args = ["dicom2nifti", str(tmp_path / "in"), str(tmp_path / "out")]
    assert main([*args, "--keep-phi", "--keep-text", "manufacturer"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    with pytest.raises(SystemExit) as exc:
        main([*args, "--keep-text", "patient_name"])
    assert exc.value.code == 2
    assert not os.path.exists(tmp_path / "out")
