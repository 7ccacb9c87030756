"""split: sizes, determinism, group integrity, the papers' sequential 1200/200/400 split, CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from _data_factory import run_cli, write_datalist
from hypothesis import given
from hypothesis import strategies as st

from medseg.data.split import assign_sizes, split_datalist, split_entries


def _cases(n_cases: int, per_case: int) -> list[dict]:
    return [
        {"image": f"/d/img/case{c:02d}_slice{s}.png", "label": f"/d/lab/case{c:02d}_slice{s}.png", "case": f"c{c}"}
        for c in range(n_cases)
        for s in range(per_case)
    ]


def _images(splits: dict) -> dict[str, list[str]]:
    return {k: [e["image"] for e in v] for k, v in splits.items()}


def test_assign_sizes_hand_values() -> None:
    # 10 x (0.7, 0.15, 0.15) = 7, 1.5, 1.5: one spare item by largest remainder, tie -> earlier split
    assert assign_sizes(10, (0.7, 0.15, 0.15)) == (7, 2, 1)
    assert assign_sizes(50) == (35, 8, 7)  # 35, 7.5, 7.5
    assert assign_sizes(3, (0.9, 0.05, 0.05)) == (1, 1, 1)  # non-zero fractions get one item each
    assert assign_sizes(4, (1.0, 0.0, 0.0)) == (4, 0, 0)
    assert assign_sizes(1800, counts=(1200, 200, 400)) == (1200, 200, 400)
    with pytest.raises(ValueError, match="summing to 1"):
        assign_sizes(10, (0.5, 0.2, 0.2))
    with pytest.raises(ValueError, match="only 5 are available"):
        assign_sizes(5, counts=(4, 1, 1))
    with pytest.raises(ValueError, match="either fractions or counts"):
        assign_sizes(5, (1, 0, 0), (1, 1, 1))


def test_by_case_keeps_cases_together_and_is_deterministic() -> None:
    entries = _cases(10, 3)
    a, summary = split_entries(entries, by="case", seed=7)
    assert summary.groups == {"training": 7, "validation": 2, "test": 1}
    assert summary.entries == {"training": 21, "validation": 6, "test": 3}
    owner: dict[str, str] = {}
    for name, items in a.items():
        for e in items:
            assert owner.setdefault(e["case"], name) == name, f"case {e['case']} in two splits"
    assert sorted(e["image"] for v in a.values() for e in v) == sorted(e["image"] for e in entries)
    # same seed, shuffled input order -> identical split; another seed -> a different one (for some seed)
    shuffled = entries[:]
    random.Random(1).shuffle(shuffled)
    assert _images(split_entries(shuffled, by="case", seed=7)[0]) == _images(a)
    assert any(_images(split_entries(entries, by="case", seed=s)[0]) != _images(a) for s in range(8))


def test_group_pattern_and_file_stem_default() -> None:
    entries = [{k: v for k, v in e.items() if k != "case"} for e in _cases(4, 2)]
    _by_pattern, summary = split_entries(entries, by="case", group_pattern=r"(case\d+)_slice", counts=(2, 1, 1))
    assert summary.groups == {"training": 2, "validation": 1, "test": 1}
    assert summary.entries == {"training": 4, "validation": 2, "test": 2}
    _, per_file = split_entries(entries, by="case", counts=(6, 1, 1))  # no key, no pattern: each file a case
    assert per_file.groups == {"training": 6, "validation": 1, "test": 1}
    with pytest.raises(ValueError, match="does not match this path"):
        split_entries(entries, by="case", group_pattern=r"patient(\d+)")
    with pytest.raises(ValueError, match="has no 'site' key"):
        split_entries(entries, by="case", group_key="site")
    with pytest.raises(ValueError, match="not a valid regular expression"):
        split_entries(entries, by="case", group_pattern="(")


def test_by_sequence_defaults_to_parent_folder() -> None:
    entries = [{"image": f"/d/seq{s}/frame{f}.png"} for s in range(5) for f in range(4)]
    splits, summary = split_entries(entries, by="sequence", counts=(3, 1, 1), seed=2)
    assert summary.groups == {"training": 3, "validation": 1, "test": 1}
    for items in splits.values():
        assert len({Path(e["image"]).parent.name for e in items}) * 4 == len(items)


def test_frame_order_reproduces_the_papers_split() -> None:
    # EndoVis 2017: 8 sequences x 225 frames, "sequentially split into 1,200, 200 and 400 images according to
    # the frame index" (002 paper, Sec. 4): frames 0-149 / 150-174 / 175-224 of every sequence
    entries = [
        {
            "image": f"/d/images/instrument_dataset_{s}/frame{f:03d}.png",
            "sequence": f"instrument_dataset_{s}",
            "frame": f,
        }
        for s in range(1, 9)
        for f in range(225)
    ]
    random.Random(0).shuffle(entries)
    splits, summary = split_entries(entries, by="frame-order", counts=(1200, 200, 400))
    assert summary.entries == {"training": 1200, "validation": 200, "test": 400}
    ranges = {k: (min(e["frame"] for e in v), max(e["frame"] for e in v)) for k, v in splits.items()}
    assert ranges == {"training": (0, 149), "validation": (150, 174), "test": (175, 224)}
    assert summary.groups == {"training": 8, "validation": 8, "test": 8}
    # order="sequence": whole sequences in order, frames parsed from file names when there is no 'frame' key
    bare = [{"image": e["image"]} for e in entries]
    by_seq, _ = split_entries(bare, by="frame-order", order="sequence", counts=(1200, 200, 400))
    assert by_seq["training"][0]["image"].endswith("instrument_dataset_1/frame000.png")
    assert by_seq["validation"][0]["image"].endswith("instrument_dataset_6/frame075.png")  # 1200 = 5*225 + 75
    # order="datalist": the given order, cut into blocks
    in_order, _ = split_entries(bare[:10], by="frame-order", order="datalist", counts=(5, 3, 2))
    assert [e["image"] for e in in_order["training"]] == [e["image"] for e in bare[:5]]


def test_counts_smaller_than_available_leave_entries_out(caplog: pytest.LogCaptureFixture) -> None:
    _, summary = split_entries(_cases(4, 1), by="case", counts=(2, 1, 0))
    assert summary.unused == 1
    assert "in no split" in caplog.text
    caplog.clear()
    _, summary = split_entries(_cases(2, 1), by="case", fractions=(0.4, 0.3, 0.3))
    assert summary.groups == {"training": 1, "validation": 1, "test": 0}
    assert "test split is empty: only 2 case group(s)" in caplog.text


@given(
    sizes=st.lists(st.integers(1, 4), min_size=3, max_size=12),
    seed=st.integers(0, 2**16),
    frac=st.sampled_from([(0.6, 0.2, 0.2), (0.5, 0.5, 0.0), (1 / 3, 1 / 3, 1 / 3)]),
)
def test_property_partition_and_group_integrity(sizes: list[int], seed: int, frac: tuple[float, ...]) -> None:
    entries = [{"image": f"/x/g{g}_{i}.png", "case": f"g{g}"} for g, n in enumerate(sizes) for i in range(n)]
    splits, summary = split_entries(entries, by="case", seed=seed, fractions=frac)
    flat = [e["image"] for v in splits.values() for e in v]
    assert sorted(flat) == sorted(e["image"] for e in entries)
    homes = {}
    for name, items in splits.items():
        for e in items:
            assert homes.setdefault(e["case"], name) == name
    assert sum(summary.groups.values()) == len(sizes)


def test_split_datalist_file_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    entries = [
        {"image": f"img/p{c}_{s}.png", "label": f"lab/p{c}_{s}.png", "patient": f"p{c}"}
        for c in range(6)
        for s in range(2)
    ]
    src = write_datalist(tmp_path / "dl.json", {"training": entries[:8], "test": entries[8:]})
    summary = split_datalist(src, tmp_path / "out" / "split.json", by="case", counts=(4, 1, 1), seed=3)
    doc = json.loads((tmp_path / "out" / "split.json").read_text())
    assert summary.entries == {"training": 8, "validation": 2, "test": 2}
    assert doc["split"] == {"by": "case", "seed": 3, "counts": [4, 1, 1]}
    assert all(e["image"].startswith("../img/") for v in ("training", "validation", "test") for e in doc[v])
    # re-splitting the output with the same parameters gives the same assignment
    again = split_datalist(
        tmp_path / "out" / "split.json", tmp_path / "again.json", by="case", counts=(4, 1, 1), seed=3
    )
    doc2 = json.loads((tmp_path / "again.json").read_text())
    assert again.entries == summary.entries
    assert [e["image"] for e in doc2["test"]] == [e["image"].replace("../", "") for e in doc["test"]]

    assert run_cli(["split", str(src), "--counts", "4", "1", "1", "--seed", "3"]) == 0  # in place
    assert "training 8 (4 groups)" in capsys.readouterr().out
    expected_test = [{**e, "image": e["image"][3:], "label": e["label"][3:]} for e in doc["test"]]  # drop ../
    assert json.loads(src.read_text())["test"] == expected_test
    assert run_cli(["split", str(src), "--by", "frame-order", "--seed", "1"]) == 2
    assert "--seed has no effect" in capsys.readouterr().err
    assert run_cli(["split", str(src), "--order", "frame"]) == 2
    assert run_cli(["split", str(src), "--fractions", "0.5", "0.5", "0.5"]) == 2
    assert "summing to 1" in capsys.readouterr().err
    assert run_cli(["split", str(src), "--fractions", "0.5", "0.5", "0", "--counts", "1", "1", "1"]) == 2
    assert run_cli(["split", str(tmp_path / "missing.json")]) == 2
    assert run_cli(["split", "--help"]) == 0
