"""Learning-rate schedules stepped once per iteration: linear warm-up, then cosine, polynomial or constant.

Built on ``torch.optim.lr_scheduler.LambdaLR`` (a multiplier of the optimizer's initial rate), so the state is
saved and resumed with the bundle's checkpoints like any PyTorch scheduler. Warm-up follows Goyal et al.
("Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour", arXiv:1706.02677, 2017, Sec. 2.2), cosine decay
Loshchilov and Hutter ("SGDR: Stochastic Gradient Descent with Warm Restarts", ICLR 2017, Eq. 5, without
restarts), polynomial decay ``(1 - t/T)^0.9`` nnU-Net (Isensee et al., Nature Methods 2021).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["SCHEDULES", "build_lr_scheduler", "lr_multiplier"]

SCHEDULES = ("cosine", "poly", "constant")


def lr_multiplier(step: int, total: int, *, name: str = "cosine", warmup: int = 0, power: float = 0.9) -> float:
    """The factor on the initial learning rate at iteration ``step`` (0-based) of ``total``.

    Example:
        >>> [round(lr_multiplier(s, 10, warmup=2), 3) for s in (0, 1, 2, 6, 9)]
        [0.5, 1.0, 1.0, 0.5, 0.038]
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if name == "constant":
        return 1.0
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0), span) / span
    if name == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * t))
    if name == "poly":
        return (1.0 - t) ** power
    raise ValueError(f"schedule name must be one of {SCHEDULES}, got {name!r}")


def build_lr_scheduler(
    optimizer: torch.optim.Optimizer,
    schedule: Mapping[str, Any] | str,
    *,
    epochs: int,
    steps_per_epoch: int,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-iteration scheduler (attach with MONAI's ``LrScheduleHandler(epoch_level=False)``).

    Args:
        optimizer: the optimizer whose initial rate is scaled.
        schedule: a name (``"cosine"``, ``"poly"``, ``"constant"``) or ``{"name", "warmup_fraction", "power"}``
            as in ``plan.json`` (warm-up as a fraction of all iterations, 0 by default).
        epochs: training epochs.
        steps_per_epoch: iterations per epoch (``len(train_loader)``).

    Raises:
        ValueError: unknown name or keys, a warm-up fraction outside [0, 1), non-positive epochs or steps.
    """
    spec: dict[str, Any] = {"name": schedule} if isinstance(schedule, str) else dict(schedule)
    unknown = sorted(set(spec) - {"name", "warmup_fraction", "power"})
    if unknown:
        raise ValueError(f"schedule: unknown key(s) {unknown}; allowed: name, warmup_fraction, power")
    name = spec.get("name", "cosine")
    if name not in SCHEDULES:
        raise ValueError(f"schedule name must be one of {SCHEDULES}, got {name!r}")
    fraction = float(spec.get("warmup_fraction", 0.0))
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"schedule warmup_fraction must be in [0, 1), got {fraction!r}")
    power = float(spec.get("power", 0.9))
    if int(epochs) < 1 or int(steps_per_epoch) < 1:
        raise ValueError(f"epochs and steps_per_epoch must be >= 1, got {epochs!r} and {steps_per_epoch!r}")
    total = int(epochs) * int(steps_per_epoch)
    warmup = round(fraction * total)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_multiplier(step, total, name=name, warmup=warmup, power=power)
    )
