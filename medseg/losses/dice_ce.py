"""Dice + cross-entropy (``dice_ce``): the default loss of nnU-Net and of MONAI's ``DiceCELoss``.

The sum of two registered losses, :class:`~medseg.losses.dice.DiceLoss` (MONAI's soft Dice on the softmax) and
:class:`~medseg.losses.cross_entropy.CrossEntropyLoss`, so it takes every target form of the call convention and
``ignore_index``; with the defaults it equals ``monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)``.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from torch import nn

from medseg.losses._checks import check_nonneg
from medseg.losses._input import check_reduction
from medseg.losses.cross_entropy import CrossEntropyLoss
from medseg.losses.dice import DiceLoss
from medseg.registry import LOSSES

__all__ = ["DiceCELoss"]

logger = logging.getLogger(__name__)


@LOSSES.register("dice_ce")
class DiceCELoss(nn.Module):
    r"""Weighted sum of soft Dice and cross-entropy.

    .. math::
        L = \lambda_{dice} L_{Dice} + \lambda_{ce} L_{CE}

    Args:
        include_background: keep the background channel in the Dice term (MONAI's default: yes).
        lambda_dice: weight of the Dice term (>= 0).
        lambda_ce: weight of the cross-entropy term (>= 0).
        smooth_nr: Dice numerator smoothing.
        smooth_dr: Dice denominator smoothing.
        batch: one Dice per class over the whole batch instead of per image.
        ignore_index: label value whose pixels are left out of both terms.
        reduction: ``"mean"`` or ``"sum"`` (the terms have different shapes, so ``"none"`` is refused).

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # predicts labels [0, 1]
        >>> round(DiceCELoss()(logits, torch.tensor([[[0, 1]]])).item(), 4)
        0.0

    References:
        F. Isensee, P. F. Jaeger, S. A. A. Kohl, J. Petersen, K. H. Maier-Hein, "nnU-Net: a self-configuring
        method for deep learning-based biomedical image segmentation", Nature Methods 18, 2021,
        doi:10.1038/s41592-020-01008-z (Dice + cross-entropy as the default loss).
    """

    def __init__(
        self,
        include_background: bool = True,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        ignore_index: int | None = None,
        reduction: Any = "mean",
    ) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        if self.reduction == "none":
            raise ValueError(
                "dice_ce: reduction='none' is not offered (the terms have different shapes); use mean or sum"
            )
        self.lambda_dice = check_nonneg("lambda_dice", lambda_dice)
        self.lambda_ce = check_nonneg("lambda_ce", lambda_ce)
        if self.lambda_dice + self.lambda_ce <= 0:
            raise ValueError("dice_ce: lambda_dice and lambda_ce cannot both be 0")
        self.dice = DiceLoss(
            include_background=include_background,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
            ignore_index=ignore_index,
            reduction=self.reduction,
        )
        self.ce = CrossEntropyLoss(ignore_index=ignore_index, reduction=self.reduction)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of raw logits ``(B, K, *spatial)`` against any target form of the call convention."""
        out: torch.Tensor = self.lambda_dice * self.dice(logits, target) + self.lambda_ce * self.ce(logits, target)
        return out
