"""Margin calibration combined with a region loss: ``dice_mc`` and ``tversky_mc`` (Li, Yu, Zhang, Table 5).

Both are ``λ_mc · MC + λ_region · Region`` with the region term on the softmax of the same logits: MONAI's
``DiceLoss``, or MONAI's Tversky values from :func:`medseg.losses.functional.tversky`. Inputs are prepared once by
:func:`medseg.losses._input.prepare`, so ``ignore_index``
pixels are excluded from the region term too (their probabilities and one-hot rows are zeroed), and half-precision
logits are computed in float32.

Example:
    >>> import torch
    >>> loss = DiceMCLoss([60, 40], backend="eager")
    >>> logits = torch.randn(2, 2, 8, 8, requires_grad=True)
    >>> value = loss(logits, torch.randint(0, 2, (2, 8, 8)))
    >>> value.backward()
    >>> value.ndim, logits.grad is not None
    (0, True)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from monai.losses.dice import DiceLoss as MonaiDiceLoss
from torch import nn

from medseg.losses import functional
from medseg.losses._base import CheckedLoss
from medseg.losses._input import apply_reduction, check_reduction, prepare
from medseg.losses._mc_kernel import Backend
from medseg.losses.margin_calibration import MarginCalibrationLoss, Surrogate, Variant
from medseg.margins import EmptyPolicy
from medseg.registry import CLASS_COUNTS, LOSSES

logger = logging.getLogger(__name__)

__all__ = ["DiceMCLoss", "TverskyMCLoss"]

Counts = Sequence[float] | np.ndarray | torch.Tensor


def _check_weight(value: Any, name: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a non-negative number, got {type(value).__name__} {value!r}") from err
    if not (np.isfinite(out) and out >= 0):
        raise ValueError(f"{name} must be a non-negative finite weight, got {value!r}; use e.g. 1.0")
    return out


class _RegionMCLoss(CheckedLoss):
    """``lambda_mc · MC(logits, target) + lambda_region · region(softmax(logits), onehot(target))``."""

    region_name = "region"

    def __init__(
        self,
        mc: MarginCalibrationLoss,
        region: nn.Module,
        *,
        lambda_mc: float,
        lambda_region: float,
        reduction: str,
        ignore_index: int | None,
        include_background: bool,
    ) -> None:
        super().__init__()
        reduction = check_reduction(reduction)
        if reduction == "none":
            raise ValueError(
                "reduction='none' is not available for a compound loss (the MC term is per pixel, the "
                f"{self.region_name} term per image and class); use 'mean' or 'sum'"
            )
        self.mc = mc
        self.region = region
        self.lambda_mc = _check_weight(lambda_mc, "lambda_mc")
        self.lambda_region = _check_weight(lambda_region, f"lambda_{self.region_name}")
        if self.lambda_mc == 0 and self.lambda_region == 0:
            raise ValueError(f"lambda_mc and lambda_{self.region_name} are both 0: the loss would be constant")
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.include_background = include_background

    def _forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Weighted sum of the MC loss and the region loss of ``logits`` against ``target``."""
        mc_value = self.mc(logits, target)
        prepared = prepare(
            logits,
            target,
            softmax=True,
            include_background=self.include_background,
            ignore_index=self.ignore_index,
            check=False,
        )
        region_value = self.region(prepared.pred, prepared.onehot)
        return self.lambda_mc * mc_value + self.lambda_region * region_value


class _TverskyTerm(nn.Module):
    """:func:`medseg.losses.functional.tversky` of probabilities and one-hot targets, reduced (MONAI's values)."""

    def __init__(
        self, *, alpha: float, beta: float, smooth_nr: float, smooth_dr: float, batch: bool, reduction: str
    ) -> None:
        super().__init__()
        self.alpha, self.beta, self.smooth_nr, self.smooth_dr = alpha, beta, smooth_nr, smooth_dr
        self.batch = batch
        self.reduction = reduction

    def forward(self, pred: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
        scores = functional.tversky(
            pred,
            onehot,
            alpha=self.alpha,
            beta=self.beta,
            smooth_nr=self.smooth_nr,
            smooth_dr=self.smooth_dr,
            batch=self.batch,
        )
        return apply_reduction(scores, self.reduction)


def _mc_term(
    class_counts: Counts | None,
    rho_neg: Counts | None,
    rho_pos: Counts | None,
    tau: float,
    v: float,
    variant: Variant,
    surrogate: Surrogate,
    ignore_index: int | None,
    reduction: str,
    empty: EmptyPolicy,
    backend: Backend,
) -> MarginCalibrationLoss:
    """The MC term both compounds share (a scalar: ``"sum"`` stays ``"sum"``, anything else averages)."""
    return MarginCalibrationLoss(
        class_counts,
        rho_neg=rho_neg,
        rho_pos=rho_pos,
        tau=tau,
        v=v,
        variant=variant,
        surrogate=surrogate,
        ignore_index=ignore_index,
        reduction="sum" if reduction == "sum" else "mean",
        empty=empty,
        backend=backend,
    )


@LOSSES.register("dice_mc", needs=(CLASS_COUNTS,))
class DiceMCLoss(_RegionMCLoss):
    r"""Margin calibration plus soft Dice: ``lambda_mc · MC + lambda_dice · Dice`` (Table 5, "Ours + Dice loss").

    .. math::

        L = λ_{mc} L_{MC}(s, y) + λ_{dice}\Big(1 - \frac{2\sum p g + ε_n}{\sum p + \sum g + ε_d}\Big)

    with ``p = softmax(s)`` and ``g`` the one-hot target, the Dice term from ``monai.losses.DiceLoss``.

    Args:
        class_counts, rho_neg, rho_pos, tau, v, variant, surrogate, ignore_index, empty, backend: as
            :class:`~medseg.losses.MarginCalibrationLoss`.
        reduction: ``"mean"`` or ``"sum"``, applied to both terms (``"none"`` is refused: the terms have
            different shapes).
        lambda_mc: weight of the MC term (default 1).
        lambda_dice: weight of the Dice term (default 1; the paper gives no weights, i.e. a plain sum).
        include_background: keep channel 0 in the Dice term (MONAI's default True).
        squared_pred, jaccard, smooth_nr, smooth_dr, batch: passed to ``monai.losses.DiceLoss``.

    Shape:
        logits ``(B, K, *spatial)``, target as in DESIGN.md's call convention; output a scalar.

    Raises:
        ValueError: for the arguments of either term, negative weights, or ``reduction="none"``.

    References:
        Z. Li, L. Yu, J. Zhang, "Distribution-aware Margin Calibration for Medical Image Segmentation",
        arXiv:2011.01462, Table 5. F. Milletari, N. Navab, S.-A. Ahmadi, "V-Net", 3DV 2016 (Dice loss).
    """

    region_name = "dice"

    def __init__(
        self,
        class_counts: Counts | None = None,
        *,
        rho_neg: Counts | None = None,
        rho_pos: Counts | None = None,
        tau: float = 10.0,
        v: float = 1.0,
        variant: Variant = "paper",
        surrogate: Surrogate = "log",
        ignore_index: int | None = None,
        reduction: str = "mean",
        empty: EmptyPolicy = "error",
        backend: Backend = "auto",
        lambda_mc: float = 1.0,
        lambda_dice: float = 1.0,
        include_background: bool = True,
        squared_pred: bool = False,
        jaccard: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
    ) -> None:
        reduction = check_reduction(reduction)
        mc = _mc_term(
            class_counts, rho_neg, rho_pos, tau, v, variant, surrogate, ignore_index, reduction, empty, backend
        )
        region = MonaiDiceLoss(
            include_background=True,  # the background channel is dropped by prepare() when asked
            softmax=False,
            squared_pred=squared_pred,
            jaccard=jaccard,
            reduction=reduction if reduction != "none" else "mean",
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            batch=batch,
        )
        super().__init__(
            mc,
            region,
            lambda_mc=lambda_mc,
            lambda_region=lambda_dice,
            reduction=reduction,
            ignore_index=ignore_index,
            include_background=include_background,
        )

    @property
    def lambda_dice(self) -> float:
        """Weight of the Dice term."""
        return self.lambda_region


@LOSSES.register("tversky_mc", needs=(CLASS_COUNTS,))
class TverskyMCLoss(_RegionMCLoss):
    r"""Margin calibration plus Tversky: ``lambda_mc · MC + lambda_tversky · Tversky`` (Table 5).

    .. math::

        L = λ_{mc} L_{MC}(s, y) + λ_{t}\Big(1 - \frac{\sum p g + ε_n}
            {\sum p g + α\sum p(1-g) + β\sum (1-p) g + ε_d}\Big)

    with ``p = softmax(s)``, the Tversky term as ``monai.losses.TverskyLoss`` computes it; α weighs false positives
    and β false negatives (defaults 0.3 / 0.7, Salehi et al.'s setting, as in the paper's experiments).

    Args:
        class_counts, rho_neg, rho_pos, tau, v, variant, surrogate, ignore_index, empty, backend: as
            :class:`~medseg.losses.MarginCalibrationLoss`.
        reduction: ``"mean"`` or ``"sum"``.
        lambda_mc: weight of the MC term (default 1).
        lambda_tversky: weight of the Tversky term (default 1).
        alpha: Tversky α (false positives), default 0.3.
        beta: Tversky β (false negatives), default 0.7.
        include_background: keep channel 0 in the Tversky term.
        smooth_nr, smooth_dr, batch: as in ``monai.losses.TverskyLoss``.

    Shape:
        logits ``(B, K, *spatial)``, target as in DESIGN.md's call convention; output a scalar.

    Raises:
        ValueError: for the arguments of either term, negative weights/α/β, or ``reduction="none"``.

    References:
        Z. Li, L. Yu, J. Zhang, arXiv:2011.01462, Table 5. S. S. M. Salehi, D. Erdogmus, A. Gholipour,
        "Tversky loss function for image segmentation using 3D fully convolutional deep networks", MLMI 2017.
    """

    region_name = "tversky"

    def __init__(
        self,
        class_counts: Counts | None = None,
        *,
        rho_neg: Counts | None = None,
        rho_pos: Counts | None = None,
        tau: float = 10.0,
        v: float = 1.0,
        variant: Variant = "paper",
        surrogate: Surrogate = "log",
        ignore_index: int | None = None,
        reduction: str = "mean",
        empty: EmptyPolicy = "error",
        backend: Backend = "auto",
        lambda_mc: float = 1.0,
        lambda_tversky: float = 1.0,
        alpha: float = 0.3,
        beta: float = 0.7,
        include_background: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        batch: bool = False,
    ) -> None:
        reduction = check_reduction(reduction)
        alpha_f = _check_weight(alpha, "alpha")
        beta_f = _check_weight(beta, "beta")
        mc = _mc_term(
            class_counts, rho_neg, rho_pos, tau, v, variant, surrogate, ignore_index, reduction, empty, backend
        )
        region = _TverskyTerm(
            alpha=alpha_f, beta=beta_f, smooth_nr=smooth_nr, smooth_dr=smooth_dr, batch=batch, reduction=reduction
        )
        super().__init__(
            mc,
            region,
            lambda_mc=lambda_mc,
            lambda_region=lambda_tversky,
            reduction=reduction,
            ignore_index=ignore_index,
            include_background=include_background,
        )

    @property
    def lambda_tversky(self) -> float:
        """Weight of the Tversky term."""
        return self.lambda_region
