"""The embedded synthetic sample data: deterministic, relative datalists, plausible content, known geometry."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg.data import load_datalist, make_ct_slices, make_ct_volume, make_ct_volumes, make_instrument_frames
from medseg.data.synthetic import HU, split_counts, write_dicom_series


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


GENERATORS = [
    ("ct_slices", lambda out, seed: make_ct_slices(out, num_cases=4, size=(32, 32), seed=seed)),
    ("ct_slices_png", lambda out, seed: make_ct_slices(out, num_cases=3, size=(32, 32), seed=seed, fmt="png")),
    ("frames", lambda out, seed: make_instrument_frames(out, num_frames=3, size=(32, 40), seed=seed)),
    ("volumes", lambda out, seed: make_ct_volumes(out, num_cases=3, shape=(16, 16, 4), seed=seed)),
]


@pytest.mark.parametrize(("name", "make"), GENERATORS, ids=[g[0] for g in GENERATORS])
def test_deterministic_and_relative(tmp_path: Path, name: str, make: object) -> None:
    a = make(tmp_path / "a", 0)  # type: ignore[operator]
    b = make(tmp_path / "b", 0)  # type: ignore[operator]
    make(tmp_path / "c", 1)  # type: ignore[operator]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")  # byte-identical for one seed
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    doc = json.loads(Path(a).read_text())
    for split in ("training", "validation", "test"):
        assert doc[split], split
        for entry in doc[split]:
            for key in ("image", "label"):
                assert not Path(entry[key]).is_absolute()
                assert (Path(a).parent / entry[key]).is_file()
    # the whole folder can move: paths stay valid
    moved = tmp_path / "moved"
    (tmp_path / "b").rename(moved)
    assert load_datalist(moved / Path(b).name, ["training", "validation", "test"])  # type: ignore[arg-type]


def test_split_counts() -> None:
    assert split_counts(10) == (6, 2, 2)
    assert split_counts(3) == (1, 1, 1)
    with pytest.raises(ValueError, match="at least 3"):
        split_counts(2)


def test_ct_slices_content(tmp_path: Path) -> None:
    path = make_ct_slices(tmp_path, num_cases=3, size=(48, 40), multiclass=True, intensity="hu")
    for entry in load_datalist(path, ["training", "validation", "test"]):
        img = np.asarray(nib.load(entry["image"]).dataobj)
        lab = np.asarray(nib.load(entry["label"]).dataobj)
        assert img.shape == lab.shape == (48, 40)
        assert img.dtype == np.int16
        assert lab.dtype == np.uint8
        assert set(np.unique(lab).tolist()) <= {0, 1, 2}
        assert (lab > 0).any()  # every slice has a lesion
        assert img.min() < -900  # air around the body
        # lesions are denser than the lung around them (GGO -450 / consolidation -20 vs lung -850)
        assert img[lab > 0].mean() > HU["lung"] + 200


def test_ct_slices_uint8_png_matches_window(tmp_path: Path) -> None:
    path = make_ct_slices(tmp_path, num_cases=3, size=(32, 32), fmt="png")
    entry = load_datalist(path, "training")[0]
    img = np.asarray(Image.open(entry["image"]))
    assert img.dtype == np.uint8
    # air at -1000 HU through W1500/L-650: (−1000 + 1400) / 1500 * 255 = 68; noise ±20 HU is ±3.4 levels
    assert abs(int(np.median(img[0])) - 68) <= 6
    with pytest.raises(ValueError, match="fmt='nifti'"):
        make_ct_slices(tmp_path / "x", fmt="png", intensity="hu")


def test_instrument_frames_content(tmp_path: Path) -> None:
    path = make_instrument_frames(tmp_path, num_frames=5, size=(32, 40), num_sequences=2)
    train = load_datalist(path, "training")
    test = load_datalist(path, "test")
    assert max(e["frame"] for e in train) <= min(e["frame"] for e in test)  # sequential split
    img = np.asarray(Image.open(train[0]["image"]))
    lab = np.asarray(Image.open(train[0]["label"]))
    assert img.shape == (32, 40, 3)
    assert lab.shape == (32, 40)
    assert set(np.unique(lab).tolist()) <= {0, 1, 2, 3}
    assert (lab == 1).any()  # the shaft is always visible
    binary = make_instrument_frames(tmp_path / "b", num_frames=3, size=(32, 40), task="binary")
    lab_b = np.asarray(Image.open(load_datalist(binary, "training")[0]["label"]))
    assert set(np.unique(lab_b).tolist()) == {0, 1}


def test_ct_volume_lesion_geometry(tmp_path: Path) -> None:
    aff = np.array([[0.7, 0, 0, -20.0], [0, 0.7, 0, 10.0], [0, 0, 2.0, -50.0], [0, 0, 0, 1]])
    vol = make_ct_volume(tmp_path / "ct.nii.gz", (48, 48, 16), aff, lesion_center=(15, 24, 8), lesion_radius_mm=5.0)
    img, lab = nib.load(vol.image), nib.load(vol.label)
    np.testing.assert_allclose(img.affine, aff)
    np.testing.assert_allclose(lab.affine, aff)
    # centre in world: A @ (15, 24, 8, 1) = (0.7*15 - 20, 0.7*24 + 10, 2*8 - 50) = (-9.5, 26.8, -34)
    np.testing.assert_allclose(vol.lesion_center_world, (-9.5, 26.8, -34.0))
    mask = np.asarray(lab.dataobj)
    assert int(mask.sum()) == vol.lesion_voxels
    # ball of 5 mm radius: 4/3 pi 125 = 523.6 mm^3; a voxel is 0.7*0.7*2 = 0.98 mm^3 -> about 534 voxels
    assert abs(vol.lesion_voxels - 534) / 534 < 0.15
    centroid = np.argwhere(mask).mean(axis=0)
    np.testing.assert_allclose(centroid, (15, 24, 8), atol=0.5)
    hu = np.asarray(img.dataobj)
    assert abs(float(hu[mask > 0].mean()) - HU["ggo"]) < 10


def test_dicom_series_geometry_with_simpleitk(tmp_path: Path) -> None:
    import SimpleITK as sitk  # noqa: N813

    rng = np.random.default_rng(0)
    vol = rng.integers(-1000, 1000, size=(6, 5, 4)).astype(np.float64)
    aff = np.diag([0.5, 0.6, 3.0, 1.0])
    aff[:3, 3] = [10, -20, 30]
    write_dicom_series(tmp_path, vol, aff, shuffle_instance_numbers=True)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path)))
    image = reader.Execute()
    assert image.GetSize() == (6, 5, 4)
    np.testing.assert_allclose(image.GetSpacing(), (0.5, 0.6, 3.0), atol=1e-5)
    # RAS origin (10, -20, 30) is LPS (-10, 20, 30); RAS axes +x/+y are LPS -x/-y
    np.testing.assert_allclose(image.GetOrigin(), (-10, 20, 30), atol=1e-5)
    np.testing.assert_allclose(np.reshape(image.GetDirection(), (3, 3)), np.diag([-1, -1, 1]), atol=1e-6)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image).T, vol)
