"""medseg.data.datalist: relative paths on disk, absolute in memory, metadata kept, atomic write, bad input;
load_datalist for bundles: splits, missing files, base_dir."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from medseg.data import load_datalist
from medseg.data.datalist import read_datalist, write_datalist


def test_roundtrip_paths_are_relative_on_disk_and_absolute_in_memory(tmp_path: Path) -> None:
    entry = {"image": str(tmp_path / "a" / "img.png"), "label": str(tmp_path / "a" / "lab.png"), "frame": 3}
    path = write_datalist(
        tmp_path / "sub" / "dl.json", {"training": [entry], "test": [{"image": entry["image"]}]}, {"name": "x"}
    )
    raw = json.loads(path.read_text())
    assert list(raw) == ["name", "training", "test"]
    assert raw["training"][0] == {"image": "../a/img.png", "label": "../a/lab.png", "frame": 3}
    dl = read_datalist(path)
    assert dl.metadata == {"name": "x"}
    assert dl.splits["training"][0] == entry
    assert len(dl) == 2
    assert [(s, i) for s, i, _ in dl.entries()] == [("training", 0), ("test", 0)]
    assert not list(tmp_path.glob("sub/.*tmp*")), "no temporary file left behind"


def test_bare_test_strings_and_multi_file_images(tmp_path: Path) -> None:
    doc = {"training": [{"image": ["t1.nii", "t2.nii"], "label": "l.nii", "sequence": "images"}], "test": ["x.png"]}
    (tmp_path / "images").mkdir()  # a folder named like the sequence id must not turn it into a path
    (tmp_path / "dl.json").write_text(json.dumps(doc))
    dl = read_datalist(tmp_path / "dl.json")
    assert dl.splits["test"] == [{"image": str(tmp_path / "x.png")}]
    assert dl.splits["training"][0]["image"] == [str(tmp_path / "t1.nii"), str(tmp_path / "t2.nii")]
    assert dl.splits["training"][0]["sequence"] == "images"


def test_rewrite_elsewhere_rebases_paths(tmp_path: Path) -> None:
    (tmp_path / "dl.json").write_text(json.dumps({"training": [{"image": "i/a.png", "label": "l/a.png"}]}))
    dl = read_datalist(tmp_path / "dl.json")
    out = write_datalist(tmp_path / "deeper" / "out.json", dl.splits)
    assert json.loads(out.read_text())["training"][0]["image"] == "../i/a.png"
    assert read_datalist(out).splits == dl.splits


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not a valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"training": {"image": "a"}}', "'training' must be a list"),
        ('{"training": [{"label": "a"}]}', r"training\[0\].*'image'"),
        ('{"training": [{"image": 3}]}', r"training\[0\]\.image"),
        ('{"name": "no lists"}', "no 'training', 'validation' or 'test'"),
    ],
    ids=["json", "not-object", "split-not-list", "no-image", "path-not-string", "no-splits"],
)
def test_malformed_datalists_name_the_file(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "dl.json").write_text(content)
    with pytest.raises(ValueError, match=match) as err:
        read_datalist(tmp_path / "dl.json")
    assert "dl.json" in str(err.value)


def test_missing_file_and_bad_split_names(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_datalist(tmp_path / "nope.json")
    with pytest.raises(ValueError, match="unknown split"):
        write_datalist(tmp_path / "dl.json", {"train": []})
    with pytest.raises(ValueError, match="is a split name"):
        write_datalist(tmp_path / "dl.json", {"training": []}, {"test": 1})
    assert not (tmp_path / "dl.json").exists()


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
def test_load_malformed(tmp_path: Path, content: str, pattern: str) -> None:
    (tmp_path / "dl.json").write_text(content)
    with pytest.raises(ValueError, match=pattern):
        load_datalist(tmp_path / "dl.json", "training")


def test_load_missing_datalist(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_datalist(tmp_path / "none.json")
