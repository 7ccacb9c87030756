"""Every loss overlay trains each bundle for one epoch (and the class-count overlays on top): slow.

``test_train.py`` keeps CE and MC in the default run; this sweep covers the rest of ``configs/losses``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from _bundle_helpers import LOSS_OVERLAYS, Dataset, bundle_configs, history_rows, run_workflow, small_overrides

pytestmark = [pytest.mark.bundle, pytest.mark.slow]

OVERLAYS = sorted(p.stem for p in LOSS_OVERLAYS.glob("*.json"))


def _check_run(run_dir: Path, loss: str, num_classes: int) -> None:
    rows = history_rows(run_dir / "runs" / "history.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    assert math.isfinite(float(rows[0]["train_loss"]))
    assert math.isfinite(float(rows[0]["val_loss"]))
    assert {f"val_iou_{k}" for k in range(num_classes)} <= set(rows[0])
    last = torch.load(run_dir / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["tag"] == loss
    assert all(torch.isfinite(v).all() for v in last["network"].values())


@pytest.mark.parametrize("loss", OVERLAYS)
def test_covid_bundle_with_each_loss(loss: str, covid_data: Dataset, tmp_path: Path) -> None:
    run_workflow("covid19_ct_lesion", bundle_configs("covid19_ct_lesion", loss), small_overrides(covid_data, tmp_path))
    _check_run(tmp_path, loss, 2)


@pytest.mark.parametrize("loss", OVERLAYS)
def test_robotic_bundle_with_each_loss(loss: str, robotic_data: Dataset, tmp_path: Path) -> None:
    run_workflow(
        "robotic_instrument", bundle_configs("robotic_instrument", loss), small_overrides(robotic_data, tmp_path)
    )
    _check_run(tmp_path, loss, 2)


@pytest.mark.parametrize("loss", ["ce", "mc", "dice_mc", "tversky_mc", "lovasz_softmax", "lmp"])
def test_covid_multiclass_overlay(loss: str, covid_multiclass_data: Dataset, tmp_path: Path) -> None:
    configs = bundle_configs("covid19_ct_lesion", "multiclass", loss)
    run_workflow("covid19_ct_lesion", configs, small_overrides(covid_multiclass_data, tmp_path, classes=False))
    _check_run(tmp_path, loss, 3)


@pytest.mark.parametrize("loss", ["ce", "dice_mc", "tversky_mc"])
def test_robotic_parts_overlay(loss: str, robotic_parts_data: Dataset, tmp_path: Path) -> None:
    configs = bundle_configs("robotic_instrument", "parts", loss)
    run_workflow("robotic_instrument", configs, small_overrides(robotic_parts_data, tmp_path, classes=False))
    _check_run(tmp_path, loss, 5)
