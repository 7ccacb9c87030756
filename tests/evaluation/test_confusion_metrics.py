from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from medseg.evaluation import confusion as confusion_mod
from medseg.evaluation.confusion import ConfusionAccumulator, confusion_matrix
from medseg.evaluation.metrics import (
    dice_per_class,
    iou_per_class,
    mean_dice,
    mean_iou,
    nanmean,
    pixel_accuracy,
    precision_per_class,
    recall_per_class,
    summarize_confusion,
)


def direct_confusion(pred: np.ndarray, label: np.ndarray, k: int, ignore: int | None = None) -> np.ndarray:
    """Independent reference: one boolean count per (reference, prediction) pair."""
    keep = np.ones(label.shape, bool) if ignore is None else label != ignore
    return np.array([[np.sum((label == i) & (pred == j) & keep) for j in range(k)] for i in range(k)])


def test_hand_made_three_class_case() -> None:
    label = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    pred = np.array([[0, 1, 1, 1], [0, 2, 0, 0]])
    cm = confusion_matrix(pred, label, 3)
    # rows = reference: class 0 at 3 pixels (2 right, 1 -> 1); class 1 at 3 pixels (2 right, 1 -> 0);
    # class 2 at 2 pixels (1 right, 1 -> 0)
    assert cm.tolist() == [[2, 1, 0], [1, 2, 0], [1, 0, 1]]
    assert cm.dtype == np.int64
    # IoU_0 = 2 / (2 + FP 2 + FN 1) = 0.4; IoU_1 = 2 / (2 + 1 + 1) = 0.5; IoU_2 = 1 / (1 + 0 + 1) = 0.5
    np.testing.assert_allclose(iou_per_class(cm), [0.4, 0.5, 0.5])
    # Dice_k = 2 TP / (2 TP + FP + FN): 4/7, 4/6, 2/3
    np.testing.assert_allclose(dice_per_class(cm), [4 / 7, 2 / 3, 2 / 3])
    # accuracy = trace / total = 5 / 8
    assert pixel_accuracy(cm) == pytest.approx(5 / 8)
    assert mean_iou(cm) == pytest.approx((0.4 + 0.5 + 0.5) / 3)
    assert mean_iou(cm, include_background=False) == pytest.approx(0.5)
    assert mean_dice(cm, include_background=False) == pytest.approx(2 / 3)
    # recall_2 = 1/2, precision_0 = 2 / (2 + 2) = 0.5
    assert recall_per_class(cm)[2] == pytest.approx(0.5)
    assert precision_per_class(cm)[0] == pytest.approx(0.5)


@pytest.mark.parametrize("ignore", [None, 255], ids=["no-ignore", "ignore-255"])
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_confusion_equals_direct_computation(ignore: int | None, backend: str) -> None:
    rng = np.random.default_rng(0)
    k = 4
    label = rng.integers(0, k, size=(3, 17, 13)).astype(np.uint8)
    pred = rng.integers(0, k, size=(3, 17, 13)).astype(np.int16)
    if ignore is not None:
        label[rng.random(label.shape) < 0.2] = ignore
    expected = direct_confusion(pred, label, k, ignore)
    if backend == "torch":
        got = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(label).float(), k, ignore_index=ignore)
        assert isinstance(got, torch.Tensor)
        assert got.dtype == torch.int64
        got = got.numpy()
    else:
        got = confusion_matrix(pred, label, k, ignore_index=ignore)
    np.testing.assert_array_equal(got, expected)
    assert got.sum() == (label.size if ignore is None else np.sum(label != ignore))


def test_chunked_accumulation_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    label = rng.integers(0, 3, size=1000)
    pred = rng.integers(0, 3, size=1000)
    label[::7] = 9  # ignored values spread over several chunks
    monkeypatch.setattr(confusion_mod, "_CHUNK", 64)
    np.testing.assert_array_equal(
        confusion_matrix(pred, label, 3, ignore_index=9), direct_confusion(pred, label, 3, ignore=9)
    )


def test_accumulator_sums_cases_and_returns_case_matrix() -> None:
    acc = ConfusionAccumulator(2)
    c1 = acc.update(np.array([1, 1, 0]), np.array([1, 0, 0]))
    c2 = acc.update(torch.tensor([0, 0]), torch.tensor([1, 1]))
    assert c1.tolist() == [[1, 1], [0, 1]]
    assert c2.tolist() == [[0, 0], [2, 0]]
    assert acc.matrix.tolist() == [[1, 1], [2, 1]]
    other = ConfusionAccumulator(2)
    other.update(np.array([1]), np.array([1]))
    acc.merge(other)
    assert acc.matrix.tolist() == [[1, 1], [2, 2]]
    assert acc.num_updates == 3
    acc.reset()
    assert acc.matrix.sum() == 0


@pytest.mark.parametrize(
    ("pred", "label", "match"),
    [
        (np.array([0, 3]), np.array([0, 1]), r"pred values must be integers in \[0, 3\)"),
        (np.array([0, 1]), np.array([0, 255]), r"label values .* or set ignore_index"),
        (np.array([0.5, 1.0]), np.array([0, 1]), "non-integer"),
        (np.array([0, 1, 1]), np.array([0, 1]), "same number of elements"),
    ],
    ids=["pred-out-of-range", "label-out-of-range", "float-pred", "size-mismatch"],
)
def test_confusion_rejects_bad_input(pred: np.ndarray, label: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        confusion_matrix(pred, label, 3)


@pytest.mark.parametrize("k", [1, 2.0, True, "2"], ids=["one", "float", "bool", "str"])
def test_num_classes_validated(k: object) -> None:
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        confusion_matrix(np.zeros(2, int), np.zeros(2, int), k)  # type: ignore[arg-type]


def test_absent_class_is_nan_and_skipped_by_means() -> None:
    # class 2 appears in neither reference nor prediction: TP + FP + FN = 0 -> NaN
    cm = confusion_matrix(np.array([0, 1, 1, 0]), np.array([0, 1, 0, 0]), 3)
    iou = iou_per_class(cm)
    assert math.isnan(iou[2])
    assert math.isnan(dice_per_class(cm)[2])
    # IoU_0 = 2 / (2 + 0 + 1) = 2/3; IoU_1 = 1 / (1 + 1 + 0) = 1/2; mean over the two defined classes
    assert mean_iou(cm) == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert mean_iou(cm, include_background=False) == pytest.approx(0.5)
    # a class present in only one of the two gets 0, not NaN
    cm2 = confusion_matrix(np.array([0, 0]), np.array([0, 1]), 2)
    assert iou_per_class(cm2)[1] == 0.0
    assert math.isnan(nanmean([float("nan")]))
    assert math.isnan(pixel_accuracy(np.zeros((2, 2), dtype=np.int64)))


def test_dataset_level_differs_from_mean_of_cases() -> None:
    # case A: a 90-pixel structure predicted perfectly (IoU 1); case B: a 10-pixel structure missed (IoU 0).
    # per-case mean IoU_1 = (1 + 0) / 2 = 0.5; dataset IoU_1 = 90 / (90 + 0 + 10) = 0.9 (000 Eq. 1-3)
    la = np.zeros(200, int)
    la[:90] = 1
    lb = np.zeros(200, int)
    lb[:10] = 1
    pa, pb = la.copy(), np.zeros(200, int)
    acc = ConfusionAccumulator(2)
    per_case = [iou_per_class(acc.update(p, t))[1] for p, t in ((pa, la), (pb, lb))]
    assert np.mean(per_case) == pytest.approx(0.5)
    assert iou_per_class(acc.matrix)[1] == pytest.approx(0.9)


def test_summarize_confusion_is_json_ready() -> None:
    import json

    cm = confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 3)
    s = summarize_confusion(cm, class_names=["bg", "a", "b"])
    json.dumps(s, allow_nan=False)  # NaN written as None
    assert s["per_class"]["b"]["iou"] is None
    assert s["per_class"]["a"]["iou"] == pytest.approx(0.5)
    assert s["num_pixels"] == 3
    assert s["mean_iou_foreground"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        summarize_confusion(cm, class_names=["x", "y"])
    with pytest.raises(ValueError, match="square"):
        iou_per_class(np.zeros((2, 3)))
