from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine

from medseg.evaluation.ignite_metrics import ConfusionMatrixMetric, confusion_metrics, pred_label_from_output
from medseg.evaluation.metrics import iou_per_class, mean_iou, pixel_accuracy


def make_batches(k: int = 3, n: int = 3, seed: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(2, k, 6, 5, generator=g), torch.randint(0, k, (2, 1, 6, 5), generator=g)) for _ in range(n)]


def reference_matrix(batches: list[tuple[torch.Tensor, torch.Tensor]], k: int) -> np.ndarray:
    """Independent numpy computation: argmax of the logits against the labels, one count per pair."""
    pred = np.concatenate([b[0].argmax(1).numpy().ravel() for b in batches])
    lab = np.concatenate([b[1].numpy().ravel() for b in batches])
    return np.array([[np.sum((lab == i) & (pred == j)) for j in range(k)] for i in range(k)])


def test_metric_in_a_tiny_engine_matches_numpy() -> None:
    batches = make_batches()
    engine = Engine(lambda e, batch: batch)
    metric = ConfusionMatrixMetric(3, class_names=["bg", "a", "b"])
    metric.attach(engine, "cm")
    state = engine.run(batches, max_epochs=2)  # the matrix is reset every epoch
    ref = reference_matrix(batches, 3)
    np.testing.assert_array_equal(metric.matrix.numpy(), ref)
    assert state.metrics["mean_iou"] == pytest.approx(mean_iou(ref))
    assert state.metrics["pixel_accuracy"] == pytest.approx(pixel_accuracy(ref))
    assert state.metrics["iou_a"] == pytest.approx(iou_per_class(ref)[1])
    assert state.metrics["mean_iou_foreground"] == pytest.approx(mean_iou(ref, include_background=False))


@pytest.mark.parametrize("label_form", ["channel", "no-channel", "one-hot", "float"], ids=lambda s: f"label-{s}")
def test_label_forms(label_form: str) -> None:
    batches = make_batches(seed=3)
    ref = reference_matrix(batches, 3)
    conv = {
        "channel": lambda y: y,
        "no-channel": lambda y: y[:, 0],
        "one-hot": lambda y: torch.nn.functional.one_hot(y[:, 0], 3).permute(0, 3, 1, 2).float(),
        "float": lambda y: y.float(),
    }[label_form]
    metric = ConfusionMatrixMetric(3)
    for logits, y in batches:
        metric.update((logits, conv(y)))
    np.testing.assert_array_equal(metric.matrix.numpy(), ref)


def test_argmaxed_prediction_and_ignore_index() -> None:
    pred = torch.tensor([[[[0, 1, 1, 0]]]])  # (B=1, 1, 1, 4): already a label map
    label = torch.tensor([[[[0, 1, 255, 1]]]])
    metric = ConfusionMatrixMetric(2, ignore_index=255)
    metric.update((pred, label))
    # pixel 3 ignored: TP_1 = 1, FN_1 = 1 (pixel 4); class 0: TP 1
    assert metric.matrix.tolist() == [[1, 0], [1, 1]]
    out = metric.compute()
    assert out["iou_1"] == pytest.approx(0.5)


def test_monai_decollated_output_format() -> None:
    # SupervisedEvaluator(decollate=True) leaves a list of per-item dicts in engine.state.output
    batches = make_batches(seed=5)
    ref = reference_matrix(batches, 3)

    def step(engine: Engine, batch: tuple[torch.Tensor, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        logits, y = batch
        return [{"pred": logits[i], "label": y[i], "image": torch.zeros(1)} for i in range(len(y))]

    engine = Engine(step)
    metric = ConfusionMatrixMetric(3)
    metric.attach(engine, "cm")
    engine.run(batches)
    np.testing.assert_array_equal(metric.matrix.numpy(), ref)
    assert pred_label_from_output((1, 2)) == (1, 2)
    assert pred_label_from_output({"pred": 1, "label": 2}) == (1, 2)


def test_monai_supervised_evaluator() -> None:
    from monai.engines import SupervisedEvaluator
    from monai.transforms import AsDiscreted

    g = torch.Generator().manual_seed(7)
    data = [
        {"image": torch.randn(2, 1, 8, 8, generator=g), "label": torch.randint(0, 2, (2, 1, 8, 8), generator=g)}
        for _ in range(2)
    ]
    net = torch.nn.Conv2d(1, 2, 1)
    metrics = confusion_metrics(2, names=("mean_iou", "pixel_accuracy", "dice_1"))
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"),
        val_data_loader=data,
        network=net,
        postprocessing=AsDiscreted(keys="pred", argmax=True),
        key_val_metric={"val_mean_iou": metrics["mean_iou"]},
        additional_metrics={"val_acc": metrics["pixel_accuracy"], "val_dice_1": metrics["dice_1"]},
    )
    evaluator.run()
    with torch.no_grad():
        batches = [(net(d["image"]), d["label"]) for d in data]
    ref = reference_matrix(batches, 2)
    assert evaluator.state.metrics["val_mean_iou"] == pytest.approx(mean_iou(ref))
    assert evaluator.state.metrics["val_acc"] == pytest.approx(pixel_accuracy(ref))
    assert evaluator.state.best_metric == pytest.approx(mean_iou(ref))


def test_shared_accumulator_updated_once_per_iteration() -> None:
    batches = make_batches(n=2)
    engine = Engine(lambda e, batch: batch)
    metrics = confusion_metrics(3)
    for name, m in metrics.items():
        m.attach(engine, name)
    engine.run(batches)
    base = metrics["mean_iou"].args[0]
    assert int(base.matrix.sum()) == 2 * 2 * 6 * 5  # counted once, not once per attached scalar
    ref = reference_matrix(batches, 3)
    assert engine.state.metrics["mean_iou"] == pytest.approx(mean_iou(ref))
    with pytest.raises(ValueError, match="unknown confusion metric"):
        confusion_metrics(3, names=("miou",))


def test_bad_shapes_and_arguments() -> None:
    metric = ConfusionMatrixMetric(3)
    with pytest.raises(ValueError, match=r"y_pred must be \(B, 3, \*spatial\)"):
        metric.update((torch.randn(1, 4, 5, 5), torch.zeros(1, 1, 5, 5)))
    with pytest.raises(ValueError, match="disagree"):
        metric.update((torch.randn(1, 3, 5, 5), torch.zeros(1, 1, 4, 5)))
    with pytest.raises(ValueError, match="class_names"):
        ConfusionMatrixMetric(3, class_names=["a"])
    with pytest.raises(ValueError, match="background_index"):
        ConfusionMatrixMetric(3, background_index=3)


@pytest.mark.gpu
def test_accumulates_on_cuda() -> None:
    batches = [(logits.cuda(), y.cuda()) for logits, y in make_batches(seed=9)]
    metric = ConfusionMatrixMetric(3, device="cuda")
    for b in batches:
        metric.update(b)
    assert metric.matrix.device.type == "cuda"
    ref = reference_matrix([(logits.cpu(), y.cpu()) for logits, y in batches], 3)
    np.testing.assert_array_equal(metric.matrix.cpu().numpy(), ref)
    assert metric.compute()["mean_iou"] == pytest.approx(mean_iou(ref))
