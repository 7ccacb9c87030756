"""Pure tensor functions behind the losses: probabilities in, unreduced scores out.

Every function here takes already-activated predictions (probabilities, never logits) or per-pixel loss values,
keyword-only hyperparameters, and returns unreduced scores: per-(batch, class) for the region losses, per-pixel
weights for loss max-pooling. Validation of user input happens once in the loss modules
(:mod:`medseg.losses._input`); the functions here only check what they cannot work without.

Tensors are ``(B, C, *spatial)`` with any number of spatial dims; ``batch=True`` sums over the batch as well and
returns a ``(1, C)`` tensor.
"""

from __future__ import annotations

import logging
import math

import torch

__all__ = [
    "hard_confusion_sums",
    "iou_loss_from_counts",
    "lmp_weights",
    "lovasz_softmax",
    "noise_robust_dice",
    "noise_robust_dice_upper_bound",
    "soft_iou",
]

logger = logging.getLogger(__name__)


def _reduce_dims(x: torch.Tensor, batch: bool) -> list[int]:
    dims = list(range(2, x.ndim))
    return [0, *dims] if batch else dims


def _check_pair(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise ValueError(
            f"pred shape {tuple(pred.shape)} and target shape {tuple(target.shape)} differ; both must be "
            "(B, C, *spatial) (one-hot target)"
        )
    if pred.ndim < 3:
        raise ValueError(f"pred must be (B, C, *spatial) with at least one spatial dim, got {tuple(pred.shape)}")


def _keep2d(x: torch.Tensor, batch: bool) -> torch.Tensor:
    return x.unsqueeze(0) if batch else x


def soft_iou(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    batch: bool = False,
) -> torch.Tensor:
    r"""Rahman–Wang soft IoU loss per (batch, class).

    .. math::
        L_c = 1 - \frac{\sum_v p_v g_v + s_{nr}}{\sum_v (p_v + g_v - p_v g_v) + s_{dr}}

    Args:
        pred: probabilities ``(B, C, *spatial)`` in [0, 1].
        target: one-hot (or soft) targets, same shape.
        smooth_nr: added to the numerator; keeps an empty class (no target, no prediction) at loss 0.
        smooth_dr: added to the denominator; avoids 0/0.
        batch: sum over the batch too (one score per class).

    Returns:
        ``(B, C)``, or ``(1, C)`` with ``batch=True``.

    References:
        Rahman M. A., Wang Y. "Optimizing Intersection-Over-Union in Deep Neural Networks for Image
        Segmentation." ISVC 2016, doi:10.1007/978-3-319-50835-1_22; as restated by Nagendar et al., "NeuroIoU:
        Learning a Surrogate Loss for Semantic Segmentation", BMVC 2018, Sec. 2 (IoU-Appx).
    """
    _check_pair(pred, target)
    dims = _reduce_dims(pred, batch)
    inter = (pred * target).sum(dims)
    union = (pred + target - pred * target).sum(dims)
    return _keep2d(1.0 - (inter + smooth_nr) / (union + smooth_dr), batch)


def noise_robust_dice(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    gamma: float = 1.5,
    eps: float = 1e-5,
    squared_pred: bool = True,
    batch: bool = False,
) -> torch.Tensor:
    r"""COPLE-Net's noise-robust Dice loss per (batch, class).

    .. math::
        L_c = \frac{\sum_v |p_v - g_v|^{\gamma}}{\sum_v p_v^2 + \sum_v g_v^2 + \epsilon}

    With ``gamma=2`` the numerator equals :math:`\sum p^2 + \sum g^2 - 2\sum pg`, so the loss is the squared
    soft Dice loss minus :math:`\epsilon/(\sum p^2 + \sum g^2 + \epsilon)`; with ``1 <= gamma < 2`` large errors
    (likely label noise) weigh relatively less than in Dice.

    Args:
        pred: probabilities ``(B, C, *spatial)``.
        target: one-hot targets, same shape.
        gamma: exponent, > 0 (the paper uses 1.5).
        eps: added to the denominator, > 0.
        squared_pred: squares in the denominator as in the paper; ``False`` uses :math:`\sum p + \sum g`
            instead (what some public implementations do).
        batch: sum over the batch too.

    Returns:
        ``(B, C)``, or ``(1, C)`` with ``batch=True``. Not bounded by 1 for ``gamma < 2``: see
        :func:`noise_robust_dice_upper_bound`.

    References:
        Wang G. et al. "A Noise-Robust Framework for Automatic Segmentation of COVID-19 Pneumonia Lesions From CT
        Images." IEEE TMI 39(8):2653-2663, 2020, doi:10.1109/TMI.2020.3000314 (the NR-Dice loss definition).
    """
    _check_pair(pred, target)
    dims = _reduce_dims(pred, batch)
    diff = (pred - target).abs()
    # d/dx |x|^gamma at 0 is inf*0 = NaN for gamma < 1; clamp keeps the gradient finite (it is 0 there anyway
    # for gamma > 1, and the value changes by at most 1e-30**gamma).
    numerator = diff.clamp_min(1e-30).pow(gamma).sum(dims) if gamma < 1 else diff.pow(gamma).sum(dims)
    if squared_pred:
        denominator = (pred * pred).sum(dims) + (target * target).sum(dims)
    else:
        denominator = pred.sum(dims) + target.sum(dims)
    return _keep2d(numerator / (denominator + eps), batch)


def noise_robust_dice_upper_bound(num_elements: int, *, gamma: float, eps: float) -> float:
    r"""Supremum of :func:`noise_robust_dice` (``squared_pred=True``) over all p, g in [0, 1]^N.

    Per element :math:`|p-g| \le \min(1, \sqrt{p^2+g^2})` (as :math:`pg \ge 0`), so with :math:`a = \gamma/2 < 1`
    and :math:`S = \sum p^2 + \sum g^2` concavity gives :math:`\sum |p-g|^\gamma \le N^{1-a} S^a`, and
    :math:`\max_S S^a/(S+\epsilon)` is reached at :math:`S = a\epsilon/(1-a)`:

    .. math::
        \sup L = a^a (1-a)^{1-a} (N/\epsilon)^{1-a} \quad (\gamma < 2), \qquad \sup L = 1 \quad (\gamma \ge 2).

    The bound is attained (g = 0, every p equal) when :math:`a\epsilon/(1-a) \le N`.

    Args:
        num_elements: N, the number of summed elements per score (pixels, times B with ``batch=True``).
        gamma: the exponent of :func:`noise_robust_dice`.
        eps: its denominator constant.
    """
    if gamma >= 2:
        return 1.0
    a = gamma / 2.0
    return float(a**a * (1 - a) ** (1 - a) * (num_elements / eps) ** (1 - a))


def _lovasz_jaccard_gradient(gt_sorted: torch.Tensor) -> torch.Tensor:
    """Increments g_i of the Jaccard loss along the error ordering (Berman et al., Eq. (9)); last dim sorted."""
    gts = gt_sorted.sum(-1, keepdim=True)
    intersection = gts - gt_sorted.cumsum(-1)
    union = gts + (1.0 - gt_sorted).cumsum(-1)
    jaccard = 1.0 - intersection / union  # union >= 1 from the first element on
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_softmax(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    valid: torch.Tensor | None = None,
    per_image: bool = True,
) -> torch.Tensor:
    r"""Lovász extension of the Jaccard loss of every class, from probabilities.

    With pixel errors :math:`m_i(c) = |g_i(c) - p_i(c)|` sorted in decreasing order (permutation π),

    .. math::
        \overline{\Delta_{J_c}}(m(c)) = \sum_i m_{\pi_i}(c)\,
            \big[\Delta_{J_c}(\{\pi_1..\pi_i\}) - \Delta_{J_c}(\{\pi_1..\pi_{i-1}\})\big]

    where :math:`\Delta_{J_c}(M) = |M| / |\{g=c\} \cup M|` is the Jaccard loss when the pixels in M are
    mispredicted.

    Args:
        pred: probabilities ``(B, C, *spatial)``.
        target: one-hot targets, same shape.
        valid: bool ``(B, *spatial)``; pixels where it is False are left out entirely.
        per_image: one score per image and class; ``False`` treats the batch as one image.

    Returns:
        ``(B, C)``, or ``(1, C)`` with ``per_image=False``.

    References:
        Berman M., Rannen Triki A., Blaschko M. B. "The Lovász-Softmax Loss: A Tractable Surrogate for the
        Optimization of the Intersection-Over-Union Measure in Neural Networks." CVPR 2018, pp. 4413-4421,
        doi:10.1109/CVPR.2018.00464, Eqs. (8)-(9) (Lovász extension) and the softmax errors m_i(c) that follow.
    """
    _check_pair(pred, target)
    b, c = pred.shape[:2]
    p = pred.reshape(b, c, -1)
    g = target.reshape(b, c, -1).to(p.dtype)
    errors = (g - p).abs()
    if valid is not None:
        v = valid.reshape(b, 1, -1).expand_as(errors)
        # Ignored pixels get error -1: they sort after every valid pixel, so the Jaccard increments of the valid
        # ones are unchanged, and their own terms are multiplied by 0 below.
        errors = torch.where(v, errors, torch.full_like(errors, -1.0))
        g = g * v
    if not per_image:
        errors = errors.transpose(0, 1).reshape(1, c, -1)
        g = g.transpose(0, 1).reshape(1, c, -1)
    errors_sorted, order = torch.sort(errors, dim=-1, descending=True)
    gt_sorted = torch.gather(g, -1, order)
    increments = _lovasz_jaccard_gradient(gt_sorted.detach())
    return (errors_sorted.clamp_min(0.0) * increments).sum(-1)


def iou_loss_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    r"""The true IoU loss from pixel counts, NeuroIoU Eq. (1): :math:`(FP+FN)/(TP+FP+FN)`, 0 where all are 0."""
    union = tp + fp + fn
    return torch.where(union > 0, (fp + fn) / union.clamp_min(1e-12), torch.zeros_like(union))


def hard_confusion_sums(
    pred: torch.Tensor,
    target: torch.Tensor,
    predicted: torch.Tensor,
    *,
    pixel_scores: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""NeuroIoU's probability sums over the hard TP, FP and FN sets, and the set sizes, per (batch, class).

    A pixel is in TP_c when it is predicted c and labelled c, in FP_c when predicted c but labelled otherwise,
    in FN_c when labelled c but predicted otherwise (NeuroIoU Eq. (2)). The summed value is the probability of
    the decision taken at the pixel: :math:`p_c` on TP and FP pixels (class c was predicted) and :math:`1-p_c`
    on FN pixels (not-c was predicted), or, when ``pixel_scores`` is given, that score (e.g. the hinge loss of
    NeuroIoU Sec. 3.3) for every pixel.

    Args:
        pred: probabilities ``(B, C, *spatial)``.
        target: one-hot targets, same shape; ignored pixels all-zero.
        predicted: one-hot hard predictions, same shape; ignored pixels all-zero.
        pixel_scores: optional ``(B, *spatial)`` per-pixel values summed instead of the probabilities.

    Returns:
        ``(tp_sum, fp_sum, fn_sum, tp_count, fp_count, fn_count)``, each ``(B, C)``.
    """
    _check_pair(pred, target)
    _check_pair(pred, predicted)
    dims = _reduce_dims(pred, False)
    g = target.to(pred.dtype)
    h = predicted.to(pred.dtype)
    tp_mask = h * g
    fp_mask = h * (1.0 - g)
    fn_mask = (1.0 - h) * g
    if pixel_scores is None:
        tp_val, fp_val, fn_val = pred, pred, 1.0 - pred
    else:
        s = pixel_scores.unsqueeze(1).to(pred.dtype)
        tp_val = fp_val = fn_val = s
    return (
        (tp_mask * tp_val).sum(dims),
        (fp_mask * fp_val).sum(dims),
        (fn_mask * fn_val).sum(dims),
        tp_mask.sum(dims),
        fp_mask.sum(dims),
        fn_mask.sum(dims),
    )


def _lmp_tau_log(n: int, p: float, m: float) -> float:
    # gamma = n^(-1/q) with q = p/(p-1) (Sec. 2, below Eq. (5)); m = (gamma/tau)^p  =>  tau = gamma * m^(-1/p).
    if math.isinf(p):
        return -math.log(n)
    return -((p - 1.0) / p) * math.log(n) - math.log(m) / p


@torch.no_grad()
def lmp_weights(losses: torch.Tensor, *, p: float, m: float) -> torch.Tensor:
    r"""Optimal pixel weights :math:`w^*` of loss max-pooling for one image (Rota Bulò et al., Thm. 1 / Thm. 2).

    Solves :math:`\max\{w \cdot \ell : \|w\|_p \le \gamma, \|w\|_\infty \le \tau\}` with
    :math:`\gamma = n^{-1/q}`, :math:`q = p/(p-1)` and :math:`m = (\gamma/\tau)^p`, so that

    .. math::
        L_{\mathcal W} = w^* \cdot \ell = \tau\big[\langle \ell\rangle_{\mathcal J^*}
            + (m - |\mathcal J^*|)\,\alpha^*\big] \quad \text{(Eq. (10))}

    where :math:`\mathcal J^*` and :math:`\alpha^*` come from Algorithm 1 and
    :math:`w^* = \tau` on :math:`\mathcal J^*`, :math:`\tau(\ell/\alpha^*)^{q-1}` elsewhere. With ``m = n`` the
    weights are uniform 1/n and the loss is the mean pixel loss, for every p.

    Args:
        losses: non-negative per-pixel losses, any shape (flattened); ``n = losses.numel() >= 1``.
        p: the p-norm bound, ``1 <= p <= inf``; p → 1 concentrates weight on the largest losses, p = inf is
            the plain mean.
        m: ``1 <= m <= n``: at least ⌈m⌉ pixels carry weight.

    Returns:
        Weights, same shape as ``losses``, float64, detached. Multiply by the (differentiable) losses and sum to
        get the loss and, by the envelope theorem, its gradient :math:`\partial\ell/\partial\hat y \cdot w^*`
        (the paper's gradient, Sec. 4).

    Note:
        The walk of Algorithm 1 is vectorised: the losses are sorted once, :math:`a_i = \sum_{j\le i}\ell_{\pi_j}^q`
        is a cumulative sum and :math:`\mathcal J^*` starts at the first index with :math:`\eta_i > 0`.
        Following the paper's implementation note the losses are divided by the largest one, and in addition
        every power is taken in the log domain (``logcumsumexp``), so ``q`` up to hundreds (p close to 1) and
        many losses near zero neither underflow nor divide 0 by 0: pixels outside :math:`\mathcal J^*` get
        exactly :math:`\tau(\ell/\alpha^*)^{q-1}`, and 0 when :math:`\alpha^* = 0`. For p = 1 ties at
        :math:`\alpha^*` share the fractional weight equally (any split is optimal; equal keeps the loss
        invariant to permutations). If every loss is 0 the loss is 0 for any weights; uniform 1/n is returned.

    References:
        Rota Bulò S., Neuhold G., Kontschieder P. "Loss Max-Pooling for Semantic Image Segmentation." CVPR 2017,
        doi:10.1109/CVPR.2017.749 (extended version: Sec. 2 Eq. (5), Sec. 3 Eqs. (9)-(10), Thm. 1-2, Sec. 4
        Algorithm 1).
    """
    flat = losses.detach().reshape(-1).to(torch.float64)
    n = flat.numel()
    if n == 0:
        raise ValueError("losses is empty; loss max-pooling needs at least one pixel")
    if not (p >= 1.0):
        raise ValueError(f"p must be >= 1 (or inf), got {p!r}")
    if not (1.0 <= m <= n * (1 + 1e-12)):
        raise ValueError(f"m must satisfy 1 <= m <= n = {n}, got {m!r}")
    m = min(float(m), float(n))
    tau = math.exp(_lmp_tau_log(n, p, m))
    scale = flat.max()
    if math.isinf(p) or not bool(scale > 0):
        return torch.full_like(flat, 1.0 / n if math.isinf(p) else tau).reshape(losses.shape)
    r = flat / scale  # implementation note of Sec. 4: divide by the largest loss
    ordered, order = torch.sort(r)  # ascending, as in Algorithm 1
    weights_sorted = torch.zeros_like(ordered)
    if p == 1.0:
        k = math.floor(m + 1e-12)
        k = min(k, n)
        weights_sorted[n - k :] = tau
        if k < n:
            alpha = ordered[n - k - 1]
            frac = m - k
            if frac > 0 and alpha > 0:
                ties = (ordered[: n - k] == alpha).nonzero().reshape(-1)
                weights_sorted[ties] = tau * frac / ties.numel()
    else:
        q = p / (p - 1.0)
        log_r = torch.log(ordered)  # -inf for zero losses
        q_log = q * log_r
        log_a = torch.logcumsumexp(q_log, dim=0)  # log a_i, a_i = sum_{j<=i} r_j^q
        c = m - n + torch.arange(1, n + 1, dtype=torch.float64, device=r.device)
        positive = c > 0
        log_c = torch.log(c.clamp_min(1e-300))
        eta_pos = positive & (log_c + q_log > log_a)  # eta_i > 0  <=>  c_i r_i^q > a_i
        hits = eta_pos.nonzero()
        k = int(hits[0, 0]) if hits.numel() else n  # pixels outside J* (the k smallest)
        # eta_1 = (m - n) r_1^q <= 0, so k >= 1 and c_k = m - n + k > 0 (Algorithm 1, line 11).
        c_k = m - n + k
        log_alpha = (log_a[k - 1] - math.log(c_k)) / q
        weights_sorted[k:] = tau
        if bool(torch.isfinite(log_alpha)):
            rel = torch.exp((q - 1.0) * (log_r[:k] - log_alpha))
            weights_sorted[:k] = tau * rel.clamp(max=1.0)
    weights = torch.empty_like(weights_sorted)
    weights[order] = weights_sorted
    return weights.reshape(losses.shape)
