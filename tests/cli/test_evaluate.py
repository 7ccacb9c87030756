from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from medseg.cli.main import main


def write_nifti_folders(root: Path) -> tuple[Path, Path]:
    """Two 3D cases, spacing 2 x 1 x 1 mm: 'a' perfect (IoU 1), 'b' prediction empty (IoU 0, HD95 inf)."""
    pred, lab = root / "pred", root / "label"
    pred.mkdir()
    lab.mkdir()
    aff = np.diag([2.0, 1.0, 1.0, 1.0])
    a = np.zeros((6, 6, 6), np.uint8)
    a[1:4, 1:4, 1:4] = 1  # 27 voxels
    b = np.zeros((6, 6, 6), np.uint8)
    b[2:4, 2:4, 2:3] = 1  # 4 voxels
    for d, arrs in ((pred, (a, np.zeros_like(b))), (lab, (a, b))):
        for name, arr in zip(("a", "b"), arrs, strict=True):
            nib.save(nib.Nifti1Image(arr, aff), str(d / f"{name}.nii.gz"))
    return pred, lab


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--num-classes" in out
    assert "--label-map" in out


def test_nifti_folders_exit_zero_and_write_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, lab = write_nifti_folders(tmp_path)
    out = tmp_path / "res" / "eval.json"
    argv = ["evaluate", "--pred", str(pred), "--label", str(lab), "--out", str(out)]
    code = main([*argv, "--num-classes", "2", "--class-names", "bg", "lesion", "--no-progress"])
    assert code == 0
    summary = json.loads(out.read_text())
    # dataset class 1: TP 27, FN 4, FP 0 -> IoU 27/31; per case: 1 and 0 -> mean 0.5
    assert summary["dataset"]["per_class"]["lesion"]["iou"] == pytest.approx(27 / 31)
    assert summary["per_case"]["iou_lesion"]["mean"] == pytest.approx(0.5)
    assert summary["per_case"]["hd95_lesion"]["n_inf"] == 1
    assert (tmp_path / "res" / "eval_cases.csv").read_text().count("\n") == 3
    assert (tmp_path / "res" / "eval.md").is_file()
    stdout = capsys.readouterr().out
    assert "| lesion | 0.8710 |" in stdout
    assert "eval_cases.csv" in stdout


def test_png_folders_with_label_map(tmp_path: Path) -> None:
    for d in ("p", "l"):
        (tmp_path / d).mkdir()
    lab = np.zeros((16, 16), np.uint8)
    lab[4:12, 4:12] = 255
    Image.fromarray(lab).save(tmp_path / "l" / "frame1.png")
    Image.fromarray((lab > 0).astype(np.uint8)).save(tmp_path / "p" / "frame1_seg.png")
    argv = ["evaluate", "--pred", str(tmp_path / "p"), "--label", str(tmp_path / "l")]
    code = main([*argv, "--num-classes", "2", "--label-map", "255:1", "--pred-suffix", "_seg", "--no-progress"])
    assert code == 0
    summary = json.loads((tmp_path / "p" / "summary.json").read_text())
    assert summary["dataset"]["pooled_iou"] == pytest.approx(1.0)
    assert summary["distance_units"] == "pixel"


def test_missing_prediction_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, lab = write_nifti_folders(tmp_path)
    (pred / "b.nii.gz").rename(pred / "extra.nii.gz")
    args = ["evaluate", "--pred", str(pred), "--label", str(lab), "--num-classes", "2", "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "1 label(s) have no prediction" in err
    assert ": b;" in err
    assert "Traceback" not in err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1  # one error line
    assert main([*args, "--allow-missing"]) == 0
    err = capsys.readouterr().err
    assert "1 missing prediction(s): b" in err
    assert "1 extra prediction(s): extra" in err


def test_geometry_mismatch_names_the_case(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, lab = write_nifti_folders(tmp_path)
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 5), np.uint8), np.diag([2.0, 1, 1, 1])), str(pred / "b.nii.gz"))
    code = main(["evaluate", "--pred", str(pred), "--label", str(lab), "--num-classes", "2", "--no-progress"])
    assert code == 2
    assert (
        "case 'b': prediction geometry differs from the label's: shape (6, 6, 5) vs (6, 6, 6)"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--num-classes", "1"], "must be >= 2"),
        (["--num-classes", "2", "--percentile", "101"], "[0, 100]"),
        (["--num-classes", "2", "--bogus"], "unrecognized arguments"),
    ],
    ids=["k<2", "percentile", "unknown-flag"],
)
def test_bad_usage_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str) -> None:
    pred, lab = write_nifti_folders(tmp_path)
    argv = ["evaluate", "--pred", str(pred), "--label", str(lab), "--no-progress", "--no-distances", *extra]
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_more_classes_than_present_is_valid(tmp_path: Path) -> None:
    pred, lab = write_nifti_folders(tmp_path)
    argv = ["evaluate", "--pred", str(pred), "--label", str(lab), "--num-classes", "3", "--no-progress"]
    assert main(argv) == 0
    summary = json.loads((pred / "summary.json").read_text())
    assert summary["dataset"]["per_class"]["2"]["iou"] is None  # absent class: undefined, excluded from means
    assert summary["dataset"]["pooled_iou_foreground"] == pytest.approx(27 / 31)


def test_missing_folder_and_out_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, lab = write_nifti_folders(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--pred", str(tmp_path / "nope"), "--label", str(lab), "--num-classes", "2"])
    assert exc.value.code == 2
    assert "is not an existing directory" in capsys.readouterr().err
    code = main(["evaluate", "--pred", str(pred), "--label", str(lab), "--num-classes", "2", "--out", str(tmp_path)])
    assert code == 2
    assert "is a directory" in capsys.readouterr().err


def test_out_of_range_label_value_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for d in ("p", "l"):
        (tmp_path / d).mkdir()
    lab = np.zeros((8, 8), np.uint8)
    lab[2:5, 2:5] = 255
    Image.fromarray(lab).save(tmp_path / "l" / "x.png")
    Image.fromarray(lab // 255).save(tmp_path / "p" / "x.png")
    argv = ["evaluate", "--pred", str(tmp_path / "p"), "--label", str(tmp_path / "l"), "--num-classes", "2"]
    assert main([*argv, "--no-progress"]) == 2
    assert "case 'x': label values must be integers in [0, 2)" in capsys.readouterr().err
    # the same values declared as "unlabelled" are left out instead
    assert main([*argv, "--no-progress", "--ignore-index", "255"]) == 0


def test_predict_then_evaluate_as_the_readme_writes_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`medseg predict --output masks/` writes NAME_seg.* (+ overlays); `medseg evaluate --pred masks/ --label
    labels/` must pair them with labels/NAME.* without --pred-suffix and without warning about the overlays."""
    masks, labels = tmp_path / "masks", tmp_path / "labels"
    masks.mkdir()
    labels.mkdir()
    aff = np.diag([0.7, 0.7, 2.0, 1.0])
    vol = np.zeros((8, 8, 3), np.uint8)
    vol[2:6, 2:6, 1] = 1
    nib.save(nib.Nifti1Image(vol, aff), str(masks / "scan_seg.nii.gz"))
    nib.save(nib.Nifti1Image(vol, aff), str(labels / "scan.nii.gz"))
    argv = ["evaluate", "--pred", str(masks), "--label", str(labels), "--num-classes", "2", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "eval" / "summary.json")]) == 0
    captured = capsys.readouterr()
    assert "extra prediction" not in captured.err
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["num_cases"] == 1
    assert summary["dataset"]["pooled_dice_foreground"] == 1.0
    assert "HD95 per case [mm]" in captured.out
    # 2D: the _seg.png is a palette PNG beside an RGB overlay; neither the overlay nor the prob file counts
    frames, refs = tmp_path / "frames_out", tmp_path / "frame_labels"
    frames.mkdir()
    refs.mkdir()
    lab = np.zeros((8, 8), np.uint8)
    lab[1:4, 1:4] = 255
    Image.fromarray(lab).save(refs / "f001.png")
    Image.fromarray((lab > 0).astype(np.uint8)).save(frames / "f001_seg.png")
    Image.fromarray(np.dstack([lab, lab * 0, lab * 0])).save(frames / "f001_overlay.png")
    np.save(frames / "f001_prob.npy", np.zeros((2, 8, 8), np.float32))
    argv = ["evaluate", "--pred", str(frames), "--label", str(refs), "--num-classes", "2", "--no-progress"]
    assert main([*argv, "--label-map", "binary255"]) == 0  # the preset medseg-data accepts works here too
    captured = capsys.readouterr()
    assert "extra prediction" not in captured.err
    assert "Distances in pixel" in captured.out


def test_mismatched_names_error_names_both_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred, lab = write_nifti_folders(tmp_path)
    for p in pred.iterdir():
        p.rename(p.with_name(p.name.replace(".nii.gz", "_pred.nii.gz")))
    argv = ["evaluate", "--pred", str(pred), "--label", str(lab), "--num-classes", "2", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--pred-suffix" in err
    assert "--allow-missing" in err
    assert main([*argv, "--pred-suffix", "_pred"]) == 0


def test_evaluate_imports_neither_torch_nor_monai(tmp_path: Path) -> None:
    """`medseg evaluate` scores NumPy arrays: it must not pay for importing torch or MONAI (run in a fresh process)."""
    import subprocess
    import sys

    pred, lab = write_nifti_folders(tmp_path)
    code = (
        "import sys\n"
        "from medseg.cli.main import main\n"
        f"rc = main(['evaluate', '--pred', {str(pred)!r}, '--label', {str(lab)!r}, '--num-classes', '2', "
        "'--no-progress'])\n"
        "heavy = sorted(m for m in ('torch', 'monai') if m in sys.modules)\n"
        "print('RC', rc, 'HEAVY', ','.join(heavy) or '-')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert "RC 0 HEAVY -" in done.stdout, (done.stdout[-2000:], done.stderr[-2000:])
