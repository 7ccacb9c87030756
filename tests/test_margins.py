"""``medseg.margins.load_class_stats``: the class statistics (``stats.json``) the margin offsets come from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.margins import load_class_stats


def _stats(path: Path, counts: list[int], **extra: object) -> Path:
    path.write_text(json.dumps({"num_classes": len(counts), "class_counts": counts, **extra}), encoding="utf-8")
    return path


def test_reads_a_valid_file_and_a_mapping(tmp_path: Path) -> None:
    stats = load_class_stats(_stats(tmp_path / "stats.json", [900, 100], tau=10.0), 2)
    assert stats["class_counts"] == [900, 100]
    assert stats["tau"] == 10.0
    assert load_class_stats({"class_counts": [3, 1]})["class_counts"] == [3, 1]  # num_classes not checked


def test_missing_stats_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"run `medseg-data stats DATALIST --num-classes 3 --out STATS_JSON`"):
        load_class_stats(tmp_path / "stats.json", 3)
    with pytest.raises(FileNotFoundError, match="--num-classes 2"):
        load_class_stats(None, 2)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "is not valid JSON"),
        ('{"num_classes": 2}', "has no 'class_counts' list"),
        ('{"num_classes": 3, "class_counts": [1, 2, 3]}', "holds counts for 3 classes but the network predicts"),
        ('{"num_classes": 3, "class_counts": [1, 2]}', "rerun `medseg-data stats DATALIST --num-classes 2`"),
    ],
    ids=["bad-json", "no-counts", "more-classes", "num-classes-field"],
)
def test_bad_stats_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "stats.json"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=match):
        load_class_stats(path, 2)
