"""Tests of ``medseg.losses.LovaszSoftmaxLoss`` and ``functional.lovasz_softmax`` (Berman et al., CVPR 2018)."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from _loss_properties import PROPERTY_SETTINGS, cases, check_common_properties, perfect_logits
from hypothesis import given
from hypothesis import strategies as st

from medseg.losses import LovaszSoftmaxLoss
from medseg.losses.functional import lovasz_softmax


def test_hand_computed_single_class():
    # g = (1, 1, 0), p = (0.8, 0.4, 0.3) -> errors m = (0.2, 0.6, 0.3); decreasing order: pixel 1, 2, 0.
    # Jaccard loss of the growing error sets: {1}: 1/|{0,1}| = 1/2 ; {1,2}: 2/|{0,1,2}| = 2/3 ; {1,2,0}: 3/3 = 1
    # Lovász extension: 0.6 * 1/2 + 0.3 * (2/3 - 1/2) + 0.2 * (1 - 2/3) = 0.3 + 0.05 + 0.0667 = 0.41667
    probs = torch.tensor([[[[0.8, 0.4, 0.3]]]], dtype=torch.float64)
    target = torch.tensor([[[[1.0, 1.0, 0.0]]]], dtype=torch.float64)
    assert lovasz_softmax(probs, target).item() == pytest.approx(0.3 + 0.05 + 0.2 / 3, rel=1e-12)


def _jaccard_loss_of_set(errors_set, gt_set):
    return len(errors_set) / len(gt_set | errors_set) if errors_set else 0.0


def _lovasz_by_level_sets(m, gt):
    """Independent form: integral over t in [0, 1] of Delta({i : m_i >= t}) (Choquet integral), exactly."""
    gt_set = {i for i, v in enumerate(gt) if v > 0}
    levels = sorted(set(m) | {0.0}, reverse=True)
    total = 0.0
    for hi, lo in itertools.pairwise(levels):
        total += (hi - lo) * _jaccard_loss_of_set({i for i, v in enumerate(m) if v >= hi}, gt_set)
    return total


@given(st.integers(0, 2**31 - 1), st.integers(1, 12))
def test_matches_the_level_set_form_of_the_lovasz_extension(seed, n):
    g = torch.Generator().manual_seed(seed)
    probs = torch.rand(1, 1, 1, n, generator=g, dtype=torch.float64)
    probs = torch.round(probs * 4) / 4  # ties on purpose
    target = torch.randint(0, 2, (1, 1, 1, n), generator=g).double()
    errors = (target - probs).abs().reshape(-1).tolist()
    expected = _lovasz_by_level_sets(errors, target.reshape(-1).tolist())
    assert lovasz_softmax(probs, target).item() == pytest.approx(expected, abs=1e-12)


def test_hard_predictions_give_one_minus_iou_per_class():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (2, 5, 6), generator=g)
    predicted = torch.randint(0, 3, (2, 5, 6), generator=g)
    logits = perfect_logits(predicted, 3)
    loss = LovaszSoftmaxLoss(classes="all", reduction="none")(logits, labels)
    pred_1h = F.one_hot(predicted, 3).bool()
    gt_1h = F.one_hot(labels, 3).bool()
    inter = (pred_1h & gt_1h).sum((1, 2)).double()
    union = (pred_1h | gt_1h).sum((1, 2)).double()
    iou = torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))
    torch.testing.assert_close(loss, (1 - iou).mean(1), atol=1e-9, rtol=0)


def test_present_versus_all_classes():
    # one image, K = 3, class 2 absent: "all" adds its Lovász value, which is max_i p_2(i) (any error set has
    # Jaccard loss 1 when the class is absent), and averages over 3 instead of 2 classes
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 3, 4, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 2, (1, 4, 4), generator=g)
    present = LovaszSoftmaxLoss(classes="present")(logits, labels)
    every = LovaszSoftmaxLoss(classes="all")(logits, labels)
    p2_max = torch.softmax(logits, 1)[0, 2].max()
    torch.testing.assert_close(every, (2 * present + p2_max) / 3)


def test_batch_mode_is_one_big_image():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 4, 5), generator=g)
    batch = LovaszSoftmaxLoss(per_image=False)(logits, labels)
    joined = LovaszSoftmaxLoss()(
        torch.cat([logits[0], logits[1]], -1)[None], torch.cat([labels[0], labels[1]], -1)[None]
    )
    torch.testing.assert_close(batch, joined)


def test_ignore_index_equals_removing_the_pixels():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 4, 5), generator=g)
    masked = labels.clone()
    masked[:, :, 3:] = 255
    for per_image in (True, False):
        ours = LovaszSoftmaxLoss(per_image=per_image, ignore_index=255)(logits, masked)
        ref = LovaszSoftmaxLoss(per_image=per_image)(logits[..., :3], labels[..., :3])
        torch.testing.assert_close(ours, ref)
    # an image that is entirely ignored contributes 0
    masked[0] = 255
    none = LovaszSoftmaxLoss(ignore_index=255, reduction="none", classes="all")(logits, masked)
    assert none[0].item() == 0.0


def test_bad_arguments():
    with pytest.raises(ValueError, match="classes must be one of"):
        LovaszSoftmaxLoss(classes="some")
    with pytest.raises(TypeError, match="per_image must be True or False"):
        LovaszSoftmaxLoss(per_image="yes")


@PROPERTY_SETTINGS
@given(cases())
def test_properties(case):
    check_common_properties(lambda **kw: LovaszSoftmaxLoss(**kw), case, upper=1.0)


@PROPERTY_SETTINGS
@given(cases())
def test_properties_batch_all_classes(case):
    check_common_properties(lambda **kw: LovaszSoftmaxLoss(per_image=False, classes="all", **kw), case, upper=1.0)
