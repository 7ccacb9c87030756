"""One label-map parser: the same --label-map text means the same in stats, check, evaluate and training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from _data_factory import label_datalist, run_cli
from PIL import Image

from medseg.data.label_map import LABEL_MAP_PRESETS, LabelMap, label_map_arg, parse_label_map_text


def test_parse_text_forms(tmp_path: Path) -> None:
    assert parse_label_map_text("binary255") == "binary255"
    assert parse_label_map_text(" 255:1, 128:2 ") == "255:1, 128:2"
    assert parse_label_map_text(["255:1", "128:2"]) == "255:1,128:2"
    assert parse_label_map_text('{"255": 1}') == {255: 1}
    (tmp_path / "map.json").write_text(json.dumps({"10": 1, "20": 2}))
    assert parse_label_map_text(str(tmp_path / "map.json")) == {10: 1, 20: 2}
    for bad, match in (
        ("binary_255", r"not a preset .*did you mean \['binary255'"),
        ("255", "nor a 'src:dst,...' table"),
        ("1:2,1:3", "appears twice"),
        ("a:1", "not an integer"),
        ('{"1": 2', "does not parse"),
        (str(tmp_path / "none.json"), "does not exist"),
    ):
        with pytest.raises(ValueError, match=match):
            parse_label_map_text(bad)
    with pytest.raises(argparse.ArgumentTypeError, match=r"--label-map: .*binary_255"):
        label_map_arg("binary_255")


def test_strict_by_default_keep_unmapped_on_request() -> None:
    """Training, stats and check refuse stored values a mapping does not name; evaluate keeps them, because it maps
    predictions (already class indices) and references alike, and its class-range check catches stray values."""
    values = np.array([0, 255, 7], np.uint8)
    with pytest.raises(ValueError, match=r"label values \[7\] are not in the mapping"):
        LabelMap("binary255")(values)
    assert LabelMap("binary255", keep_unmapped=True)(values).tolist() == [0, 1, 7]
    assert LabelMap("binary255", default=0)(values).tolist() == [0, 1, 0]
    assert LabelMap("binary255", ignore_index=7)(values).tolist() == [0, 1, 7]
    with pytest.raises(ValueError, match="both say"):
        LabelMap("binary255", default=0, keep_unmapped=True)
    with pytest.raises(ValueError, match="non-integer"):
        LabelMap("binary")(np.array([0.5]))
    assert set(LABEL_MAP_PRESETS) >= {"binary", "binary255", "endovis_parts"}


def test_training_transform_uses_the_same_mapping() -> None:
    torch = pytest.importorskip("torch")
    from medseg.transforms.labels import MapLabels

    raw = np.array([[0, 10], [20, 40]], np.uint8)
    expected = LabelMap("endovis_parts")(raw)
    np.testing.assert_array_equal(MapLabels("endovis_parts")(raw), expected)
    np.testing.assert_array_equal(MapLabels("endovis_parts")(torch.as_tensor(raw)).numpy(), expected)
    with pytest.raises(ValueError, match="not a preset"):
        MapLabels("endovis_part")


@pytest.mark.parametrize(
    "spec", ["binary255", "0:0,255:1", '{"0": 0, "255": 1}', "FILE"], ids=["preset", "pairs", "json", "file"]
)
def test_every_command_accepts_the_same_label_map(
    tmp_path: Path, spec: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`medseg evaluate --label-map binary255` used to fail ("must look like SRC:DST") while stats accepted it."""
    from medseg.cli.main import main as medseg_main

    if spec == "FILE":
        (tmp_path / "map.json").write_text('{"0": 0, "255": 1}')
        spec = str(tmp_path / "map.json")
    lab = np.zeros((4, 4), np.uint8)
    lab[1:3, 1:3] = 255  # 4 foreground pixels of 16
    path = label_datalist(tmp_path / "data", [lab])
    assert (
        run_cli(["stats", str(path), "--num-classes", "2", "--label-map", spec, "--out", str(tmp_path / "s.json")]) == 0
    )
    assert json.loads((tmp_path / "s.json").read_text())["class_counts"] == [12, 4]
    assert run_cli(["check", str(path), "--num-classes", "2", "--label-map", spec]) == 0
    (tmp_path / "pred").mkdir()
    Image.fromarray((lab > 0).astype(np.uint8) * 255).save(tmp_path / "pred" / "c0.png")
    argv = ["evaluate", "--pred", str(tmp_path / "pred"), "--label", str(tmp_path / "data" / "labels")]
    code = medseg_main([*argv, "--num-classes", "2", "--label-map", spec, "--out", str(tmp_path / "e.json")])
    assert code == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "e.json").read_text())["dataset"]["pooled_iou"] == 1.0
