"""Tests of loss max-pooling: ``functional.lmp_weights`` and ``LossMaxPoolingLoss`` (Rota Bulò et al.)."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _loss_properties import PROPERTY_SETTINGS, cases, check_common_properties
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import linprog, minimize

from medseg.losses import LossMaxPoolingLoss
from medseg.losses.functional import lmp_weights


def _gamma_tau(n, p, m):
    if math.isinf(p):
        return 1.0 / n, 1.0 / n
    q = math.inf if p == 1 else p / (p - 1)
    gamma = 1.0 if p == 1 else n ** (-1 / q)
    return gamma, gamma * m ** (-1 / p)  # m = (gamma / tau)^p, Sec. 2


def _reference_algorithm_1(losses, p, m):
    """Algorithm 1 and Thm. 1 of the paper, literally (sequential walk, no normalisation), in 60-digit decimals."""
    getcontext().prec = 60
    ell = [Decimal(repr(float(v))) for v in losses]
    n = len(ell)
    order = sorted(range(n), key=lambda i: ell[i])
    P, M = Decimal(repr(p)), Decimal(repr(m))
    q = P / (P - 1)
    tau = Decimal(n) ** (-1 / q) * M ** (-1 / P)
    c, a = [M - n], [Decimal(0)]
    i = 0
    while True:
        i += 1
        c.append(c[-1] + 1)
        a.append(a[-1] + ell[order[i - 1]] ** q)
        eta = c[i] * ell[order[i - 1]] ** q - a[i]
        if eta > 0 or i == n:
            break
    if eta <= 0:
        i += 1
    alpha = (a[i - 1] / c[i - 1]) ** (1 / q)
    in_j = {order[j - 1] for j in range(i, n + 1)}
    value = tau * (sum(ell[u] for u in in_j) + (M - len(in_j)) * alpha)
    weights = [tau if u in in_j else (tau * (ell[u] / alpha) ** (q - 1) if alpha > 0 else Decimal(0)) for u in range(n)]
    return float(value), [float(w) for w in weights]


def test_hand_computed_p1():
    # losses (1, 2, 3, 4), p = 1: gamma = 1, tau = 1/m. m = 2: the two largest, (3 + 4)/2 = 3.5.
    # m = 2.5: tau = 0.4, weights 0.4, 0.4 on 4, 3 and 0.4 * 0.5 = 0.2 on 2 -> 1.6 + 1.2 + 0.4 = 3.2
    losses = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    assert float((lmp_weights(losses, p=1.0, m=2.0) * losses).sum()) == pytest.approx(3.5)
    w = lmp_weights(losses, p=1.0, m=2.5)
    torch.testing.assert_close(w, torch.tensor([0.0, 0.2, 0.4, 0.4], dtype=torch.float64))


def test_hand_computed_p2():
    # losses (1, 2, 3, 4), p = q = 2, m = 2: gamma = 4^(-1/2) = 1/2, tau = gamma / sqrt(2).
    # Algorithm 1: c_i = -1, 0, 1, 2 ; a_i = 1, 5, 14, 30 ; eta_i = -2, -5, -5, 2 -> stop at i = 4:
    # J* = {4}, alpha* = sqrt(a_3 / c_3) = sqrt(14), L = tau (4 + (2 - 1) sqrt(14)) = 2.7371
    losses = torch.tensor([4.0, 1.0, 3.0, 2.0], dtype=torch.float64)
    tau = 0.5 / math.sqrt(2)
    w = lmp_weights(losses, p=2.0, m=2.0)
    assert float((w * losses).sum()) == pytest.approx(tau * (4 + math.sqrt(14)), rel=1e-12)
    torch.testing.assert_close(
        w, tau * torch.tensor([1.0, 1 / math.sqrt(14), 3 / math.sqrt(14), 2 / math.sqrt(14)], dtype=torch.float64)
    )
    assert float((w**2).sum()) == pytest.approx(0.25, rel=1e-12)  # ||w||_2 = gamma exactly


@pytest.mark.parametrize("p", [1.0, 1.3, 2.0, 5.0, math.inf])
def test_m_equal_n_is_the_mean(p):
    # tau = gamma * n^(-1/p) = n^(-1/q - 1/p) = 1/n: the uniform weighting is the only maximiser
    g = torch.Generator().manual_seed(0)
    losses = torch.rand(37, generator=g, dtype=torch.float64) * 3
    w = lmp_weights(losses, p=p, m=37.0)
    torch.testing.assert_close(w, torch.full_like(w, 1 / 37))


@pytest.mark.parametrize("p", [1.0, 1.7, 3.0])
def test_module_with_m_one_is_mean_cross_entropy(p):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 5, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 4, 5, 3), generator=g)
    torch.testing.assert_close(LossMaxPoolingLoss(p=p, m=1.0)(logits, labels), F.cross_entropy(logits, labels))


@given(
    st.integers(0, 2**31 - 1),
    st.sampled_from([1.05, 1.3, 2.0, 4.0]),
    st.floats(0.05, 1.0),
    st.sampled_from(["uniform", "many_near_zero", "many_zero", "ties"]),
)
def test_matches_the_literal_algorithm_also_with_many_near_zero_losses(seed, p, m_frac, kind):
    g = torch.Generator().manual_seed(seed)
    n = 24
    losses = torch.rand(n, generator=g, dtype=torch.float64) * 5
    if kind == "many_near_zero":
        losses[: n - 4] = losses[: n - 4] * 1e-30  # 20 of 24 pixels all but perfectly classified
    elif kind == "many_zero":
        losses[: n - 3] = 0.0
    elif kind == "ties":
        losses = torch.round(losses)
    m = max(1.0, m_frac * n)
    w = lmp_weights(losses, p=p, m=m)
    ref_value, ref_w = _reference_algorithm_1(losses.tolist(), p, m)
    assert float((w * losses).sum()) == pytest.approx(ref_value, rel=1e-10, abs=1e-300)
    if kind != "ties":  # with ties any split of weight among equal losses is optimal
        np.testing.assert_allclose(w.numpy(), np.array(ref_w), rtol=1e-9, atol=1e-300)
    gamma, tau = _gamma_tau(n, p, m)
    assert float(w.max()) <= tau * (1 + 1e-9)
    assert float((w**p).sum() ** (1 / p)) <= gamma * (1 + 1e-9)
    assert float((w * losses).sum()) >= float(losses.mean()) * (1 - 1e-12)  # upper bound of the mean loss


@pytest.mark.parametrize("m", [1.0, 2.5, 4.0, 6.0])
def test_p1_matches_a_linear_program(m):
    g = torch.Generator().manual_seed(2)
    losses = torch.rand(6, generator=g, dtype=torch.float64)
    _, tau = _gamma_tau(6, 1.0, m)
    res = linprog(-losses.numpy(), A_ub=np.ones((1, 6)), b_ub=[1.0], bounds=[(0, tau)] * 6)
    assert res.success
    assert float((lmp_weights(losses, p=1.0, m=m) * losses).sum()) == pytest.approx(-res.fun, rel=1e-9)


@pytest.mark.parametrize("m", [1.5, 3.0, 5.0])
def test_p2_matches_a_numerical_maximiser(m):
    g = torch.Generator().manual_seed(3)
    losses = torch.rand(6, generator=g, dtype=torch.float64).numpy()
    gamma, tau = _gamma_tau(6, 2.0, m)
    res = minimize(
        lambda w: -losses @ w,
        x0=np.full(6, min(tau, gamma / math.sqrt(6)) * 0.5),
        jac=lambda w: -losses,
        bounds=[(0, tau)] * 6,
        constraints=[{"type": "ineq", "fun": lambda w: gamma**2 - w @ w, "jac": lambda w: -2 * w}],
        method="SLSQP",
        options={"ftol": 1e-14, "maxiter": 500},
    )
    assert res.success
    ours = float((lmp_weights(torch.from_numpy(losses), p=2.0, m=m) * torch.from_numpy(losses)).sum())
    assert ours == pytest.approx(-res.fun, rel=1e-6)


@pytest.mark.parametrize(("p", "m"), [(1.3, 0.4), (2.0, 0.25), (1.0, 0.3)])
def test_gradcheck_float64(p, m):
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(2, 2, 2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 2, (2, 2, 3), generator=g)
    loss = LossMaxPoolingLoss(p=p, m=m)
    assert torch.autograd.gradcheck(lambda x: loss(x, labels), (logits,), eps=1e-6, atol=1e-7)


def test_ignore_index_per_image_and_none():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 4, 4, generator=g, dtype=torch.float64)
    labels = torch.randint(0, 3, (2, 4, 4), generator=g)
    masked = labels.clone()
    masked[:, 3] = 99
    ours = LossMaxPoolingLoss(p=1.5, m=0.5, ignore_index=99, reduction="none")(logits, masked)
    ref = LossMaxPoolingLoss(p=1.5, m=0.5, reduction="none")(logits[:, :, :3], labels[:, :3])
    assert ours.shape == (2,)
    torch.testing.assert_close(ours, ref)
    batch = LossMaxPoolingLoss(p=1.5, m=0.5, per_image=False, reduction="none")(logits, labels)
    joined = LossMaxPoolingLoss(p=1.5, m=0.5)(
        torch.cat([logits[0], logits[1]], -1)[None], torch.cat([labels[0], labels[1]], -1)[None]
    )
    torch.testing.assert_close(batch, joined.reshape(1))
    masked[1] = 99
    assert LossMaxPoolingLoss(ignore_index=99, reduction="none")(logits, masked)[1].item() == 0.0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"p": 0.5}, "p must be a number >= 1"), ({"m": 0.0}, r"m must be the fraction"), ({"m": 2.0}, r"in \(0, 1\]")],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LossMaxPoolingLoss(**kwargs)


def test_functional_rejects_bad_m_and_empty_input():
    with pytest.raises(ValueError, match="m must satisfy 1 <= m <= n = 3"):
        lmp_weights(torch.ones(3), p=2.0, m=4.0)
    with pytest.raises(ValueError, match="losses is empty"):
        lmp_weights(torch.ones(0), p=2.0, m=1.0)


@PROPERTY_SETTINGS
@given(cases())
def test_properties(case):
    check_common_properties(lambda **kw: LossMaxPoolingLoss(p=1.3, m=0.25, **kw), case)
