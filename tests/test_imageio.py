"""medseg.imageio: the one reader/writer layer (formats, label rules, size guard, palette PNG, geometry)."""

from __future__ import annotations

import argparse
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg import imageio
from medseg.imageio import (
    ImageSizeError,
    file_stem,
    load_nifti,
    max_voxels_arg,
    read_image,
    read_label,
    read_rgb,
    reorient_like,
    write_label_png,
    write_nifti,
    write_nifti_like,
    write_png,
)


def test_names() -> None:
    assert file_stem("a/b.nii.gz") == "b"
    assert file_stem("B.NII.GZ") == "B"
    assert imageio.image_suffix("x.Nii.Gz") == ".nii.gz"
    assert imageio.image_suffix(".nii.gz") is None  # a hidden file with no stem
    assert imageio.image_suffix("notes.txt") is None
    assert imageio.is_nifti("a.nii")
    assert not imageio.is_nifti("a.png")


def test_nifti_png_and_mha_read_with_their_geometry(tmp_path: Path) -> None:
    vol = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    affine = np.diag([0.5, 0.75, 2.0, 1.0])
    write_nifti(tmp_path / "v.nii.gz", vol, affine, units="mm")
    img = read_image(tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(img.array, vol)
    np.testing.assert_array_equal(img.affine, affine)
    assert (img.spacing, img.units, img.kind) == ((0.5, 0.75, 2.0), "mm", "nifti")
    assert img.header is not None
    write_png(tmp_path / "rgb.png", np.zeros((3, 5, 3), np.uint8))
    rgb = read_image(tmp_path / "rgb.png")
    assert (rgb.spatial_shape, rgb.channel_last, rgb.affine, rgb.spacing, rgb.units) == (
        (3, 5),
        True,
        None,
        None,
        "pixel",
    )
    import SimpleITK as sitk  # noqa: N813

    itk = sitk.GetImageFromArray(np.transpose(vol, (2, 1, 0)))  # SimpleITK's array is (z, y, x)
    itk.SetSpacing((0.5, 0.75, 2.0))
    itk.SetOrigin((10.0, 20.0, 30.0))
    sitk.WriteImage(itk, str(tmp_path / "v.mha"))
    mha = read_image(tmp_path / "v.mha")
    np.testing.assert_array_equal(mha.array, vol)  # voxel (x, y, z) order, like nibabel
    # identity direction in LPS -> RAS flips x and y: diag(-0.5, -0.75, 2), origin (-10, -20, 30)
    expected = np.diag([-0.5, -0.75, 2.0, 1.0])
    expected[:3, 3] = (-10.0, -20.0, 30.0)
    np.testing.assert_allclose(mha.affine, expected)
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ValueError, match="unsupported file type"):
        read_image(tmp_path / "x.txt")
    with pytest.raises(FileNotFoundError, match="file not found"):
        read_image(tmp_path / "none.png")


def test_unspecified_units_with_unit_zooms_are_pixels(tmp_path: Path) -> None:
    """The NIfTI units field left unspecified: unit zooms mean 'no spacing known', others are mm (NIfTI-1 default)."""
    nib.save(nib.Nifti1Image(np.zeros((4, 4), np.uint8), np.eye(4)), str(tmp_path / "px.nii.gz"))
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 2), np.uint8), np.diag([3.0, 3.0, 3.0, 1.0])), str(tmp_path / "ts.nii.gz"))
    px, ts = read_image(tmp_path / "px.nii.gz"), read_image(tmp_path / "ts.nii.gz")
    assert (px.units, px.spacing) == ("pixel", None)
    assert (ts.units, ts.spacing) == ("mm", (3.0, 3.0, 3.0))


def test_label_rules(tmp_path: Path) -> None:
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "colour.png")
    with pytest.raises(ValueError, match=r"colour\.png: colour label with differing channels"):
        read_label(tmp_path / "colour.png")
    grey = np.stack([np.eye(4, dtype=np.uint8)] * 3 + [np.full((4, 4), 255, np.uint8)], -1)  # RGBA, opaque
    Image.fromarray(grey).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(read_label(tmp_path / "grey.png").array, np.eye(4))
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 0.5, np.float32), np.eye(4)), str(tmp_path / "f.nii.gz"))
    with pytest.raises(ValueError, match=r"f\.nii\.gz: label has non-integer or non-finite values \(0\.5\)"):
        read_label(tmp_path / "f.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((2, 3, 4, 1), np.float32), np.eye(4)), str(tmp_path / "g.nii.gz"))
    g = read_label(tmp_path / "g.nii.gz")
    assert (g.array.shape, g.array.dtype) == ((2, 3, 4), np.int32)  # trailing singleton dropped, floats -> int
    (tmp_path / "broken.nii.gz").write_bytes(b"not nifti")
    with pytest.raises(ValueError, match=r"broken\.nii\.gz: unreadable NIfTI header"):
        read_label(tmp_path / "broken.nii.gz")
    (tmp_path / "trunc.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.raises(ValueError, match=r"trunc\.png: (unreadable or truncated image|not an image)"):
        read_label(tmp_path / "trunc.png")


def test_size_guard_refuses_before_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_nifti(tmp_path / "v.nii.gz", np.zeros((4, 5, 6), np.uint8), np.eye(4))
    Image.fromarray(np.zeros((6, 7), np.uint8)).save(tmp_path / "p.png")
    import SimpleITK as sitk  # noqa: N813

    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 3, 3), np.uint8)), str(tmp_path / "v.mha"))
    with pytest.raises(
        ImageSizeError, match=r"v\.nii\.gz: header claims shape \(4, 5, 6\) = 120 voxels, above the limit of 119"
    ):
        read_image(tmp_path / "v.nii.gz", max_voxels=119)
    assert read_image(tmp_path / "v.nii.gz", max_voxels=120).array.size == 120
    with pytest.raises(ImageSizeError, match=r"p\.png: header claims shape \(6, 7, 1\)"):
        read_label(tmp_path / "p.png", max_voxels=41)
    with pytest.raises(ImageSizeError, match=r"v\.mha: header claims shape \(3, 3, 3, 1\)"):
        read_image(tmp_path / "v.mha", max_voxels=26)
    monkeypatch.setattr(imageio, "DEFAULT_MAX_VOXELS", 100)  # the default applies when no limit is given
    with pytest.raises(ImageSizeError, match="limit of 100"):
        load_nifti(tmp_path / "v.nii.gz")
    with pytest.raises(ValueError, match="max_voxels"):
        read_image(tmp_path / "v.nii.gz", max_voxels=0)


def test_max_voxels_option() -> None:
    assert max_voxels_arg("1e9") == 10**9
    assert max_voxels_arg("2**31") == 2**31
    assert max_voxels_arg("1_000") == 1000
    for bad in ("0", "-5", "1.5", "lots"):
        with pytest.raises(argparse.ArgumentTypeError, match="--max-voxels"):
            max_voxels_arg(bad)


def test_label_png_is_a_viewable_palette_with_the_classes_as_values(tmp_path: Path) -> None:
    labels = np.array([[0, 1, 2], [11, 1, 0]], np.uint8)
    write_label_png(tmp_path / "m.png", labels)
    with Image.open(tmp_path / "m.png") as im:
        assert im.mode == "P"
        np.testing.assert_array_equal(np.asarray(im), labels)  # the values are the classes
        colours = np.asarray(im.convert("RGB"))
    assert colours[0, 0].tolist() == [0, 0, 0]
    assert colours[0, 1].tolist() == [255, 0, 0]  # class 1 red, class 2 green (LABEL_COLORS)
    assert colours[0, 2].tolist() == [0, 255, 0]
    # class 11 cycles the 9 foreground colours: (11 - 1) % 9 = 1 -> the second one, green; never background black
    assert colours[1, 0].tolist() == [0, 255, 0]
    assert read_label(tmp_path / "m.png").array.tolist() == labels.tolist()
    write_label_png(tmp_path / "c.png", labels, colors=[(0, 0, 0), (1, 2, 3)])
    assert np.asarray(Image.open(tmp_path / "c.png").convert("RGB"))[0, 2].tolist() == [1, 2, 3]
    for bad, match in (
        (np.array([[256]]), "0..255"),
        (np.zeros((2, 2, 2), np.uint8), "2D"),
        (np.zeros((2, 2)), "integer"),
    ):
        with pytest.raises(ValueError, match=match):
            write_label_png(tmp_path / "bad.png", bad)
    with pytest.raises(ValueError, match="colors"):
        write_label_png(tmp_path / "bad.png", labels, colors=[(300, 0, 0)])
    assert not (tmp_path / "bad.png").exists()


def test_read_rgb_for_display(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "g.png")
    assert read_rgb(tmp_path / "g.png").tolist() == [[[0, 0, 0], [255, 255, 255]]]
    Image.fromarray(np.array([[1000, 3000]], np.uint16)).save(tmp_path / "g16.png")
    assert read_rgb(tmp_path / "g16.png").tolist() == [[[0, 0, 0], [255, 255, 255]]]  # min/max scaled


def test_write_nifti_like_copies_the_reference_header(tmp_path: Path) -> None:
    affine = np.array([[0, -0.8, 0, 50], [0.8, 0, 0, -20], [0, 0, 2.5, 7], [0, 0, 0, 1]], dtype=np.float64)
    ref_img = nib.Nifti1Image(np.zeros((5, 6, 1), np.int16), affine)
    ref_img.header.set_xyzt_units("mm")
    nib.save(ref_img, str(tmp_path / "ref.nii.gz"))
    ref = load_nifti(tmp_path / "ref.nii.gz", max_dims=3)
    write_nifti_like(tmp_path / "mask.nii.gz", np.ones((5, 6), np.uint8), ref)  # squeezed singleton restored
    mask = nib.load(tmp_path / "mask.nii.gz")
    assert mask.shape == (5, 6, 1)
    np.testing.assert_allclose(mask.affine, affine)
    assert mask.header.get_xyzt_units()[0] == "mm"
    assert mask.get_data_dtype() == np.uint8
    write_nifti_like(tmp_path / "b.nii.gz", np.ones((2, 2, 2), np.uint8), None, affine=affine)
    np.testing.assert_allclose(nib.load(tmp_path / "b.nii.gz").affine, affine)
    with pytest.raises(ValueError, match="does not match the reference shape"):
        write_nifti_like(tmp_path / "c.nii.gz", np.ones((6, 5), np.uint8), ref)
    nib.save(nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.uint8), np.eye(4)), str(tmp_path / "4d.nii.gz"))
    with pytest.raises(ValueError, match="a 4D NIfTI of shape"):
        load_nifti(tmp_path / "4d.nii.gz", max_dims=3)


def test_reorient_like_matches_nibabels_reoriented_image() -> None:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 5, (4, 3, 2))
    lps = np.array([[-1.0, 0, 0, 3], [0, 0, -2.0, 4], [0, 1.5, 0, -1], [0, 0, 0, 1]])
    out, aff = reorient_like(arr, lps, np.eye(4))
    # independent check: every voxel keeps its world position
    for idx in np.ndindex(*arr.shape):
        world = lps @ np.array([*idx, 1.0])
        new_idx = np.linalg.solve(aff, world)[:3].round().astype(int)
        assert out[tuple(new_idx)] == arr[idx]
    # voxel axis j ran along world z (1.5 mm) and k along -y (2 mm): in RAS order the steps are 1, 2, 1.5
    np.testing.assert_allclose(aff[:3, :3], np.diag([1.0, 2.0, 1.5]))
    same, _same_aff = reorient_like(arr, np.eye(4), np.eye(4) * 2)
    assert same is arr
