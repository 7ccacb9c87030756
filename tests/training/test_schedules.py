"""Per-iteration learning-rate schedules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from medseg.training.schedules import build_lr_scheduler, lr_multiplier


def _rates(schedule: object, epochs: int, steps: int) -> list[float]:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = build_lr_scheduler(opt, schedule, epochs=epochs, steps_per_epoch=steps)  # type: ignore[arg-type]
    out = []
    for _ in range(epochs * steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine() -> None:
    rates = _rates({"name": "cosine", "warmup_fraction": 0.1}, 10, 10)  # 100 steps, 10 of warm-up
    assert rates[:3] == pytest.approx([0.1, 0.2, 0.3])
    assert rates[9] == pytest.approx(1.0)
    assert rates[55] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    assert all(a >= b for a, b in itertools.pairwise(rates[10:]))


def test_poly_and_constant() -> None:
    assert _rates("constant", 2, 3) == [1.0] * 6
    assert lr_multiplier(50, 100, name="poly") == pytest.approx(0.5**0.9)


@pytest.mark.parametrize(
    ("schedule", "match"),
    [
        ("linear", "schedule name"),
        ({"name": "cosine", "warmup": 5}, "unknown key"),
        ({"warmup_fraction": 1.0}, r"\[0, 1\)"),
    ],
)
def test_bad_schedules(schedule: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _rates(schedule, 1, 1)
