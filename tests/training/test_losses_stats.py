"""``load_class_stats`` and ``build_loss``: the MC family reads its class counts from ``stats.json``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.losses import CrossEntropyLoss, MarginCalibrationLoss, margin_offsets
from medseg.training import MC_FAMILY, build_loss, load_class_stats


def _stats(path: Path, counts: list[int], **extra: object) -> Path:
    path.write_text(json.dumps({"num_classes": len(counts), "class_counts": counts, **extra}), encoding="utf-8")
    return path


def test_load_class_stats_reads_a_valid_file(tmp_path: Path) -> None:
    stats = load_class_stats(_stats(tmp_path / "stats.json", [900, 100], tau=10.0), 2)
    assert stats["class_counts"] == [900, 100]


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


@pytest.mark.parametrize("name", MC_FAMILY)
def test_build_loss_gives_mc_the_offsets_of_the_file(name: str, tmp_path: Path) -> None:
    counts = [9000, 700, 300]
    loss = build_loss(name, num_classes=3, stats_file=_stats(tmp_path / "s.json", counts, tau=5.0, v=2.0))
    mc = (
        loss
        if isinstance(loss, MarginCalibrationLoss)
        else next(m for m in loss.modules() if isinstance(m, MarginCalibrationLoss))
    )
    rho_neg, rho_pos = margin_offsets(np.asarray(counts, dtype=np.float64), tau=5.0, v=2.0)
    np.testing.assert_allclose(mc.rho_neg.double().numpy(), rho_neg, rtol=1e-6)
    np.testing.assert_allclose(mc.rho_pos.double().numpy(), rho_pos, rtol=1e-6)
    # explicit tau/v win over the file's
    loss = build_loss(name, num_classes=3, stats_file=tmp_path / "s.json", tau=10.0, v=1.0)
    mc = (
        loss
        if isinstance(loss, MarginCalibrationLoss)
        else next(m for m in loss.modules() if isinstance(m, MarginCalibrationLoss))
    )
    np.testing.assert_allclose(mc.rho_neg.double().numpy(), margin_offsets(np.asarray(counts), 10.0, 1.0)[0])


def test_build_loss_for_other_losses(tmp_path: Path) -> None:
    loss = build_loss("ce", num_classes=2, stats_file=tmp_path / "unused.json")
    assert isinstance(loss, CrossEntropyLoss)
    logits, target = torch.zeros(1, 2, 4, 4), torch.zeros(1, 1, 4, 4, dtype=torch.long)
    assert float(loss(logits, target)) == pytest.approx(np.log(2.0))  # uniform logits: -log(1/2)
    with pytest.raises(ValueError, match="tau/v apply only to the margin-calibration losses"):
        build_loss("dice", num_classes=2, tau=3.0)
