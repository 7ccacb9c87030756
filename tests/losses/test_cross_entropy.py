"""Tests of ``medseg.losses.CrossEntropyLoss`` (registry name ``ce``)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from _loss_properties import PROPERTY_SETTINGS, cases, check_common_properties
from hypothesis import given

from medseg.losses import CrossEntropyLoss


def test_hand_computed_value():
    # two pixels, K = 2: logits (0, 0) -> p = 1/2, loss ln 2; logits (ln 3, 0), label 0 -> p = 3/4, loss ln(4/3)
    logits = torch.tensor([[[[0.0, math.log(3.0)]], [[0.0, 0.0]]]])
    labels = torch.tensor([[[1, 0]]])
    expected = (math.log(2.0) + math.log(4.0 / 3.0)) / 2
    assert CrossEntropyLoss()(logits, labels).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("form", ["labels", "channel", "one_hot"])
def test_matches_torch_for_every_label_form(form):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 5, 3, generator=g)
    labels = torch.randint(0, 4, (2, 5, 3), generator=g)
    target = {"labels": labels, "channel": labels[:, None], "one_hot": F.one_hot(labels, 4).movedim(-1, 1)}[form]
    torch.testing.assert_close(CrossEntropyLoss()(logits, target), F.cross_entropy(logits, labels))


def test_class_weights_ignore_index_and_smoothing_follow_torch():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, 2, generator=g)  # 3D
    labels = torch.randint(0, 3, (2, 4, 4, 2), generator=g)
    labels[0, 0] = 7
    weight = [0.2, 1.0, 3.0]
    ours = CrossEntropyLoss(weight=weight, ignore_index=7, label_smoothing=0.1)(logits, labels)
    ref = F.cross_entropy(logits, labels, weight=torch.tensor(weight), ignore_index=7, label_smoothing=0.1)
    torch.testing.assert_close(ours, ref)
    none = CrossEntropyLoss(ignore_index=7, reduction="none")(logits, labels)
    assert none.shape == labels.shape
    assert float(none[0, 0].abs().sum()) == 0.0
    torch.testing.assert_close(none, F.cross_entropy(logits, labels, ignore_index=7, reduction="none"))


def test_all_pixels_ignored_gives_zero_not_nan():
    loss = CrossEntropyLoss(ignore_index=5)(torch.randn(1, 2, 2, 2), torch.full((1, 2, 2), 5))
    assert loss.item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    logits = (torch.randn(2, 3, 4, 4) * 20).to(dtype)
    labels = torch.randint(0, 3, (2, 4, 4))
    out = CrossEntropyLoss()(logits, labels)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, F.cross_entropy(logits.float(), labels))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"weight": [1.0, -1.0]}, ValueError, "weight must be a 1-D sequence"),
        ({"weight": [[1.0]]}, ValueError, "weight must be a 1-D sequence"),
        ({"weight": "abc"}, TypeError, "weight must be None or a sequence"),
        ({"ignore_index": 1.5}, TypeError, "ignore_index must be None or an int"),
        ({"reduction": "avg"}, ValueError, "reduction must be one of"),
        ({"label_smoothing": 1.0}, ValueError, r"label_smoothing must be in \[0, 1\)"),
    ],
)
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        CrossEntropyLoss(**kwargs)


def test_weight_length_is_checked_against_k():
    with pytest.raises(ValueError, match="weight has 2 entries but logits have K=3"):
        CrossEntropyLoss(weight=[1.0, 2.0])(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long))


@PROPERTY_SETTINGS
@given(cases())
def test_properties(case):
    check_common_properties(lambda **kw: CrossEntropyLoss(**kw), case)
