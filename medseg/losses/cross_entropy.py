"""Categorical cross-entropy over pixels, following the medseg call convention (``ce`` in the registry).

A thin wrapper over :func:`torch.nn.functional.cross_entropy`: it accepts every target form of the convention,
turns ``ignore_index`` pixels (and all-zero one-hot pixels) into PyTorch's ignore value, computes half-precision
logits in float32 and validates its arguments at construction. Its inputs are checked in full once per input
signature (:class:`medseg.losses._base.CheckedLoss`), so a step costs what PyTorch's own call costs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from medseg.losses._base import CheckedLoss
from medseg.losses._checks import check_ignore_index, check_nonneg
from medseg.losses._input import check_logits, check_reduction, target_to_labels
from medseg.registry import LOSSES

__all__ = ["CrossEntropyLoss", "per_pixel_cross_entropy"]

logger = logging.getLogger(__name__)

_TORCH_IGNORE = -100


def _check_weight(weight: Sequence[float] | torch.Tensor | None) -> torch.Tensor | None:
    if weight is None:
        return None
    try:
        w = torch.as_tensor(weight, dtype=torch.float32).clone()
    except (TypeError, ValueError, RuntimeError) as err:
        raise TypeError(f"weight must be None or a sequence of per-class numbers, got {weight!r}") from err
    if w.ndim != 1 or w.numel() == 0 or not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(
            f"weight must be a 1-D sequence of K finite non-negative per-class weights, got {weight!r}; "
            "e.g. [0.2, 1.0, 1.0]"
        )
    return w


def per_pixel_cross_entropy(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    check: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Per-pixel cross-entropy ``(B, *spatial)`` (0 at ignored pixels), the labels and the validity mask.

    Shared by :class:`CrossEntropyLoss` and the losses built on pixel CE (loss max-pooling).

    Args:
        logits: raw outputs ``(B, K, *spatial)``.
        target: any form of the call convention.
        weight: optional per-class weights ``(K,)``; each pixel's loss is multiplied by its class weight.
        ignore_index: label value excluded from the loss.
        label_smoothing: PyTorch's label smoothing in [0, 1).
        check: run the full-pass input checks (finite logits, label values); the loss modules pass ``False``.

    Returns:
        ``(losses, labels, valid)``: ``losses`` float32 or wider, ``labels`` int64 ``(B, *spatial)`` (0 at
        ignored pixels), ``valid`` a bool mask or ``None``.
    """
    logits = check_logits(logits, check_finite=check)
    labels, valid = target_to_labels(logits, target, ignore_index=ignore_index, check=check)
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    if weight is not None:
        if weight.numel() != x.shape[1]:
            raise ValueError(
                f"weight has {weight.numel()} entries but logits have K={x.shape[1]} classes; give one weight per class"
            )
        weight = weight.to(device=x.device, dtype=x.dtype)
    torch_labels = labels if valid is None else labels.masked_fill(~valid, _TORCH_IGNORE)
    losses = F.cross_entropy(
        x, torch_labels, weight=weight, ignore_index=_TORCH_IGNORE, reduction="none", label_smoothing=label_smoothing
    )
    return losses, labels, valid


@LOSSES.register("ce")
class CrossEntropyLoss(CheckedLoss):
    r"""Pixel-wise categorical cross-entropy, optionally class-weighted and label-smoothed.

    .. math::
        L = \frac{\sum_i w_{y_i}\, \ell_i}{\sum_i w_{y_i}}, \qquad
        \ell_i = -\sum_k \tilde y_{ik} \log \operatorname{softmax}(s_i)_k

    over the valid pixels i, with :math:`\tilde y` the (optionally smoothed) one-hot target and :math:`w` the
    class weights (all 1 by default) — PyTorch's definition.

    Args:
        weight: per-class weights, length K, non-negative; ``None`` weighs every class 1.
        ignore_index: label value whose pixels are excluded (e.g. 255); ``None`` keeps every pixel.
        reduction: ``"mean"`` (weighted mean over valid pixels, as PyTorch), ``"sum"`` or ``"none"`` (per-pixel
            ``(B, *spatial)``, 0 at ignored pixels).
        label_smoothing: in [0, 1); 0 is plain cross-entropy.

    Example:
        >>> import torch
        >>> logits = torch.zeros(1, 2, 1, 1)  # p = (1/2, 1/2): loss = ln 2
        >>> round(CrossEntropyLoss()(logits, torch.zeros(1, 1, 1, dtype=torch.long)).item(), 4)
        0.6931

    References:
        The pixel-wise softmax log-loss, e.g. Long J., Shelhamer E., Darrell T. "Fully Convolutional Networks for
        Semantic Segmentation." CVPR 2015, doi:10.1109/CVPR.2015.7298965; implementation
        ``torch.nn.functional.cross_entropy``.
    """

    weight: torch.Tensor | None

    def __init__(
        self,
        weight: Sequence[float] | torch.Tensor | None = None,
        ignore_index: int | None = None,
        reduction: Any = "mean",
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.register_buffer("weight", _check_weight(weight))
        self.ignore_index = check_ignore_index(ignore_index)
        self.reduction = check_reduction(reduction)
        self.label_smoothing = check_nonneg("label_smoothing", label_smoothing)
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")

    def _forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Shape:
            - logits: ``(B, K, *spatial)``.
            - target: ``(B, *spatial)``, ``(B, 1, *spatial)`` or one-hot ``(B, K, *spatial)``.
            - output: scalar, or ``(B, *spatial)`` for ``"none"``.
        """
        labels, valid = target_to_labels(logits, target, ignore_index=self.ignore_index, check=False)
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        weight = self.weight
        if weight is not None:
            if weight.numel() != x.shape[1]:
                raise ValueError(
                    f"weight has {weight.numel()} entries but logits have K={x.shape[1]} classes; give one weight "
                    "per class"
                )
            weight = weight.to(device=x.device, dtype=x.dtype)
        if valid is None:
            # every pixel counts: PyTorch's reduction is this loss's (its "mean" divides by the summed weights)
            return F.cross_entropy(
                x, labels, weight=weight, reduction=self.reduction, label_smoothing=self.label_smoothing
            )
        losses = F.cross_entropy(
            x,
            labels.masked_fill(~valid, _TORCH_IGNORE),
            weight=weight,
            ignore_index=_TORCH_IGNORE,
            reduction="none",
            label_smoothing=self.label_smoothing,
        )
        if self.reduction == "none":
            return losses
        if self.reduction == "sum":
            return losses.sum()
        # every pixel ignored gives 0 (PyTorch's mean would be 0/0)
        w = valid.to(losses.dtype) if weight is None else weight[labels] * valid
        return losses.sum() / w.sum().clamp_min(torch.finfo(losses.dtype).tiny)

    def extra_repr(self) -> str:
        return (
            f"weight={None if self.weight is None else self.weight.tolist()}, ignore_index={self.ignore_index}, "
            f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"
        )
