"""Validation helpers shared by the medseg loss modules (constructor arguments and MONAI-style flags).

Every message names the argument, the value received, what is allowed and how to fix it (STYLE.md).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "check_choice",
    "check_flag",
    "check_ignore_index",
    "check_nonneg",
    "check_to_onehot_y",
    "resolve_activation",
]


def check_flag(name: str, value: object) -> bool:
    """Validate a boolean constructor argument (``0``/``1`` are refused too: a typo in a config should fail)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}); pass a bool")
    return value


def check_nonneg(name: str, value: object, *, positive: bool = False) -> float:
    """Validate a finite non-negative (or positive) real constructor argument."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise TypeError(f"{name} must be a finite real number, got {value!r} ({type(value).__name__})")
    if float(value) < 0 or (positive and float(value) == 0):
        allowed = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be {allowed}, got {value!r}; pass a value {allowed}")
    return float(value)


def check_ignore_index(value: object) -> int | None:
    """Validate ``ignore_index``: ``None`` or an int."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"ignore_index must be None or an int label value (e.g. 255), got {value!r} ({type(value).__name__})"
        )
    return value


def resolve_activation(sigmoid: object, softmax: object) -> tuple[bool, bool]:
    """Turn the MONAI-style ``sigmoid`` / ``softmax`` flags into the pair to apply.

    ``softmax=None`` (the medseg default) means "softmax unless ``sigmoid=True``"; both False means the inputs
    are used as given (already probabilities), as in MONAI.

    Raises:
        TypeError: for non-bool flags.
        ValueError: for ``sigmoid=True`` with ``softmax=True``.
    """
    sig = check_flag("sigmoid", sigmoid)
    soft = (not sig) if softmax is None else check_flag("softmax", softmax)
    if sig and soft:
        raise ValueError("sigmoid=True and softmax=True are mutually exclusive; set one of them to False")
    return sig, soft


def check_to_onehot_y(logits: torch.Tensor, target: torch.Tensor, to_onehot_y: bool | None) -> None:
    """Enforce an explicit ``to_onehot_y`` against the target's form; ``None`` accepts every form.

    Raises:
        ValueError: ``to_onehot_y=True`` with a one-hot target, or ``False`` with integer labels.
    """
    if to_onehot_y is None:
        return
    is_onehot = logits.ndim == target.ndim and logits.shape[1] > 1 and tuple(target.shape) == tuple(logits.shape)
    if to_onehot_y and is_onehot:
        raise ValueError(
            f"to_onehot_y=True expects integer labels (B, 1, *spatial) or (B, *spatial), but target has the "
            f"one-hot shape {tuple(target.shape)}; pass to_onehot_y=False or None"
        )
    if not to_onehot_y and not is_onehot:
        raise ValueError(
            f"to_onehot_y=False expects a one-hot target of shape {tuple(logits.shape)}, got "
            f"{tuple(target.shape)}; pass to_onehot_y=True or None for integer labels"
        )


def check_choice(name: str, value: object, allowed: tuple[str, ...]) -> str:
    """Validate a string option against its closed set of values."""
    value = getattr(value, "value", value)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
    return str(value)
