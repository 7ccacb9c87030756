"""Input discovery: folders of volumes, folders of DICOM series, nested folders, and --num-parts shares."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg.inference import Predictor, discover_input, predict_files, split_parts


def _phantom(shape=(12, 10, 3)):
    vol = np.full(shape, -1000, np.int16)
    vol[3:8, 2:6, 1:2] = 40
    return vol


def _nifti(path, vol=None):
    nib.save(nib.Nifti1Image(_phantom() if vol is None else vol, np.diag([0.8, 0.8, 2.5, 1.0])), str(path))
    return path


def test_folder_of_nifti_volumes(tmp_path, threshold_net):
    folder = tmp_path / "imagesTs"
    folder.mkdir()
    for name in ("case_002_0000.nii.gz", "case_001_0000.nii.gz", "case_010_0000.nii"):
        _nifti(folder / name)
    (folder / "dataset.json").write_text("{}")  # not an input: ignored
    cases = discover_input(folder)
    assert [c.name for c in cases] == ["case_001_0000", "case_002_0000", "case_010_0000"]
    assert {c.source for c in cases} == {"nifti"}
    report = predict_files([folder], tmp_path / "out", Predictor(threshold_net()))
    assert report.exit_code == 0, report.results
    for case in cases:
        mask = nib.load(str(tmp_path / "out" / f"{case.name}_seg.nii.gz"))
        np.testing.assert_array_equal(np.asarray(mask.dataobj), (_phantom() > -650).astype(np.uint8))


def test_nested_folders_are_named_by_their_path(tmp_path):
    for patient in ("p1", "p2"):
        (tmp_path / "root" / patient / "ct").mkdir(parents=True)
        _nifti(tmp_path / "root" / patient / "ct" / "scan.nii.gz")
    names = [c.name for c in discover_input(tmp_path / "root")]
    assert names == ["p1_ct_scan", "p2_ct_scan"]


def test_folder_with_several_dicom_series_gives_one_mask_each(tmp_path, threshold_net):
    synthetic = pytest.importorskip("medseg.data.synthetic")
    folder = tmp_path / "study"
    a, b = _phantom((14, 12, 3)).astype(float), _phantom((14, 12, 4)).astype(float)
    b[:, :, :] = 40.0  # all soft tissue: the second mask is all foreground
    affine = np.diag([0.8, 0.8, 2.5, 1.0])
    synthetic.write_dicom_series(folder, a, affine, series_uid="1.2.826.0.1.3680043.8.498.1", prefix="a")
    synthetic.write_dicom_series(folder, b, affine, series_uid="1.2.826.0.1.3680043.8.498.2", prefix="b")
    cases = discover_input(folder)
    assert len(cases) == 2
    assert len({c.name for c in cases}) == 2  # both SeriesNumber 1: names carry a digest of the UID
    assert all(c.name.startswith("study_s1_") for c in cases)
    assert sorted(len(c.files) for c in cases) == [3, 4]
    report = predict_files([folder], tmp_path / "out", Predictor(threshold_net()))
    assert report.exit_code == 0, report.results
    masks = {c.series_uid: np.asarray(nib.load(str(tmp_path / "out" / f"{c.name}_seg.nii.gz")).dataobj) for c in cases}
    np.testing.assert_array_equal(masks["1.2.826.0.1.3680043.8.498.1"], (a > -650).astype(np.uint8))
    assert masks["1.2.826.0.1.3680043.8.498.2"].all()


def test_empty_folder_is_an_input_error(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(ValueError, match="nothing to segment"):
        discover_input(tmp_path / "empty")


@pytest.mark.parametrize("num_parts", [1, 2, 3, 7])
def test_parts_are_disjoint_and_cover_everything(num_parts):
    items = list(range(10))
    shares = [split_parts(items, num_parts, i) for i in range(num_parts)]
    assert sorted(x for share in shares for x in share) == items


@pytest.mark.parametrize(("num_parts", "part_id"), [(0, 0), (2, 2), (2, -1), (True, 0)])
def test_bad_parts_are_refused(num_parts, part_id):
    with pytest.raises(ValueError, match=r"num_parts|part_id"):
        split_parts([1, 2], num_parts, part_id)


def test_predict_parts_split_a_folder(tmp_path, threshold_net):
    folder = tmp_path / "imagesTs"
    folder.mkdir()
    for i in range(5):
        _nifti(folder / f"c{i}.nii.gz")
    written = []
    for part in range(2):
        report = predict_files([folder], tmp_path / "out", Predictor(threshold_net()), num_parts=2, part_id=part)
        assert report.exit_code == 0
        written.append({r.name for r in report.written})
    assert written == [{"c0", "c2", "c4"}, {"c1", "c3"}]
