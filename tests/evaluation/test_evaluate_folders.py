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

from medseg.evaluation.evaluate import EvaluationSettings, evaluate_folders, output_paths

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


def run(pred: Path, lab: Path, k: int, out: Path | None = None, **settings: object) -> dict:
    return evaluate_folders(pred, lab, EvaluationSettings(num_classes=k, **settings), out=out)  # type: ignore[arg-type]


def read_rows(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as fh:
        return {r["case"]: r for r in csv.DictReader(fh)}


def test_nifti_hand_made_cases(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    s = run(pred, lab, 2, out=tmp_path / "out" / "summary.json", class_names=["bg", "lesion"])
    ds = s["dataset"]
    # dataset class 1: TP 9, FP 9 + 4 (case c), FN 9 + 4 (case b) -> IoU 9/35, Dice 18/44
    assert ds["per_class"]["lesion"]["iou"] == pytest.approx(9 / 35)
    assert ds["per_class"]["lesion"]["dice"] == pytest.approx(18 / 44)
    # class 0: 1600 voxels - 35 -> TP 1565, FP 13, FN 13 -> IoU 1565/1591
    assert ds["per_class"]["bg"]["iou"] == pytest.approx(1565 / 1591)
    assert ds["pooled_iou"] == pytest.approx((1565 / 1591 + 9 / 35) / 2)
    assert ds["pooled_iou_foreground"] == pytest.approx(9 / 35)
    assert ds["pooled_dice_foreground"] == pytest.approx(18 / 44)
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
    s = run(pred, lab, 2, out=tmp_path / "s.json", both_empty="perfect", distances=False)
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
    s = run(tmp_path / "p", tmp_path / "l", 2, label_map={255: 1})
    # TP 24, FN 12, FP 0 -> IoU 24/36, Dice 48/60
    assert s["dataset"]["per_class"]["1"]["iou"] == pytest.approx(2 / 3)
    assert s["dataset"]["per_class"]["1"]["dice"] == pytest.approx(0.8)
    assert s["distance_units"] == "pixel"
    # every missed boundary pixel of row 2 is 2 pixels from the predicted top edge (row 4)
    assert s["per_case"]["hd95_1"]["mean"] == pytest.approx(2.0)
    assert (tmp_path / "p" / "summary.json").is_file()  # default output location
    s2 = run(tmp_path / "p", tmp_path / "l", 2, label_map="binary255", spacing=(0.5, 0.5))
    assert s2["per_case"]["hd95_1"]["mean"] == pytest.approx(1.0)
    assert s2["distance_units"] == "mm"  # a spacing was given
    with pytest.raises(ValueError, match=r"label values must be integers in \[0, 2\)"):
        run(tmp_path / "p", tmp_path / "l", 2)


def test_missing_and_extra_files(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    (pred / "b.nii.gz").unlink()
    save_nii(pred / "zzz.nii.gz", np.zeros((10, 10, 4)))
    with pytest.raises(ValueError, match=r"1 label\(s\) have no prediction .*: b; .*--pred-suffix.*--allow-missing"):
        run(pred, lab, 2)
    s = run(pred, lab, 2, allow_missing=True, distances=False)
    assert s["missing_predictions"] == ["b"]
    assert s["extra_predictions"] == ["zzz"]
    assert s["num_cases"] == 3


def test_geometry_checks_name_the_case(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    save_nii(pred / "c.nii.gz", np.zeros((10, 10, 4)), affine=np.diag([1.0, 1.0, 2.0, 1.0]))
    with pytest.raises(ValueError, match=r"case 'c': prediction geometry differs .*spacing \[1.0, 1.0, 2.0\]"):
        run(pred, lab, 2)
    run(pred, lab, 2, check_affine=False, distances=False)
    save_nii(pred / "c.nii.gz", np.zeros((10, 9, 4)))
    with pytest.raises(ValueError, match=r"case 'c': prediction geometry differs .*shape \(10, 9, 4\)"):
        run(pred, lab, 2)
    with pytest.raises(ValueError, match=r"case 'c': prediction shape \(10, 9, 4\) differs"):
        run(pred, lab, 2, check_affine=False)


def test_interrupted_run_leaves_no_partial_csv(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    save_nii(pred / "c.nii.gz", np.zeros((10, 9, 4)))
    out = tmp_path / "res" / "summary.json"
    with pytest.raises(ValueError, match="case 'c'"):
        run(pred, lab, 2, out=out)
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
        run(tmp_path / "p", tmp_path / "l", 2, out=tmp_path / f"s{n}.json", distances=False)
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


def test_output_paths() -> None:
    assert output_paths("r/x.json") == (Path("r/x.json"), Path("r/x_cases.csv"), Path("r/x.md"))
    assert output_paths("r/x") == (Path("r/x"), Path("r/x_cases.csv"), Path("r/x.md"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_classes": 1}, "num_classes"),
        ({"class_names": ["x"]}, "class_names"),
        ({"both_empty": "zero"}, "both_empty"),
        ({"workers": 0}, "workers"),
        ({"spacing": (1.0, -1.0, 1.0)}, "spacing"),
        ({"percentile": 101}, "percentile"),
        ({"background_index": 2}, "background_index"),
        ({"label_map": "nonsense"}, "label_map: .*not a preset"),
        ({"label_map": ["255"]}, "label_map: .*'src:dst,...' table"),
        ({"max_voxels": 0}, "max_voxels"),
    ],
    ids=lambda v: str(v)[:24],
)
def test_settings_are_validated_when_built(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EvaluationSettings(**{"num_classes": 2, **kwargs})


def test_settings_normalise_and_reject_loose_arguments(tmp_path: Path) -> None:
    s = EvaluationSettings(num_classes=3, label_map=["255:1", "128:2,7:0"], spacing=[1, 2], class_names=("a", "b", "c"))
    assert s.mapper is not None
    assert s.mapper.table == {255: 1, 128: 2, 7: 0}
    assert s.spacing == (1.0, 2.0)
    assert s.foreground == [1, 2]
    assert s.label_map_json() == "255:1,128:2,7:0"
    # stored values the mapping does not name are kept, so 255:1 works on 0/255 masks; others fail the class check
    np.testing.assert_array_equal(s.mapper(np.array([0, 255, 128, 9])), [0, 1, 2, 9])
    with pytest.raises(TypeError, match="EvaluationSettings"):
        evaluate_folders(tmp_path, tmp_path, 2)  # type: ignore[arg-type]


def test_pooled_and_mean_case_figures_are_named_apart(tmp_path: Path) -> None:
    """A big case scored well and a small case scored badly: the pooled Dice and the mean of per-case Dice differ.

    big: label 100 px, prediction 90 of them -> TP 90, FN 10 -> Dice 180/190.
    small: label 10 px, prediction 5 of them + 5 wrong -> TP 5, FP 5, FN 5 -> Dice 10/20 = 0.5.
    pooled: TP 95, FP 5, FN 15 -> Dice 190/210; mean over cases: (180/190 + 0.5) / 2.
    """
    for d in ("p", "l"):
        (tmp_path / d).mkdir()
    big_l = np.zeros((20, 20), np.uint8)
    big_l[0:10, 0:10] = 1
    big_p = big_l.copy()
    big_p[9, :] = 0
    small_l = np.zeros((20, 20), np.uint8)
    small_l[0, 0:10] = 1
    small_p = np.zeros((20, 20), np.uint8)
    small_p[0, 5:15] = 1
    for name, p, t in (("big", big_p, big_l), ("small", small_p, small_l)):
        Image.fromarray(p).save(tmp_path / "p" / f"{name}.png")
        Image.fromarray(t).save(tmp_path / "l" / f"{name}.png")
    s = run(tmp_path / "p", tmp_path / "l", 2, out=tmp_path / "s.json", distances=False)
    assert s["dataset"]["pooled_dice_foreground"] == pytest.approx(190 / 210)
    assert s["per_case"]["dice_foreground"]["mean"] == pytest.approx((180 / 190 + 0.5) / 2)
    assert "mean_dice_foreground" not in s["dataset"]  # the old, ambiguous name is gone
    md = (tmp_path / "s.md").read_text()
    assert f"| Dice, foreground, pooled (`pooled_dice_foreground`) | {190 / 210:.4f} |" in md
    assert f"| Dice, foreground, mean over cases (`per_case.dice_foreground`) | {(180 / 190 + 0.5) / 2:.4f} ±" in md
    assert "dice_foreground" in read_rows(tmp_path / "s_cases.csv")["big"]


def test_distance_units_follow_the_reference_header(tmp_path: Path) -> None:
    """mm only when the reference header gives a spacing; a NIfTI with unit zooms and no units is in pixels."""
    for d in ("p", "l"):
        (tmp_path / d).mkdir()
    lab = np.zeros((8, 8, 3), np.uint8)
    lab[2:5, 2:5, 1] = 1
    save_nii(tmp_path / "p" / "x.nii.gz", lab, np.eye(4))
    save_nii(tmp_path / "l" / "x.nii.gz", lab, np.eye(4))
    assert run(tmp_path / "p", tmp_path / "l", 2)["distance_units"] == "pixel"
    img = nib.Nifti1Image(lab, np.eye(4))
    img.header.set_xyzt_units("mm")
    for d in ("p", "l"):
        nib.save(img, str(tmp_path / d / "x.nii.gz"))
    s = run(tmp_path / "p", tmp_path / "l", 2)
    assert s["distance_units"] == "mm"
    assert "HD95 per case [mm]" in render(s)


def render(summary: dict) -> str:
    from medseg.evaluation.evaluate import render_markdown

    return render_markdown(summary)


@pytest.mark.slow
def test_workers_give_identical_results(tmp_path: Path) -> None:
    pred, lab = nifti_cases(tmp_path)
    one = run(pred, lab, 2, out=tmp_path / "one.json")
    two = run(pred, lab, 2, out=tmp_path / "two.json", workers=2)
    assert one["dataset"] == two["dataset"]
    assert one["per_case"] == two["per_case"]
    assert (tmp_path / "one_cases.csv").read_text() == (tmp_path / "two_cases.csv").read_text()
    assert math.isfinite(one["dataset"]["pooled_iou"])


def test_real_covid_masks_binary_vs_multiclass(shared_data: Path, tmp_path: Path) -> None:
    """The 50 real Inf-Net slices: (gt_binary > 0) == (gt_multiclass > 0) holds (data README), so mapping
    255 -> 1 (binary) and 2 -> 1 (consolidation) must give a perfect score on every slice."""
    root = shared_data / "covid19_ct_infection_medseg_infnet"
    s = run(root / "gt_binary", root / "gt_multiclass", 2, out=tmp_path / "s.json", label_map={255: 1, 2: 1})
    assert s["num_cases"] == 50
    assert s["dataset"]["pooled_iou"] == 1.0
    assert s["per_case"]["dice_1"]["n"] == 50  # no mask is empty
    assert s["per_case"]["hd95_1"]["mean"] == 0.0
