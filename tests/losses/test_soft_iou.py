"""Tests of ``medseg.losses.SoftIoULoss`` (Rahman–Wang soft IoU, registry name ``soft_iou``)."""

from __future__ import annotations

import monai.losses
import pytest
import torch
import torch.nn.functional as F
from _loss_properties import PROPERTY_SETTINGS, cases, check_common_properties
from hypothesis import given

from medseg.losses import SoftIoULoss
from medseg.losses.functional import soft_iou


def test_hand_computed_value():
    # class 0: p = (1, 0.5), g = (1, 0): sum pg = 1, sum (p + g - pg) = (1 + 1 - 1) + (0.5) = 1.5 -> 1 - 1/1.5
    # class 1: p = (0, 0.5), g = (0, 1): sum pg = 0.5, union = 0 + (0.5 + 1 - 0.5) = 1 -> 1 - 0.5 = 0.5
    probs = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
    labels = torch.tensor([[[0, 1]]])
    loss = SoftIoULoss(softmax=False, smooth_nr=0.0, smooth_dr=0.0)(probs, labels)
    assert loss.item() == pytest.approx(((1 - 1 / 1.5) + 0.5) / 2, rel=1e-6)


def test_hard_predictions_give_one_minus_iou():
    g = torch.Generator().manual_seed(0)
    pred_labels = torch.randint(0, 3, (2, 6, 5), generator=g)
    labels = torch.randint(0, 3, (2, 6, 5), generator=g)
    probs = F.one_hot(pred_labels, 3).movedim(-1, 1).double()
    onehot = F.one_hot(labels, 3).movedim(-1, 1).double()
    inter = (probs * onehot).sum((2, 3))
    union = ((probs + onehot) > 0).double().sum((2, 3))
    expected = 1 - inter / union
    torch.testing.assert_close(soft_iou(probs, onehot, smooth_nr=0.0, smooth_dr=0.0), expected)


def test_matches_monai_jaccard_dice():
    # MONAI's jaccard Dice: 1 - (2I + s)/(2(P + G - I) + s) = 1 - (I + s/2)/(P + G - I + s/2)
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, 3, generator=g)
    labels = torch.randint(0, 3, (2, 1, 4, 4, 3), generator=g)
    ref = monai.losses.DiceLoss(to_onehot_y=True, softmax=True, jaccard=True, smooth_nr=2e-5, smooth_dr=2e-5)
    torch.testing.assert_close(SoftIoULoss()(logits, labels), ref(logits, labels))


def test_batch_and_ignore_index():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 2, 4, 4, generator=g)
    labels = torch.randint(0, 2, (2, 4, 4), generator=g)
    probs = torch.softmax(logits, 1)
    onehot = F.one_hot(labels, 2).movedim(-1, 1).float()
    inter = (probs * onehot).sum((0, 2, 3))
    union = (probs + onehot - probs * onehot).sum((0, 2, 3))
    expected = (1 - inter / union).mean()
    torch.testing.assert_close(SoftIoULoss(batch=True, smooth_nr=0.0, smooth_dr=0.0)(logits, labels), expected)
    masked = labels.clone()
    masked[:, 0] = 7
    torch.testing.assert_close(
        SoftIoULoss(ignore_index=7)(logits, masked), SoftIoULoss()(logits[:, :, 1:], labels[:, 1:])
    )


@PROPERTY_SETTINGS
@given(cases())
def test_properties(case):
    check_common_properties(lambda **kw: SoftIoULoss(**kw), case, upper=1.0)
