"""Loss max-pooling over pixel cross-entropy (``lmp`` in the registry)."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from medseg.losses._base import CheckedLoss
from medseg.losses._checks import check_flag, check_ignore_index
from medseg.losses._input import check_reduction
from medseg.losses.cross_entropy import per_pixel_cross_entropy
from medseg.losses.functional import lmp_weights, lmp_weights_rows
from medseg.registry import LOSSES

__all__ = ["LossMaxPoolingLoss"]

logger = logging.getLogger(__name__)


@LOSSES.register("lmp")
class LossMaxPoolingLoss(CheckedLoss):
    r"""Loss max-pooling (LMP): pixel cross-entropy re-weighted by the worst-case bounded weighting.

    For each image with n valid pixels and pixel losses :math:`\ell`,

    .. math::
        L_{\mathcal W} = \max\{ w \cdot \ell : \|w\|_p \le n^{-1/q},\ \|w\|_\infty \le \tau \},
        \qquad q = \tfrac{p}{p-1},\ m = (n^{-1/q}/\tau)^p \quad \text{(Eqs. (4)-(5))}

    solved in closed form (Thm. 1-2, Algorithm 1; :func:`medseg.losses.functional.lmp_weights`). The uniform
    weighting 1/n is feasible, so :math:`L_{\mathcal W} \ge` mean CE; with ``m`` covering every pixel
    (``m=1.0`` here) or ``p=inf`` it *is* the mean CE. Smaller ``m`` and p closer to 1 focus the loss on the
    hardest pixels; the gradient is :math:`w^* \cdot \partial\ell` (Sec. 4).

    Args:
        p: the p-norm bound, >= 1 (``float("inf")`` allowed); the paper's best Cityscapes setting is 1.3.
        m: the paper's m as a *fraction* of the valid pixels of each image, in (0, 1]: at least ⌈m·n⌉ pixels get
            weight (clipped to m·n >= 1). The paper's experiments use 0.25 ("25% of valid pixels per crop").
        ignore_index: label value whose pixels are excluded (they do not count in n).
        per_image: pool within each image (paper); ``False`` pools over the whole batch.
        reduction: ``"mean"`` / ``"sum"`` over images, or ``"none"`` (``(B,)``, ``(1,)`` with
            ``per_image=False``).

    Note:
        The paper states m as an absolute pixel count with 1 <= m <= n; it is given here as a fraction so one
        config fits every crop size (the paper's own experiments quote it that way). An image with no valid
        pixel contributes 0. The weights are computed in float64 without gradient; the loss is their dot product
        with the differentiable pixel CE, whose gradient is the paper's (envelope theorem).

    Example:
        >>> import torch
        >>> logits, labels = torch.randn(2, 3, 4, 4), torch.randint(0, 3, (2, 4, 4))
        >>> ce = torch.nn.functional.cross_entropy(logits, labels)
        >>> bool(torch.isclose(LossMaxPoolingLoss(p=1.7, m=1.0)(logits, labels), ce))  # m = n: mean CE
        True
        >>> bool(LossMaxPoolingLoss(p=1.3, m=0.25)(logits, labels) >= ce)  # an upper bound of the mean
        True

    References:
        Rota Bulò S., Neuhold G., Kontschieder P. "Loss Max-Pooling for Semantic Image Segmentation." CVPR 2017,
        doi:10.1109/CVPR.2017.749 (extended version: Eqs. (2)-(5), (9)-(10), Thm. 1-2, Algorithm 1).
    """

    def __init__(
        self,
        p: float = 1.3,
        m: float = 0.25,
        *,
        ignore_index: int | None = None,
        per_image: bool = True,
        reduction: Any = "mean",
    ) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, (int, float)) or math.isnan(p) or p < 1:
            raise ValueError(f"p must be a number >= 1 (or inf), got {p!r}; the paper uses p in [1, 2.3]")
        if isinstance(m, bool) or not isinstance(m, (int, float)) or not (0 < m <= 1):
            raise ValueError(
                f"m must be the fraction of valid pixels that carry weight, in (0, 1], got {m!r}; "
                "e.g. 0.25 (the paper's setting), 1.0 for the mean CE"
            )
        self.p = float(p)
        self.m = float(m)
        self.ignore_index = check_ignore_index(ignore_index)
        self.per_image = check_flag("per_image", per_image)
        self.reduction = check_reduction(reduction)

    def _forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Shape:
            - logits: ``(B, K, *spatial)``.
            - target: ``(B, *spatial)``, ``(B, 1, *spatial)`` or one-hot ``(B, K, *spatial)``.
            - output: scalar, or ``(B,)`` / ``(1,)`` for ``"none"``.
        """
        losses, _, valid = per_pixel_cross_entropy(logits, target, ignore_index=self.ignore_index, check=False)
        b = losses.shape[0]
        flat = losses.reshape(b, -1)
        mask = None if valid is None else valid.reshape(b, -1)
        if not self.per_image:
            flat = flat.reshape(1, -1)
            mask = None if mask is None else mask.reshape(1, -1)
        if mask is None:  # every image has the same n: all rows at once
            n = flat.shape[1]
            m_abs = min(max(self.m * n, 1.0), float(n))
            w = lmp_weights_rows(flat, p=self.p, m=m_abs).to(flat.dtype)
            per_image = (w * flat).sum(1)
        else:
            values = []
            for i in range(flat.shape[0]):
                pixel_losses = flat[i][mask[i]]
                n = pixel_losses.numel()
                if n == 0:
                    values.append(flat[i].sum() * 0.0)
                    continue
                m_abs = min(max(self.m * n, 1.0), float(n))
                w = lmp_weights(pixel_losses, p=self.p, m=m_abs).to(pixel_losses.dtype)
                values.append((w * pixel_losses).sum())
            per_image = torch.stack(values)
        if self.reduction == "none":
            return per_image
        return per_image.sum() if self.reduction == "sum" else per_image.mean()

    def extra_repr(self) -> str:
        return (
            f"p={self.p}, m={self.m}, ignore_index={self.ignore_index}, per_image={self.per_image}, "
            f"reduction={self.reduction!r}"
        )
