"""``medseg-data plan``: the fingerprint's numbers, the plan's rules, the file and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_tools.cli import main
from medseg.data.plan import Budget, fingerprint_datalist, load_plan, make_plan, plan_datalist


@pytest.fixture
def gray_data(tmp_path: Path) -> Path:
    """3 8-bit slices of known content: 2 of 40x60 (value 51, a 10x10 lesion) and 1 of 80x60 (value 204)."""
    entries = []
    for i, (shape, value) in enumerate((((40, 60), 51), ((40, 60), 51), ((80, 60), 204))):
        img = np.full(shape, value, np.uint8)
        lab = np.zeros(shape, np.uint8)
        lab[:10, :10] = 255
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
        Image.fromarray(lab).save(tmp_path / f"lab{i}.png")
        entries.append({"image": f"img{i}.png", "label": f"lab{i}.png"})
    (tmp_path / "datalist.json").write_text(json.dumps({"training": entries}), encoding="utf-8")
    return tmp_path / "datalist.json"


def test_fingerprint_numbers(gray_data: Path) -> None:
    fp = fingerprint_datalist(gray_data, 2, label_map="binary255")
    assert fp.num_cases == 3
    assert fp.channels == 1
    assert fp.shapes.tolist() == [[40, 60], [40, 60], [80, 60]]
    # pixels: 2 x 2400 at 51/255 = 0.2 and 4800 at 204/255 = 0.8: mean 0.5, std 0.3
    stats = fp.intensity[0]
    assert stats["mean_unclipped"] == pytest.approx(0.5, abs=1e-6)
    assert stats["std_unclipped"] == pytest.approx(0.3, abs=1e-6)
    assert stats["percentile_00_5"] == pytest.approx(0.2)
    assert stats["percentile_99_5"] == pytest.approx(0.8)
    assert fp.class_pixels.tolist() == [9600 - 300, 300]
    assert fp.class_images.tolist() == [3, 3]


def test_plan_rules(gray_data: Path) -> None:
    plan = make_plan(fingerprint_datalist(gray_data, 2, label_map="binary255"), device="cpu")
    assert plan["spatial_size"] == [48, 64]  # median 40x60 rounded to multiples of 16
    assert plan["normalization"]["clip"] == pytest.approx([0.2, 0.8])
    assert plan["num_epochs"] == 1000  # 3000 images / 3 cases, capped at 1000 epochs
    assert plan["network"]["features"] == [16, 32, 64, 128, 256]
    gpu = make_plan(fingerprint_datalist(gray_data, 2, label_map="binary255"), device="cuda")
    assert gpu["network"]["features"] == [32, 64, 128, 256, 512]
    assert Budget(1920, max_epochs=100).epochs(3) == 100


def test_large_images_are_capped_keeping_the_aspect() -> None:
    from medseg.data.plan import Fingerprint

    fp = Fingerprint(
        num_cases=2,
        channels=1,
        shapes=np.array([[1024, 1280], [1024, 1280]]),
        spacing=None,
        intensity=[{"percentile_00_5": 0.0, "percentile_99_5": 1.0, "mean": 0.5, "std": 0.2}],
        class_pixels=np.array([10, 1]),
        class_images=np.array([2, 2]),
    )
    assert make_plan(fp, device="cpu")["spatial_size"] == [208, 256]  # 1024*256/1280 = 204.8 -> 208
    assert make_plan(fp, device="cuda")["spatial_size"] == [416, 512]


def test_labels_outside_the_classes_are_refused(gray_data: Path) -> None:
    with pytest.raises(ValueError, match=r"fall outside 0\.\.1"):
        fingerprint_datalist(gray_data, 2)  # raw 0/255 labels without the mapping


def test_load_plan_checks_the_file(tmp_path: Path, gray_data: Path) -> None:
    with pytest.raises(FileNotFoundError, match="medseg-data plan"):
        load_plan(tmp_path / "missing.json")
    (tmp_path / "old.json").write_text('{"version": 0}', encoding="utf-8")
    with pytest.raises(ValueError, match="version 1"):
        load_plan(tmp_path / "old.json")
    plan = plan_datalist(gray_data, 2, label_map="binary255")
    assert load_plan(gray_data.parent / "plan.json") == plan


def test_cli_writes_and_refuses_to_overwrite(gray_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", str(gray_data), "--num-classes", "2", "--label-map", "binary255"]) == 0
    assert "48, 64" in capsys.readouterr().out
    assert main(["plan", str(gray_data), "--num-classes", "2", "--label-map", "binary255"]) == 2
    assert "--overwrite" in capsys.readouterr().err
