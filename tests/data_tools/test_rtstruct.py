"""Tests of data_tools.rtstruct and ``medseg-data rtstruct2nifti`` on synthetic CT series and structure sets."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_factory import ContourSpec, SeriesSpec, rotation_orientation, write_ct_series, write_rtstruct

from data_tools.cli import main
from data_tools.dicom import dicom_to_nifti, load_key, sidecar_path_for
from data_tools.rtstruct import read_rtstruct, rtstruct_to_nifti


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default UID key goes to a temporary user config dir, never the real one."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


# Contours in (column, row) pixel coordinates of a slice. Corners sit at half-pixel positions, so which pixel
# centres are inside is unambiguous:
#   square: columns 3..6, rows 2..4 on slice 1 -> 4 x 3 = 12 voxels
#   ring:   outer columns 2..8, rows 2..7 (7 x 6 = 42) minus hole columns 4..5, rows 4..5 (2 x 2 = 4) -> 38 voxels
#   point:  column 4, row 3 of slice 0 -> 1 voxel
SQUARE = [(2.5, 1.5), (6.5, 1.5), (6.5, 4.5), (2.5, 4.5)]
OUTER = [(1.5, 1.5), (8.5, 1.5), (8.5, 7.5), (1.5, 7.5)]
INNER = [(3.5, 3.5), (5.5, 3.5), (5.5, 5.5), (3.5, 5.5)]


def _expected(shape: tuple[int, int, int]) -> dict[str, np.ndarray]:
    square = np.zeros(shape, dtype=np.uint8)
    square[3:7, 2:5, 1] = 1  # i = column, j = row, k = slice (the dicom2nifti axes)
    ring = np.zeros(shape, dtype=np.uint8)
    ring[2:9, 2:8, 2] = 1
    ring[4:6, 4:6, 2] = 0
    point = np.zeros(shape, dtype=np.uint8)
    point[4, 3, 0] = 1
    return {"square": square, "ring": ring, "point": point}


def _rois() -> dict[str, list[ContourSpec]]:
    return {
        "square": [ContourSpec(1, SQUARE)],
        "ring": [ContourSpec(2, OUTER), ContourSpec(2, INNER)],
        "point": [ContourSpec(0, [(4.0, 3.0)], geometric_type="POINT")],
    }


def _series(tmp_path: Path, orientation: tuple = (1, 0, 0, 0, 1, 0), keep_phi: bool = False) -> tuple[SeriesSpec, Path]:
    spec = write_ct_series(tmp_path / "ct", n_slices=4, rows=10, cols=12, orientation=orientation, seed=7)
    report = dicom_to_nifti(tmp_path / "ct", tmp_path / "nifti", keep_phi=keep_phi)
    assert report.ok
    return spec, report.converted[0].nifti


@pytest.mark.parametrize(
    ("orientation", "keep_phi"),
    [((1, 0, 0, 0, 1, 0), False), (rotation_orientation(35.0, -25.0), False), ((1, 0, 0, 0, 1, 0), True)],
    ids=["axial", "oblique", "keep-phi-sidecar"],
)
def test_masks_match_hand_computed_voxels(tmp_path: Path, orientation: tuple, keep_phi: bool) -> None:
    spec, nifti = _series(tmp_path, orientation, keep_phi)
    rt = write_rtstruct(tmp_path / "rt.dcm", spec, _rois())
    written = rtstruct_to_nifti(rt, nifti, tmp_path / "masks")
    ct = nib.load(nifti)
    expected = _expected(ct.shape)
    assert sorted(w.path.name for w in written) == ["point.nii.gz", "ring.nii.gz", "square.nii.gz"]
    for name, want in expected.items():
        img = nib.load(tmp_path / "masks" / f"{name}.nii.gz")
        assert img.get_data_dtype() == np.uint8
        assert img.shape == ct.shape
        np.testing.assert_array_equal(img.affine, ct.affine)
        assert img.header.get_sform(coded=True)[1] == ct.header.get_sform(coded=True)[1]
        np.testing.assert_array_equal(np.asarray(img.dataobj), want, err_msg=name)
    summary = json.loads((tmp_path / "masks" / "rois.json").read_text())
    assert {r["name"]: r["voxels"] for r in summary["rois"]} == {"square": 12, "ring": 38, "point": 1}


def test_roi_selection_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, nifti = _series(tmp_path)
    rt = write_rtstruct(tmp_path / "rt.dcm", spec, _rois())
    code = main(["rtstruct2nifti", str(rt), str(nifti), str(tmp_path / "m"), "--roi", "RING", "--no-progress"])
    assert code == 0
    assert "ring.nii.gz" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["ring.nii.gz", "rois.json"]
    code = main(["rtstruct2nifti", str(rt), str(nifti), str(tmp_path / "m2"), "--roi", "sqare"])
    err = capsys.readouterr().err
    assert code == 2
    assert "did you mean 'square'" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "m2").exists()


def test_contour_on_missing_slice_names_roi_and_uid(tmp_path: Path) -> None:
    spec, nifti = _series(tmp_path)
    ghost = "1.2.3.4.5.6.7.8.9"
    rois = {"square": [ContourSpec(1, SQUARE)], "lesion": [ContourSpec(2, SQUARE, sop_uid=ghost)]}
    rt = write_rtstruct(tmp_path / "rt.dcm", spec, rois)
    with pytest.raises(ValueError, match=rf"ROI 'lesion'.*{ghost}.*not a slice"):
        rtstruct_to_nifti(rt, nifti, tmp_path / "masks")
    assert not (tmp_path / "masks").exists()  # checked before anything is written


@pytest.mark.parametrize("keep_phi", [False, True], ids=["private", "keep-phi"])
def test_rtstruct_for_another_series_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_phi: bool
) -> None:
    spec, nifti = _series(tmp_path, keep_phi=keep_phi)
    other = "1.2.826.0.1.3680043.99.1"
    rt = write_rtstruct(tmp_path / "rt.dcm", spec, _rois(), referenced_series_uid=other)
    assert main(["rtstruct2nifti", str(rt), str(nifti), str(tmp_path / "masks")]) == 2
    err = capsys.readouterr().err
    assert other in err
    # The series as the sidecar records it: the plain UID, or in a private sidecar its keyed digest.
    assert (spec.series_uid if keep_phi else load_key().digest(spec.series_uid)) in err


def test_private_sidecar_needs_its_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, nifti = _series(tmp_path)
    rt = write_rtstruct(tmp_path / "rt.dcm", spec, _rois())
    out = str(tmp_path / "masks")
    # Another key: the digests cannot be compared; an error names both key fingerprints and the option.
    other = load_key(tmp_path / "other_key", create=True)
    assert main(["rtstruct2nifti", str(rt), str(nifti), out, "--key-file", str(other.path)]) == 2
    err = capsys.readouterr().err
    assert other.key_id in err
    assert load_key().key_id in err
    assert "--key-file" in err
    # No key at all.
    assert main(["rtstruct2nifti", str(rt), str(nifti), out, "--key-file", str(tmp_path / "absent")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "masks").exists()
    # The right key, given explicitly, works.
    assert main(["rtstruct2nifti", str(rt), str(nifti), out, "--key-file", str(load_key().path)]) == 0


def test_other_frame_of_reference_is_an_error(tmp_path: Path) -> None:
    spec, nifti = _series(tmp_path)
    rt = write_rtstruct(tmp_path / "rt.dcm", spec, _rois(), frame_uid="1.2.826.0.1.3680043.99.2")
    with pytest.raises(ValueError, match=r"ROI 'square': FrameOfReferenceUID 1\.2\.826\.0\.1\.3680043\.99\.2"):
        rtstruct_to_nifti(rt, nifti, tmp_path / "masks")


def test_contour_off_its_slice_is_an_error(tmp_path: Path) -> None:
    spec, nifti = _series(tmp_path)
    rt = write_rtstruct(tmp_path / "rt.dcm", spec, {"drift": [ContourSpec(1, SQUARE, z_shift_mm=1.6)]})
    with pytest.raises(ValueError, match=r"ROI 'drift' contour 1: references image SOPInstanceUID .* mm from"):
        rtstruct_to_nifti(rt, nifti, tmp_path / "masks")


def test_without_sidecar_geometry_is_still_checked(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    spec, nifti = _series(tmp_path)
    sidecar_path_for(nifti).unlink()
    rt = write_rtstruct(tmp_path / "rt.dcm", spec, _rois())
    written = rtstruct_to_nifti(rt, nifti, tmp_path / "masks")
    assert {w.roi: w.voxels for w in written} == {"square": 12, "ring": 38, "point": 1}
    assert "cannot verify" in caplog.text
    # Half a slice off (2.5 mm steps): between two slices, so no slice of this volume.
    rt = write_rtstruct(tmp_path / "rt2.dcm", spec, {"drift": [ContourSpec(1, SQUARE, z_shift_mm=1.25)]})
    with pytest.raises(ValueError, match=r"ROI 'drift'.*between slices 1 and 2"):
        rtstruct_to_nifti(rt, nifti, tmp_path / "masks2")


def test_read_rtstruct_and_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, nifti = _series(tmp_path)
    rt = read_rtstruct(write_rtstruct(tmp_path / "rt.dcm", spec, _rois()))
    assert [r.name for r in rt.rois] == ["square", "ring", "point"]
    assert rt.referenced_series_uids == [spec.series_uid]
    assert len(rt.rois[1].contours) == 2
    # A CT slice is not an RTSTRUCT.
    assert main(["rtstruct2nifti", str(spec.files[0]), str(nifti), str(tmp_path / "m")]) == 2
    assert "not 'RTSTRUCT'" in capsys.readouterr().err
    (tmp_path / "junk.dcm").write_text("hello")
    assert main(["rtstruct2nifti", str(tmp_path / "junk.dcm"), str(nifti), str(tmp_path / "m")]) == 2
    assert "not a DICOM file" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["rtstruct2nifti", "--help"])
    assert exc.value.code == 0
