"""load_datalist: relative paths, splits, missing files, malformed files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medseg.data import load_datalist


def _write(root: Path, doc: object) -> Path:
    path = root / "dl.json"
    path.write_text(json.dumps(doc))
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in ("images/a.png", "labels/a.png", "images/b.png", "labels/b.png", "images/t.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def test_paths_resolved_relative_to_datalist(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _write(
        root,
        {
            "training": [{"image": "images/a.png", "label": "labels/a.png", "sequence": "images", "frame": 3}],
            "validation": [{"image": "images/b.png", "label": "labels/b.png"}],
            "test": ["images/t.png"],
        },
    )
    monkeypatch.chdir("/")  # the working directory must not matter
    train = load_datalist(path, "training")
    assert train == [
        {
            "image": str(root / "images/a.png"),
            "label": str(root / "labels/a.png"),
            "sequence": "images",  # not a path key: left alone even though a folder of that name exists
            "frame": 3,
        }
    ]
    assert load_datalist(path, "test") == [{"image": str(root / "images/t.png")}]
    both = load_datalist(path, ["training", "validation"])
    assert [os.path.basename(e["image"]) for e in both] == ["a.png", "b.png"]


def test_entries_are_copies(root: Path) -> None:
    path = _write(root, {"training": [{"image": "images/a.png"}]})
    first = load_datalist(path, "training")
    first[0]["image"] = "changed"
    assert load_datalist(path, "training")[0]["image"] != "changed"


def test_missing_files_named(root: Path) -> None:
    path = _write(root, {"training": [{"image": "images/a.png", "label": "labels/nope.png"}]})
    with pytest.raises(FileNotFoundError, match=r"1 file\(s\).*labels/nope\.png"):
        load_datalist(path, "training")
    assert load_datalist(path, "training", check_files=False)[0]["label"].endswith("nope.png")


def test_base_dir_override(root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    path = _write(elsewhere, {"training": [{"image": "images/a.png"}]})
    assert load_datalist(path, "training", base_dir=root)[0]["image"] == str(root / "images/a.png")


def test_unknown_split_suggests(root: Path) -> None:
    path = _write(root, {"training": [], "validation": []})
    with pytest.raises(ValueError, match=r"'valid'.*did you mean 'validation'"):
        load_datalist(path, "valid")


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ("{not json", "not a valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"training": [{"label": "x.png"}]}', r"training\[0\].*'image'"),
        ('{"training": [{"image": 5}]}', "path string"),
    ],
    ids=["bad_json", "not_object", "no_image", "bad_path_type"],
)
def test_malformed(tmp_path: Path, content: str, pattern: str) -> None:
    (tmp_path / "dl.json").write_text(content)
    with pytest.raises(ValueError, match=pattern):
        load_datalist(tmp_path / "dl.json", "training")


def test_missing_datalist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_datalist(tmp_path / "none.json")
