from __future__ import annotations

import csv
import json
import math
import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg.evaluation import evaluate as ev
from medseg.evaluation.evaluate import (
    apply_label_map,
    case_id,
    evaluate_folders,
    match_cases,
    output_paths,
    parse_label_map,
    read_segmentation,
)

SPACING = (1.0, 1.0, 3.0)
AFFINE = np.diag([*SPACING, 1.0])


def save_nii(path: Path, arr: np.ndarray, affine: np.ndarray = AFFINE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr.astype(np.uint8), affine), str(path))


def nifti_cases(root: Path) -> tuple[Path, Path]:
    """Four 10x10x4 cases (400 voxels each), spacing 1 x 1 x 3 mm, binary.

    a: 3x3x2 blocks shifted by one slice: TP 9, FP 9, FN 9 -> IoU 1/3, Dice 1/2, HD95 3 mm, ASD 1.5 mm
    b: empty prediction, 4-voxel label: IoU 0, Dice 0, HD inf
    c: empty label, 4-voxel prediction: IoU 0, Dice 0, HD inf
    d: both empty: IoU, Dice, HD undefined (NaN)
    """
    pred, lab = root / "pred", root / "label"
    z = np.zeros((10, 10, 4), np.uint8)
    a_l, a_p = z.copy(), z.copy()
    a_l[2:5, 2:5, 1:3] = 1
    a_p[2:5, 2:5, 2:4] = 1
    b_l = z.copy()
    b_l[5:7, 5:7, 0] = 1
    c_p = z.copy()
    c_p[0:2, 0:2, 3] = 1
    for name, p, t in (("a", a_p, a_l), ("b", z, b_l), ("c", c_p, z), ("d", z, z)):
        save_nii(pred / f"{name}.nii.gz", p)
        save_nii(lab / f"{name}.nii.gz", t)
    return pred, lab


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {r["case"]: r for r in csv.DictReader(fh)}


def test_nifti_hand_made_cases(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    s = evaluate_folders(pred, lab, 2, out=tmp_path / "out" / "summary.json", class_names=["bg", "lesion"])
    ds = s["dataset"]
    # dataset class 1: TP 9, FP 9 + 4 (case c), FN 9 + 4 (case b) -> IoU 9/35, Dice 18/44
    assert ds["per_class"]["lesion"]["iou"] == pytest.approx(9 / 35)
    assert ds["per_class"]["lesion"]["dice"] == pytest.approx(18 / 44)
    # class 0: 1600 voxels - 35 -> TP 1565, FP 13, FN 13 -> IoU 1565/1591
    assert ds["per_class"]["bg"]["iou"] == pytest.approx(1565 / 1591)
    assert ds["mean_iou"] == pytest.approx((1565 / 1591 + 9 / 35) / 2)
    assert ds["mean_iou_foreground"] == pytest.approx(9 / 35)
    assert ds["pixel_accuracy"] == pytest.approx(1 - 26 / 1600)
    assert ds["confusion_matrix"] == [[1565, 13], [13, 9]]
    pc = s["per_case"]
    # per case IoU_1: a 1/3, b 0, c 0, d NaN -> mean 1/9 over 3 defined cases (differs from 9/35)
    assert pc["iou_lesion"]["mean"] == pytest.approx(1 / 9)
    assert pc["iou_lesion"]["n"] == 3
    assert pc["iou_lesion"]["n_nan"] == 1
    assert pc["dice_lesion"]["mean"] == pytest.approx(1 / 6)
    assert pc["hd95_lesion"] == {"mean": 3.0, "std": 0.0, "n": 1, "n_nan": 1, "n_inf": 2}
    assert pc["asd_lesion"]["mean"] == pytest.approx(1.5)
    assert s["distance_units"] == "mm"
    rows = read_rows(tmp_path / "out" / "summary_cases.csv")
    assert list(rows) == ["a", "b", "c", "d"]
    assert float(rows["a"]["iou_lesion"]) == pytest.approx(1 / 3)
    assert float(rows["a"]["hd95_lesion"]) == pytest.approx(3.0)
    assert rows["b"]["hd95_lesion"] == "inf"
    assert rows["b"]["dice_lesion"] == "0"
    assert rows["c"]["asd_lesion"] == "inf"
    assert rows["d"]["dice_lesion"] == "nan"
    assert rows["d"]["hd95_lesion"] == "nan"
    assert rows["b"]["label_voxels_lesion"] == "4"
    assert rows["c"]["pred_voxels_lesion"] == "4"
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["dataset"]["confusion_matrix"] == [[1565, 13], [13, 9]]
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "| lesion | 0.2571 | 0.4091 | 0.1111 ± 0.1571 |" in md
    assert "(2 inf)" in md


def test_both_empty_perfect_policy(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    s = evaluate_folders(pred, lab, 2, out=tmp_path / "s.json", both_empty="perfect", distances=False)
    # case d now scores Dice 1: (0.5 + 0 + 0 + 1) / 4
    assert s["per_case"]["dice_1"]["mean"] == pytest.approx(0.375)
    assert s["per_case"]["hd95_1"]["n_nan"] == 4  # distances switched off
    assert s["dataset"]["per_class"]["1"]["iou"] == pytest.approx(9 / 35)  # dataset level unaffected


def test_png_with_label_map_and_pixel_units(tmp_path: Path) -> None:
    lab = np.zeros((12, 12), np.uint8)
    lab[2:8, 2:8] = 255
    pred = np.zeros((12, 12), np.uint8)
    pred[4:8, 2:8] = 1  # the top two rows of the square are missed
    (tmp_path / "p").mkdir()
    (tmp_path / "l").mkdir()
    Image.fromarray(pred).save(tmp_path / "p" / "img1.png")
    Image.fromarray(lab).save(tmp_path / "l" / "img1.png")
    s = evaluate_folders(tmp_path / "p", tmp_path / "l", 2, label_map={255: 1})
    # TP 24, FN 12, FP 0 -> IoU 24/36, Dice 48/60
    assert s["dataset"]["per_class"]["1"]["iou"] == pytest.approx(2 / 3)
    assert s["dataset"]["per_class"]["1"]["dice"] == pytest.approx(0.8)
    assert s["distance_units"] == "pixel"
    # every missed boundary pixel of row 2 is 2 pixels from the predicted top edge (row 4)
    assert s["per_case"]["hd95_1"]["mean"] == pytest.approx(2.0)
    assert (tmp_path / "p" / "summary.json").is_file()  # default output location
    s2 = evaluate_folders(tmp_path / "p", tmp_path / "l", 2, label_map="255:1", spacing=(0.5, 0.5))
    assert s2["per_case"]["hd95_1"]["mean"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match=r"label values must be integers in \[0, 2\)"):
        evaluate_folders(tmp_path / "p", tmp_path / "l", 2)


def test_missing_and_extra_files(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    (pred / "b.nii.gz").unlink()
    save_nii(pred / "zzz.nii.gz", np.zeros((10, 10, 4)))
    with pytest.raises(ValueError, match=r"1 label\(s\) have no prediction .*: b"):
        evaluate_folders(pred, lab, 2)
    s = evaluate_folders(pred, lab, 2, allow_missing=True, distances=False)
    assert s["missing_predictions"] == ["b"]
    assert s["extra_predictions"] == ["zzz"]
    assert s["num_cases"] == 3


def test_geometry_checks_name_the_case(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    save_nii(pred / "c.nii.gz", np.zeros((10, 10, 4)), affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"case 'c': prediction affine differs"):
        evaluate_folders(pred, lab, 2)
    evaluate_folders(pred, lab, 2, check_affine=False, distances=False)
    save_nii(pred / "c.nii.gz", np.zeros((10, 9, 4)))
    with pytest.raises(ValueError, match=r"case 'c': prediction shape \(10, 9, 4\) differs"):
        evaluate_folders(pred, lab, 2)


def test_interrupted_run_leaves_no_partial_csv(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    save_nii(pred / "c.nii.gz", np.zeros((10, 9, 4)))
    out = tmp_path / "res" / "summary.json"
    with pytest.raises(ValueError, match="case 'c'"):
        evaluate_folders(pred, lab, 2, out=out)
    assert list((tmp_path / "res").iterdir()) == []  # the temp CSV was removed, nothing half-written


def test_flat_memory_streaming(tmp_path: Path) -> None:
    """Peak traced memory must not grow with the number of cases (one case in memory at a time)."""
    img = np.zeros((128, 128), np.uint8)
    img[30:90, 20:100] = 1
    for d in ("p", "l"):
        (tmp_path / d).mkdir()
    for i in range(40):
        Image.fromarray(img).save(tmp_path / "p" / f"c{i:03d}.png")
        Image.fromarray(np.roll(img, i % 7, axis=0)).save(tmp_path / "l" / f"c{i:03d}.png")

    def peak(n: int) -> int:
        for d in ("p", "l"):  # hide the files beyond the first n
            for f in sorted((tmp_path / d).glob("*.png"))[n:]:
                f.rename(f.with_suffix(".png.off"))
        tracemalloc.start()
        evaluate_folders(tmp_path / "p", tmp_path / "l", 2, out=tmp_path / f"s{n}.json", distances=False)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        for d in ("p", "l"):
            for f in (tmp_path / d).glob("*.png.off"):
                f.rename(f.with_name(f.name[: -len(".off")]))
        return top

    small, large = peak(4), peak(40)
    # holding all 40 cases would need at least 36 * 2 * 16 KiB = 1.1 MiB (uint8) more than holding 4
    assert large < small + 512 * 1024, (small, large)
    assert len(read_rows(tmp_path / "s40_cases.csv")) == 40


def test_file_matching_and_helpers(tmp_path: Path) -> None:
    assert case_id("x.nii.gz") == "x"
    assert case_id("x_seg.png", "_seg") == "x"
    assert case_id("a.b.nii") == "a.b"
    (tmp_path / "p").mkdir()
    (tmp_path / "l").mkdir()
    for n in ("a_seg.nii.gz", "b_seg.nii.gz", ".hidden.nii.gz", "notes.txt"):
        (tmp_path / "p" / n).touch()
    for n in ("a.nii.gz", "b.nii", "c.png"):
        (tmp_path / "l" / n).touch()
    pairs, missing, extra = match_cases(tmp_path / "p", tmp_path / "l", pred_suffix="_seg")
    assert [c for c, _, _ in pairs] == ["a", "b"]
    assert missing == ["c"]
    assert extra == []
    (tmp_path / "l" / "a.nii").touch()
    with pytest.raises(ValueError, match="two files for case 'a'"):
        match_cases(tmp_path / "p", tmp_path / "l")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no label files"):
        match_cases(tmp_path / "p", tmp_path / "empty")
    assert output_paths("r/x.json") == (Path("r/x.json"), Path("r/x_cases.csv"), Path("r/x.md"))
    assert parse_label_map(["255:1", "128:2,7:0"]) == {255: 1, 128: 2, 7: 0}
    for bad in ("255", "a:1", "1:2,1:3"):
        with pytest.raises(ValueError, match="label map"):
            parse_label_map(bad)
    np.testing.assert_array_equal(apply_label_map(np.array([1, 2, 3]), {1: 2, 2: 1}), [2, 1, 3])


def test_read_segmentation_formats(tmp_path: Path) -> None:
    save_nii(tmp_path / "v.nii.gz", np.ones((4, 5, 1)))
    seg = read_segmentation(tmp_path / "v.nii.gz")
    assert seg.array.shape == (4, 5, 1)
    assert seg.spacing == SPACING
    assert seg.kind == "nifti"
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[0, 0] = (255, 0, 0)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="colour-coded"):
        read_segmentation(tmp_path / "rgb.png")
    Image.fromarray(np.stack([np.eye(4, dtype=np.uint8)] * 3, -1)).save(tmp_path / "grey.png")
    assert read_segmentation(tmp_path / "grey.png").array.shape == (4, 4)
    (tmp_path / "broken.nii.gz").write_bytes(b"not nifti")
    with pytest.raises(ValueError, match=r"broken.nii.gz.*cannot read"):
        read_segmentation(tmp_path / "broken.nii.gz")
    nib.save(nib.Nifti1Image(np.full((2, 2, 2), 0.5, np.float32), np.eye(4)), str(tmp_path / "f.nii.gz"))
    with pytest.raises(ValueError, match="non-integer"):
        read_segmentation(tmp_path / "f.nii.gz")


def test_argument_validation(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    for kwargs, match in (
        ({"class_names": ["x"]}, "class_names"),
        ({"both_empty": "zero"}, "both_empty"),
        ({"workers": 0}, "workers"),
        ({"spacing": (1.0, -1.0, 1.0)}, "spacing"),
    ):
        with pytest.raises(ValueError, match=match):
            evaluate_folders(pred, lab, 2, **kwargs)


@pytest.mark.slow
def test_workers_give_identical_results(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    one = evaluate_folders(pred, lab, 2, out=tmp_path / "one.json")
    two = evaluate_folders(pred, lab, 2, out=tmp_path / "two.json", workers=2)
    assert one["dataset"] == two["dataset"]
    assert one["per_case"] == two["per_case"]
    assert (tmp_path / "one_cases.csv").read_text() == (tmp_path / "two_cases.csv").read_text()
    assert math.isfinite(one["dataset"]["mean_iou"])
    assert ev.AFFINE_ATOL > 0


def test_real_covid_masks_binary_vs_multiclass(shared_data: Path, tmp_path: Path) -> None:
    """The 50 real Inf-Net slices: (gt_binary > 0) == (gt_multiclass > 0) holds (data README), so mapping
    255 -> 1 (binary) and 2 -> 1 (consolidation) must give a perfect score on every slice."""
    root = shared_data / "covid19_ct_infection_medseg_infnet"
    s = evaluate_folders(
        root / "gt_binary", root / "gt_multiclass", 2, out=tmp_path / "s.json", label_map={255: 1, 2: 1}
    )
    assert s["num_cases"] == 50
    assert s["dataset"]["mean_iou"] == 1.0
    assert s["per_case"]["dice_1"]["n"] == 50  # no mask is empty
    assert s["per_case"]["hd95_1"]["mean"] == 0.0
