"""Rahman–Wang soft IoU loss (``soft_iou`` in the registry)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from medseg.losses import functional
from medseg.losses._checks import check_nonneg
from medseg.losses._input import PreparedInput
from medseg.losses._region import RegionLoss
from medseg.registry import LOSSES

__all__ = ["SoftIoULoss"]

logger = logging.getLogger(__name__)


@LOSSES.register("soft_iou")
class SoftIoULoss(RegionLoss):
    r"""Soft IoU loss of Rahman and Wang, per image and class, averaged.

    .. math::
        L_c = 1 - \frac{\sum_v p_v g_v + s_{nr}}{\sum_v (p_v + g_v - p_v g_v) + s_{dr}}

    The numerator is the probability mass on true positives; the denominator is the soft union. It equals the
    IoU loss for hard (0/1) predictions and is differentiable in between.

    Args:
        include_background: keep channel 0.
        to_onehot_y: ``None`` accepts every target form; ``True`` / ``False`` require labels / one-hot.
        sigmoid: sigmoid per channel instead of the softmax.
        softmax: softmax over channels; ``None`` = ``not sigmoid``.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(B, C, 1, 1[, 1])``).
        smooth_nr: added to the numerator (>= 0); an empty class predicted empty scores 0.
        smooth_dr: added to the denominator (>= 0).
        batch: sum over the batch before dividing.
        ignore_index: label value whose pixels are removed from every sum.

    Note:
        The paper has no smoothing terms; ``smooth_nr`` / ``smooth_dr`` (MONAI's names and defaults) keep the
        loss defined for a class absent from both target and prediction. Set both to 0 for the exact formula.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[9.0, -9.0]], [[-9.0, 9.0]]]])  # predicts labels [0, 1]
        >>> round(SoftIoULoss()(logits, torch.tensor([[[0, 1]]])).item(), 3)
        0.0

    References:
        Rahman M. A., Wang Y. "Optimizing Intersection-Over-Union in Deep Neural Networks for Image
        Segmentation." ISVC 2016, doi:10.1007/978-3-319-50835-1_22; restated as IoU-Appx in Nagendar G.,
        Singh D., Balasubramanian V. N., Jawahar C. V. "NeuroIoU: Learning a Surrogate Loss for Semantic
        Segmentation." BMVC 2018, Sec. 2.
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool | None = None,
        sigmoid: bool = False,
        softmax: bool | None = None,
        reduction: Any = "mean",
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
        *,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(include_background, to_onehot_y, sigmoid, softmax, reduction, batch, ignore_index)
        self.smooth_nr = check_nonneg("smooth_nr", smooth_nr)
        self.smooth_dr = check_nonneg("smooth_dr", smooth_dr)

    def compute(self, prep: PreparedInput) -> torch.Tensor:
        scores = functional.soft_iou(
            prep.pred, prep.onehot, smooth_nr=self.smooth_nr, smooth_dr=self.smooth_dr, batch=self.batch
        )
        return self.reduce(scores, prep.pred.ndim - 2)
