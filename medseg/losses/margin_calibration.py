"""Distribution-aware margin calibration (MC): margin offsets from label counts, and the ρ-calibrated loss.

The offsets come from Algorithm 1 and the loss from Algorithm 2 with Eqs. (16)–(18) of Yu et al. (IJCV 2021);
the medical-imaging paper (Li, Yu, Zhang, arXiv:2011.01462) applies the same loss to COPLE-Net. The loss and its
analytic gradient are computed together by :mod:`medseg.losses._mc_kernel` (eagerly, or compiled with
``torch.compile`` once a run has spent long enough in the loss to repay the compile).

Example:
    >>> import torch
    >>> rho_neg, rho_pos = margin_offsets([900, 100], tau=10.0, v=1.0)
    >>> [round(float(r), 4) for r in rho_neg]  # τ·√(N−N_k)/N_k = 10·√100/900, 10·√900/100
    [0.1111, 3.0]
    >>> loss = MarginCalibrationLoss([900, 100], backend="eager")
    >>> logits = torch.tensor([[[[4.0]], [[-4.0]]]])  # one pixel, confidently class 0
    >>> bool(loss(logits, torch.tensor([[[0]]])) < loss(logits, torch.tensor([[[1]]])))
    True
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from medseg.losses._base import CheckedLoss
from medseg.losses._input import check_reduction, target_to_labels
from medseg.losses._mc_kernel import Backend, MarginCalibrationFunction
from medseg.margins import EmptyPolicy, as_float64_vector, margin_offsets
from medseg.registry import CLASS_COUNTS, LOSSES

logger = logging.getLogger(__name__)

__all__ = ["MarginCalibrationLoss", "margin_offsets"]

Variant = Literal["paper", "reference"]
Surrogate = Literal["log", "margin"]

_VARIANTS = ("paper", "reference")
_SURROGATES = ("log", "margin")
_BACKENDS = ("auto", "compile", "eager")


@LOSSES.register("mc", needs=(CLASS_COUNTS,))
class MarginCalibrationLoss(CheckedLoss):
    r"""Distribution-aware margin-calibration loss on raw scores (Algorithm 2 with Eqs. (16)–(18)).

    .. math::

        λ_{ik} = s_{ik} - \max_{j≠k} s_{ij},\qquad
        \bar s_{ik} = \begin{cases} λ_{ik} - ρ_{k0} & y_i = k \\ λ_{ik} + ρ_{0k} & y_i ≠ k \end{cases}

        L = \frac{1}{N_s}\sum_{i}\Big(\log_2(1 + 2^{-\bar s_{i y_i}})
            + \sum_{k ≠ y_i} \log_2(1 + 2^{\bar s_{ik}})\Big)

    summed over all K classes (background included) and averaged over the ``N_s`` valid pixels of the batch.

    Args:
        class_counts: pixels per class over the training set; the offsets are computed with
            :func:`margin_offsets` (``tau``, ``v``, ``empty``). Give this *or* both ``rho_neg`` and ``rho_pos``.
        rho_neg: ρ_0k per class (e.g. ``stats.json``'s ``rho_neg``), non-negative.
        rho_pos: ρ_k0 per class (``stats.json``'s ``rho_pos``), non-negative.
        tau: τ of Algorithm 1 (default 10); used only with ``class_counts``.
        v: ν of Algorithm 1 (default 1); used only with ``class_counts``.
        variant: ``"paper"`` (default): log₂ surrogate as in Eqs. (17)–(18), averaged over valid pixels.
            ``"reference"``: the authors' public code (yutao1008/margin_calibration, ``loss.py``,
            ``Margin_logloss``): ``binary_cross_entropy_with_logits`` on s̄ with ``pos_weight=K``, i.e. natural
            log, positives weighted by K, averaged over valid pixels × K classes.
        surrogate: ``"log"`` (default): the ρ-calibrated log-loss. ``"margin"``: the non-smooth ρ-margin loss
            φ_ρ(λ) = min(1, max(0, 1 − λ/ρ)) of Eq. (9) in Eq. (16) (only with ``variant="paper"``).
        ignore_index: label value excluded from the loss and from ``N_s``.
        reduction: ``"mean"`` (over valid pixels), ``"sum"`` (over valid pixels) or ``"none"`` (per-pixel loss
            ``(B, *spatial)``, zero at ignored pixels), or MONAI's ``LossReduction``.
        empty: :func:`margin_offsets`' policy for a class with no pixels (or all of them); only with counts.
        backend: ``"auto"`` (default): the eager kernel, switched to a ``torch.compile``d one once the eager kernel
            has spent :data:`~medseg.losses._mc_kernel.AUTO_COMPILE_AFTER_S` seconds on the configuration in this
            process (a short run never compiles; a failed compile falls back to eager, logged once);
            ``"compile"``: compiled from the first call, errors propagate; ``"eager"``: never compile (same
            values).

    Shape:
        - logits: ``(B, K, H, W)`` or ``(B, K, D, H, W)``, K >= 2, any floating dtype (half precision is computed
          in float32).
        - target: integer labels ``(B, *spatial)`` / ``(B, 1, *spatial)`` or one-hot ``(B, K, *spatial)``.
        - output: scalar, or ``(B, *spatial)`` with ``reduction="none"``.

    Raises:
        ValueError: at construction for inconsistent offset arguments or bad options; in ``forward`` for bad
            logits/targets, or offsets whose length differs from the logits' K (both numbers are named).

    Note:
        - Summing over every class including background follows Algorithm 2 ("for class k = 1..K") and the
          reference code; Eq. (16)'s "foreground" wording has no separate background term.
        - ``reduction="mean"`` with every pixel ignored returns 0 (with zero gradient) instead of NaN.
        - The ``"reference"`` variant marks positives by the true label, not by ``ρ_k0 > 0`` as the reference
          code does; the two agree whenever ρ_k0 > 0, i.e. for every non-degenerate class.
        - The gradient is analytic (see :mod:`medseg.losses._mc_kernel`); double backward is not supported.

    Example:
        >>> import torch
        >>> loss = MarginCalibrationLoss(rho_neg=[0.0, 0.0], rho_pos=[0.0, 0.0], backend="eager")
        >>> x = torch.zeros(1, 2, 1, 1)  # λ = 0 for both classes: 2·log₂(1 + 2⁰) = 2
        >>> float(loss(x, torch.zeros(1, 1, 1, dtype=torch.long)))
        2.0

    References:
        L. Yu, Z. Li, M. Xu, Y. Gao, J. Luo, J. Zhang, "Distribution-aware Margin Calibration for Semantic
        Segmentation in Images", IJCV 2021, doi:10.1007/s11263-021-01533-0 — Eqs. (8), (9), (16)–(18),
        Algorithm 2. Z. Li, L. Yu, J. Zhang, "Distribution-aware Margin Calibration for Medical Image
        Segmentation", arXiv:2011.01462.
    """

    rho_neg: torch.Tensor
    rho_pos: torch.Tensor

    def __init__(
        self,
        class_counts: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        *,
        rho_neg: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        rho_pos: Sequence[float] | np.ndarray | torch.Tensor | None = None,
        tau: float = 10.0,
        v: float = 1.0,
        variant: Variant = "paper",
        surrogate: Surrogate = "log",
        ignore_index: int | None = None,
        reduction: str = "mean",
        empty: EmptyPolicy = "error",
        backend: Backend = "auto",
    ) -> None:
        super().__init__()
        if variant not in _VARIANTS:
            raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
        if surrogate not in _SURROGATES:
            raise ValueError(f"surrogate must be one of {_SURROGATES}, got {surrogate!r}")
        if variant == "reference" and surrogate != "log":
            raise ValueError(
                f"variant='reference' reproduces the authors' log-loss code and has no {surrogate!r} surrogate; "
                "use variant='paper' with surrogate='margin'"
            )
        if backend not in _BACKENDS:
            raise ValueError(f"backend must be one of {_BACKENDS}, got {backend!r}")
        if ignore_index is not None and (isinstance(ignore_index, bool) or not isinstance(ignore_index, int)):
            raise ValueError(f"ignore_index must be an int or None, got {type(ignore_index).__name__} {ignore_index!r}")
        self.reduction = check_reduction(reduction)
        has_offsets = (rho_neg is not None, rho_pos is not None)
        if class_counts is not None and any(has_offsets):
            raise ValueError(
                "give either class_counts (offsets computed by margin_offsets) or both rho_neg and rho_pos, not both"
            )
        if class_counts is not None:
            neg, pos = (torch.from_numpy(a) for a in margin_offsets(class_counts, tau=tau, v=v, empty=empty))
        elif all(has_offsets):
            neg_arr = as_float64_vector(rho_neg, "rho_neg")
            pos_arr = as_float64_vector(rho_pos, "rho_pos")
            if neg_arr.size != pos_arr.size:
                raise ValueError(
                    f"rho_neg has {neg_arr.size} values but rho_pos has {pos_arr.size}; give one per class to both"
                )
            for name, arr in (("rho_neg", neg_arr), ("rho_pos", pos_arr)):
                if np.any(arr < 0):
                    raise ValueError(f"{name} must be non-negative margin offsets, got {arr.tolist()}")
            neg, pos = torch.from_numpy(neg_arr), torch.from_numpy(pos_arr)
        elif any(has_offsets):
            missing = "rho_pos" if rho_neg is not None else "rho_neg"
            raise ValueError(f"{missing} is missing: give both rho_neg and rho_pos (e.g. from stats.json)")
        else:
            raise ValueError(
                "MarginCalibrationLoss needs the training label distribution: pass class_counts (pixels per class, "
                "from `medseg-data stats`) or both rho_neg and rho_pos"
            )
        self.variant: str = variant
        self.surrogate: str = surrogate
        self.ignore_index = ignore_index
        self.backend: Backend = backend
        self.tau = float(tau)
        self.v = float(v)
        self.register_buffer("rho_neg", neg.clone(), persistent=False)
        self.register_buffer("rho_pos", pos.clone(), persistent=False)

    @property
    def num_classes(self) -> int:
        """K, the number of classes the offsets were given for."""
        return int(self.rho_neg.numel())

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, variant={self.variant!r}, surrogate={self.surrogate!r}, "
            f"ignore_index={self.ignore_index}, reduction={self.reduction!r}, backend={self.backend!r}"
        )

    def _forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of raw scores ``logits`` against ``target`` (any form of the DESIGN.md call convention)."""
        k = logits.shape[1]
        if k != self.num_classes:
            raise ValueError(
                f"logits have K={k} channels but the margin offsets are for {self.num_classes} classes "
                f"(logits shape {tuple(logits.shape)}); compute class_counts/offsets for the network's {k} classes"
            )
        if k < 2:
            raise ValueError(
                f"margin calibration needs K >= 2 channels (λ_ik compares class k with the others), got logits "
                f"shape {tuple(logits.shape)}; use a background and a foreground channel for binary tasks"
            )
        labels, valid = target_to_labels(logits, target, ignore_index=self.ignore_index, check=False)
        x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
        b = x.shape[0]
        spatial = tuple(x.shape[2:])
        out: torch.Tensor = MarginCalibrationFunction.apply(
            x.reshape(b, k, -1),
            labels.reshape(b, -1),
            None if valid is None else valid.reshape(b, -1),
            self.rho_pos.to(device=x.device, dtype=x.dtype),
            self.rho_neg.to(device=x.device, dtype=x.dtype),
            self.variant,
            self.surrogate,
            self.reduction,
            self.backend,
            torch.is_grad_enabled() and x.requires_grad,
        )
        if self.reduction == "none":
            return out.reshape(b, *spatial)
        return out
