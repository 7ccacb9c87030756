"""Cross-validation folds and the study statistics (bootstrap intervals, paired Wilcoxon comparisons)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medseg.study.config import CVSpec
from medseg.study.folds import assign_folds, fold_datalists
from medseg.study.stats import bootstrap_mean, bootstrap_pooled_iou, paired_comparison


def test_every_case_is_tested_once_and_folds_are_balanced() -> None:
    folds = assign_folds([str(i) for i in range(50)], 5, seed=3)
    assert sorted(folds.count(k) for k in range(5)) == [10] * 5


def test_groups_stay_together_and_big_groups_spread() -> None:
    groups = ["chole"] * 40 + ["segA"] * 10 + ["segB"] * 10 + ["endo"]
    folds = assign_folds(groups, 4, seed=0)
    for g in set(groups):
        assert len({f for f, x in zip(folds, groups, strict=True) if x == g}) == 1
    assert len(set(folds)) == 4  # four groups, four folds: one clip each


def test_too_few_groups_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 3 groups"):
        assign_folds(["a", "a", "b"], 3)


def test_assignment_is_seeded() -> None:
    cases = [str(i) for i in range(20)]
    assert assign_folds(cases, 4, seed=1) == assign_folds(cases, 4, seed=1)
    assert assign_folds(cases, 4, seed=1) != assign_folds(cases, 4, seed=2)


def test_fold_datalists(tmp_path: Path) -> None:
    entries = [{"image": f"img/{i}.png", "label": f"lab/{i}.png", "group": f"g{i % 3}"} for i in range(9)]
    src = tmp_path / "data" / "datalist.json"
    src.parent.mkdir()
    src.write_text(json.dumps({"training": entries[:6], "test": entries[6:]}), encoding="utf-8")
    paths = fold_datalists(src, CVSpec(folds=3, by="group", seed=0, validation=2), tmp_path / "folds")
    seen = []
    for p in paths:
        doc = json.loads(p.read_text())
        assert len({e["group"] for e in doc["test"]}) == 1
        assert not {e["group"] for e in doc["test"]} & {e["group"] for e in doc["training"]}
        assert len(doc["validation"]) == 2
        assert all(Path(e["image"]).is_absolute() for e in doc["training"])  # resolved against the datalist
        seen += [e["image"] for e in doc["test"]]
    assert len(seen) == len(set(seen)) == 9


def test_bootstrap_mean_interval_contains_the_mean_and_shrinks_with_n() -> None:
    rng = np.random.default_rng(0)
    small = bootstrap_mean(rng.normal(0.7, 0.1, 10).tolist())
    large = bootstrap_mean(rng.normal(0.7, 0.1, 1000).tolist())
    for r in (small, large):
        assert r["ci"][0] <= r["mean"] <= r["ci"][1]
    assert (large["ci"][1] - large["ci"][0]) < (small["ci"][1] - small["ci"][0])
    # a normal sample of n=1000, sd 0.1: the 95 % interval half-width is ~1.96*0.1/sqrt(1000) = 0.0062
    assert (large["ci"][1] - large["ci"][0]) / 2 == pytest.approx(0.0062, rel=0.15)


def test_pooled_iou_is_the_ratio_of_sums() -> None:
    r = bootstrap_pooled_iou([10, 0, 30], [20, 5, 40])  # 40 / 65
    assert r["value"] == pytest.approx(40 / 65)
    assert r["ci"][0] <= r["value"] <= r["ci"][1]


def test_paired_comparison_matches_scipy_and_calls_a_clear_win() -> None:
    from scipy.stats import wilcoxon

    rng = np.random.default_rng(1)
    b = rng.uniform(0.5, 0.8, 40)
    a = b + rng.normal(0.05, 0.02, 40)
    r = paired_comparison(a.tolist(), b.tolist())
    assert r["verdict"] == "better"
    assert r["ci"][0] > 0
    assert r["p_wilcoxon"] == pytest.approx(wilcoxon(a - b).pvalue)
    assert r["wins"] + r["ties"] + r["losses"] == 40


def test_paired_comparison_calls_noise_a_tie_and_skips_missing() -> None:
    rng = np.random.default_rng(2)
    b = rng.uniform(0.5, 0.8, 30)
    a = b + rng.normal(0.0, 0.05, 30)
    a_list: list[float | None] = a.tolist()
    a_list[0] = None  # an image empty in both prediction and label: no Dice
    r = paired_comparison(a_list, b.tolist())
    assert r["n"] == 29
    assert r["verdict"] == "tie"
    assert paired_comparison([0.5, 0.5], [0.5, 0.5])["p_wilcoxon"] is None  # all differences zero


def test_paired_comparison_needs_the_same_images() -> None:
    with pytest.raises(ValueError, match="same images"):
        paired_comparison([0.1], [0.1, 0.2])
