"""Bundle training through ``monai.bundle.ConfigWorkflow`` on tiny synthetic data.

One module-scoped CE run of the COVID-19 bundle is interrupted after epoch 1 and restarted with the same
command for epoch 2 (the resume test); its files are then checked, it seeds the MC fine-tuning stage (the
two-stage protocol), and its first epoch is replayed in a fresh folder for the determinism check.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from _bundle_helpers import (
    Dataset,
    bundle_configs,
    history_rows,
    make_workflow,
    run_workflow,
    small_overrides,
)

from medseg.training.handlers import ResumeError

pytestmark = pytest.mark.bundle

COVID = "covid19_ct_lesion"
ROBOTIC = "robotic_instrument"


@dataclass
class ResumedRun:
    run_dir: Path
    overrides: dict[str, Any]
    first_last: dict[str, Any]  # last.pt after the interrupted first command (epoch 1)
    first_history: str  # history.csv after epoch 1
    at_start: dict[str, Any]  # state seen by the second command right after resuming


def _epoch(last: dict[str, Any]) -> int:
    """The trainer epoch stored in a ``last.pt`` (ignite saves the iteration and the epoch length)."""
    trainer = last["trainer"]
    return int(trainer["iteration"]) // int(trainer["epoch_length"])


def _probe_after_resume(workflow: Any, record: dict[str, Any]) -> None:
    """Record the trainer's epoch and the optimizer/scheduler state once the resume handler has run."""
    from ignite.engine import Events

    trainer = workflow.parser.get_parsed_content("train#trainer")
    optimizer = workflow.parser.get_parsed_content("optimizer")
    scheduler = workflow.parser.get_parsed_content("lr_scheduler")

    def probe(engine: Any) -> None:
        record["epoch"] = engine.state.epoch
        record["iteration"] = engine.state.iteration
        record["optimizer"] = copy.deepcopy(optimizer.state_dict())
        record["lr_scheduler"] = copy.deepcopy(scheduler.state_dict())

    # registered after the bundle's ResumeFromCheckpoint, so it runs after it on the same event
    trainer.add_event_handler(Events.STARTED, probe)


@pytest.fixture(scope="module")
def covid_ce_run(covid_data: Dataset, tmp_path_factory: pytest.TempPathFactory) -> ResumedRun:
    run_dir = tmp_path_factory.mktemp("covid_ce")
    overrides = small_overrides(covid_data, run_dir, num_epochs=1)
    configs = bundle_configs(COVID, "ce")  # the papers' CE pre-training stage (the plan's default loss is dice_ce)
    run_workflow(COVID, configs, overrides)  # "killed" after epoch 1: it stopped there
    first_last = torch.load(run_dir / "models" / "last.pt", map_location="cpu", weights_only=True)
    first_history = (run_dir / "runs" / "history.csv").read_text(encoding="utf-8")

    overrides = {**overrides, "num_epochs": 2}  # the same command, asked to reach epoch 2
    workflow = make_workflow(COVID, configs, overrides)
    workflow.initialize()
    at_start: dict[str, Any] = {}
    _probe_after_resume(workflow, at_start)
    workflow.run()
    workflow.finalize()
    return ResumedRun(run_dir, overrides, first_last, first_history, at_start)


def test_resume_continues_with_the_saved_optimizer_state_and_epoch(covid_ce_run: ResumedRun) -> None:
    saved, seen = covid_ce_run.first_last, covid_ce_run.at_start
    assert saved["tag"] == "ce"
    assert _epoch(saved) == 1
    assert seen["epoch"] == 1  # continues after epoch 1 instead of starting at 0
    assert seen["iteration"] == saved["trainer"]["iteration"] > 0
    assert seen["optimizer"]["state"].keys() == saved["optimizer"]["state"].keys()
    for key, state in saved["optimizer"]["state"].items():
        assert int(seen["optimizer"]["state"][key]["step"]) == int(state["step"]) > 0
        torch.testing.assert_close(seen["optimizer"]["state"][key]["exp_avg"], state["exp_avg"])
        torch.testing.assert_close(seen["optimizer"]["state"][key]["exp_avg_sq"], state["exp_avg_sq"])
    assert seen["lr_scheduler"]["last_epoch"] == saved["lr_scheduler"]["last_epoch"]


def test_resumed_run_keeps_what_was_written(covid_ce_run: ResumedRun) -> None:
    rows = history_rows(covid_ce_run.run_dir / "runs" / "history.csv")
    assert [r["epoch"] for r in rows] == ["1", "2"]
    first = history_rows_from_text(covid_ce_run.first_history)
    assert rows[0] == first[0]  # epoch 1 survives the restart unchanged
    last = torch.load(covid_ce_run.run_dir / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert _epoch(last) == 2


def history_rows_from_text(text: str) -> list[dict[str, str]]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(text)))


def test_run_writes_checkpoints_metrics_curves_and_tensorboard(covid_ce_run: ResumedRun) -> None:
    from medseg.checkpoint import load_checkpoint
    from medseg.networks import CopleNet

    models, runs = covid_ce_run.run_dir / "models", covid_ce_run.run_dir / "runs"
    last = torch.load(models / "last.pt", map_location="cpu", weights_only=True)
    assert {"network", "optimizer", "lr_scheduler", "trainer", "tag", "best_metric"} <= set(last)
    net = CopleNet(2, 1, 2, features=covid_ce_run.overrides["network_def#features"])
    best = load_checkpoint(models / "model.pt")  # a medseg checkpoint: weights and what rebuilds them
    net.load_state_dict(best.state_dict)
    assert best.metadata is not None
    assert best.metadata.network is not None
    assert best.metadata.network["features"] == list(covid_ce_run.overrides["network_def#features"])
    assert best.metadata.classes == ["background", "infection"]
    assert best.metadata.roi_size == covid_ce_run.overrides["spatial_size"]
    assert best.metadata.bundle == "covid19_ct_lesion"
    plan = json.loads((Path(covid_ce_run.overrides["dataset_dir"]) / "plan.json").read_text())
    assert best.metadata.preprocessing == {
        "window": None,
        "intensity_range": [0, 255],
        "normalization": plan["normalization"],  # the z-score of the plan the model was trained with
        "label_map": "binary",
    }
    assert best.metadata.plan["num_cases"] == plan["num_cases"]
    assert best.metadata.loss is not None
    assert best.metadata.loss["name"] == "ce"
    rows = history_rows(runs / "history.csv")
    for column in ("train_loss", "val_loss", "val_miou", "val_miou_fg", "val_mdice", "val_iou_0", "val_iou_1", "lr"):
        assert all(r[column] for r in rows), column
    for r in rows:
        assert 0.0 <= float(r["val_miou"]) <= 1.0
        assert float(r["lr"]) == pytest.approx(1e-3)  # small_overrides: constant schedule at 1e-3
    # best model.pt is the epoch with the highest validation mIoU, recorded in last.pt
    best = max(rows, key=lambda r: float(r["val_miou"]))
    assert float(last["best_metric"]) == pytest.approx(float(best["val_miou"]), rel=1e-5)
    metrics = (runs / "metrics.csv").read_text(encoding="utf-8")
    assert "val_miou" in metrics
    assert (runs / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list(runs.glob("events.out.tfevents.*"))


def test_same_seed_gives_the_same_history(covid_ce_run: ResumedRun, covid_data: Dataset, tmp_path: Path) -> None:
    run_workflow(COVID, bundle_configs(COVID, "ce"), small_overrides(covid_data, tmp_path, num_epochs=1))
    assert (tmp_path / "runs" / "history.csv").read_text(encoding="utf-8") == covid_ce_run.first_history


def test_fine_tuning_starts_from_the_pretrained_model(
    covid_ce_run: ResumedRun, covid_data: Dataset, tmp_path: Path
) -> None:
    pretrained = covid_ce_run.run_dir / "models" / "model.pt"
    overrides = small_overrides(covid_data, tmp_path / "mc", num_epochs=1, pretrained_ckpt=str(pretrained))
    workflow = make_workflow(COVID, bundle_configs(COVID, "mc"), overrides)
    workflow.initialize()
    network = workflow.parser.get_parsed_content("network")
    from medseg.checkpoint import load_checkpoint

    expected = load_checkpoint(pretrained).state_dict
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, expected[key])
    workflow.run()
    workflow.finalize()
    last = torch.load(tmp_path / "mc" / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["tag"] == "mc"
    assert [r["epoch"] for r in history_rows(tmp_path / "mc" / "runs" / "history.csv")] == ["1"]
    assert float(history_rows(tmp_path / "mc" / "runs" / "history.csv")[0]["train_loss"]) > 0


def test_resume_refuses_the_checkpoint_of_another_loss(covid_ce_run: ResumedRun, covid_data: Dataset) -> None:
    # fine-tuning with MC pointed at the CE run's folders must not continue the CE state
    overrides = {**covid_ce_run.overrides, "stats_file": str(covid_data.stats_file), "num_epochs": 3}
    workflow = make_workflow(COVID, bundle_configs(COVID, "mc"), overrides)
    # refused while the run is set up, before any training, with one line (a SystemExit: no traceback)
    with pytest.raises(ResumeError, match=r"holds the state of another run \(tag 'ce', this run 'mc'\)"):
        workflow.initialize()
    last = torch.load(covid_ce_run.run_dir / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["tag"] == "ce"
    assert _epoch(last) == 2


def test_robotic_bundle_trains_with_its_default_loss(robotic_data: Dataset, tmp_path: Path) -> None:
    run_workflow(ROBOTIC, bundle_configs(ROBOTIC), small_overrides(robotic_data, tmp_path))
    rows = history_rows(tmp_path / "runs" / "history.csv")
    assert [r["epoch"] for r in rows] == ["1"]
    assert float(rows[0]["train_loss"]) > 0
    assert (tmp_path / "models" / "model.pt").is_file()


def test_robotic_parts_overlay_trains_with_mc(robotic_parts_data: Dataset, tmp_path: Path) -> None:
    run_workflow(
        ROBOTIC, bundle_configs(ROBOTIC, "parts", "mc"), small_overrides(robotic_parts_data, tmp_path, classes=False)
    )
    rows = history_rows(tmp_path / "runs" / "history.csv")
    assert {f"val_iou_{k}" for k in range(5)} <= set(rows[0])  # five classes: background and four parts
    last = torch.load(tmp_path / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["tag"] == "mc"
    from medseg.networks import CopleNet

    CopleNet(2, 3, 5, features=small_overrides(robotic_parts_data, tmp_path)["network_def#features"]).load_state_dict(
        last["network"]
    )  # strict: the saved network has 3 input channels and 5 output classes
