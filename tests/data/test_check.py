"""check: one datalist with every problem kind, each reported against its file; clean data passes; CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _data_factory import gray_image, label_datalist, run_cli, save_gray, save_nifti, write_datalist

from medseg.data.check import check_datalist


def _good_pair(root: Path, name: str, shape: tuple[int, int] = (6, 7)) -> dict[str, str]:
    save_gray(root / f"{name}_img.png", gray_image(*shape, 1))
    lab = np.zeros(shape, np.uint8)
    lab[1:3, 2:5] = 1
    save_gray(root / f"{name}_lab.png", lab)
    return {"image": f"{name}_img.png", "label": f"{name}_lab.png"}


def _bad_datalist(root: Path) -> tuple[Path, dict[str, str]]:
    """A datalist where every entry but the first has exactly one problem; returns the expected kind per file."""
    entries = [_good_pair(root, "ok")]
    expected: dict[str, str] = {}

    entries.append({"image": "ok_img.png", "label": "missing_lab.png"})  # also a duplicate image
    expected["missing_lab.png"] = "missing"
    expected["ok_img.png"] = "duplicate"

    e = _good_pair(root, "text")
    (root / "text_lab.png").write_text("not a png")
    entries.append(e)
    expected["text_lab.png"] = "unreadable"

    e = _good_pair(root, "trunc")
    (root / "trunc_img.png").write_bytes((root / "trunc_img.png").read_bytes()[:60])
    entries.append(e)
    expected["trunc_img.png"] = "unreadable"

    e = _good_pair(root, "shape")
    save_gray(root / "shape_lab.png", np.zeros((6, 8), np.uint8))
    entries.append(e)
    expected["shape_lab.png"] = "geometry"

    e = _good_pair(root, "range")
    save_gray(root / "range_lab.png", np.full((6, 7), 255, np.uint8))
    entries.append(e)
    expected["range_lab.png"] = "label-values"

    e = _good_pair(root, "const")
    save_gray(root / "const_img.png", np.full((6, 7), 40, np.uint8))
    entries.append(e)
    expected["const_img.png"] = "constant"

    e = _good_pair(root, "rgb")
    save_gray(root / "rgb_lab.png", np.dstack([np.zeros((6, 7), np.uint8), np.ones((6, 7), np.uint8)] * 2)[..., :3])
    entries.append(e)
    expected["rgb_lab.png"] = "label-channels"

    vol = np.random.default_rng(0).normal(size=(4, 5, 3)).astype(np.float32)
    lab = np.zeros((4, 5, 3), np.uint8)
    save_nifti(root / "nan_img.nii.gz", np.where(vol > 1.5, np.nan, vol).astype(np.float32))
    save_nifti(root / "nan_lab.nii.gz", lab)
    entries.append({"image": "nan_img.nii.gz", "label": "nan_lab.nii.gz"})
    expected["nan_img.nii.gz"] = "nan"

    save_nifti(root / "aff_img.nii.gz", vol)
    save_nifti(root / "aff_lab.nii.gz", lab, np.diag([1.0, 1.0, 2.5, 1.0]))
    entries.append({"image": "aff_img.nii.gz", "label": "aff_lab.nii.gz"})
    expected["aff_lab.nii.gz"] = "geometry"

    save_nifti(root / "frac_img.nii.gz", vol)
    save_nifti(root / "frac_lab.nii.gz", np.where(vol > 0, 0.5, 0.0).astype(np.float32))
    entries.append({"image": "frac_img.nii.gz", "label": "frac_lab.nii.gz"})
    expected["frac_lab.nii.gz"] = "label-not-integer"

    save_nifti(root / "empty_img.nii.gz", np.zeros((0, 5), np.float32))
    entries.append({"image": "empty_img.nii.gz"})
    expected["empty_img.nii.gz"] = "empty"

    path = write_datalist(root / "dl.json", {"training": entries[:7], "test": entries[7:]})
    return path, expected


def test_every_problem_kind_is_reported_against_its_file(tmp_path: Path) -> None:
    path, expected = _bad_datalist(tmp_path)
    report = check_datalist(path, num_classes=2)
    found = {(Path(p.file).name, p.kind) for p in report.problems}
    assert found == set(expected.items()), report.problems
    by_kind = {p.kind: p for p in report.problems}
    assert "values {255} outside the declared classes 0..1" in by_kind["label-values"].message
    assert "label shape (6, 8) differs from image" in next(p for p in report.problems if p.kind == "geometry").message
    aff = next(p for p in report.problems if p.file.endswith("aff_lab.nii.gz"))
    assert "spacing [1.0, 1.0, 2.5] vs [1.0, 1.0, 1.0]" in aff.message
    assert "listed in training[0] and again in training[1]" in by_kind["duplicate"].message
    assert by_kind["constant"].message.startswith("every pixel is")
    assert not report.ok
    assert report.summary().startswith(f"{len(expected)} problem(s) in {len(expected)} file(s)")


def test_clean_datalist_passes_and_label_map_and_ignore_are_honoured(tmp_path: Path) -> None:
    labels = [np.array([[0, 255], [255, 0]], np.uint8), np.array([[0, 0], [255, 9]], np.uint8)]
    path = label_datalist(tmp_path, labels)
    assert check_datalist(path).ok  # no --num-classes: integer, non-negative labels are fine
    report = check_datalist(path, num_classes=2)
    assert {Path(p.file).name for p in report.problems} == {"c0.png", "c1.png"}
    ok = check_datalist(path, num_classes=2, ignore_index=9, label_map={0: 0, 255: 1})
    assert ok.ok, ok.problems
    assert ok.label_values == {0, 1, 9}
    assert ok.summary() == "OK: 2 entries (training 2), 4 files checked, label values {0, 1, 9}"
    unknown = check_datalist(path, num_classes=2, label_map={0: 0, 255: 1})
    assert [p.kind for p in unknown.problems] == ["label-values"]
    assert "[9]" in unknown.problems[0].message


def test_nifti_channel_last_image_and_only_some_splits(tmp_path: Path) -> None:
    save_nifti(tmp_path / "img.nii.gz", np.random.default_rng(1).random((4, 5, 3, 2)).astype(np.float32))
    save_nifti(tmp_path / "lab.nii.gz", np.ones((4, 5, 3), np.int16))
    path = write_datalist(
        tmp_path / "dl.json",
        {"training": [{"image": "img.nii.gz", "label": "lab.nii.gz"}], "test": [{"image": "missing.png"}]},
    )
    assert check_datalist(path, num_classes=2, splits=["training"]).ok
    assert [p.kind for p in check_datalist(path).problems] == ["missing"]
    with pytest.raises(ValueError, match="not in"):
        check_datalist(path, splits=["validation"])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, expected = _bad_datalist(tmp_path)
    assert run_cli(["check", str(path), "--num-classes", "2"]) == 2
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == len(expected)
    assert all(line.startswith(str(tmp_path)) for line in lines)
    assert f"{len(expected)} problem(s)" in captured.err
    good = label_datalist(tmp_path / "good", [np.eye(3, dtype=np.uint8)])
    assert run_cli(["check", str(good), "--num-classes", "2"]) == 0
    assert capsys.readouterr().out.startswith("OK: 1 entries")
    assert run_cli(["check", str(good), "--label-map", "nonsense_preset"]) == 2
    assert "nonsense_preset" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{")
    assert run_cli(["check", str(tmp_path / "broken.json")]) == 2
    assert "not a valid JSON" in capsys.readouterr().err
    assert run_cli(["check", "--help"]) == 0


def test_shared_covid_conversion_checks_clean(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "covid19_ct_infection_medseg_infnet"
    if not src.is_dir():
        pytest.skip("covid19 sample not present")
    from medseg.data.slices2d import convert_slices

    for stem in ("0", "1", "2"):
        (tmp_path / "i").mkdir(exist_ok=True)
        (tmp_path / "i" / f"{stem}.jpg").write_bytes((src / "imgs" / f"{stem}.jpg").read_bytes())
    report = convert_slices(tmp_path / "i", src / "gt_multiclass", tmp_path / "o", mask_type="palette", fmt="png")
    assert report.converted == 3  # the other 47 masks have no image here: reported, not converted
    assert check_datalist(tmp_path / "o" / "datalist.json", num_classes=3).ok
    assert json.loads((tmp_path / "o" / "datalist.json").read_text())["training"][0]["label"] == "labels/0.png"


def test_max_voxels_is_checked_before_reading(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = label_datalist(tmp_path, [np.zeros((4, 5, 3), np.uint8)], fmt="nifti")
    report = check_datalist(path, max_voxels=59)
    assert [(Path(p.file).name, p.kind) for p in report.problems] == [
        ("c0.nii.gz", "too-large"),
        ("c0.nii.gz", "too-large"),
    ]
    assert "header claims shape (4, 5, 3) = 60 voxels, above the limit of 59" in report.problems[0].message
    assert check_datalist(path, max_voxels=60).ok
    assert run_cli(["check", str(path), "--max-voxels", "59"]) == 2
    assert "too-large" in capsys.readouterr().out
    assert run_cli(["check", str(path), "--max-voxels", "many"]) == 2
    assert "--max-voxels" in capsys.readouterr().err
