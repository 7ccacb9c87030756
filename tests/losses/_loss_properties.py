"""Shared Hypothesis strategies and property checks for the loss tests (STYLE.md, "Loss tests", layer 2).

Every loss module's test file draws a small case with :func:`cases` and runs :func:`check_common_properties`,
which asserts on that one case: finite loss and gradients (logits up to about +-50, classes absent from the
target), non-negativity and an optional upper bound, ``mean`` equal to the mean of ``none``, invariance to
reordering the batch and to the same flip / spatial permutation of logits and target, and that a perfect
prediction scores (near) zero and no worse than the drawn one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from hypothesis import settings
from hypothesis import strategies as st

#: Settings of the per-loss property tests: the loaded profile ("ci": derandomised, no deadline) with fewer
#: examples, since each example runs about ten forward passes and a dozen losses share the test-time budget.
PROPERTY_SETTINGS = settings(max_examples=12)


@dataclass
class Case:
    logits: torch.Tensor  # (B, K, *spatial) float64 or float32
    labels: torch.Tensor  # (B, *spatial) int64

    @property
    def num_classes(self) -> int:
        return int(self.logits.shape[1])


@st.composite
def cases(draw: Any, *, max_batch: int = 2, max_classes: int = 3, max_side: int = 6, scale: float = 50.0) -> Case:
    """Small 2D or 3D cases; logits in [-scale, scale]; labels may leave classes (or all but one) empty."""
    b = draw(st.integers(1, max_batch))
    k = draw(st.integers(2, max_classes))
    ndim = draw(st.sampled_from([2, 3]))
    side_max = max_side if ndim == 2 else max(2, max_side // 2 + 1)
    spatial = tuple(draw(st.integers(1, side_max)) for _ in range(ndim))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    mode = draw(st.sampled_from(["uniform", "extreme", "small"]))
    base = torch.rand(b, k, *spatial, generator=g, dtype=torch.float64) * 2 - 1
    if mode == "extreme":
        logits = torch.sign(base) * scale
    elif mode == "small":
        logits = base * 0.1
    else:
        logits = base * scale
    label_mode = draw(st.sampled_from(["random", "single_class", "two_classes"]))
    if label_mode == "single_class":
        labels = torch.full((b, *spatial), draw(st.integers(0, k - 1)), dtype=torch.long)
    elif label_mode == "two_classes":
        labels = torch.randint(0, 2, (b, *spatial), generator=g)
    else:
        labels = torch.randint(0, k, (b, *spatial), generator=g)
    return Case(logits=logits, labels=labels)


def perfect_logits(labels: torch.Tensor, num_classes: int, margin: float = 50.0) -> torch.Tensor:
    """Logits with a margin ``margin`` in favour of the true class everywhere."""
    onehot = F.one_hot(labels, num_classes).movedim(-1, 1).to(torch.float64)
    return (onehot * 2 - 1) * (margin / 2)


def check_common_properties(
    make_loss: Callable[..., torch.nn.Module],
    case: Case,
    *,
    upper: float | Callable[[Case], float] | None = None,
    perfect_tol: float | None = 1e-3,
    check_mean_of_none: bool = True,
    atol: float = 1e-5,
    lower: float = -1e-6,
    perfect_slack: float = 1e-5,
) -> None:
    """Assert the shared properties on one drawn case.

    Args:
        make_loss: factory taking ``reduction=`` and returning the loss module.
        case: the drawn case.
        upper: an upper bound of every per-item value (or a function of the case giving it).
        perfect_tol: a perfect prediction must score at most this (``None``: only "no worse than the case").
        check_mean_of_none: compare ``mean`` with the mean of ``none``.
        atol: absolute tolerance of the invariance checks.
        lower: lower bound of every value (0 up to rounding, except for learned surrogates).
        perfect_slack: how much a perfect prediction may exceed the drawn case (learned surrogates only).
    """
    logits = case.logits.clone().requires_grad_(True)
    labels = case.labels
    loss_mean = make_loss(reduction="mean")
    value = loss_mean(logits, labels)
    assert value.ndim == 0
    assert torch.isfinite(value), f"non-finite loss {value}"
    value.backward()
    assert logits.grad is not None
    assert bool(torch.isfinite(logits.grad).all()), "non-finite gradient"
    v = float(value.detach())
    assert v >= lower, f"loss {v} below {lower}"

    none = make_loss(reduction="none")(case.logits, labels)
    assert bool(torch.isfinite(none).all())
    assert float(none.min()) >= lower
    if upper is not None:
        bound = upper(case) if callable(upper) else upper
        assert float(none.max()) <= bound + 1e-6, f"loss {float(none.max())} above its bound {bound}"
    if check_mean_of_none:
        torch.testing.assert_close(none.mean(), value.detach(), atol=atol, rtol=1e-6)
    total = make_loss(reduction="sum")(case.logits, labels)
    torch.testing.assert_close(total, none.sum(), atol=atol * max(1, none.numel()), rtol=1e-6)

    # the same flip of every spatial axis, and a transpose of the last two, leave the loss unchanged
    dims = list(range(2, case.logits.ndim))
    flipped = loss_mean(case.logits.flip(dims), labels.flip([d - 1 for d in dims]))
    torch.testing.assert_close(flipped, value.detach(), atol=atol, rtol=1e-5)
    transposed = loss_mean(case.logits.transpose(-1, -2), labels.transpose(-1, -2))
    torch.testing.assert_close(transposed, value.detach(), atol=atol, rtol=1e-5)

    # reordering the batch does not change the mean
    if case.logits.shape[0] > 1:
        order = torch.arange(case.logits.shape[0] - 1, -1, -1)
        reordered = loss_mean(case.logits[order], labels[order])
        torch.testing.assert_close(reordered, value.detach(), atol=atol, rtol=1e-5)

    # a perfect prediction scores about zero, and no worse than the drawn logits
    perfect = float(loss_mean(perfect_logits(labels, case.num_classes).to(case.logits.dtype), labels))
    assert perfect <= v + perfect_slack, f"perfect prediction {perfect} scores worse than the drawn case {v}"
    if perfect_tol is not None:
        assert perfect <= perfect_tol, f"perfect prediction scores {perfect} > {perfect_tol}"
