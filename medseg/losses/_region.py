"""Common body of the region losses (Dice family, soft IoU, noise-robust Dice): validate, prepare, reduce."""

from __future__ import annotations

import logging
from typing import Any

import torch

from medseg.losses._base import CheckedLoss
from medseg.losses._checks import check_flag, check_ignore_index, check_to_onehot_y, resolve_activation
from medseg.losses._input import PreparedInput, apply_reduction, check_reduction, prepare

__all__ = ["RegionLoss"]

logger = logging.getLogger(__name__)


class RegionLoss(CheckedLoss):
    """Base of the region losses: MONAI-style activation / background / one-hot options plus ``ignore_index``.

    Subclasses implement :meth:`compute` on the prepared probabilities and one-hot targets.

    Args:
        include_background: keep channel 0; ``False`` drops it after the activation.
        to_onehot_y: ``None`` accepts every target form; ``True`` requires integer labels, ``False`` a one-hot
            target (MONAI's meaning), otherwise a ``ValueError`` is raised.
        sigmoid: apply a sigmoid per channel (multi-label) instead of the softmax.
        softmax: apply a softmax over channels; ``None`` means ``not sigmoid``; ``sigmoid=softmax=False`` uses the
            inputs as probabilities.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (or ``monai.utils.LossReduction``).
        batch: sum over the batch before dividing (one score per class).
        ignore_index: label value whose pixels are removed from every sum.
    """

    def __init__(
        self,
        include_background: bool,
        to_onehot_y: bool | None,
        sigmoid: bool,
        softmax: bool | None,
        reduction: Any,
        batch: bool,
        ignore_index: int | None,
    ) -> None:
        super().__init__()
        self.include_background = check_flag("include_background", include_background)
        self.to_onehot_y = None if to_onehot_y is None else check_flag("to_onehot_y", to_onehot_y)
        self.sigmoid, self.softmax = resolve_activation(sigmoid, softmax)
        self.reduction = check_reduction(reduction)
        self.batch = check_flag("batch", batch)
        self.ignore_index = check_ignore_index(ignore_index)

    def _forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Shape:
            - logits: ``(B, K, *spatial)`` raw network outputs, 2 or 3 spatial dims.
            - target: ``(B, *spatial)`` or ``(B, 1, *spatial)`` integer labels, or ``(B, K, *spatial)`` one-hot.
            - output: scalar for ``"mean"`` / ``"sum"``; for ``"none"`` MONAI's broadcastable per-(image, class)
              shape ``(B, C, 1, 1[, 1])`` (``(C, 1, 1[, 1])`` with ``batch=True``; C = K, or K - 1 without the
              background).
        """
        check_to_onehot_y(logits, target, self.to_onehot_y)
        prep = prepare(
            logits,
            target,
            softmax=self.softmax,
            sigmoid=self.sigmoid,
            include_background=self.include_background,
            ignore_index=self.ignore_index,
            check=False,
        )
        return self.compute(prep)

    def compute(self, prep: PreparedInput) -> torch.Tensor:
        """Loss from the prepared input (implemented by subclasses)."""
        raise NotImplementedError

    def reduce(self, scores: torch.Tensor, spatial_ndim: int) -> torch.Tensor:
        """Apply ``reduction`` to ``(B, C)`` scores (``(1, C)`` with ``batch``); ``"none"`` gives MONAI's shape."""
        if self.reduction == "none":
            if self.batch:  # MONAI: (C, 1, 1[, 1]) when the batch is summed
                return scores.reshape(scores.shape[-1], *([1] * spatial_ndim))
            return scores.reshape(*scores.shape[:2], *([1] * spatial_ndim))
        return apply_reduction(scores, self.reduction)

    def extra_repr(self) -> str:
        return (
            f"include_background={self.include_background}, softmax={self.softmax}, sigmoid={self.sigmoid}, "
            f"reduction={self.reduction!r}, batch={self.batch}, ignore_index={self.ignore_index}"
        )
