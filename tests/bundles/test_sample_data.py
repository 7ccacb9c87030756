"""The bundles' ``scripts/prepare_sample_data.py``: synthetic data plus the stats files each config reads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
from _bundle_helpers import BUNDLES


def _script(bundle: str) -> Any:
    path = BUNDLES / bundle / "scripts" / "prepare_sample_data.py"
    spec = importlib.util.spec_from_file_location(f"{bundle}_prepare_sample_data", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("bundle", "args", "stats"),
    [
        ("covid19_ct_lesion", ["--num-cases", "5", "--size", "32"], {"stats.json": 2, "stats_multiclass.json": 3}),
        ("robotic_instrument", ["--num-frames", "5", "--size", "32", "48"], {"stats.json": 2, "stats_parts.json": 5}),
    ],
    ids=["covid", "robotic"],
)
def test_prepare_sample_data(bundle: str, args: list[str], stats: dict[str, int], tmp_path: Path) -> None:
    from medseg.data import load_datalist

    assert _script(bundle).main(["--out", str(tmp_path), *args]) == 0
    assert [len(load_datalist(tmp_path / "datalist.json", s)) for s in ("training", "validation", "test")] == [3, 1, 1]
    for name, num_classes in stats.items():
        content = json.loads((tmp_path / name).read_text(encoding="utf-8"))
        assert content["num_classes"] == num_classes
        assert len(content["class_counts"]) == num_classes
        assert content["class_counts"][1] > 0  # the first foreground class is present in the training split
