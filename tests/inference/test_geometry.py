"""Geometry round trips: masks come back with the input's exact shape and affine, on the right voxels.

The "network" is a thresholding 1x1 convolution (conftest.ThresholdNet), so the correct mask is known exactly:
after the lung window (W1500/L-650 -> [0, 1]) class 1 wins iff HU > -650.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg.inference import MaskWriter, Predictor, Preprocessing, predict_files
from medseg.transforms import ct_volume_transforms


def oblique_affine(angle: float, spacing: tuple[float, float, float], flips: tuple[int, int, int]) -> np.ndarray:
    """A voxel-to-world affine: axis flips (LPS-like with -1) after a rotation about z, anisotropic spacing."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = np.diag(np.asarray(flips, dtype=float)) @ rot @ np.diag(spacing)
    affine[:3, 3] = [12.5, -40.25, 7.0]
    return affine


AFFINES = {
    "ras-iso": oblique_affine(0.0, (1.0, 1.0, 1.0), (1, 1, 1)),
    "lps-aniso": oblique_affine(0.0, (0.7, 0.9, 2.5), (-1, -1, 1)),
    "oblique": oblique_affine(0.3, (0.8, 1.1, 3.0), (-1, 1, 1)),
    "z-flipped": oblique_affine(-0.5, (1.2, 1.2, 2.0), (1, 1, -1)),
}


def _phantom(shape: tuple[int, int, int]) -> np.ndarray:
    """Air (-1400 HU) around a body box (-1000 HU) holding two lesions (+100 and -300 HU) off-centre."""
    vol = np.full(shape, -1400, np.int16)
    vol[2:-3, 3:-2, 1:-1] = -1000
    vol[5:12, 4:9, 2:5] = 100
    vol[-10:-6, -9:-4, -4:-2] = -300
    return vol


def _write(path, vol, affine):
    nib.save(nib.Nifti1Image(vol, affine), str(path))
    return path


def _assert_same_geometry(mask_path, ref_path):
    mask, ref = nib.load(str(mask_path)), nib.load(str(ref_path))
    assert mask.shape == ref.shape
    assert mask.get_data_dtype() == np.uint8
    assert np.array_equal(mask.affine, ref.affine)
    for get in ("get_qform", "get_sform"):
        m_aff, m_code = getattr(mask.header, get)(coded=True)
        r_aff, r_code = getattr(ref.header, get)(coded=True)
        assert int(m_code) == int(r_code)
        assert (m_aff is None and r_aff is None) or np.array_equal(m_aff, r_aff)
    return np.asarray(mask.dataobj)


@pytest.mark.parametrize("name", list(AFFINES))
@pytest.mark.parametrize("shape", [(19, 17, 7), (16, 21, 9)], ids=["odd", "mixed"])
def test_volume_mask_has_input_shape_affine_and_voxels(tmp_path, threshold_net, name, shape):
    vol = _phantom(shape)
    src = _write(tmp_path / f"{name}.nii.gz", vol, AFFINES[name])
    report = predict_files([src], tmp_path / "out", Predictor(threshold_net(), roi_size=(8, 8)))
    assert report.exit_code == 0, report.results
    mask = _assert_same_geometry(tmp_path / "out" / f"{name}_seg.nii.gz", src)
    np.testing.assert_array_equal(mask, (vol > -650).astype(np.uint8))


def test_cropping_is_undone(tmp_path, threshold_net):
    vol = _phantom((21, 19, 9))
    src = _write(tmp_path / "crop.nii.gz", vol, AFFINES["oblique"])
    pre = Preprocessing(volume=ct_volume_transforms(["image"], train=False, crop_foreground=True), image=None)
    data = pre.load(str(src), "volume")
    assert data["image"].shape[1:] != vol.shape  # the air around the body was cropped
    report = predict_files([src], tmp_path / "out", Predictor(threshold_net()), preprocessing=pre)
    assert report.exit_code == 0, report.results
    mask = _assert_same_geometry(tmp_path / "out" / "crop_seg.nii.gz", src)
    np.testing.assert_array_equal(mask, (vol > -650).astype(np.uint8))


def test_resampling_is_undone(tmp_path, threshold_net):
    vol = np.full((30, 24, 10), -1000, np.int16)
    vol[8:20, 6:16, 3:7] = 100  # a 12 x 10 x 4 voxel lesion
    src = _write(tmp_path / "aniso.nii.gz", vol, AFFINES["lps-aniso"])
    pre = Preprocessing(volume=ct_volume_transforms(["image"], train=False, spacing=[1.0, 1.0, 1.0]), image=None)
    assert tuple(pre.load(str(src), "volume")["image"].shape[1:]) != vol.shape  # really resampled
    report = predict_files([src], tmp_path / "out", Predictor(threshold_net()), preprocessing=pre)
    assert report.exit_code == 0, report.results
    mask = _assert_same_geometry(tmp_path / "out" / "aniso_seg.nii.gz", src).astype(bool)
    truth = vol > -650
    dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
    assert dice > 0.9  # interpolation blurs the border only
    assert mask[10:18, 8:14, 4:6].all()  # the lesion core
    assert not mask[:5].any()  # far from it


def test_probabilities_on_the_input_grid(tmp_path, threshold_net):
    vol = _phantom((15, 13, 5))
    src = _write(tmp_path / "p.nii.gz", vol, AFFINES["oblique"])
    predict_files([src], tmp_path / "out", Predictor(threshold_net()), writer=MaskWriter(save_probabilities=True))
    prob = nib.load(str(tmp_path / "out" / "p_prob.nii.gz"))
    assert prob.shape == (*vol.shape, 2)
    assert np.array_equal(prob.affine, nib.load(str(src)).affine)
    data = np.asarray(prob.dataobj)
    np.testing.assert_allclose(data.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(data.argmax(-1), vol > -650)


def test_2d_nifti_slice_keeps_its_shape(tmp_path, threshold_net):
    img = np.zeros((21, 14), np.uint8)
    img[4:9, 2:11] = 250  # 8-bit slice: the default 2D pipeline maps [0, 255] onto [0, 1]
    affine = np.diag([0.7, 0.8, 1.0, 1.0])
    src = _write(tmp_path / "slice.nii.gz", img, affine)
    report = predict_files([src], tmp_path / "out", Predictor(threshold_net()))
    assert report.exit_code == 0, report.results
    mask = _assert_same_geometry(tmp_path / "out" / "slice_seg.nii.gz", src)
    np.testing.assert_array_equal(mask, (img > 127).astype(np.uint8))


def test_dicom_series_gets_its_own_grid(tmp_path, threshold_net):
    synthetic = pytest.importorskip("medseg.data.synthetic")
    vol = _phantom((18, 16, 6)).astype(np.float64)
    affine = oblique_affine(0.0, (0.75, 0.75, 2.0), (1, 1, 1))
    synthetic.write_dicom_series(tmp_path / "series", vol, affine)
    report = predict_files([tmp_path / "series"], tmp_path / "out", Predictor(threshold_net()))
    assert report.exit_code == 0, report.results
    mask = nib.load(str(tmp_path / "out" / "series_seg.nii.gz"))
    assert mask.shape == vol.shape
    np.testing.assert_allclose(mask.affine, affine, atol=1e-4)  # DICOM stores positions as decimal strings
    np.testing.assert_array_equal(np.asarray(mask.dataobj), (vol > -650).astype(np.uint8))


def test_4d_volume_fails_alone(tmp_path, threshold_net):
    good = _write(tmp_path / "good.nii.gz", _phantom((10, 9, 4)), AFFINES["ras-iso"])
    bad = _write(tmp_path / "series4d.nii.gz", np.zeros((6, 6, 4, 3), np.int16), AFFINES["ras-iso"])
    report = predict_files([bad, good], tmp_path / "out", Predictor(threshold_net()))
    assert [r.status for r in report.results] == ["failed", "written"]
    error = report.results[0].error
    assert "series4d.nii.gz" in error
    assert "4D" in error
    assert "\n" not in error
    assert report.exit_code == 2
