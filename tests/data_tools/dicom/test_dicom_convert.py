"""Tests of data_tools.dicom conversion and `medseg-data dicom2nifti` on synthetic series and the shared CT."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_factory import SeriesSpec, decode, rotation_orientation, write_ct_series, write_rtstruct
from pydicom.uid import JPEG2000Lossless, RLELossless

from data_tools.cli import main
from data_tools.dicom import LPS_TO_RAS, dicom_to_nifti, load_key, safe_name
from data_tools.dicom import pixels as pixels_mod


def _single_output(out: Path) -> tuple[nib.Nifti1Image, dict]:
    niftis = sorted(out.glob("*.nii.gz"))
    assert len(niftis) == 1, niftis
    sidecar = json.loads(niftis[0].with_name(niftis[0].name[: -len(".nii.gz")] + ".json").read_text())
    return nib.load(niftis[0]), sidecar


def assert_world_roundtrip(img: nib.Nifti1Image, spec: SeriesSpec) -> None:
    """Every voxel's world position (NIfTI affine) equals the DICOM position of the pixel its value came from.

    The expected position is computed independently from the written IPP/IOP/PixelSpacing (DICOM PS3.3
    C.7.6.2.1.1), the value code identifies slice, row and column (dicom_factory.code).
    """
    data = np.asarray(img.dataobj)
    raw = (data.astype(np.float64) - spec.intercept) / spec.slope
    s, r, c = decode(raw)
    i, j, k = np.meshgrid(*(np.arange(n) for n in data.shape), indexing="ij")
    world_ras = np.einsum("ab,...b->...a", img.affine, np.stack([i, j, k, np.ones_like(i)], axis=-1))[..., :3]
    expected_ras = spec.pixel_to_lps(s, r, c) * np.array([-1.0, -1.0, 1.0])
    np.testing.assert_allclose(world_ras, expected_ras, atol=1e-3)
    # The converter's axis convention: i = column, j = row, slices ascending along the normal.
    assert np.array_equal(c, i)
    assert np.array_equal(r, j)
    assert np.all(np.diff(s[0, 0, :]) > 0)


def test_shuffled_instance_numbers_sorted_by_position(tmp_path: Path) -> None:
    spec = write_ct_series(tmp_path / "in", n_slices=6, shuffle=True, seed=3)
    assert spec.instance_numbers != sorted(spec.instance_numbers)  # the shuffle is real
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    assert report.ok
    assert len(report.converted) == 1
    img, side = _single_output(tmp_path / "out")
    assert img.get_data_dtype() == np.int16  # slope 1, intercept -1024: lossless integers
    assert img.shape == (7, 6, 6)
    assert_world_roundtrip(img, spec)
    # Hand values: PixelSpacing (0.8 row, 0.6 col) -> (0.6, 0.8) along (i, j); step 2.5 mm from IPP, not
    # SliceThickness 3.0.
    assert side["spacing_mm"] == pytest.approx([0.6, 0.8, 2.5])
    assert side["slice_thickness_nominal_mm"] == 3.0
    assert side["slice_count"] == 6
    assert side["modality"] == "CT"
    assert side["kvp"] == 120.0
    assert side["convolution_kernel"] is None  # free text: dropped from private sidecars unless kept by name
    key = load_key()  # the default key file, created by the conversion (in a temporary config dir here)
    assert side["sop_instance_uids"] == [key.digest(u) for u in spec.sop_uids]
    assert side["series_instance_uid"] == key.digest(spec.series_uid)
    assert side["instance_numbers"] == spec.instance_numbers
    assert img.header.get_qform(coded=True)[1] == 1
    assert img.header.get_sform(coded=True)[1] == 1


def test_two_series_in_one_folder(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    a = write_ct_series(folder, series_number=2, description="CT test", seed=1, prefix="a")
    b = write_ct_series(
        folder, series_number=3, description="Lung / 1.0 (ax)", step=1.25, origin=(5, 5, -40), seed=2, prefix="b"
    )
    report = dicom_to_nifti(folder, tmp_path / "out", keep_phi=True)
    assert report.ok
    names = sorted(p.name for p in (tmp_path / "out").glob("*.nii.gz"))
    # keep_phi names: <SeriesNumber>_<SeriesDescription>_<first 12 hex of SHA-256 of the SeriesInstanceUID>
    expected = [f"002_CT_test_{_sha(a.series_uid)}.nii.gz", f"003_Lung_1.0_ax_{_sha(b.series_uid)}.nii.gz"]
    assert names == expected
    assert_world_roundtrip(nib.load(tmp_path / "out" / names[0]), a)
    assert_world_roundtrip(nib.load(tmp_path / "out" / names[1]), b)


def _sha(uid: str) -> str:
    import hashlib

    return hashlib.sha256(uid.encode()).hexdigest()[:12]


def test_same_number_and_description_get_distinct_names(tmp_path: Path) -> None:
    a = write_ct_series(tmp_path / "in", series_number=4, description="Same", seed=1, prefix="a")
    b = write_ct_series(tmp_path / "in", series_number=4, description="Same", seed=2, prefix="b")
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    key = load_key()
    # private names: <SeriesNumber>_<Modality>_<first 12 hex of the keyed digest of the SeriesInstanceUID>
    expected = {f"004_CT_{key.digest(u).split(':')[1][:12]}.nii.gz" for u in (a.series_uid, b.series_uid)}
    assert {c.nifti.name for c in report.converted} == expected


@pytest.mark.parametrize(
    ("orientation", "n_slices"),
    [
        (rotation_orientation(30.0, 20.0), 5),
        (rotation_orientation(-100.0, 65.0), 4),
        ((0, 1, 0, 0, 0, -1), 4),  # sagittal
    ],
    ids=["oblique", "steep-oblique", "sagittal"],
)
def test_oblique_orientation_matches_simpleitk(tmp_path: Path, orientation: tuple, n_slices: int) -> None:
    import SimpleITK as sitk  # noqa: N813

    spec = write_ct_series(tmp_path / "in", orientation=orientation, n_slices=n_slices, seed=5)
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    assert report.ok
    img, side = _single_output(tmp_path / "out")
    assert_world_roundtrip(img, spec)
    # Independent implementation: SimpleITK (GDCM) series reader, LPS.
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path / "in")))
    ref = reader.Execute()
    ref_arr = sitk.GetArrayFromImage(ref).transpose(2, 1, 0)
    direction = np.asarray(ref.GetDirection()).reshape(3, 3)
    ref_affine = np.eye(4)
    ref_affine[:3, :3] = direction * np.asarray(ref.GetSpacing())
    ref_affine[:3, 3] = ref.GetOrigin()
    np.testing.assert_allclose(img.affine, LPS_TO_RAS @ ref_affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(img.dataobj), ref_arr)
    assert side["gantry_tilt_deg"] == pytest.approx(0.0, abs=1e-3)


@pytest.mark.parametrize(
    ("slope", "intercept", "dtype"),
    [(1.0, -1024.0, np.int16), (2.0, -1000.0, np.int16), (0.5, -100.25, np.float32)],
    ids=["hu-int16", "int-slope", "fractional"],
)
def test_rescale_slope_intercept(tmp_path: Path, slope: float, intercept: float, dtype: type) -> None:
    spec = write_ct_series(tmp_path / "in", slope=slope, intercept=intercept, n_slices=3)
    dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    img, side = _single_output(tmp_path / "out")
    assert img.get_data_dtype() == dtype
    data = np.asarray(img.dataobj)
    # Voxel (i=2, j=1, k=0) is column 2, row 1 of the lowest slice: stored 0 * 4096 + 1 * 64 + 2 = 66.
    assert data[2, 1, 0] == pytest.approx(66 * slope + intercept)
    assert side["rescale_slope"] == slope
    assert side["rescale_intercept"] == intercept
    assert_world_roundtrip(img, spec)


def test_int32_when_values_exceed_int16(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", slope=10.0, intercept=0.0, n_slices=4)  # up to 10 * 12614 > 32767
    dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    img, _ = _single_output(tmp_path / "out")
    assert img.get_data_dtype() == np.int32
    assert int(np.asarray(img.dataobj).max()) == 10 * (3 * 4096 + 5 * 64 + 6)


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless], ids=["rle", "jpeg2000-lossless"])
def test_compressed_transfer_syntaxes_decode(tmp_path: Path, syntax: str) -> None:
    # 33 x 34 pixels: the OpenJPEG encoder needs at least 32 for its default 6 resolution levels.
    spec = write_ct_series(tmp_path / "in", n_slices=3, rows=33, cols=34, transfer_syntax=syntax)
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    assert report.ok, report.failed
    img, side = _single_output(tmp_path / "out")
    assert side["transfer_syntax_uid"] == syntax
    assert_world_roundtrip(img, spec)


def test_simpleitk_fallback_decodes_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where pydicom has no decoder, SimpleITK/GDCM reads the slice (already rescaled): same values."""
    spec = write_ct_series(tmp_path / "in", n_slices=3, slope=2.0, intercept=-1000.0)
    monkeypatch.setattr(pixels_mod, "_pydicom_can_decode", lambda uid: False)
    dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    img, _ = _single_output(tmp_path / "out")
    assert_world_roundtrip(img, spec)


def test_missing_slice_is_reported_and_nothing_written(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", n_slices=6, skip=[2])
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    assert not report.ok
    assert not report.converted
    assert "1 missing slice" in report.failed[0].reason
    assert "--allow-nonuniform" in report.failed[0].reason
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_allow_nonuniform_resamples_onto_uniform_grid(tmp_path: Path) -> None:
    spec = write_ct_series(tmp_path / "in", n_slices=6, skip=[2], slope=1.0, intercept=0.0)
    # 1 of 6 output slices interpolated (17 %): above the default cap of 10 %, so raise it.
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out", allow_nonuniform=True, max_interpolated=0.2)
    assert report.ok
    img, side = _single_output(tmp_path / "out")
    data = np.asarray(img.dataobj)
    assert data.shape == (7, 6, 6)
    assert side["interpolated_slices"] == [2]
    assert side["missing_slices"] == 1
    assert not side["uniform_spacing"]
    assert side["sop_instance_uids"][2] is None
    assert side["sop_instance_uids"][3] == load_key().digest(spec.sop_uids[2])
    # Slice 2 is halfway between slices 1 and 3: linear interpolation gives the mean of their values.
    np.testing.assert_allclose(data[..., 2], (data[..., 1].astype(float) + data[..., 3]) / 2)
    np.testing.assert_allclose(img.affine[:3, 2], [0, 0, 2.5], atol=1e-6)


def test_irregular_spacing_is_reported(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", n_slices=6, offsets={3: 0.7})
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    assert not report.converted
    assert "irregular step" in report.failed[0].reason


def test_slices_off_one_line_are_an_error(tmp_path: Path) -> None:
    spec = write_ct_series(tmp_path / "in", n_slices=4, seed=1, prefix="a")
    write_ct_series(tmp_path / "in", n_slices=1, seed=2, prefix="b", series_uid=spec.series_uid, origin=(0, -20, 40))
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out", allow_nonuniform=True)
    assert not report.converted
    assert "off the line" in report.failed[0].reason


def test_bad_inputs_batch_continues_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    good = write_ct_series(src / "good", series_number=1, description="good", seed=1)
    write_ct_series(src / "one", series_number=2, description="single", n_slices=1, seed=2)
    lone = write_ct_series(src / "trunc", series_number=3, description="broken", n_slices=2, seed=3)
    data = lone.files[0].read_bytes()
    lone.files[0].write_bytes(data[: len(data) - 20])  # cut into the pixel data
    (src / "notes.txt").write_text("not DICOM")
    (src / "good" / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)
    write_rtstruct(src / "good" / "rt.dcm", good, {})  # a non-image DICOM object: skipped, not an error
    out = tmp_path / "out"
    code = main(["dicom2nifti", str(src), str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert str(lone.files[0]) in err
    assert "truncated" in err
    assert "single" in err
    assert "1 slice" in err
    written = sorted(p.name for p in out.iterdir())  # one series, no partial or temporary files
    assert len(written) == 2
    assert written[0].startswith("001_CT_")
    assert [n.split(".", 1)[1] for n in written] == ["json", "nii.gz"]


def test_unreadable_header_is_reported(tmp_path: Path) -> None:
    spec = write_ct_series(tmp_path / "in", n_slices=3)
    data = spec.files[1].read_bytes()
    spec.files[1].write_bytes(data[:400])  # header cut short: an image file without pixel data
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    assert any(str(spec.files[1]) in f.what for f in report.failed)


def test_empty_folder_exits_2_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    code = main(["dicom2nifti", str(tmp_path / "empty"), str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "no DICOM files" in err


def test_cli_success_and_help(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_ct_series(tmp_path / "in")
    assert main(["dicom2nifti", str(tmp_path / "in"), str(tmp_path / "out"), "--key-file", str(tmp_path / "k")]) == 0
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["dicom2nifti", "--help"])
    assert exc.value.code == 0
    help_text = capsys.readouterr().out
    assert "--allow-nonuniform" in help_text
    assert "--keep-phi" in help_text
    with pytest.raises(SystemExit) as exc:  # argparse validates IN_DIR: usage error, exit 2
        main(["dicom2nifti", str(tmp_path / "missing"), str(tmp_path / "out")])
    assert exc.value.code == 2


@pytest.mark.parametrize(
    ("text", "expected"),
    [("CT Body 3.0", "CT_Body_3.0"), ("-95.000000", "95.000000"), ("a/b\\c:d*e", "a_b_c_d_e"), ("nul", "_nul")],
)
def test_safe_name(text: str, expected: str) -> None:
    assert safe_name(text) == expected


# ---------------------------------------------------------------------------------------------------------------------
# Shared real data
# ---------------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def totalseg_converted(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    src = shared_data / "totalsegmentator_example_ct_dicom"
    if not src.is_dir():
        pytest.skip("totalsegmentator_example_ct_dicom not in shared data")
    out = tmp_path_factory.mktemp("totalseg")
    report = dicom_to_nifti(src, out)
    assert report.ok, report.failed
    assert len(report.converted) == 1
    return src, report.converted[0].nifti


def test_shared_ct_equals_simpleitk(totalseg_converted: tuple[Path, Path]) -> None:
    import SimpleITK as sitk  # noqa: N813

    src, nifti = totalseg_converted
    img = nib.load(nifti)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(src / "dicom")))
    ref = reader.Execute()
    ref_arr = sitk.GetArrayFromImage(ref).transpose(2, 1, 0)
    assert img.get_data_dtype() == np.int16
    assert img.shape == (512, 512, 20)
    np.testing.assert_array_equal(np.asarray(img.dataobj), ref_arr)
    np.testing.assert_allclose(img.header.get_zooms(), ref.GetSpacing(), atol=1e-6)
    np.testing.assert_allclose(img.header.get_zooms()[2], 2.0)  # README: positions 2 mm apart, SliceThickness 3
    np.testing.assert_allclose(img.affine[:3, 3], np.array(ref.GetOrigin()) * [-1, -1, 1], atol=1e-4)
    np.testing.assert_allclose(
        img.affine[:3, :3] @ np.diag(1 / np.asarray(ref.GetSpacing())),
        np.diag([-1, -1, 1]) @ np.asarray(ref.GetDirection()).reshape(3, 3),
        atol=1e-6,
    )
    side = json.loads(nifti.with_name(nifti.name.replace(".nii.gz", ".json")).read_text())
    assert side["transfer_syntax_uid"] == JPEG2000Lossless
    assert side["slice_thickness_nominal_mm"] == 3.0


def test_shared_ct_lines_up_with_reference_segmentation(totalseg_converted: tuple[Path, Path]) -> None:
    src, nifti = totalseg_converted
    ct = nib.load(nifti)
    seg = nib.load(src / "example_seg_dicom.nii.gz")
    # Same world grid (README: compare after reorientation, the reference file is LAS).
    canon_ct, canon_seg = nib.as_closest_canonical(ct), nib.as_closest_canonical(seg)
    assert canon_ct.shape == canon_seg.shape
    np.testing.assert_allclose(canon_ct.affine, canon_seg.affine, atol=1e-3)
    # In the common canonical (RAS) orientation both are the same grid, so arrays compare voxel by voxel.
    labels = np.asarray(canon_seg.dataobj)
    hu = np.asarray(canon_ct.dataobj)
    # README sanity values of mean HU per label: spleen (1) 80, liver (5) 89.
    assert abs(hu[labels == 1].mean() - 80) < 5
    assert abs(hu[labels == 5].mean() - 89) < 5


def test_shared_lidc_slabs(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "lidc_idri_ct_nodule_slabs"
    if not src.is_dir():
        pytest.skip("lidc_idri_ct_nodule_slabs not in shared data")
    report = dicom_to_nifti(src, tmp_path)
    assert report.ok
    assert len(report.converted) == 2
    by_slices = {c.shape[2]: c for c in report.converted}
    assert set(by_slices) == {16, 12}
    assert by_slices[16].spacing == pytest.approx((0.703125, 0.703125, 2.5))
    assert by_slices[12].spacing == pytest.approx((0.681641, 0.681641, 1.25))
    side = json.loads(by_slices[16].sidecar.read_text())
    z = [p[2] for p in side["slice_positions_lps"]]
    assert z == sorted(z)
    assert z[0] == -132.5
    assert z[-1] == -95.0
    assert side["instance_numbers"] == sorted(side["instance_numbers"], reverse=True)  # README: FFS trap
    assert not any(name.name.startswith("-") for name in tmp_path.iterdir())


def test_copies_of_files_are_skipped(tmp_path: Path) -> None:
    spec = write_ct_series(tmp_path / "in" / "a", n_slices=3)
    shutil.copytree(tmp_path / "in" / "a", tmp_path / "in" / "b")
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    assert report.ok
    assert report.converted[0].shape == (7, 6, 3)
    assert_world_roundtrip(nib.load(report.converted[0].nifti), spec)


def test_two_images_at_one_position_are_an_error(tmp_path: Path) -> None:
    spec = write_ct_series(tmp_path / "in", n_slices=3, seed=1, prefix="a")
    write_ct_series(tmp_path / "in", n_slices=3, seed=2, prefix="b", series_uid=spec.series_uid)
    report = dicom_to_nifti(tmp_path / "in", tmp_path / "out")
    assert not report.converted
    assert "share a position" in report.failed[0].reason
    assert spec.series_uid in report.failed[0].what
