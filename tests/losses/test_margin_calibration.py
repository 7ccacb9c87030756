"""Margin calibration: offsets (Algorithm 1), the fused loss/gradient kernel, and its properties.

Three independent checks of the loss: hand-computed values on one pixel, an autograd composition written here
from the paper's formulas (``_mc_autograd``, used only as a test reference), and ``torch.autograd.gradcheck`` of
the analytic gradient in float64. The kernel's two implementations (``mc_eager`` and ``mc_fused``, the one
``torch.compile`` compiles) are compared with each other eagerly here, and compiled in the ``slow`` tests (a
compile takes minutes on a busy 2-core machine).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from medseg.losses import LOSSES, MarginCalibrationLoss, _mc_kernel, create_loss
from medseg.losses import margin_offsets as np_margin_offsets

# ----------------------------------------------------------------------------------------------------------------
# Independent reference: a plain autograd composition of Eq. (8), Algorithm 2 and Eqs. (9), (17)-(18).


def _mc_autograd(logits, labels, rho_neg, rho_pos, *, variant="paper", surrogate="log", valid=None, reduction="mean"):
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    k = x.shape[1]
    view = (1, k) + (1,) * (x.ndim - 2)
    rn = torch.as_tensor(rho_neg, dtype=x.dtype).view(view)
    rp = torch.as_tensor(rho_pos, dtype=x.dtype).view(view)
    # max over j != k, one class at a time (no top-2 trick)
    others = torch.stack([x[:, [j for j in range(k) if j != c]].amax(dim=1) for c in range(k)], dim=1)
    lam = x - others
    onehot = F.one_hot(labels, k).movedim(-1, 1).to(x.dtype)
    sbar = lam - onehot * rp + (1 - onehot) * rn
    if surrogate == "log" and variant == "paper":
        two = torch.tensor(2.0, dtype=x.dtype)
        term = onehot * torch.log2(1 + two.pow(-sbar)) + (1 - onehot) * torch.log2(1 + two.pow(sbar))
    elif surrogate == "log":
        zero = torch.zeros((), dtype=x.dtype)
        term = (onehot * k * torch.logaddexp(zero, -sbar) + (1 - onehot) * torch.logaddexp(zero, sbar)) / k
    else:
        term = onehot * torch.clamp(1 - lam / rp, 0, 1) + (1 - onehot) * torch.clamp(1 + lam / rn, 0, 1)
    per_pixel = term.sum(dim=1)
    if valid is not None:
        per_pixel = per_pixel * valid
    if reduction == "none":
        return per_pixel
    if reduction == "sum":
        return per_pixel.sum()
    n = per_pixel.numel() if valid is None else valid.sum()
    return per_pixel.sum() / n


def _random_case(shape, seed=0, dtype=torch.float64, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).to(dtype)
    labels = torch.randint(0, shape[1], (shape[0], *shape[2:]), generator=g)
    return logits, labels


COUNTS3 = [700.0, 250.0, 50.0]
COUNTS4 = [500.0, 300.0, 150.0, 50.0]

# ----------------------------------------------------------------------------------------------------------------
# margin_offsets


def margin_offsets(*args, **kwargs):
    """The offsets as tensors, for comparisons with torch.testing (the function itself returns numpy)."""
    return tuple(torch.from_numpy(a) for a in np_margin_offsets(*args, **kwargs))


def test_margin_offsets_hand_values():
    # N = 1000. Class 0: rho_0k = 10*sqrt(100)/900 = 1/9; mu = 0.9*sqrt(900)/(100 - 0.9*sqrt(100)) = 27/91,
    # rho_k0 = 27/91/9 = 3/91. Class 1: rho_0k = 10*sqrt(900)/100 = 3; mu = 0.1*10/(900 - 0.1*30) = 1/897,
    # rho_k0 = 3/897.
    rho_neg, rho_pos = np_margin_offsets([900, 100], tau=10.0, v=1.0)
    assert rho_neg.dtype == np.float64  # numpy: offsets are computed without torch (medseg.margins)
    assert rho_pos.dtype == np.float64
    rho_neg, rho_pos = torch.from_numpy(rho_neg), torch.from_numpy(rho_pos)
    torch.testing.assert_close(rho_neg, torch.tensor([1 / 9, 3.0], dtype=torch.float64))
    torch.testing.assert_close(rho_pos, torch.tensor([3 / 91, 3 / 897], dtype=torch.float64))


def test_margin_offsets_tau_v_scaling():
    # counts (3, 1), tau = 1, v = 1: class 1: rho_0k = sqrt(3); mu = 0.25/(3 - 0.25*sqrt(3)).
    # class 0: rho_0k = 1/3; mu = 0.75*sqrt(3)/(1 - 0.75) = 3*sqrt(3), so rho_k0 = sqrt(3).
    rho_neg, rho_pos = margin_offsets([3, 1], tau=1.0, v=1.0)
    s3 = math.sqrt(3)
    torch.testing.assert_close(rho_neg, torch.tensor([1 / 3, s3], dtype=torch.float64))
    torch.testing.assert_close(rho_pos, torch.tensor([s3, s3 * 0.25 / (3 - 0.25 * s3)], dtype=torch.float64))
    # rho_0k is linear in tau; rho_k0 too; v only enters mu
    neg5, pos5 = margin_offsets([3, 1], tau=5.0, v=1.0)
    torch.testing.assert_close(neg5, 5 * rho_neg)
    torch.testing.assert_close(pos5, 5 * rho_pos)
    neg_v, pos_v = margin_offsets([3, 1], tau=1.0, v=2.0)
    torch.testing.assert_close(neg_v, rho_neg)
    assert bool((pos_v < rho_pos).all())  # a larger v shrinks mu


@pytest.mark.parametrize(
    ("counts", "kwargs", "match"),
    [
        ([10, -1, 5], {}, "non-negative"),
        ([10, float("nan")], {}, "finite"),
        ([10, float("inf")], {}, "finite"),
        ([10], {}, "at least 2"),
        ([[1, 2], [3, 4]], {}, "1-D"),
        ([0, 0], {}, "all zero"),
        ([10, 0, 5], {}, "no pixels or every pixel"),
        ([0, 7], {}, "no pixels or every pixel"),
        ([10, 5], {"tau": 0.0}, "tau"),
        ([10, 5], {"v": -1.0}, "v"),
        ([10, 5], {"empty": "skip"}, "empty"),
        ("abc", {}, "class_counts"),
    ],
    ids=[
        "negative",
        "nan",
        "inf",
        "one-class",
        "2d",
        "all-zero",
        "empty-class",
        "full-class",
        "tau",
        "v",
        "policy",
        "str",
    ],
)
def test_margin_offsets_bad_input(counts, kwargs, match):
    with pytest.raises(ValueError, match=match):
        margin_offsets(counts, **kwargs)


def test_margin_offsets_empty_zero_policy():
    rho_neg, rho_pos = margin_offsets([10, 0, 5], empty="zero")
    assert rho_neg[1] == 0
    assert rho_pos[1] == 0
    ref_neg, ref_pos = margin_offsets([10, 5])  # the other classes are unchanged by the empty one (N is the same)
    torch.testing.assert_close(rho_neg[[0, 2]], ref_neg)
    torch.testing.assert_close(rho_pos[[0, 2]], ref_pos)
    full_neg, full_pos = margin_offsets([0, 9], empty="zero")
    assert bool(torch.isfinite(full_neg).all())
    assert float(full_neg.abs().sum() + full_pos.abs().sum()) == 0


def test_margin_offsets_mu_denominator_not_positive():
    # counts (3, 1): class 0 has P = 3/4 and N - N_k = 1, so v*(N-N_k) - P*sqrt(N-N_k) = v - 0.75 <= 0 for v <= 0.75
    with pytest.raises(ValueError, match=r"v=0.5 is too small for class 0.*v > P_k/√\(N−N_k\) = 0.75"):
        margin_offsets([3, 1], tau=1.0, v=0.5)
    with pytest.raises(ValueError, match="too small"):
        margin_offsets([3, 1], tau=1.0, v=0.75)  # exactly zero
    _, rho_pos = margin_offsets([3, 1], tau=1.0, v=0.76)
    assert bool((rho_pos > 0).all())
    assert bool(torch.isfinite(rho_pos).all())


def test_margin_offsets_accepts_arrays_and_tensors():
    import numpy as np

    a = margin_offsets(np.array([900, 100]))
    b = margin_offsets(torch.tensor([900, 100]))
    c = margin_offsets((900.0, 100.0))
    for x, y in ((a, b), (a, c)):
        torch.testing.assert_close(x[0], y[0])
        torch.testing.assert_close(x[1], y[1])


# ----------------------------------------------------------------------------------------------------------------
# Hand-computed loss values on one pixel


def _one_pixel(values):
    return torch.tensor(values, dtype=torch.float64).view(1, len(values), 1, 1).requires_grad_(True)


def test_paper_log_loss_hand_value_and_gradient():
    # s = (2, 0, -1), y = 0: lambda = (2 - 0, 0 - 2, -1 - 2) = (2, -2, -3).
    # rho_pos[0] = 1 -> sbar_0 = 1; rho_neg = (., 2, 3) -> sbar_1 = 0, sbar_2 = 0.
    # loss = log2(1 + 2^-1) + log2(1 + 2^0) + log2(1 + 2^0) = log2(1.5) + 2.
    # d/dsbar: positive -2^-1/(1 + 2^-1) = -1/3, negatives 2^0/(1 + 2^0) = 1/2 each: g = (-1/3, 1/2, 1/2).
    # top-1 is class 0, top-2 class 1: ds0 = g0 - (g1 + g2) = -4/3, ds1 = g1 - g0 = 5/6, ds2 = g2 = 1/2.
    loss = MarginCalibrationLoss(rho_neg=[0.0, 2.0, 3.0], rho_pos=[1.0, 0.0, 0.0], backend="eager")
    x = _one_pixel([2.0, 0.0, -1.0])
    value = loss(x, torch.zeros(1, 1, 1, dtype=torch.long))
    assert float(value) == pytest.approx(math.log2(1.5) + 2, abs=1e-12)
    value.backward()
    torch.testing.assert_close(x.grad.flatten(), torch.tensor([-4 / 3, 5 / 6, 1 / 2], dtype=torch.float64))


def test_reference_variant_hand_value():
    # same scores and offsets, natural log, positive weighted by K = 3, divided by K:
    # (3*ln(1 + e^-1) + ln 2 + ln 2) / 3 = ln(1 + e^-1) + 2/3 ln 2
    loss = MarginCalibrationLoss(rho_neg=[0.0, 2.0, 3.0], rho_pos=[1.0, 0.0, 0.0], variant="reference", backend="eager")
    value = loss(_one_pixel([2.0, 0.0, -1.0]), torch.zeros(1, 1, 1, dtype=torch.long))
    assert float(value) == pytest.approx(math.log1p(math.exp(-1)) + 2 / 3 * math.log(2), abs=1e-12)


def test_margin_surrogate_hand_value_and_gradient():
    # Eq. (9): phi_rho(l) = clamp(1 - l/rho, 0, 1). lambda = (2, -2, -3), y = 0.
    # positive: phi_4(2) = 0.5; negatives: phi_4(2) = 0.5 and phi_6(3) = 0.5 -> loss 1.5.
    # d/dlambda: positive -1/4, negatives +1/4, +1/6: ds0 = -1/4 - 5/12 = -2/3, ds1 = 1/4 + 1/4 = 1/2, ds2 = 1/6.
    loss = MarginCalibrationLoss(rho_neg=[1.0, 4.0, 6.0], rho_pos=[4.0, 1.0, 1.0], surrogate="margin", backend="eager")
    x = _one_pixel([2.0, 0.0, -1.0])
    value = loss(x, torch.zeros(1, 1, 1, dtype=torch.long))
    assert float(value) == pytest.approx(1.5, abs=1e-12)
    value.backward()
    torch.testing.assert_close(x.grad.flatten(), torch.tensor([-2 / 3, 1 / 2, 1 / 6], dtype=torch.float64))


def test_zero_offsets_and_equal_scores():
    # lambda = 0 for both classes: each term log2(1 + 2^0) = 1, two classes -> 2 per pixel.
    loss = MarginCalibrationLoss(rho_neg=[0.0, 0.0], rho_pos=[0.0, 0.0], backend="eager")
    x = torch.zeros(2, 2, 3, 3, requires_grad=True)
    value = loss(x, torch.randint(0, 2, (2, 3, 3)))
    assert float(value) == pytest.approx(2.0)
    value.backward()
    assert bool(torch.isfinite(x.grad).all())
    torch.testing.assert_close(x.grad.sum(dim=1), torch.zeros(2, 3, 3))  # adding a constant to all scores: no change


# ----------------------------------------------------------------------------------------------------------------
# Against the autograd reference; gradcheck


CONFIGS = [("paper", "log"), ("reference", "log"), ("paper", "margin")]


@pytest.mark.parametrize(("variant", "surrogate"), CONFIGS, ids=["paper", "reference", "margin"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 4), (2, 4, 3, 4, 2)], ids=["2d", "3d"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all", "ignore"])
def test_matches_autograd_reference(variant, surrogate, reduction, shape, ignore):
    logits, labels = _random_case(shape, seed=len(shape) + int(ignore))
    counts = COUNTS3 if shape[1] == 3 else COUNTS4
    kwargs = {"variant": variant, "surrogate": surrogate, "reduction": reduction, "backend": "eager"}
    valid = None
    target = labels
    if ignore:
        target = labels.clone()
        target[0, 0] = 255
        target[1, ..., -1] = 255
        valid = (target != 255).to(torch.float64)
        kwargs["ignore_index"] = 255
    loss = MarginCalibrationLoss(counts, **kwargs)
    x1 = logits.clone().requires_grad_(True)
    x2 = logits.clone().requires_grad_(True)
    ours = loss(x1, target)
    ref = _mc_autograd(
        x2, labels, loss.rho_neg, loss.rho_pos, variant=variant, surrogate=surrogate, valid=valid, reduction=reduction
    )
    torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
    weights = torch.rand_like(ours) + 0.5
    (ours * weights).sum().backward()
    (ref * weights).sum().backward()
    torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-12)
    if ignore:
        ignored = (target == 255).unsqueeze(1).expand_as(x1.grad)
        assert float(x1.grad[ignored].abs().max()) == 0.0


@pytest.mark.parametrize(("variant", "surrogate"), CONFIGS, ids=["paper", "reference", "margin"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_float64(variant, surrogate, reduction):
    logits, labels = _random_case((2, 3, 3, 2), seed=7)
    if surrogate == "margin":
        # keep every margin term away from the kinks of Eq. (9), where the function is not differentiable
        loss = MarginCalibrationLoss(rho_neg=[40.0, 50.0, 60.0], rho_pos=[45.0, 55.0, 65.0], surrogate="margin")
    else:
        loss = MarginCalibrationLoss(COUNTS3, variant=variant, reduction=reduction)
    loss.backend = "eager"
    labels[0, 0, 0] = 255
    loss.ignore_index = 255
    x = logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: loss(t, labels), (x,), eps=1e-6, atol=1e-7)


def test_gradcheck_3d_four_classes():
    logits, labels = _random_case((1, 4, 2, 2, 3), seed=3)
    loss = MarginCalibrationLoss(COUNTS4, backend="eager")
    x = logits.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: loss(t, labels), (x,), eps=1e-6, atol=1e-7)


def test_reference_and_paper_variant_relation():
    # With natural-log terms P (positives) and Q (negatives) per pixel summed over N pixels:
    #   reference(s, rho) * K * N = K * P + Q,   paper(s / ln2, rho / ln2) * ln2 * N = P + Q
    # (since log2(1 + 2^(x / ln 2)) = ln(1 + e^x) / ln 2), so P = N (K ref - ln2 paper') / (K - 1).
    logits, labels = _random_case((2, 3, 4, 4), seed=11)
    rho_neg, rho_pos = margin_offsets(COUNTS3)
    k, n, ln2 = 3, labels.numel(), math.log(2)
    ref = MarginCalibrationLoss(rho_neg=rho_neg, rho_pos=rho_pos, variant="reference", backend="eager")(logits, labels)
    paper = MarginCalibrationLoss(rho_neg=rho_neg / ln2, rho_pos=rho_pos / ln2, backend="eager")(logits / ln2, labels)
    positives = n * (k * ref - ln2 * paper) / (k - 1)
    # P computed directly: sum over pixels of ln(1 + exp(-(lambda_y - rho_pos[y])))
    others = torch.stack([logits[:, [j for j in range(k) if j != c]].amax(dim=1) for c in range(k)], dim=1)
    lam_true = (logits - others).gather(1, labels[:, None])[:, 0]
    direct = torch.logaddexp(torch.zeros(()), -(lam_true - rho_pos[labels])).sum()
    torch.testing.assert_close(positives, direct.to(positives.dtype), rtol=1e-9, atol=1e-9)


# ----------------------------------------------------------------------------------------------------------------
# Label forms, dtypes, errors


def test_all_label_forms_agree():
    logits, labels = _random_case((2, 3, 4, 5), seed=5)
    loss = MarginCalibrationLoss(COUNTS3, backend="eager")
    expected = loss(logits, labels)
    forms = {
        "channel": labels[:, None],
        "float": labels[:, None].double(),
        "one_hot": F.one_hot(labels, 3).movedim(-1, 1).float(),
        "int32": labels.int(),
    }
    for name, target in forms.items():
        torch.testing.assert_close(loss(logits, target), expected, msg=name)


def test_one_hot_all_zero_rows_are_ignored():
    logits, labels = _random_case((1, 3, 4, 4), seed=2)
    onehot = F.one_hot(labels, 3).movedim(-1, 1).double()
    onehot[:, :, 0] = 0  # first row carries no label
    ignore_labels = labels.clone()
    ignore_labels[:, 0] = -1
    loss = MarginCalibrationLoss(COUNTS3, backend="eager")
    expected = MarginCalibrationLoss(COUNTS3, ignore_index=-1, backend="eager")(logits, ignore_labels)
    torch.testing.assert_close(loss(logits, onehot), expected)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_half_precision_computes_in_float32(dtype):
    logits, labels = _random_case((2, 3, 6, 6), seed=9, dtype=dtype)
    loss = MarginCalibrationLoss(COUNTS3, backend="eager")
    x = logits.clone().requires_grad_(True)
    value = loss(x, labels)
    assert value.dtype == torch.float32
    value.backward()
    assert x.grad.dtype == dtype
    x32 = logits.float().requires_grad_(True)
    ref = loss(x32, labels)
    ref.backward()
    torch.testing.assert_close(value, ref)
    torch.testing.assert_close(x.grad.float(), x32.grad, atol=1e-3, rtol=1e-2)


def test_all_pixels_ignored_gives_zero():
    logits, _ = _random_case((1, 3, 2, 2))
    x = logits.clone().requires_grad_(True)
    value = MarginCalibrationLoss(COUNTS3, ignore_index=9, backend="eager")(x, torch.full((1, 2, 2), 9))
    assert float(value) == 0.0
    value.backward()
    assert float(x.grad.abs().sum()) == 0.0


def test_registry_builds_mc():
    assert "mc" in LOSSES.names()
    loss = create_loss("mc", class_counts=COUNTS3, tau=5.0, v=2.0)
    assert isinstance(loss, MarginCalibrationLoss)
    expected = margin_offsets(COUNTS3, tau=5.0, v=2.0)
    torch.testing.assert_close(loss.rho_neg, expected[0])
    torch.testing.assert_close(loss.rho_pos, expected[1])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "class_counts"),
        ({"class_counts": COUNTS3, "rho_neg": [1, 1, 1], "rho_pos": [1, 1, 1]}, "not both"),
        ({"rho_neg": [1.0, 1.0]}, "rho_pos is missing"),
        ({"rho_neg": [1.0, 1.0], "rho_pos": [1.0]}, "rho_neg has 2 values but rho_pos has 1"),
        ({"rho_neg": [1.0, -1.0], "rho_pos": [1.0, 1.0]}, "non-negative"),
        ({"class_counts": COUNTS3, "variant": "authors"}, "variant"),
        ({"class_counts": COUNTS3, "surrogate": "hinge"}, "surrogate"),
        ({"class_counts": COUNTS3, "variant": "reference", "surrogate": "margin"}, "no 'margin' surrogate"),
        ({"class_counts": COUNTS3, "reduction": "max"}, "reduction"),
        ({"class_counts": COUNTS3, "backend": "gpu"}, "backend"),
        ({"class_counts": COUNTS3, "ignore_index": 1.5}, "ignore_index"),
        ({"class_counts": [10, -1, 3]}, "non-negative"),
    ],
    ids=lambda v: None if isinstance(v, dict) else str(v)[:20],
)
def test_constructor_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarginCalibrationLoss(**kwargs)


def test_forward_errors():
    loss = MarginCalibrationLoss(COUNTS3, backend="eager")
    logits, labels = _random_case((2, 4, 3, 3))
    with pytest.raises(ValueError, match=r"K=4 channels but the margin offsets are for 3 classes"):
        loss(logits, labels)
    logits, labels = _random_case((2, 3, 3, 3))
    with pytest.raises(ValueError, match="label 3"):
        loss(logits, torch.full_like(labels, 3))
    for value in (float("nan"), float("inf"), float("-inf")):
        bad = logits.clone()
        bad[1, 2, 0, 1] = value
        with pytest.raises(ValueError, match="NaN or inf"):
            loss(bad, labels)
        with pytest.raises(ValueError, match="NaN or inf"):
            MarginCalibrationLoss(COUNTS3, reduction="none", backend="eager")(bad, labels)
    with pytest.raises(ValueError, match="does not match"):
        loss(logits, labels[:, :2])
    with pytest.raises(ValueError, match="K >= 2"):
        MarginCalibrationLoss(rho_neg=[1.0], rho_pos=[1.0], backend="eager")(logits[:, :1], labels * 0)


# ----------------------------------------------------------------------------------------------------------------
# Hypothesis properties


@st.composite
def _cases(draw):
    b = draw(st.integers(1, 2))
    k = draw(st.integers(2, 4))
    spatial = tuple(draw(st.integers(1, 5)) for _ in range(draw(st.sampled_from([2, 3]))))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([0.1, 5.0, 50.0]))
    logits = (torch.rand(b, k, *spatial, generator=g, dtype=torch.float64) * 2 - 1) * scale
    if draw(st.booleans()):
        logits = torch.sign(logits) * 50.0  # saturated logits, many ties
    n_present = draw(st.integers(1, k))
    labels = torch.randint(0, n_present, (b, *spatial), generator=g)  # classes >= n_present are absent
    counts = [float(c) for c in draw(st.lists(st.integers(1, 10_000), min_size=k, max_size=k))]
    variant, surrogate = draw(st.sampled_from(CONFIGS))
    return logits, labels, counts, variant, surrogate


@settings(max_examples=20)
@given(case=_cases())
def test_property_finite_and_invariant(case):
    logits, labels, counts, variant, surrogate = case
    loss = MarginCalibrationLoss(counts, variant=variant, surrogate=surrogate, backend="eager")
    x = logits.clone().requires_grad_(True)
    value = loss(x, labels)
    value.backward()
    assert torch.isfinite(value)
    assert float(value) >= 0
    assert bool(torch.isfinite(x.grad).all())
    # mean == mean of none; sum == sum of none
    none = MarginCalibrationLoss(counts, variant=variant, surrogate=surrogate, reduction="none", backend="eager")
    per_pixel = none(logits, labels)
    assert per_pixel.shape == labels.shape
    torch.testing.assert_close(per_pixel.mean(), value.detach(), rtol=1e-9, atol=1e-9)
    # the same flip of logits and target, and reordering the batch, leave the mean unchanged
    dims = list(range(2, logits.ndim))
    torch.testing.assert_close(loss(logits.flip(dims), labels.flip([d - 1 for d in dims])), value.detach())
    order = torch.arange(logits.shape[0] - 1, -1, -1)
    torch.testing.assert_close(loss(logits[order], labels[order]), value.detach())


@settings(max_examples=20)
@given(case=_cases())
def test_property_perfect_beats_wrong(case):
    _, labels, counts, variant, surrogate = case
    k = len(counts)
    loss = MarginCalibrationLoss(counts, variant=variant, surrogate=surrogate, backend="eager")
    # a margin larger than every offset: the true class wins by more than rho
    big = float(max(loss.rho_neg.max(), loss.rho_pos.max())) + 20.0
    onehot = F.one_hot(labels, k).movedim(-1, 1).double()
    wrong = F.one_hot((labels + 1) % k, k).movedim(-1, 1).double()
    perfect_value = float(loss(onehot * big, labels))
    wrong_value = float(loss(wrong * big, labels))
    assert perfect_value < wrong_value
    if surrogate == "margin":
        assert perfect_value == 0.0


# ----------------------------------------------------------------------------------------------------------------
# Backends


@pytest.fixture
def fresh_kernel_state(monkeypatch):
    """The kernel's per-process compile bookkeeping, empty for one test."""
    monkeypatch.setattr(_mc_kernel, "_compiled", {})
    monkeypatch.setattr(_mc_kernel, "_compiled_shapes", set())
    monkeypatch.setattr(_mc_kernel, "_failed_configs", set())
    monkeypatch.setattr(_mc_kernel, "_compile_failed", False)
    monkeypatch.setattr(_mc_kernel, "_eager_seconds", __import__("collections").defaultdict(float))
    monkeypatch.setattr(_mc_kernel, "_compile_times", {})


def _counting_fake_compile(monkeypatch):
    """Replace torch.compile by the uncompiled fused kernel, counting how many "compiled" functions are made."""
    made = []

    def fake(config):
        made.append(config)
        return _mc_kernel.mc_fused

    monkeypatch.setattr(_mc_kernel, "_make_compiled", fake)
    return made


def test_auto_backend_runs_eagerly_until_the_compile_would_pay(monkeypatch, fresh_kernel_state):
    def fail(*args, **kwargs):
        raise AssertionError("a short run must not trigger torch.compile")

    monkeypatch.setattr(_mc_kernel, "_get_compiled", fail)
    loss = MarginCalibrationLoss(COUNTS3)  # backend="auto"
    logits, labels = _random_case((2, 3, 4, 4))
    for _ in range(3):
        assert torch.isfinite(loss(logits, labels))
    (spent,) = _mc_kernel.eager_seconds().values()  # one configuration, timed
    assert 0 < spent < _mc_kernel.AUTO_COMPILE_AFTER_S


def test_auto_backend_compiles_once_the_eager_time_passes_the_threshold(monkeypatch, fresh_kernel_state):
    made = _counting_fake_compile(monkeypatch)
    monkeypatch.setattr(_mc_kernel, "AUTO_COMPILE_AFTER_S", 0.0)
    loss = MarginCalibrationLoss(COUNTS3)
    eager = MarginCalibrationLoss(COUNTS3, backend="eager")
    for b in (4, 4, 3):  # a ragged last batch (3) reuses the kernel with a dynamic batch size: nothing new is made
        logits, labels = _random_case((b, 3, 4, 4), seed=b)
        x1, x2 = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
        value = loss(x1, labels)
        value.backward()
        expected = eager(x2, labels)
        expected.backward()
        torch.testing.assert_close(value, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-12)
    assert len(made) == 1
    shapes = _mc_kernel._compiled_shapes
    assert {key[-3] for key in shapes} == {False}  # only batches of more than one image have run compiled
    logits, labels = _random_case((1, 3, 4, 4))
    loss(logits, labels)  # a batch of one has its own (dynamo-specialised) kernel: it must earn it first
    assert any(key[-3] for key in _mc_kernel.eager_seconds())


def test_auto_backend_falls_back_to_eager_when_compile_fails(monkeypatch, caplog, fresh_kernel_state):
    def broken(*args, **kwargs):
        raise RuntimeError("no compiler here")

    monkeypatch.setattr(_mc_kernel, "_make_compiled", lambda config: broken)
    monkeypatch.setattr(_mc_kernel, "AUTO_COMPILE_AFTER_S", 0.0)
    logits, labels = _random_case((1, 3, 4, 4))
    expected = MarginCalibrationLoss(COUNTS3, backend="eager")(logits, labels)
    loss = MarginCalibrationLoss(COUNTS3)
    loss(logits, labels)  # the first call runs eagerly and is timed; the next one decides to compile
    with caplog.at_level("WARNING", logger="medseg.losses._mc_kernel"):
        value = loss(logits, labels)
    torch.testing.assert_close(value, expected)
    assert "falling back to the eager kernel" in caplog.text
    assert len(_mc_kernel._failed_configs) == 1
    caplog.clear()
    with caplog.at_level("WARNING", logger="medseg.losses._mc_kernel"):
        MarginCalibrationLoss(COUNTS3)(logits, labels)  # the failed configuration is not retried
    assert caplog.text == ""
    strict = MarginCalibrationLoss(COUNTS3, backend="compile")
    monkeypatch.setattr(_mc_kernel, "_failed_configs", set())
    with pytest.raises(RuntimeError, match="no compiler here"):
        strict(logits, labels)


def test_auto_backend_when_torch_compile_is_unusable(monkeypatch, caplog, fresh_kernel_state):
    def unusable(config):
        raise RuntimeError("torch.compile is not supported on this platform")

    monkeypatch.setattr(_mc_kernel, "_make_compiled", unusable)
    monkeypatch.setattr(_mc_kernel, "AUTO_COMPILE_AFTER_S", 0.0)
    logits, labels = _random_case((1, 3, 4, 4))
    loss = MarginCalibrationLoss(COUNTS3)
    loss(logits, labels)
    with caplog.at_level("WARNING", logger="medseg.losses._mc_kernel"):
        value = loss(logits, labels)
    assert "torch.compile unavailable" in caplog.text
    assert _mc_kernel._compile_failed
    torch.testing.assert_close(value, MarginCalibrationLoss(COUNTS3, backend="eager")(logits, labels))
    with pytest.raises(RuntimeError, match="unavailable here"):
        MarginCalibrationLoss(COUNTS3, backend="compile")(logits, labels)


@pytest.mark.parametrize(("variant", "surrogate"), CONFIGS, ids=["paper", "reference", "margin"])
@pytest.mark.parametrize("ignore", [False, True], ids=["all", "ignore"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_fused_kernel_matches_eager_kernel(variant, surrogate, ignore, reduction):
    # the two implementations of the same maths, run eagerly in float64 (the compiled run is a slow test)
    logits, labels = _random_case((2, 4, 5, 3), seed=13)
    logits[0, :2, 0, 0] = 1.5  # a tie for the maximum
    logits[1, 1:3, 0, 0] = -20.0  # a tie for the second place
    valid = torch.rand(2, 15, generator=torch.Generator().manual_seed(1)) > 0.3 if ignore else None
    rn, rp = margin_offsets(COUNTS4)
    scale = torch.tensor(0.01, dtype=torch.float64)
    args = (
        logits.reshape(2, 4, -1),
        labels.reshape(2, -1),
        valid,
        rp,
        rn,
        scale,
        variant,
        surrogate,
        reduction == "none",
    )
    loss_e, grad_e = _mc_kernel.mc_eager(*args)
    loss_f, grads_f = _mc_kernel.mc_fused(*args)
    torch.testing.assert_close(loss_e, loss_f, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad_e, torch.stack([g.view(2, -1) for g in grads_f], 1), rtol=1e-9, atol=1e-12)
    loss_n, grad_n = _mc_kernel.mc_eager(*args, need_grad=False)
    assert grad_n is None
    torch.testing.assert_close(loss_n, loss_e)


def test_gradient_at_ties_is_plain_autograds():
    # where scores tie, the max splits its subgradient evenly among the tied classes, like torch.amax's backward
    # in the independent reference; the gradient still sums to zero over the classes (shift invariance)
    x = torch.tensor([[2.0, 2.0, 0.5, -1.0], [1.0, 3.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    cases = [
        (x.t().reshape(1, 4, 3, 1), torch.tensor([[[0], [2], [3]]])),  # a tied top, a tied second, all tied
        (x[1:2].t().reshape(1, 4, 1, 1), torch.tensor([[[2]]])),  # only a tied second place (the unique-top path)
    ]
    # (the log surrogates: with the margin surrogate a tied top sits on a kink of Eq. (9), λ = 0, where the two
    # implementations take different one-sided derivatives of the clamp)
    for variant in ("paper", "reference"):
        surrogate = "log"
        loss = MarginCalibrationLoss(COUNTS4, variant=variant, backend="eager")
        for logits, labels in cases:
            x1 = logits.clone().requires_grad_(True)
            x2 = logits.clone().requires_grad_(True)
            loss(x1, labels).backward()
            _mc_autograd(x2, labels, loss.rho_neg, loss.rho_pos, variant=variant, surrogate=surrogate).backward()
            torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-9, atol=1e-12, msg=f"{variant}/{surrogate}")
            torch.testing.assert_close(x1.grad.sum(1), torch.zeros_like(x1.grad.sum(1)))


def test_loss_without_gradient_and_a_second_backward():
    loss = MarginCalibrationLoss(COUNTS3, backend="eager")
    logits, labels = _random_case((1, 3, 3, 3))
    with torch.no_grad():
        value = loss(logits.clone().requires_grad_(True), labels)  # no gradient is formed
    torch.testing.assert_close(value, loss(logits, labels))
    x = logits.clone().requires_grad_(True)
    out = loss(x, labels)
    out.backward(retain_graph=True)
    first = x.grad.clone()
    out.backward()  # the gradient handed over by the first backward is formed again
    torch.testing.assert_close(x.grad, 2 * first)


@pytest.mark.slow
@pytest.mark.parametrize(("variant", "surrogate"), CONFIGS, ids=["paper", "reference", "margin"])
def test_compiled_kernel_matches_eager(variant, surrogate):
    # 2D with ignore_index (two batch sizes: one kernel with a dynamic batch), 3D without, per-pixel output:
    # the compiled (inductor) kernel against the eager one, float32
    for shape, ignore in (((2, 3, 16, 16), True), ((3, 3, 16, 16), True), ((1, 3, 4, 8, 8), False)):
        logits, labels = _random_case(shape, seed=1, dtype=torch.float32)
        target = labels.clone()
        if ignore:
            target[:, :3] = 255
        kwargs = {"variant": variant, "surrogate": surrogate, "ignore_index": 255 if ignore else None}
        x1 = logits.clone().requires_grad_(True)
        x2 = logits.clone().requires_grad_(True)
        fused = MarginCalibrationLoss(COUNTS3, backend="compile", **kwargs)(x1, target)
        eager = MarginCalibrationLoss(COUNTS3, backend="eager", **kwargs)(x2, target)
        fused.backward()
        eager.backward()
        torch.testing.assert_close(fused, eager, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(x1.grad, x2.grad, rtol=1e-5, atol=1e-7)
    none_fused = MarginCalibrationLoss(
        COUNTS3, variant=variant, surrogate=surrogate, reduction="none", backend="compile"
    )
    none_eager = MarginCalibrationLoss(COUNTS3, variant=variant, surrogate=surrogate, reduction="none", backend="eager")
    torch.testing.assert_close(none_fused(logits, labels), none_eager(logits, labels), rtol=1e-5, atol=1e-6)
    bad = logits.clone()
    bad[0, 1, 0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        none_fused(bad, labels)
    with pytest.raises(ValueError, match="label 3"):
        none_fused(logits, torch.full_like(labels, 3))


def test_second_derivative_is_refused():
    # the analytic gradient is saved as a constant: a double backward must fail loudly, never be silently zero
    loss = MarginCalibrationLoss(COUNTS3, backend="eager")
    logits, labels = _random_case((1, 3, 3, 3))
    x = logits.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(loss(x, labels), x, create_graph=True)
    with pytest.raises(RuntimeError):
        (grad * torch.randn_like(grad)).sum().backward()
