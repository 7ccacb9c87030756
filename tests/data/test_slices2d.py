"""slices2d: pairing, grayscale + integer labels, NIfTI/PNG output, datalist, bad input; the COVID sample."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from _data_factory import gray_image, make_slice_folders, run_cli, save_gray, save_palette
from PIL import Image

from medseg.data.slices2d import convert_slices, read_mask

SIZES = [(20, 16), (12, 18), (9, 9)]


def _datalist(out: Path) -> dict:
    return json.loads((out / "datalist.json").read_text())


def _no_temp_files(out: Path) -> bool:
    return not [p for p in out.rglob("*") if ".tmp" in p.name]


def test_binary_jpeg_to_nifti_keeps_intensities_and_maps_255_to_1(tmp_path: Path) -> None:
    imgs, masks, expected = make_slice_folders(tmp_path, SIZES)
    out = tmp_path / "out"
    report = convert_slices(imgs, masks, out)
    assert report.ok
    assert report.converted == 3
    doc = _datalist(out)
    assert [e["image"] for e in doc["training"]] == [f"images/{i}.nii.gz" for i in range(3)]
    for i, (h, w) in enumerate(SIZES):
        img = nib.load(out / "images" / f"{i}.nii.gz")
        lab = nib.load(out / "labels" / f"{i}.nii.gz")
        # (H, W) in row/column order: the stored array equals Pillow's decoding of the JPEG, value for value
        src = np.asarray(Image.open(imgs / f"{i}.jpg"))
        assert img.shape == (h, w)
        assert img.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(np.asarray(img.dataobj), src)
        np.testing.assert_array_equal(np.asarray(lab.dataobj), expected[str(i)])
        np.testing.assert_array_equal(img.affine, np.eye(4))
        assert lab.get_data_dtype() == np.uint8
    assert _no_temp_files(out)


def test_palette_masks_keep_indices_png_output_and_spacing(tmp_path: Path) -> None:
    imgs, masks, expected = make_slice_folders(tmp_path, SIZES, mask="palette", image_ext=".png")
    out = tmp_path / "out"
    assert convert_slices(imgs, masks, out, fmt="png", mask_type="palette").ok
    for i in range(3):
        np.testing.assert_array_equal(np.asarray(Image.open(out / "labels" / f"{i}.png")), expected[str(i)])
        np.testing.assert_array_equal(
            np.asarray(Image.open(out / "images" / f"{i}.png")), np.asarray(Image.open(imgs / f"{i}.png"))
        )
    out2 = tmp_path / "out2"
    convert_slices(imgs, masks, out2, mask_type="palette", spacing=(0.7, 0.8), image_dtype="float32")
    img = nib.load(out2 / "images" / "0.nii.gz")
    np.testing.assert_allclose(img.affine, np.diag([0.7, 0.8, 1.0, 1.0]))
    assert img.get_data_dtype() == np.float32


def test_label_map_is_applied_after_reading(tmp_path: Path) -> None:
    pytest.importorskip("medseg.transforms.labels")
    imgs, masks, expected = make_slice_folders(tmp_path, SIZES[:1], mask="palette")
    out = tmp_path / "out"
    assert convert_slices(imgs, masks, out, mask_type="palette", label_map={0: 0, 1: 1, 2: 1}).ok
    np.testing.assert_array_equal(np.asarray(nib.load(out / "labels" / "0.nii.gz").dataobj), expected["0"] > 0)


def test_read_mask_binary_rules(tmp_path: Path) -> None:
    soft = np.array([[0, 128, 255], [255, 0, 64]], np.uint8)
    save_gray(tmp_path / "soft.png", soft)
    with pytest.raises(ValueError, match=r"soft\.png: binary mask has values \{0, 64, 128, 255\}.*--threshold"):
        read_mask(tmp_path / "soft.png")
    assert read_mask(tmp_path / "soft.png", threshold=128).tolist() == [[0, 1, 1], [1, 0, 0]]
    save_gray(tmp_path / "01.png", (soft > 0).astype(np.uint8))
    assert read_mask(tmp_path / "01.png").tolist() == [[0, 1, 1], [1, 0, 1]]
    save_palette(tmp_path / "p.png", np.array([[0, 2], [1, 0]]))
    assert read_mask(tmp_path / "p.png", "palette").tolist() == [[0, 2], [1, 0]]
    save_gray(tmp_path / "rgb.png", np.dstack([soft, soft, 255 - soft]))
    with pytest.raises(ValueError, match="colour mask"):
        read_mask(tmp_path / "rgb.png", "palette")


def test_bad_pairs_are_reported_and_skipped_without_partial_output(tmp_path: Path) -> None:
    imgs, masks, _ = make_slice_folders(tmp_path, [(10, 12)] * 5)
    save_gray(masks / "1.png", np.zeros((11, 12), np.uint8))  # size mismatch
    (imgs / "2.jpg").write_bytes((imgs / "2.jpg").read_bytes()[:200])  # truncated JPEG
    (masks / "3.png").write_text("not an image")
    (masks / "4.png").unlink()  # image without mask
    save_gray(masks / "9.png", np.zeros((10, 12), np.uint8))  # mask without image
    out = tmp_path / "out"
    report = convert_slices(imgs, masks, out)
    assert report.converted == 1
    lines = "\n".join(report.failure_lines())
    assert f"image {imgs / '1.jpg'} is 12x10 (WxH) but mask {masks / '1.png'} is 12x11" in lines
    assert f"{imgs / '2.jpg'}: unreadable or truncated image" in lines
    assert f"{masks / '3.png'}: not an image file" in lines
    assert f"{imgs / '4.jpg'}: no mask with stem '4'" in lines
    assert f"{masks / '9.png'}: no image with stem '9'" in lines
    assert sorted(p.name for p in (out / "images").iterdir()) == ["0.nii.gz"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["0.nii.gz"]
    assert [e["image"] for e in _datalist(out)["training"]] == ["images/0.nii.gz"]
    assert _no_temp_files(out)


def test_empty_folder_and_bad_arguments(tmp_path: Path) -> None:
    (tmp_path / "imgs").mkdir()
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="no slice images found"):
        convert_slices(tmp_path / "imgs", tmp_path / "masks", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    with pytest.raises(NotADirectoryError, match="img_dir"):
        convert_slices(tmp_path / "missing", tmp_path / "masks", tmp_path / "out")
    with pytest.raises(ValueError, match="float32 cannot be written as PNG"):
        convert_slices(tmp_path / "imgs", tmp_path / "masks", tmp_path / "out", fmt="png", image_dtype="float32")
    with pytest.raises(ValueError, match="threshold: only applies"):
        convert_slices(tmp_path / "imgs", tmp_path / "masks", tmp_path / "out", mask_type="palette", threshold=3)


def test_cli_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    imgs, masks, _ = make_slice_folders(tmp_path, [(8, 8), (8, 8)], image_ext=".png")
    assert run_cli(["slices2d", str(imgs), str(masks), str(tmp_path / "ok"), "--format", "png", "--no-progress"]) == 0
    assert "converted 2 pairs" in capsys.readouterr().out
    save_gray(masks / "1.png", np.full((8, 8), 7, np.uint8))
    assert run_cli(["slices2d", str(imgs), str(masks), str(tmp_path / "bad")]) == 2
    err = capsys.readouterr().err
    assert f"failed: {masks / '1.png'}: binary mask has values {{7}}" in err
    assert "1 item(s) failed" in err
    assert run_cli(["slices2d", str(imgs), str(tmp_path / "nope"), str(tmp_path / "x")]) == 2
    assert "is not an existing directory" in capsys.readouterr().err
    assert run_cli(["slices2d", str(imgs), str(masks), str(tmp_path / "x"), "--label-map", "{bad"]) == 2
    assert run_cli(["slices2d", "--help"]) == 0
    assert "--mask-type" in capsys.readouterr().out


def test_covid_sample(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "covid19_ct_infection_medseg_infnet"
    if not src.is_dir():
        pytest.skip("covid19 sample not present")
    out = tmp_path / "bin"
    report = convert_slices(src / "imgs", src / "gt_binary", out)
    assert report.ok
    assert report.converted == 50
    entries = _datalist(out)["training"]
    assert len(entries) == 50
    fractions = []
    for e in entries:
        stem = Path(e["label"]).name[: -len(".nii.gz")]
        lab = np.asarray(nib.load(out / e["label"]).dataobj)
        gt = np.asarray(Image.open(src / "gt_binary" / f"{stem}.png"))
        np.testing.assert_array_equal(lab, gt // 255)
        assert nib.load(out / e["image"]).shape == gt.shape
        fractions.append(lab.mean())
    # README: foreground fraction mean 0.145 (min 0.009, max 0.387), no empty mask
    assert np.mean(fractions) == pytest.approx(0.145, abs=0.002)
    assert min(fractions) > 0.008
    assert max(fractions) < 0.388
    # multi-class palette masks keep 0/1/2 and agree with the binary masks (README: checked for every slice)
    sub = tmp_path / "sub"
    for stem in ("0", "15", "54"):
        (sub / "imgs").mkdir(parents=True, exist_ok=True)
        (sub / "imgs" / f"{stem}.jpg").write_bytes((src / "imgs" / f"{stem}.jpg").read_bytes())
        save_gray(sub / "m" / f"{stem}.png", np.asarray(Image.open(src / "gt_multiclass" / f"{stem}.png")))
    assert convert_slices(sub / "imgs", sub / "m", sub / "out", mask_type="palette", fmt="png").converted == 3
    for stem in ("0", "15", "54"):
        multi = np.asarray(Image.open(sub / "out" / "labels" / f"{stem}.png"))
        assert set(np.unique(multi).tolist()) <= {0, 1, 2}
        np.testing.assert_array_equal(multi > 0, np.asarray(Image.open(src / "gt_binary" / f"{stem}.png")) > 0)


def test_gray_image_helper_is_not_constant() -> None:
    assert gray_image(5, 7, 0).std() > 0
