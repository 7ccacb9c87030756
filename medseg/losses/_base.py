"""Base of the loss modules: full input validation once per input signature, then only through the loss value.

Checking every batch for NaN/inf logits and out-of-range labels costs a full pass over the data each step (about
half of a cross-entropy step on a 2-core CPU at ``(8, 5, 256, 256)``, and a device sync on a GPU). A
:class:`CheckedLoss` instead

1. runs :func:`medseg.losses._input.check_inputs` on the first call for each input signature (shapes, dtypes,
   devices), so a wrong set-up fails at once with a message that names the problem;
2. afterwards checks only what comes for free: the loss value (NaN or inf logits make it non-finite), a sum of the
   logits folded into that check (catches ``-inf`` scores that a loss may ignore) and the indexing errors PyTorch
   raises itself for labels outside ``[0, K)``. When one of them fires, the full check runs once to name the
   cause.

A float target with non-integer values is caught on the first call of a signature only. On a GPU the value check
reads one scalar per step, as the training loop does anyway to log the loss.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from medseg.losses._input import as_plain_tensor, check_inputs, check_logits

__all__ = ["CheckedLoss"]

logger = logging.getLogger(__name__)

_MAX_SIGNATURES = 16


def _signature(logits: torch.Tensor, target: torch.Tensor) -> tuple[object, ...]:
    return (tuple(logits.shape), logits.dtype, logits.device, tuple(target.shape), target.dtype, target.device)


def _value_is_finite(value: torch.Tensor, logits: torch.Tensor) -> bool:
    """Whether the loss value is finite, with a sum of the logits folded in (0·inf and 0·NaN are NaN)."""
    total = value.detach().sum()
    dtype = torch.float32 if logits.dtype in (torch.float16, torch.bfloat16) else None
    screen = logits.detach().sum(dtype=dtype)
    return bool(torch.isfinite(total + screen * 0))


class CheckedLoss(nn.Module):
    """An ``nn.Module`` loss whose subclasses implement :meth:`_forward`; see the module docstring.

    Subclasses call the preparation helpers with ``check=False`` and set ``self.ignore_index`` (``None`` when the
    loss has no ignore value).
    """

    ignore_index: int | None = None

    def __init__(self) -> None:
        super().__init__()
        self._checked: set[tuple[object, ...]] = set()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss of raw scores ``logits`` against ``target`` (DESIGN.md's call convention)."""
        logits = check_logits(logits, check_finite=False)
        if not isinstance(target, torch.Tensor):
            raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
        target = as_plain_tensor(target)
        key = _signature(logits, target)
        first = key not in self._checked
        if first:
            check_inputs(logits, target, ignore_index=self.ignore_index)
        try:
            value = self._forward(logits, target)
        except (RuntimeError, IndexError):
            if not first:  # e.g. a label >= K in a later batch: name it instead of PyTorch's indexing error
                check_inputs(logits, target, ignore_index=self.ignore_index)
            raise
        if not first and not _value_is_finite(value, logits):
            check_inputs(logits, target, ignore_index=self.ignore_index)  # raises for NaN/inf logits
        elif first:
            if len(self._checked) >= _MAX_SIGNATURES:
                self._checked.clear()
            self._checked.add(key)
        return value

    def _forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss of validated inputs (implemented by subclasses)."""
        raise NotImplementedError

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["_checked"] = set()  # a copied or unpickled loss validates its first inputs again
        return state
