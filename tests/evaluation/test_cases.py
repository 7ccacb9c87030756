"""Pairing predictions with references (medseg predict's names) and comparing volumes stored in other orientations."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg.evaluation.cases import align_prediction, case_id, match_cases
from medseg.evaluation.evaluate import EvaluationSettings, evaluate_folders
from medseg.imageio import read_label


def _touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        (folder / n).touch()


def test_case_id() -> None:
    assert case_id("x.nii.gz") == "x"
    assert case_id("x_seg.png", "_seg") == "x"
    assert case_id("a.b.nii") == "a.b"
    assert case_id("_seg.png", "_seg") == "_seg"  # never an empty id


def test_predict_outputs_pair_with_bare_label_names(tmp_path: Path) -> None:
    # what `medseg predict` writes for a volume and for a 2D image (with overlays and probabilities)
    _touch(tmp_path / "p", "scan_seg.nii.gz", "scan_prob.nii.gz", "f1_seg.png", "f1_overlay.png", "f1_prob.npy")
    _touch(tmp_path / "l", "scan.nii.gz", "f1.png")
    pairs, missing, extra = match_cases(tmp_path / "p", tmp_path / "l")
    assert [(c, p.name, t.name) for c, p, t in pairs] == [
        ("f1", "f1_seg.png", "f1.png"),
        ("scan", "scan_seg.nii.gz", "scan.nii.gz"),
    ]
    assert missing == []
    assert extra == []
    # an explicit suffix strips exactly it, and still leaves overlays out
    pairs, _, extra = match_cases(tmp_path / "p", tmp_path / "l", pred_suffix="_seg")
    assert len(pairs) == 2
    assert extra == []
    # a reference that really is called NAME_seg keeps its exact match
    _touch(tmp_path / "l2", "scan_seg.nii.gz")
    pairs, _, extra = match_cases(tmp_path / "p", tmp_path / "l2")
    assert [c for c, _, _ in pairs] == ["scan_seg"]
    assert extra == ["f1"]


def test_unmatched_names_point_to_the_two_options(tmp_path: Path) -> None:
    _touch(tmp_path / "p", "case1_mask.png", "case2_mask.png")
    _touch(tmp_path / "l", "case1.png", "case2.png")
    with pytest.raises(ValueError, match=r"no prediction .* matches a label .*--pred-suffix TEXT.*--allow-missing"):
        match_cases(tmp_path / "p", tmp_path / "l")
    pairs, _, _ = match_cases(tmp_path / "p", tmp_path / "l", pred_suffix="_mask")
    assert [c for c, _, _ in pairs] == ["case1", "case2"]


def test_duplicates_and_empty_folders(tmp_path: Path) -> None:
    _touch(tmp_path / "p", "a_seg.nii.gz", "a.nii.gz", ".hidden.nii.gz", "notes.txt")
    _touch(tmp_path / "l", "a.nii.gz", "b.nii")
    with pytest.raises(ValueError, match=r"two files for case 'a': a.nii.gz and a_seg.nii.gz.*--pred-suffix"):
        match_cases(tmp_path / "p", tmp_path / "l")
    with pytest.raises(NotADirectoryError, match="prediction folder"):
        match_cases(tmp_path / "nope", tmp_path / "l")
    _touch(tmp_path / "empty")
    with pytest.raises(ValueError, match="no label files"):
        match_cases(tmp_path / "p", tmp_path / "empty")
    _touch(tmp_path / "l", "a.nii")
    with pytest.raises(ValueError, match=r"label folder .* two files for case 'a'"):
        match_cases(tmp_path / "p", tmp_path / "l", pred_suffix="")


# ------------------------------------------------------------------------------------------------ orientation
def _lps_like_dcm2niix(ras_affine: np.ndarray, array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same voxels stored with x and y reversed and x/y swapped, and the affine that says so.

    New voxel (i, j, k) holds old voxel (nx-1-j, ny-1-i, k); built without nibabel's orientation tools, so the
    test checks them: the new affine maps (i, j, k) to the world point of that old voxel.
    """
    nx, ny, _ = array.shape
    stored = np.transpose(array[::-1, ::-1, :], (1, 0, 2))  # stored[i, j, k] = array[nx-1-j, ny-1-i, k]
    old_index = np.array(
        [[0.0, -1.0, 0.0, nx - 1.0], [-1.0, 0.0, 0.0, ny - 1.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
    )  # (i, j, k, 1) -> (nx-1-j, ny-1-i, k, 1)
    return stored, ras_affine @ old_index


def _volume_pair(tmp_path: Path, shift_mm: float = 0.0) -> tuple[Path, Path, np.ndarray]:
    rng = np.random.default_rng(0)
    lab = (rng.random((6, 5, 4)) > 0.6).astype(np.uint8)
    ras = np.diag([0.8, 0.7, 2.5, 1.0])
    ras[:3, 3] = (-20.0, 10.0, 5.0)
    stored, lps_affine = _lps_like_dcm2niix(ras, lab)
    lps_affine[0, 3] += shift_mm
    for d in ("p", "l"):
        (tmp_path / d).mkdir()
    nib.save(nib.Nifti1Image(lab, ras), str(tmp_path / "p" / "ct_seg.nii.gz"))  # our mask, stored RAS
    nib.save(nib.Nifti1Image(stored, lps_affine), str(tmp_path / "l" / "ct.nii.gz"))  # the reference tool's label
    return tmp_path / "p", tmp_path / "l", lab


def test_axis_flips_and_permutations_are_reoriented_not_refused(tmp_path: Path) -> None:
    pred, lab, _array = _volume_pair(tmp_path)
    p, t = read_label(pred / "ct_seg.nii.gz"), read_label(lab / "ct.nii.gz")
    assert p.array.shape != t.array.shape  # (6, 5, 4) vs (5, 6, 4): a plain shape comparison would refuse
    aligned = align_prediction("ct", p, t)
    np.testing.assert_array_equal(aligned, t.array)
    s = evaluate_folders(pred, lab, EvaluationSettings(num_classes=2), out=tmp_path / "s.json")
    assert s["dataset"]["pooled_iou"] == 1.0
    assert s["per_case"]["hd95_1"]["mean"] == 0.0


def test_real_geometry_differences_are_still_refused(tmp_path: Path) -> None:
    pred, lab, _ = _volume_pair(tmp_path, shift_mm=3.0)
    with pytest.raises(ValueError, match=r"case 'ct': prediction geometry differs .*after reorienting RAS to .*origin"):
        evaluate_folders(pred, lab, EvaluationSettings(num_classes=2), out=tmp_path / "s.json")
    # with the affine check off only shapes are compared, and these shapes differ
    with pytest.raises(ValueError, match=r"case 'ct': prediction shape \(6, 5, 4\) differs"):
        evaluate_folders(pred, lab, EvaluationSettings(num_classes=2, check_affine=False), out=tmp_path / "s.json")


def test_raster_against_volume_is_refused(tmp_path: Path) -> None:
    for d in ("p", "l"):
        (tmp_path / d).mkdir()
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "p" / "x.png")
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.uint8), np.eye(4)), str(tmp_path / "l" / "x.nii.gz"))
    with pytest.raises(ValueError, match="case 'x': prediction is raster but label is nifti"):
        evaluate_folders(tmp_path / "p", tmp_path / "l", EvaluationSettings(num_classes=2), out=tmp_path / "s.json")
