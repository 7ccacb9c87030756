"""COPLE-Net's noise-robust Dice loss (``noise_robust_dice`` in the registry, plus preset variants)."""

from __future__ import annotations

import logging
from typing import Any

import torch

from medseg.losses import functional
from medseg.losses._checks import check_flag, check_nonneg
from medseg.losses._input import PreparedInput
from medseg.losses._region import RegionLoss
from medseg.registry import LOSSES

__all__ = ["NoiseRobustDiceLoss", "nr_dice_gamma2"]

logger = logging.getLogger(__name__)


@LOSSES.register("noise_robust_dice")
class NoiseRobustDiceLoss(RegionLoss):
    r"""Noise-robust Dice loss (NR-Dice) of COPLE-Net, per image and class, averaged.

    .. math::
        L_c = \frac{\sum_v |p_v - g_v|^{\gamma}}{\sum_v p_v^2 + \sum_v g_v^2 + \epsilon}

    With :math:`\gamma = 2` this is the squared-denominator soft Dice loss (up to
    :math:`\epsilon / (\sum p^2 + \sum g^2 + \epsilon)`); with :math:`1 \le \gamma < 2` a badly wrong pixel (a
    likely noisy label) weighs relatively less than in Dice, which is the point of the loss (Wang et al. use
    :math:`\gamma = 1.5`). For :math:`\gamma < 2` the loss can exceed 1: its supremum is
    :func:`medseg.losses.functional.noise_robust_dice_upper_bound`.

    Args:
        include_background: keep channel 0.
        to_onehot_y: ``None`` accepts every target form; ``True`` / ``False`` require labels / one-hot.
        sigmoid: sigmoid per channel instead of the softmax.
        softmax: softmax over channels; ``None`` = ``not sigmoid``.
        gamma: exponent, > 0; 1.5 in the paper, 2 gives (squared) Dice.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(B, C, 1, 1[, 1])``).
        eps: denominator constant, > 0 (1e-5 as in the authors' code).
        squared_pred: squares in the denominator (paper); ``False`` uses :math:`\sum p + \sum g`.
        batch: sum over the batch before dividing.
        ignore_index: label value whose pixels are removed from every sum.

    Note:
        The loss is computed per image and class and then averaged; the paper writes a single sum over pixels
        for a binary task. The per-class extension, ``include_background`` and 3D inputs follow MONAI's Dice.
        Some public code (e.g. the authors' PyMIC) uses an unsquared denominator: ``squared_pred=False``.

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 1, 1)  # p = (1/2, 1/2), label 0
        >>> # class 0: (1/2)^1.5 / (1/4 + 1) = 0.2828; class 1: (1/2)^1.5 / (1/4 + 0) = 1.4142; mean 0.8485
        >>> round(NoiseRobustDiceLoss(eps=1e-12)(logits, torch.zeros(1, 1, 1, dtype=torch.long)).item(), 4)
        0.8485

    References:
        Wang G., Liu X., Li C., Xu Z., Ruan J., Zhu H., Meng T., Li K., Huang N., Zhang S. "A Noise-Robust
        Framework for Automatic Segmentation of COVID-19 Pneumonia Lesions From CT Images." IEEE TMI
        39(8):2653-2663, 2020, doi:10.1109/TMI.2020.3000314 (the NR-Dice loss; its equation number could not be
        checked here: the PDF is not among the project papers).
    """

    def __init__(
        self,
        include_background: bool = True,
        to_onehot_y: bool | None = None,
        sigmoid: bool = False,
        softmax: bool | None = None,
        gamma: float = 1.5,
        reduction: Any = "mean",
        eps: float = 1e-5,
        squared_pred: bool = True,
        batch: bool = False,
        *,
        ignore_index: int | None = None,
    ) -> None:
        super().__init__(include_background, to_onehot_y, sigmoid, softmax, reduction, batch, ignore_index)
        self.gamma = check_nonneg("gamma", gamma, positive=True)
        self.eps = check_nonneg("eps", eps, positive=True)
        self.squared_pred = check_flag("squared_pred", squared_pred)

    def compute(self, prep: PreparedInput) -> torch.Tensor:
        scores = functional.noise_robust_dice(
            prep.pred,
            prep.onehot,
            gamma=self.gamma,
            eps=self.eps,
            squared_pred=self.squared_pred,
            batch=self.batch,
        )
        return self.reduce(scores, prep.pred.ndim - 2)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, eps={self.eps}, squared_pred={self.squared_pred}, " + super().extra_repr()


@LOSSES.register("nr_dice_gamma2")
def nr_dice_gamma2(**kwargs: Any) -> NoiseRobustDiceLoss:
    """NR-Dice with ``gamma=2``: the squared soft Dice loss without numerator smoothing (an ablation preset)."""
    if "gamma" in kwargs:
        raise TypeError("nr_dice_gamma2 fixes gamma=2; use 'noise_robust_dice' to choose gamma")
    return NoiseRobustDiceLoss(gamma=2.0, **kwargs)
