"""``configs/evaluate.json``: the train config's validation evaluator run on another split names its metrics by it.

``evaluate.json`` reuses ``train.json``'s ``validate`` section with the datalist of ``eval_split`` (``test`` by
default); the metrics must then read ``test_miou`` etc., not ``val_miou``, in the log and in ``metrics.csv``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from _bundle_helpers import BUNDLES, Dataset, bundle_configs, read_json, run_workflow, small_overrides

pytestmark = pytest.mark.bundle


def _metrics_csv(path: Path) -> dict[str, float]:
    """MONAI's MetricsSaver writes one ``name,value`` line per metric."""
    rows = [line.split(",", 1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {name: float(value) for name, value in rows}


def _evaluate(bundle: str, data: Dataset, tmp_path: Path, split: str | None) -> dict[str, float]:
    from medseg.networks import CopleNet

    overrides = small_overrides(data, tmp_path, output_dir=str(tmp_path / "out"))
    # the network the overrides build: the bundle's network_def with the test widths
    network_def = read_json(BUNDLES / bundle / "configs" / "train.json")["network_def"]
    network = CopleNet(
        spatial_dims=2,
        in_channels=network_def["in_channels"],
        out_channels=data.num_classes,
        features=overrides["network_def#features"],
        norm=tuple(network_def["norm"]),
    )
    (tmp_path / "models").mkdir()
    torch.save(network.state_dict(), tmp_path / "models" / "model.pt")
    if split is not None:
        overrides["eval_split"] = split
    run_workflow(bundle, bundle_configs(bundle, "evaluate"), overrides)
    return _metrics_csv(tmp_path / "out" / "eval" / "metrics.csv")


@pytest.mark.parametrize(
    ("bundle", "fixture"),
    [("covid19_ct_lesion", "covid_data"), ("robotic_instrument", "robotic_data")],
    ids=["covid", "robotic"],
)
def test_evaluate_names_test_metrics(bundle: str, fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    data: Dataset = request.getfixturevalue(fixture)
    metrics = _evaluate(bundle, data, tmp_path, split=None)
    assert "test_miou" in metrics
    assert {f"test_iou_{k}" for k in range(data.num_classes)} <= set(metrics)
    assert all(name.startswith("test_") for name in metrics), sorted(metrics)
    assert 0.0 <= metrics["test_miou"] <= 1.0


def test_evaluate_on_validation_keeps_val_names(covid_data: Dataset, tmp_path: Path) -> None:
    # the names of train.json's own validation (val_*), so a validation-split evaluation compares with history.csv
    metrics = _evaluate("covid19_ct_lesion", covid_data, tmp_path, split="validation")
    assert "val_miou" in metrics
    assert all(name.startswith("val_") for name in metrics), sorted(metrics)
