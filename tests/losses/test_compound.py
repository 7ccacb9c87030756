"""MC + Dice / MC + Tversky compounds (Li, Yu, Zhang, Table 5), checked against MONAI's own losses."""

from __future__ import annotations

import pytest
import torch
from monai.losses import DiceLoss, TverskyLoss

from medseg.losses import DiceMCLoss, MarginCalibrationLoss, TverskyMCLoss, create_loss

COUNTS = [600.0, 300.0, 100.0]


def _case(shape=(2, 3, 6, 5), seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(*shape, generator=g, dtype=torch.float64) * 3).to(dtype)
    labels = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return logits, labels


def _mc(**kwargs):
    return MarginCalibrationLoss(COUNTS, backend="eager", **kwargs)


@pytest.mark.parametrize("shape", [(2, 3, 6, 5), (1, 3, 3, 4, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize(("lambda_mc", "lambda_region"), [(1.0, 1.0), (0.5, 2.0), (0.0, 1.0), (1.0, 0.0)])
def test_dice_mc_is_weighted_sum(shape, lambda_mc, lambda_region):
    logits, labels = _case(shape)
    loss = DiceMCLoss(COUNTS, lambda_mc=lambda_mc, lambda_dice=lambda_region, backend="eager")
    # MONAI computes softmax and one-hot itself here: an independent path to the region term
    dice = DiceLoss(softmax=True, to_onehot_y=True)(logits, labels[:, None])
    expected = lambda_mc * _mc()(logits, labels) + lambda_region * dice
    torch.testing.assert_close(loss(logits, labels), expected)
    assert loss.lambda_dice == lambda_region


@pytest.mark.parametrize("shape", [(2, 3, 6, 5), (1, 3, 3, 4, 5)], ids=["2d", "3d"])
def test_tversky_mc_defaults_match_the_paper_setting(shape):
    logits, labels = _case(shape, seed=1)
    loss = TverskyMCLoss(COUNTS, backend="eager")
    tversky = TverskyLoss(softmax=True, to_onehot_y=True, alpha=0.3, beta=0.7)(logits, labels[:, None])
    torch.testing.assert_close(loss(logits, labels), _mc()(logits, labels) + tversky)
    assert loss.lambda_tversky == 1.0


def test_tversky_options_and_background():
    logits, labels = _case(seed=2)
    loss = TverskyMCLoss(
        COUNTS, lambda_mc=2.0, lambda_tversky=0.5, alpha=0.6, beta=0.4, include_background=False, backend="eager"
    )
    tversky = TverskyLoss(softmax=True, to_onehot_y=True, alpha=0.6, beta=0.4, include_background=False)
    expected = 2.0 * _mc()(logits, labels) + 0.5 * tversky(logits, labels[:, None])
    torch.testing.assert_close(loss(logits, labels), expected)


def test_mc_options_reach_the_mc_term():
    logits, labels = _case(seed=3)
    loss = DiceMCLoss(COUNTS, lambda_dice=0.0, variant="reference", tau=3.0, v=2.0, backend="eager")
    expected = MarginCalibrationLoss(COUNTS, variant="reference", tau=3.0, v=2.0, backend="eager")(logits, labels)
    torch.testing.assert_close(loss(logits, labels), expected)
    rho_neg, rho_pos = torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.1, 0.2, 0.3])
    by_offsets = TverskyMCLoss(rho_neg=rho_neg, rho_pos=rho_pos, lambda_tversky=0.0, backend="eager")
    expected = MarginCalibrationLoss(rho_neg=rho_neg, rho_pos=rho_pos, backend="eager")(logits, labels)
    torch.testing.assert_close(by_offsets(logits, labels), expected)


@pytest.mark.parametrize("cls", [DiceMCLoss, TverskyMCLoss], ids=["dice_mc", "tversky_mc"])
def test_ignore_index_excludes_pixels_from_both_terms(cls):
    # ignoring the right half of every image gives the loss of the left half alone: ignored pixels add nothing to
    # the MC mean or to the soft Dice/Tversky sums
    logits, labels = _case((2, 3, 4, 6), seed=4)
    target = labels.clone()
    target[..., 3:] = 9
    full = cls(COUNTS, ignore_index=9, backend="eager")(logits, target)
    left = cls(COUNTS, backend="eager")(logits[..., :3], labels[..., :3])
    torch.testing.assert_close(full, left)


@pytest.mark.parametrize("name", ["dice_mc", "tversky_mc"])
def test_registry_backward_and_label_forms(name):
    loss = create_loss(name, class_counts=COUNTS, backend="eager")
    logits, labels = _case(seed=5)
    x = logits.clone().requires_grad_(True)
    value = loss(x, labels[:, None].float())
    value.backward()
    assert value.ndim == 0
    assert torch.isfinite(value)
    assert bool(torch.isfinite(x.grad).all())
    assert float(x.grad.abs().sum()) > 0
    onehot = torch.nn.functional.one_hot(labels, 3).movedim(-1, 1)
    torch.testing.assert_close(loss(logits, onehot), value.detach())


def test_sum_reduction_and_half_precision():
    logits, labels = _case(seed=6)
    loss = DiceMCLoss(COUNTS, reduction="sum", backend="eager")
    dice = DiceLoss(softmax=True, to_onehot_y=True, reduction="sum")(logits, labels[:, None])
    torch.testing.assert_close(loss(logits, labels), _mc(reduction="sum")(logits, labels) + dice)
    half = DiceMCLoss(COUNTS, backend="eager")(logits.half(), labels)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, DiceMCLoss(COUNTS, backend="eager")(logits.half().float(), labels))


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (DiceMCLoss, {"reduction": "none"}, "reduction='none'"),
        (DiceMCLoss, {"lambda_mc": -1.0}, "lambda_mc"),
        (DiceMCLoss, {"lambda_dice": float("nan")}, "lambda_dice"),
        (DiceMCLoss, {"lambda_mc": 0.0, "lambda_dice": 0.0}, "both 0"),
        (TverskyMCLoss, {"alpha": -0.3}, "alpha"),
        (TverskyMCLoss, {"lambda_tversky": "x"}, "lambda_tversky"),
        (TverskyMCLoss, {"variant": "authors"}, "variant"),
    ],
    ids=["none", "neg-mc", "nan-dice", "both-zero", "alpha", "str-weight", "variant"],
)
def test_bad_arguments(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(COUNTS, **kwargs)


def test_missing_counts_names_the_argument():
    with pytest.raises(ValueError, match="class_counts"):
        DiceMCLoss()
