"""Tests of NeuroIoU's loss side: statistics, the sampled closed-form surrogate, save/load and the loss."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from _loss_properties import PROPERTY_SETTINGS, cases, check_common_properties
from hypothesis import given

from medseg.losses import NeuroIoULoss
from medseg.losses import neuroiou as nio
from medseg.losses.functional import iou_loss_from_counts


def _hand_logits():
    # K = 2, one image of 1 x 4 pixels; logits (0, z) give p_1 = sigmoid(z) = (0.9, 0.6, 0.3, 0.2)
    p1 = torch.tensor([0.9, 0.6, 0.3, 0.2], dtype=torch.float64)
    z = torch.log(p1 / (1 - p1))
    logits = torch.stack([torch.zeros(4, dtype=torch.float64), z])[None, :, None, :]  # (1, 2, 1, 4)
    labels = torch.tensor([[[1, 0, 1, 0]]])
    return logits, labels


def test_statistics_hand_computed():
    # predicted = (1, 1, 0, 0). Class 1: TP = {0}, FP = {1}, FN = {2}: sums 0.9, 0.6, 1 - 0.3 = 0.7.
    # Class 0 (p_0 = 0.1, 0.4, 0.7, 0.8; label 0 at pixels 1, 3; predicted 0 at 2, 3):
    # TP = {3}: 0.8, FP = {2}: 0.7, FN = {1}: 1 - 0.4 = 0.6. Every IoU loss is 2/3.
    logits, labels = _hand_logits()
    x, y, defined = nio.neuroiou_statistics(logits, labels, features="prob6", normalize="none")
    expected_sums = torch.tensor([[0.8, 0.7, 0.6], [0.9, 0.6, 0.7]], dtype=torch.float64)
    torch.testing.assert_close(x[0, :, :3], expected_sums)
    torch.testing.assert_close(x[0, :, 3:], expected_sums)  # one pixel per set: mean = sum
    torch.testing.assert_close(y, torch.full((1, 2), 2 / 3, dtype=torch.float64))
    assert bool(defined.all())
    x_total, _, _ = nio.neuroiou_statistics(logits, labels, features="prob3", normalize="total")
    torch.testing.assert_close(x_total[0], expected_sums / expected_sums.sum(1, keepdim=True))
    x_pix, _, _ = nio.neuroiou_statistics(logits, labels, features="prob3", normalize="pixels")
    torch.testing.assert_close(x_pix[0], expected_sums / 4)


def test_hinge_statistics_hand_computed():
    # multi-class hinge max(0, 1 + s_other - s_true), z = logit(p_1): pixel 0 (true 1): 1 - ln 9 < 0 -> 0;
    # pixel 1 (true 0): 1 + ln 1.5 ; pixel 2 (true 1): 1 - ln(3/7) ; pixel 3 (true 0): 1 + ln(1/4) < 0 -> 0
    logits, labels = _hand_logits()
    x, _, _ = nio.neuroiou_statistics(logits, labels, features="hinge", normalize="none")
    h1, h2 = 1 + math.log(1.5), 1 - math.log(3 / 7)
    torch.testing.assert_close(x[0, 1], torch.tensor([0.0, h1, h2], dtype=torch.float64))  # class 1: TP, FP, FN
    torch.testing.assert_close(x[0, 0], torch.tensor([0.0, h2, h1], dtype=torch.float64))  # class 0


def test_iou_loss_from_counts_and_undefined_classes():
    tp, fp, fn = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([1.0, 2.0, 0.0]), torch.tensor([0.0, 0.0, 0.0])
    torch.testing.assert_close(iou_loss_from_counts(tp, fp, fn), torch.tensor([0.25, 1.0, 0.0]))
    logits = torch.tensor([[[[5.0, 5.0]], [[0.0, 0.0]], [[-5.0, -5.0]]]])  # predicts class 0 everywhere
    _, _, defined = nio.neuroiou_statistics(logits, torch.tensor([[[0, 1]]]))
    assert defined.tolist() == [[True, True, False]]  # class 2: neither labelled nor predicted


def test_sampler_is_deterministic_and_sane():
    x1, y1 = nio.sample_neuroiou_statistics(512, features="prob6", seed=3)
    x2, y2 = nio.sample_neuroiou_statistics(512, features="prob6", seed=3)
    assert torch.equal(x1, x2)
    assert torch.equal(y1, y2)
    assert not torch.equal(nio.sample_neuroiou_statistics(512, features="prob6", seed=4)[0], x1)
    assert x1.shape == (512, 6)
    assert float(y1.min()) >= 0.0
    assert float(y1.max()) <= 1.0
    assert bool(((y1 == 0) & (x1[:, 1] == 0) & (x1[:, 2] == 0)).any())  # perfect predictions are sampled
    torch.testing.assert_close(x1[:, :3].sum(1), torch.ones(512))  # "total": the three sums add to 1


def test_default_surrogate_is_deterministic_and_accurate():
    nio._default_surrogate_dict.cache_clear()
    first = nio.default_neuroiou_surrogate().to_dict()
    nio._default_surrogate_dict.cache_clear()
    second = nio.default_neuroiou_surrogate().to_dict()
    assert first == second
    model = nio.default_neuroiou_surrogate()
    x, y = nio.sample_neuroiou_statistics(2048, seed=123)  # held out: another seed
    rmse = float(torch.sqrt(F.mse_loss(model(x), y)))
    assert rmse < 0.05  # 3 inputs: about 0.035 (the sums do not determine the counts)
    x6, y6 = nio.sample_neuroiou_statistics(2048, features="prob6", seed=123)
    assert float(torch.sqrt(F.mse_loss(nio.default_neuroiou_surrogate("prob6")(x6), y6))) < 0.02


def test_save_load_round_trip_and_loss_from_path(tmp_path):
    surrogate = nio.default_neuroiou_surrogate()
    path = tmp_path / "surrogate.json"
    surrogate.save(path)
    loaded = nio.NeuroIoUSurrogate.load(path)
    x, _ = nio.sample_neuroiou_statistics(64, seed=9)
    assert torch.equal(loaded(x), surrogate(x))
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(2, 3, 6, 6, generator=g), torch.randint(0, 3, (2, 6, 6), generator=g)
    torch.testing.assert_close(NeuroIoULoss(str(path))(logits, labels), NeuroIoULoss()(logits, labels))
    with pytest.raises(ValueError, match="features='hinge' does not match the surrogate"):
        NeuroIoULoss(str(path), features="hinge")
    with pytest.raises(ValueError, match="features must be one of"):
        NeuroIoULoss(features="prob4")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        NeuroIoULoss(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        NeuroIoULoss(str(tmp_path / "bad.json"))
    (tmp_path / "other.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(ValueError, match="not a NeuroIoU surrogate"):
        nio.NeuroIoUSurrogate.load(tmp_path / "other.json")
    with pytest.raises(TypeError, match="surrogate must be None"):
        NeuroIoULoss(surrogate=3)


def test_gradient_directions_follow_the_paper():
    # Sec. 3.2: the loss raises the probabilities of TP and FN pixels and lowers those of FP pixels. For class 1
    # of the hand case: pixel 0 is TP, 1 is FP, 2 is FN; d loss / d (s_1 - s_0) must be <= 0, > 0, < 0.
    logits, labels = _hand_logits()
    logits = logits.float().requires_grad_(True)
    NeuroIoULoss()(logits, labels).backward()
    margin_grad = (logits.grad[0, 1, 0] - logits.grad[0, 0, 0]) / 2
    assert float(margin_grad[0]) <= 0
    assert float(margin_grad[1]) > 0
    assert float(margin_grad[2]) < 0


def test_ignore_index_and_reduction_none():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 5, generator=g)
    labels = torch.randint(0, 3, (2, 4, 5), generator=g)
    masked = labels.clone()
    masked[..., 4] = 255
    loss = NeuroIoULoss(ignore_index=255, reduction="none")
    out = loss(logits, masked)
    assert out.shape == (2,)
    torch.testing.assert_close(out, NeuroIoULoss(reduction="none")(logits[..., :4], labels[..., :4]))


@PROPERTY_SETTINGS
@given(cases())
def test_properties(case):
    # a learned surrogate: values and the perfect-prediction score are right up to its fitting error
    check_common_properties(
        lambda **kw: NeuroIoULoss(**kw), case, lower=-0.05, perfect_tol=0.05, perfect_slack=0.05, atol=1e-4
    )
