"""Tests of the shared input-preparation helper ``medseg.losses._input``."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from monai.data import MetaTensor
from monai.utils import LossReduction

from medseg.losses._input import (
    apply_reduction,
    as_plain_tensor,
    check_logits,
    check_reduction,
    prepare,
    target_to_labels,
)

LABELS = torch.tensor([[[0, 1, 2], [2, 1, 0]]])  # (1, 2, 3)
LOGITS = torch.zeros(1, 3, 2, 3)


@pytest.mark.parametrize(
    "form",
    ["labels", "labels_channel", "float_labels", "one_hot", "metatensor"],
)
def test_every_target_form_gives_the_same_labels(form):
    target = {
        "labels": LABELS,
        "labels_channel": LABELS[:, None],
        "float_labels": LABELS[:, None].float(),
        "one_hot": F.one_hot(LABELS, 3).movedim(-1, 1).float(),
        "metatensor": MetaTensor(LABELS[:, None].float()),
    }[form]
    labels, valid = target_to_labels(LOGITS, target)
    assert torch.equal(labels, LABELS)
    assert valid is None
    assert type(labels) is torch.Tensor


def test_ignore_index_masks_and_zeroes_labels():
    target = LABELS.clone()
    target[0, 0, 0] = 255
    labels, valid = target_to_labels(LOGITS, target, ignore_index=255)
    assert valid is not None
    assert not bool(valid[0, 0, 0])
    assert int(valid.sum()) == 5
    assert int(labels[0, 0, 0]) == 0


def test_all_zero_one_hot_pixel_is_ignored():
    onehot = F.one_hot(LABELS, 3).movedim(-1, 1).float()
    onehot[0, :, 1, 2] = 0
    _, valid = target_to_labels(LOGITS, onehot)
    assert valid is not None
    assert not bool(valid[0, 1, 2])
    assert int(valid.sum()) == 5


@pytest.mark.parametrize(
    ("target", "match"),
    [
        (torch.tensor([[[0, 1, 3], [0, 0, 0]]]), r"target holds label 3.*K=3"),
        (torch.tensor([[[0, -1, 0], [0, 0, 0]]]), r"target holds label -1"),
        (torch.tensor([[[0.5, 1, 0], [0, 0, 0]]]), r"non-integer"),
        (torch.zeros(1, 2, 2), r"target shape \(1, 2, 2\) does not match logits shape \(1, 3, 2, 3\)"),
    ],
    ids=["label-ge-K", "negative", "non-integer", "wrong-shape"],
)
def test_bad_targets_raise_value_error_naming_target(target, match):
    with pytest.raises(ValueError, match=match):
        target_to_labels(LOGITS, target)


def test_label_equal_to_ignore_index_is_allowed_even_when_ge_k():
    target = torch.tensor([[[0, 1, 255], [0, 0, 0]]])
    with pytest.raises(ValueError, match="ignore_index"):
        target_to_labels(LOGITS, target)  # not declared: an error that suggests ignore_index
    _labels, valid = target_to_labels(LOGITS, target, ignore_index=255)
    assert valid is not None
    assert int(valid.sum()) == 5


@pytest.mark.parametrize(
    ("logits", "exc", "match"),
    [
        (torch.zeros(3, 2), ValueError, r"logits must have shape \(B, K, H, W\)"),
        (torch.zeros(1, 2, 2, 2, 2, 2), ValueError, "logits must have shape"),
        (torch.tensor([[[[float("nan")]]]]), ValueError, "logits contains NaN or inf"),
        (torch.tensor([[[[float("inf")]]]]), ValueError, "logits contains NaN or inf"),
        (torch.zeros(1, 2, 2, 2, dtype=torch.long), TypeError, "logits must be floating point"),
        ([[1.0]], TypeError, "logits must be a torch.Tensor"),
    ],
    ids=["2d", "6d", "nan", "inf", "integer", "list"],
)
def test_check_logits_rejects_bad_logits(logits, exc, match):
    with pytest.raises(exc, match=match):
        check_logits(logits)


def test_prepare_softmax_onehot_and_background():
    logits = torch.randn(2, 3, 4, 4)
    labels = torch.randint(0, 3, (2, 4, 4))
    prep = prepare(logits, labels)
    torch.testing.assert_close(prep.pred, torch.softmax(logits, 1))
    torch.testing.assert_close(prep.onehot, F.one_hot(labels, 3).movedim(-1, 1).float())
    no_bg = prepare(logits, labels, include_background=False)
    torch.testing.assert_close(no_bg.pred, prep.pred[:, 1:])
    torch.testing.assert_close(no_bg.onehot, prep.onehot[:, 1:])
    sig = prepare(logits, labels, softmax=False, sigmoid=True)
    torch.testing.assert_close(sig.pred, torch.sigmoid(logits))


def test_prepare_zeroes_ignored_pixels_in_pred_and_onehot():
    logits = torch.randn(1, 2, 2, 2)
    labels = torch.tensor([[[0, 9], [1, 0]]])
    prep = prepare(logits, labels, ignore_index=9)
    assert float(prep.pred[0, :, 0, 1].abs().sum()) == 0.0
    assert float(prep.onehot[0, :, 0, 1].abs().sum()) == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_prepare_computes_half_precision_in_float32(dtype):
    logits = torch.randn(1, 2, 3, 3).to(dtype)
    prep = prepare(logits, torch.zeros(1, 3, 3, dtype=torch.long))
    assert prep.pred.dtype == torch.float32
    torch.testing.assert_close(prep.pred, torch.softmax(logits.float(), 1))


def test_prepare_rejects_conflicting_activation_and_single_channel_background_drop():
    with pytest.raises(ValueError, match="mutually exclusive"):
        prepare(torch.zeros(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), softmax=True, sigmoid=True)
    with pytest.raises(ValueError, match="include_background=False needs K > 1"):
        prepare(torch.zeros(1, 1, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), include_background=False)


def test_reduction_helpers():
    values = torch.tensor([1.0, 2.0, 6.0])
    assert float(apply_reduction(values, "mean")) == 3.0
    assert float(apply_reduction(values, "sum")) == 9.0
    assert apply_reduction(values, "none") is values
    assert check_reduction(LossReduction.SUM) == "sum"
    assert check_reduction("none") == "none"
    with pytest.raises(ValueError, match="reduction must be one of"):
        check_reduction("average")
    with pytest.raises(ValueError, match="reduction must be"):
        apply_reduction(values, "max")


def test_as_plain_tensor_drops_metadata():
    meta = MetaTensor(torch.ones(2))
    assert type(as_plain_tensor(meta)) is torch.Tensor
    plain = torch.ones(2)
    assert as_plain_tensor(plain) is plain
