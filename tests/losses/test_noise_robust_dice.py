"""Tests of ``medseg.losses.NoiseRobustDiceLoss`` (COPLE-Net's NR-Dice, registry name ``noise_robust_dice``)."""

from __future__ import annotations

import math

import monai.losses
import pytest
import torch
import torch.nn.functional as F
from _loss_properties import PROPERTY_SETTINGS, cases, check_common_properties
from hypothesis import given
from hypothesis import strategies as st

from medseg.losses import NoiseRobustDiceLoss, create_loss
from medseg.losses.functional import noise_robust_dice, noise_robust_dice_upper_bound


def test_hand_computed_value():
    # class 0: p = (1, 0.5), g = (1, 0): (0 + 0.5^1.5) / (1 + 0.25 + 1) ; class 1: p = (0, 0.5), g = (0, 1):
    # (0 + 0.5^1.5) / (0.25 + 1)
    probs = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
    labels = torch.tensor([[[0, 1]]])
    expected = (0.5**1.5 / 2.25 + 0.5**1.5 / 1.25) / 2
    loss = NoiseRobustDiceLoss(softmax=False, eps=1e-12)(probs, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_unsquared_denominator_option():
    probs = torch.tensor([[[[1.0, 0.5]], [[0.0, 0.5]]]])
    labels = torch.tensor([[[0, 1]]])
    expected = (0.5**1.5 / 2.5 + 0.5**1.5 / 1.5) / 2  # denominators sum p + sum g
    loss = NoiseRobustDiceLoss(softmax=False, eps=1e-12, squared_pred=False)(probs, labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_gamma_two_is_squared_dice_without_numerator_smoothing():
    # STYLE.md: with gamma = 2 the numerator is sum p^2 + sum g^2 - 2 sum pg, so NR-Dice equals MONAI's
    # DiceLoss(squared_pred=True, smooth_nr=0) minus eps / (sum p^2 + sum g^2 + eps)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 5, 2, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 1, 5, 5, 2), generator=g)
    eps = 1e-5
    dice = monai.losses.DiceLoss(
        to_onehot_y=True, softmax=True, squared_pred=True, smooth_nr=0.0, smooth_dr=eps, reduction="none"
    )(logits, labels).reshape(2, 3)
    nr = NoiseRobustDiceLoss(gamma=2.0, eps=eps, reduction="none")(logits, labels).reshape(2, 3)
    probs = torch.softmax(logits, 1)
    onehot = F.one_hot(labels[:, 0], 3).movedim(-1, 1).double()
    denominator = (probs**2).sum((2, 3, 4)) + (onehot**2).sum((2, 3, 4)) + eps
    torch.testing.assert_close(nr, dice - eps / denominator)
    assert float((nr - dice).abs().max()) <= float((eps / (denominator - eps)).max())


def test_preset_gamma2_variant():
    loss = create_loss("nr_dice_gamma2")
    assert isinstance(loss, NoiseRobustDiceLoss)
    assert loss.gamma == 2.0
    with pytest.raises(TypeError, match="fixes gamma=2"):
        create_loss("nr_dice_gamma2", gamma=1.5)


@pytest.mark.parametrize("gamma", [1.0, 1.5, 1.9])
def test_upper_bound_is_attained(gamma):
    # g = 0 everywhere and every p = sqrt(S* / N) with S* = a eps / (1 - a), a = gamma / 2
    n, eps = 64, 1e-3
    a = gamma / 2
    p = math.sqrt(a * eps / (1 - a) / n)
    probs = torch.full((1, 1, 8, 8), p, dtype=torch.float64)
    value = noise_robust_dice(probs, torch.zeros_like(probs), gamma=gamma, eps=eps).item()
    bound = noise_robust_dice_upper_bound(n, gamma=gamma, eps=eps)
    assert value == pytest.approx(bound, rel=1e-9)
    assert bound > 1.0  # NR-Dice with gamma < 2 is not bounded by 1


@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from([1.0, 1.5, 2.0, 3.0]),
    st.sampled_from([1e-5, 1e-2]),
    st.sampled_from(["uniform", "tiny", "binary"]),
)
def test_functional_never_exceeds_its_bound(seed, gamma, eps, mode):
    g = torch.Generator().manual_seed(seed)
    shape = (2, 2, 4, 4)
    if mode == "binary":
        probs = torch.randint(0, 2, shape, generator=g).double()
    else:
        probs = torch.rand(shape, generator=g, dtype=torch.float64) * (1e-3 if mode == "tiny" else 1.0)
    target = torch.randint(0, 2, shape, generator=g).double() * torch.randint(0, 2, (1,), generator=g)
    values = noise_robust_dice(probs, target, gamma=gamma, eps=eps)
    assert float(values.max()) <= noise_robust_dice_upper_bound(16, gamma=gamma, eps=eps) * (1 + 1e-9)


def test_bad_arguments():
    with pytest.raises(ValueError, match="gamma must be > 0"):
        NoiseRobustDiceLoss(gamma=0.0)
    with pytest.raises(ValueError, match="eps must be > 0"):
        NoiseRobustDiceLoss(eps=0.0)


def _nr_bound(case):
    n = math.prod(case.logits.shape[2:])
    return noise_robust_dice_upper_bound(n, gamma=1.5, eps=1e-5)


@PROPERTY_SETTINGS
@given(cases())
def test_properties(case):
    check_common_properties(lambda **kw: NoiseRobustDiceLoss(**kw), case, upper=_nr_bound)


@pytest.mark.parametrize("gamma", [0.7, 1.5, 2.0, 2.5])
@pytest.mark.parametrize("batch", [False, True])
def test_numerator_gradient_passes_gradcheck(gamma, batch):
    # the numerator's gradient is formed by hand (one saved power); check it against finite differences in float64
    from medseg.losses.functional import noise_robust_dice

    g = torch.Generator().manual_seed(int(gamma * 10))
    pred = (torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    target = (torch.rand(2, 3, 4, 5, generator=g, dtype=torch.float64) > 0.5).double()
    assert torch.autograd.gradcheck(lambda p: noise_robust_dice(p, target, gamma=gamma, batch=batch), (pred,))
