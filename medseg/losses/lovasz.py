"""Lovász-Softmax loss (``lovasz_softmax`` in the registry); MONAI has none, so it is implemented here."""

from __future__ import annotations

import logging
from typing import Any

import torch

from medseg.losses import functional
from medseg.losses._base import CheckedLoss
from medseg.losses._checks import check_choice, check_flag, check_ignore_index
from medseg.losses._input import check_reduction, prepare
from medseg.registry import LOSSES

__all__ = ["LovaszSoftmaxLoss"]

logger = logging.getLogger(__name__)


@LOSSES.register("lovasz_softmax")
class LovaszSoftmaxLoss(CheckedLoss):
    r"""Lovász-Softmax loss: the convex Lovász extension of the per-class Jaccard loss on softmax errors.

    .. math::
        L = \frac{1}{|C'|} \sum_{c \in C'} \overline{\Delta_{J_c}}(m(c)),
        \qquad m_i(c) = |[y_i = c] - p_i(c)|

    where :math:`\overline{\Delta_{J_c}}` is the Lovász extension of the Jaccard loss of class c
    (:func:`medseg.losses.functional.lovasz_softmax`). For hard 0/1 probabilities it equals 1 - IoU of each class.

    Args:
        per_image: compute the loss per image and average over images (default, the per-image IoU); ``False``
            treats the whole batch as one image (closer to the dataset IoU).
        classes: ``"present"`` averages over the classes that occur in the target (of that image, or of the batch
            with ``per_image=False``), as recommended by the authors; ``"all"`` over every class.
        ignore_index: label value whose pixels are left out.
        include_background: keep class 0 among the averaged classes.
        reduction: ``"mean"``, ``"sum"`` (over images) or ``"none"`` (one value per image, ``(B,)``; ``(1,)`` with
            ``per_image=False``).

    Note:
        An image with no class to average (``classes="present"`` and only ignored pixels, or no present class
        left after dropping the background) contributes 0. The loss takes logits and applies the softmax.

    Example:
        >>> import torch
        >>> logits = torch.tensor([[[[9.0, 9.0]], [[-9.0, -9.0]]]])  # predicts [0, 0]; truth [0, 1]
        >>> # hard predictions: IoU_0 = 1/2, IoU_1 = 0 -> mean Jaccard loss (1/2 + 1) / 2 = 0.75
        >>> round(LovaszSoftmaxLoss()(logits, torch.tensor([[[0, 1]]])).item(), 3)
        0.75

    References:
        Berman M., Rannen Triki A., Blaschko M. B. "The Lovász-Softmax Loss: A Tractable Surrogate for the
        Optimization of the Intersection-Over-Union Measure in Neural Networks." CVPR 2018, pp. 4413-4421,
        doi:10.1109/CVPR.2018.00464, Eqs. (8)-(9) and the class-averaged Lovász-Softmax loss built on them.
    """

    def __init__(
        self,
        per_image: bool = True,
        classes: str = "present",
        ignore_index: int | None = None,
        include_background: bool = True,
        reduction: Any = "mean",
    ) -> None:
        super().__init__()
        self.per_image = check_flag("per_image", per_image)
        self.classes = check_choice("classes", classes, ("present", "all"))
        self.ignore_index = check_ignore_index(ignore_index)
        self.include_background = check_flag("include_background", include_background)
        self.reduction = check_reduction(reduction)

    def _forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Shape:
            - logits: ``(B, K, *spatial)``.
            - target: ``(B, *spatial)``, ``(B, 1, *spatial)`` or one-hot ``(B, K, *spatial)``.
            - output: scalar, or ``(B,)`` / ``(1,)`` for ``"none"``.
        """
        prep = prepare(
            logits,
            target,
            softmax=True,
            include_background=self.include_background,
            ignore_index=self.ignore_index,
            check=False,
        )
        scores = functional.lovasz_softmax(prep.pred, prep.onehot, valid=prep.valid, per_image=self.per_image)
        dims = list(range(2, prep.onehot.ndim))
        counts = prep.onehot.sum(dims)  # (B, C) pixels per class
        if not self.per_image:
            counts = counts.sum(0, keepdim=True)
        if self.classes == "present":
            selected = (counts > 0).to(scores.dtype)
        else:
            selected = torch.ones_like(scores)
            if prep.valid is not None:  # an image whose pixels are all ignored has nothing to score
                n_valid = prep.valid.reshape(prep.valid.shape[0], -1).sum(1)
                if not self.per_image:
                    n_valid = n_valid.sum(0, keepdim=True)
                selected = selected * (n_valid > 0).to(scores.dtype).unsqueeze(1)
        n_selected = selected.sum(1)
        per_image = (scores * selected).sum(1) / n_selected.clamp_min(1)
        if self.reduction == "none":
            return per_image
        return per_image.sum() if self.reduction == "sum" else per_image.mean()

    def extra_repr(self) -> str:
        return (
            f"per_image={self.per_image}, classes={self.classes!r}, ignore_index={self.ignore_index}, "
            f"include_background={self.include_background}, reduction={self.reduction!r}"
        )
