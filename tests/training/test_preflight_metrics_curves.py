"""Preflight checks, the validation metrics wiring and the curve plots."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from medseg.losses import CrossEntropyLoss, MarginCalibrationLoss
from medseg.training import LossMetric, plot_curves, preflight, preflight_loss, read_history, validation_metrics


def _item(channels: int, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    return {"image": torch.zeros(channels, *labels.shape[-2:]), "label": labels[None]}


def test_preflight_accepts_matching_data() -> None:
    net = torch.nn.Conv2d(1, 2, 3, padding=1)
    assert preflight([_item(1, torch.tensor([[0, 1], [1, 0]]))], net, num_classes=2)


def test_preflight_errors() -> None:
    net = torch.nn.Conv2d(3, 2, 3, padding=1)
    with pytest.raises(ValueError, match="the training dataset is empty"):
        preflight([], net, 2)
    with pytest.raises(ValueError, match=r"1 channel\(s\) \(shape \(1, 2, 2\)\) but the network expects in_channels=3"):
        preflight([_item(1, torch.zeros(2, 2))], net, 2)
    with pytest.raises(ValueError, match=r"labels hold values in \[0, 4\] but num_classes=2"):
        preflight([_item(3, torch.tensor([[0, 4], [1, 0]]))], net, 2)
    # random crops with several samples give a list of dicts per item
    assert preflight([[_item(3, torch.zeros(2, 2)), _item(3, torch.zeros(2, 2))]], net, 2)


def test_preflight_loss_runs_the_loss_once() -> None:
    assert preflight_loss(CrossEntropyLoss(), 3, name="ce")
    assert preflight_loss(MarginCalibrationLoss([900, 80, 20]), 3, name="mc")


def test_preflight_loss_errors() -> None:
    with pytest.raises(TypeError, match="must be callable"):
        preflight_loss("ce", 2)
    with pytest.raises(ValueError, match="'mc' loss \\(MarginCalibrationLoss\\) fails on logits with num_classes=2"):
        preflight_loss(MarginCalibrationLoss([900, 80, 20]), 2, name="mc")
    with pytest.raises(ValueError, match="must return a finite scalar"):
        preflight_loss(CrossEntropyLoss(reduction="none"), 2)
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        preflight_loss(CrossEntropyLoss(), 0)


def test_loss_metric_averages_items() -> None:
    metric = LossMetric(CrossEntropyLoss())
    metric.reset()
    zeros = torch.zeros(2, 4, 4)
    confident = torch.stack([torch.full((4, 4), -20.0), torch.full((4, 4), 20.0)])
    label = torch.ones(1, 4, 4, dtype=torch.long)
    # -log(1/2) for uniform logits, ~0 for a confident correct prediction: mean log(2)/2
    metric.update(([zeros, confident], [label, label]))
    assert metric.compute() == pytest.approx(float(torch.log(torch.tensor(2.0))) / 2, rel=1e-6)


def test_validation_metrics_share_one_confusion_matrix() -> None:
    from ignite.engine import Engine

    metrics = validation_metrics(2, CrossEntropyLoss())
    assert set(metrics) == {
        "val_miou",
        "val_miou_fg",
        "val_mdice",
        "val_pixel_accuracy",
        "val_iou_0",
        "val_iou_1",
        "val_loss",
    }
    # one 2x2 image, labels [[0,0],[1,1]], prediction [[0,1],[1,1]] (one false positive of class 1):
    # IoU_0 = 1/2, IoU_1 = 2/3, mIoU = 7/12, foreground mIoU = 2/3, accuracy = 3/4, Dice_0 = 2/3, Dice_1 = 4/5
    label = torch.tensor([[[0, 0], [1, 1]]])
    pred = torch.stack([torch.tensor([[5.0, -5.0], [-5.0, -5.0]]), torch.tensor([[-5.0, 5.0], [5.0, 5.0]])])

    evaluator = Engine(lambda engine, batch: {"pred": [pred], "label": [label]})
    for name, metric in metrics.items():
        metric.attach(evaluator, name)
    state = evaluator.run([0])
    assert state.metrics["val_iou_0"] == pytest.approx(1 / 2)
    assert state.metrics["val_iou_1"] == pytest.approx(2 / 3)
    assert state.metrics["val_miou"] == pytest.approx(7 / 12)
    assert state.metrics["val_miou_fg"] == pytest.approx(2 / 3)
    assert state.metrics["val_pixel_accuracy"] == pytest.approx(3 / 4)
    assert state.metrics["val_mdice"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert state.metrics["val_loss"] > 0


def test_plot_curves_overlays_runs(tmp_path: Path) -> None:
    for name, losses in (("ce", [0.9, 0.5]), ("mc", [1.2, 0.8])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "history.csv").write_text(
            "epoch,train_loss,val_loss,val_miou\n"
            f"1,{losses[0]},{losses[0] + 0.1},0.4\n"
            f"2,{losses[1]},,0.6\n",  # a missing value reads as nan
            encoding="utf-8",
        )
    history = read_history(tmp_path / "ce" / "history.csv")
    assert history["epoch"] == [1.0, 2.0]
    assert history["val_loss"][1] != history["val_loss"][1]  # nan
    out = plot_curves([tmp_path / "ce" / "history.csv", tmp_path / "mc" / "history.csv"], tmp_path / "cmp.png")
    assert out.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="labels has 1 entries but 2 histories"):
        plot_curves([tmp_path / "ce" / "history.csv", tmp_path / "mc" / "history.csv"], tmp_path / "x.png", ["a"])
    (tmp_path / "empty.csv").write_text("epoch,train_loss\n", encoding="utf-8")
    with pytest.raises(ValueError, match="has no rows"):
        read_history(tmp_path / "empty.csv")
