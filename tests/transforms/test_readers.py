"""Loading: 2D orientation convention, DICOM series folders (SimpleITK), one-line errors naming the file."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg.data.synthetic import write_dicom_series
from medseg.transforms import LoadMedicalImage, LoadMedicalImaged
from medseg.transforms.readers import lps_to_ras_affine


@pytest.fixture(scope="module")
def loader() -> LoadMedicalImage:
    return LoadMedicalImage()


def test_png_keeps_row_column_order(tmp_path: Path, loader: LoadMedicalImage) -> None:
    arr = np.arange(3 * 5, dtype=np.uint8).reshape(3, 5)  # H=3, W=5: non-square so a transpose would show
    Image.fromarray(arr).save(tmp_path / "a.png")
    img = loader(tmp_path / "a.png")
    assert tuple(img.shape) == (1, 3, 5)
    np.testing.assert_array_equal(img[0].numpy(), arr)
    assert list(img.meta["spatial_shape"]) == [3, 5]
    assert img.dtype.is_floating_point


def test_rgb_png_channel_first(tmp_path: Path, loader: LoadMedicalImage) -> None:
    arr = np.zeros((4, 6, 3), dtype=np.uint8)
    arr[1, 2] = (10, 20, 30)
    Image.fromarray(arr).save(tmp_path / "rgb.png")
    img = loader(tmp_path / "rgb.png")
    assert tuple(img.shape) == (3, 4, 6)
    assert img[:, 1, 2].tolist() == [10.0, 20.0, 30.0]


def test_palette_png_gives_indices(tmp_path: Path, loader: LoadMedicalImage) -> None:
    idx = np.array([[0, 1], [2, 1]], dtype=np.uint8)
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9))
    im.save(tmp_path / "p.png")
    assert loader(tmp_path / "p.png")[0].tolist() == [[0.0, 1.0], [2.0, 1.0]]


def test_2d_nifti_same_convention_as_png(tmp_path: Path, loader: LoadMedicalImage) -> None:
    # medseg-data slices2d writes the PIL array (H, W) straight into a 2D NIfTI: both load identically.
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / "a.nii.gz"))
    Image.fromarray(arr).save(tmp_path / "a.png")
    np.testing.assert_array_equal(loader(tmp_path / "a.nii.gz").numpy(), loader(tmp_path / "a.png").numpy())


def _oblique_affine() -> np.ndarray:
    # RAS affine: 0.7 x 0.8 mm pixels, 2.5 mm slices, rotated 20 degrees about z, origin off-centre.
    t = np.deg2rad(20.0)
    rot = np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.7, 0.8, 2.5])
    aff[:3, 3] = [-40.0, 25.0, -120.0]
    return aff


@pytest.fixture(scope="module")
def dicom_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray, np.ndarray]:
    root = tmp_path_factory.mktemp("dicom")
    rng = np.random.default_rng(0)
    vol = np.round(rng.uniform(-1000, 400, size=(12, 10, 5)))
    aff = _oblique_affine()
    # shuffled InstanceNumbers + a non-trivial slope/intercept: the reader must sort by position, rescale to HU
    write_dicom_series(root / "one", vol, aff, slope=2.0, intercept=-1024.0, shuffle_instance_numbers=True)
    return root / "one", vol, aff


def test_dicom_series_matches_volume_and_affine(
    dicom_case: tuple[Path, np.ndarray, np.ndarray], loader: LoadMedicalImage
) -> None:
    folder, vol, aff = dicom_case
    img = loader(folder)
    assert tuple(img.shape) == (1, *vol.shape)
    # stored = round((hu + 1024) / 2): HU come back to within half a stored step (1 HU).
    np.testing.assert_allclose(img[0].numpy(), vol, atol=1.0)
    np.testing.assert_allclose(img.affine.numpy(), aff, atol=1e-4)


def test_dicom_equals_nifti_conversion(
    dicom_case: tuple[Path, np.ndarray, np.ndarray], loader: LoadMedicalImage, tmp_path: Path
) -> None:
    folder, _vol, aff = dicom_case
    d = loader(folder)
    nib.save(nib.Nifti1Image(d[0].numpy(), aff), str(tmp_path / "v.nii.gz"))
    n = loader(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(d.numpy(), n.numpy())
    np.testing.assert_allclose(d.affine.numpy(), n.affine.numpy(), atol=1e-4)


def test_two_series_in_one_folder(tmp_path: Path) -> None:
    vol = np.zeros((8, 8, 3))
    write_dicom_series(tmp_path, vol, np.eye(4), series_uid="1.2.3.1", prefix="a")
    write_dicom_series(tmp_path, vol + 100, np.eye(4), series_uid="1.2.3.2", prefix="b")
    with pytest.raises(ValueError, match=r"2 DICOM series"):
        LoadMedicalImage()(tmp_path)
    picked = LoadMedicalImage(series_uid="1.2.3.2")(tmp_path)
    assert float(picked.mean()) == pytest.approx(100.0)


def test_missing_slice_refused(tmp_path: Path) -> None:
    files = write_dicom_series(tmp_path, np.zeros((8, 8, 5)), np.eye(4))
    files[2].unlink()
    with pytest.raises(ValueError, match="uneven slice spacing"):
        LoadMedicalImage()(tmp_path)
    assert tuple(LoadMedicalImage(check_spacing=False)(tmp_path).shape) == (1, 8, 8, 4)


def test_lps_to_ras_affine_identity_direction() -> None:
    # LPS origin (10, 20, 30) -> RAS (-10, -20, 30); x and y axes flip sign.
    a = lps_to_ras_affine([1, 0, 0, 0, 1, 0, 0, 0, 1], [0.5, 0.5, 2.0], [10, 20, 30])
    np.testing.assert_allclose(a, [[-0.5, 0, 0, -10], [0, -0.5, 0, -20], [0, 0, 2, 30], [0, 0, 0, 1]])


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda p: p / "nothing_here.png", r"nothing_here\.png: no such file"),
        (lambda p: (p / "notes.txt").write_text("hello") and p / "notes.txt", r"notes\.txt: not a NIfTI"),
        (lambda p: (p / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20) and p / "cut.png", r"cut\.png"),
        (lambda p: (p / "empty_dir").mkdir() or p / "empty_dir", r"empty_dir: no DICOM series"),
    ],
    ids=["missing", "text_file", "truncated_png", "empty_folder"],
)
def test_errors_name_the_file(tmp_path: Path, make: object, pattern: str) -> None:
    path = make(tmp_path)  # type: ignore[operator]
    with pytest.raises((ValueError, FileNotFoundError), match=pattern) as info:
        LoadMedicalImage()(path)
    assert "\n" not in str(info.value)


def test_dict_loader(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((2, 3), np.uint8)).save(tmp_path / "a.png")
    out = LoadMedicalImaged(["image"])({"image": str(tmp_path / "a.png"), "case": 7})
    assert tuple(out["image"].shape) == (1, 2, 3)
    assert out["case"] == 7


def test_shared_covid_slice(shared_data: Path) -> None:
    folder = shared_data / "covid19_ct_infection_medseg_infnet"
    img_path, mask_path = folder / "imgs" / "0.jpg", folder / "gt_multiclass" / "0.png"
    img, mask = LoadMedicalImage()(img_path), LoadMedicalImage()(mask_path)
    expected = np.asarray(Image.open(img_path))
    assert tuple(img.shape) == (1, *expected.shape)
    np.testing.assert_array_equal(img[0].numpy(), expected)
    assert set(np.unique(mask.numpy()).tolist()) <= {0.0, 1.0, 2.0}
    assert tuple(mask.shape) == tuple(img.shape)
