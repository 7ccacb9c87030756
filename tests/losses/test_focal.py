"""Tests of ``medseg.losses.FocalLoss`` (registry name ``focal``)."""

from __future__ import annotations

import math

import monai.losses
import pytest
import torch
import torch.nn.functional as F
from _loss_properties import PROPERTY_SETTINGS, cases, check_common_properties
from hypothesis import given

from medseg.losses import CrossEntropyLoss, FocalLoss


def test_hand_computed_value():
    # p = 1/2 on the true class: FL = (1 - 1/2)^2 * ln 2 = ln(2)/4; p = 3/4: FL = (1/4)^2 * ln(4/3)
    logits = torch.tensor([[[[0.0, math.log(3.0)]], [[0.0, 0.0]]]])
    labels = torch.tensor([[[1, 0]]])
    expected = (math.log(2.0) / 4 + math.log(4.0 / 3.0) / 16) / 2
    assert FocalLoss()(logits, labels).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("ignore_index", [None, 9])
def test_gamma_zero_is_cross_entropy(ignore_index):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 4, 5, generator=g) * 5
    labels = torch.randint(0, 3, (2, 4, 5), generator=g)
    if ignore_index is not None:
        labels[1, :2] = ignore_index
    focal = FocalLoss(gamma=0.0, ignore_index=ignore_index)(logits, labels)
    ce = CrossEntropyLoss(ignore_index=ignore_index)(logits, labels)
    torch.testing.assert_close(focal, ce)


def test_scale_relative_to_monai_is_the_class_count():
    # MONAI averages over classes too; here the class terms are summed per pixel (see the class Note)
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 3, 3, 3, generator=g)
    labels = torch.randint(0, 4, (2, 1, 3, 3, 3), generator=g)
    monai_value = monai.losses.FocalLoss(to_onehot_y=True, use_softmax=True, gamma=2.0)(logits, labels)
    torch.testing.assert_close(FocalLoss()(logits, labels), monai_value * 4)


def test_sigmoid_form_gamma_zero_is_binary_cross_entropy_summed_over_classes():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 4, generator=g)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    onehot = F.one_hot(labels, 3).movedim(-1, 1).float()
    bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none").sum(1).mean()
    torch.testing.assert_close(FocalLoss(gamma=0.0, use_softmax=False)(logits, labels), bce)


def test_to_onehot_y_is_enforced():
    logits = torch.randn(1, 2, 2, 2)
    labels = torch.zeros(1, 1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="to_onehot_y=False expects a one-hot target"):
        FocalLoss(to_onehot_y=False)(logits, labels)
    FocalLoss(to_onehot_y=True)(logits, labels)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"gamma": -1.0}, "gamma must be >= 0"), ({"alpha": 1.5}, "alpha must be None"), ({"weight": [-1.0]}, "weight")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FocalLoss(**kwargs)


@PROPERTY_SETTINGS
@given(cases())
def test_properties(case):
    check_common_properties(lambda **kw: FocalLoss(**kw), case)


@PROPERTY_SETTINGS
@given(cases())
def test_properties_sigmoid(case):
    check_common_properties(lambda **kw: FocalLoss(use_softmax=False, **kw), case)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"gamma": 0.5},
        {"alpha": 0.25},
        {"alpha": [0.1, 0.3, 0.6, 0.9]},
        {"weight": [1.0, 2.0, 0.5, 3.0]},
        {"alpha": 0.7, "weight": 2.0},
        {"ignore_index": 9},
    ],
    ids=["default", "gamma", "alpha", "alpha-per-class", "weight", "alpha-weight", "ignore"],
)
def test_true_class_shortcut_matches_monai_focal_of_every_class(kwargs):
    # the softmax form takes the focal term at the label only; MONAI forms it for every class and multiplies
    # by the one-hot target: the same per-pixel values (MONAI's mean also averages over the 4 classes)
    g = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 4, 5, 6, generator=g) * 4  # float32: MONAI computes in float32
    labels = torch.randint(0, 4, (2, 5, 6), generator=g)
    ignore = kwargs.get("ignore_index")
    if ignore is not None:
        labels[0, :2] = ignore
    ours = FocalLoss(reduction="none", **kwargs)(logits, labels)
    monai_kwargs = {k: v for k, v in kwargs.items() if k != "ignore_index"}
    monai_loss = monai.losses.FocalLoss(use_softmax=True, reduction="none", **monai_kwargs)
    valid = labels != ignore if ignore is not None else torch.ones_like(labels, dtype=torch.bool)
    onehot = F.one_hot(labels.clamp_max(3) * valid, 4).movedim(-1, 1).float()
    expected = monai_loss(logits, onehot).sum(1) * valid
    torch.testing.assert_close(ours, expected)
