"""Tests of the MONAI-backed Dice family: ``DiceLoss``, ``GeneralizedDiceLoss``, ``TverskyLoss``."""

from __future__ import annotations

import monai.losses
import pytest
import torch
import torch.nn.functional as F
from _loss_properties import PROPERTY_SETTINGS, cases, check_common_properties
from hypothesis import given

from medseg.losses import DiceLoss, GeneralizedDiceLoss, TverskyLoss


def _case(seed=0, shape=(2, 3, 5, 4)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(*shape, generator=g) * 3
    labels = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return logits, labels


def test_hand_computed_dice():
    # probabilities given directly (softmax=False): one image, class channel 0 only matters for the arithmetic
    # class 0: p = (1, 0.5), g = (1, 0): 1 - 2*1 / (1.5 + 1) = 0.2 ; class 1: p = (0, 0.5), g = (0, 1):
    # 1 - 2*0.5 / (0.5 + 1) = 1/3 ; mean = (0.2 + 1/3) / 2 = 0.26667 (smoothing 0)
    probs = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
    labels = torch.tensor([[[0, 1]]])
    loss = DiceLoss(softmax=False, smooth_nr=0.0, smooth_dr=0.0)(probs, labels)
    assert loss.item() == pytest.approx((0.2 + 1 / 3) / 2, rel=1e-6)


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [True, False])
def test_dice_matches_monai(include_background, batch):
    logits, labels = _case(1, (2, 3, 4, 4, 3))
    ref = monai.losses.DiceLoss(
        include_background=include_background, to_onehot_y=True, softmax=True, batch=batch, squared_pred=True
    )(logits, labels[:, None])
    ours = DiceLoss(include_background=include_background, to_onehot_y=True, batch=batch, squared_pred=True)(
        logits, labels[:, None]
    )
    torch.testing.assert_close(ours, ref)


def test_ignore_index_matches_monai_and_cropping():
    logits, labels = _case(2, (1, 3, 4, 6))
    labels[..., 4:] = 255
    ours = DiceLoss(ignore_index=255)(logits, labels)
    ref = monai.losses.DiceLoss(to_onehot_y=True, softmax=True, ignore_index=255)(logits, labels[:, None])
    torch.testing.assert_close(ours, ref)
    # removing the ignored columns altogether gives the same loss (softmax is per pixel)
    torch.testing.assert_close(ours, DiceLoss()(logits[..., :4], labels[..., :4]))


def test_generalized_dice_matches_monai():
    logits, labels = _case(3)
    for w_type in ("square", "simple", "uniform"):
        ref = monai.losses.GeneralizedDiceLoss(to_onehot_y=True, softmax=True, w_type=w_type)(logits, labels[:, None])
        torch.testing.assert_close(GeneralizedDiceLoss(w_type=w_type)(logits, labels), ref)


def test_tversky_generalises_dice():
    logits, labels = _case(4)
    # alpha = beta = 1/2 is exactly Dice: TP / (TP + (FP + FN)/2) = 2TP / (2TP + FP + FN)
    torch.testing.assert_close(TverskyLoss(alpha=0.5, beta=0.5)(logits, labels), DiceLoss()(logits, labels))
    ref = monai.losses.TverskyLoss(to_onehot_y=True, softmax=True, alpha=0.3, beta=0.7)(logits, labels[:, None])
    torch.testing.assert_close(TverskyLoss(alpha=0.3, beta=0.7)(logits, labels), ref)


def test_hand_computed_tversky():
    # class 0 of the hand case above: TP = 1, FP = 0.5, FN = 0 ; class 1: TP = 0.5, FP = 0, FN = 0.5
    # alpha = 0.3, beta = 0.7: class 0: 1 - 1/(1 + 0.15) ; class 1: 1 - 0.5/(0.5 + 0.35)
    probs = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
    labels = torch.tensor([[[0, 1]]])
    expected = ((1 - 1 / 1.15) + (1 - 0.5 / 0.85)) / 2
    loss = TverskyLoss(softmax=False, alpha=0.3, beta=0.7, smooth_nr=0.0, smooth_dr=0.0)(probs, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_reduction_none_keeps_monai_shape():
    logits, labels = _case(5, (2, 3, 4, 4, 4))
    assert DiceLoss(reduction="none")(logits, labels).shape == (2, 3, 1, 1, 1)
    assert DiceLoss(reduction="none", include_background=False)(logits, labels).shape == (2, 2, 1, 1, 1)


def test_sigmoid_option():
    logits, labels = _case(6)
    onehot = F.one_hot(labels, 3).movedim(-1, 1)
    ref = monai.losses.DiceLoss(sigmoid=True)(logits, onehot)
    torch.testing.assert_close(DiceLoss(sigmoid=True)(logits, onehot), ref)


def test_to_onehot_y_and_activation_validation():
    logits, labels = _case(7)
    with pytest.raises(ValueError, match="to_onehot_y=True expects integer labels"):
        DiceLoss(to_onehot_y=True)(logits, F.one_hot(labels, 3).movedim(-1, 1))
    with pytest.raises(ValueError, match="to_onehot_y=False expects a one-hot target"):
        DiceLoss(to_onehot_y=False)(logits, labels[:, None])
    with pytest.raises(ValueError, match="mutually exclusive"):
        DiceLoss(sigmoid=True, softmax=True)
    with pytest.raises(TypeError, match="include_background must be True or False"):
        DiceLoss(include_background=1)
    with pytest.raises(ValueError, match="smooth_nr must be >= 0"):
        DiceLoss(smooth_nr=-1.0)
    with pytest.raises(ValueError, match="w_type must be one of"):
        GeneralizedDiceLoss(w_type="cubic")
    with pytest.raises(ValueError, match="alpha and beta are both 0"):
        TverskyLoss(alpha=0.0, beta=0.0)
    with pytest.raises(ValueError, match="weight must be"):
        DiceLoss(weight=[-1.0, 1.0])


@PROPERTY_SETTINGS
@given(cases())
def test_dice_properties(case):
    check_common_properties(lambda **kw: DiceLoss(**kw), case, upper=1.0)


@PROPERTY_SETTINGS
@given(cases())
def test_generalized_dice_properties(case):
    check_common_properties(lambda **kw: GeneralizedDiceLoss(**kw), case, upper=1.0)


@PROPERTY_SETTINGS
@given(cases())
def test_tversky_properties(case):
    check_common_properties(lambda **kw: TverskyLoss(alpha=0.3, beta=0.7, **kw), case, upper=1.0)


def test_batch_none_shape_matches_monai():
    from medseg.losses import NoiseRobustDiceLoss, SoftIoULoss

    logits, labels = _case(8)
    ref = monai.losses.DiceLoss(to_onehot_y=True, softmax=True, batch=True, reduction="none")(logits, labels[:, None])
    assert DiceLoss(batch=True, reduction="none")(logits, labels).shape == ref.shape == (3, 1, 1)
    assert SoftIoULoss(batch=True, reduction="none")(logits, labels).shape == (3, 1, 1)
    assert NoiseRobustDiceLoss(batch=True, reduction="none")(logits, labels).shape == (3, 1, 1)
