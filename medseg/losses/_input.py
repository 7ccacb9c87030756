"""The one input-preparation helper every loss calls (DESIGN.md, "Loss call convention").

Losses are called as ``loss(logits, target)``: ``logits`` are raw network outputs ``(B, K, *spatial)`` with 2 or 3
spatial dims; ``target`` is integer labels ``(B, *spatial)`` or ``(B, 1, *spatial)`` (MONAI pipelines give the
latter, often as float MetaTensors), or a one-hot ``(B, K, *spatial)`` tensor. This module turns any of those into
the forms the functional cores need, so no loss repeats that code.

Validation that costs a full pass over the data (finite logits, integer labels in range) is :func:`check_inputs`.
The standalone helpers run it by default (``check=True``); the loss modules run it once per input signature and
afterwards only check the loss value (:class:`medseg.losses._base.CheckedLoss`), since a per-step scan of the
logits cost about half of a cross-entropy step on a CPU and forces a device sync on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = [
    "PreparedInput",
    "apply_reduction",
    "as_plain_tensor",
    "check_inputs",
    "check_logits",
    "check_reduction",
    "prepare",
    "target_to_labels",
]


def as_plain_tensor(x: torch.Tensor) -> torch.Tensor:
    """Drop MONAI ``MetaTensor`` metadata tracking (slow inside losses); plain tensors pass through."""
    as_tensor = getattr(x, "as_tensor", None)
    return as_tensor() if callable(as_tensor) else x


def check_logits(logits: torch.Tensor, *, name: str = "logits", check_finite: bool = True) -> torch.Tensor:
    """Validate raw network outputs ``(B, K, *spatial)`` with 2 or 3 spatial dims.

    Raises:
        TypeError: if ``logits`` is not a floating-point tensor.
        ValueError: for a wrong number of dimensions or non-finite values.
    """
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, K, *spatial), got {type(logits).__name__}")
    logits = as_plain_tensor(logits)
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be floating point (raw network outputs), got dtype {logits.dtype}")
    if logits.ndim not in (4, 5):
        raise ValueError(
            f"{name} must have shape (B, K, H, W) or (B, K, D, H, W), got shape {tuple(logits.shape)}; "
            "add the batch and channel axes"
        )
    if check_finite and not bool(torch.isfinite(logits).all()):
        raise ValueError(f"{name} contains NaN or inf values (shape {tuple(logits.shape)}); check the network")
    return logits


def target_to_labels(
    logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int | None = None, check: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Turn any accepted target form into integer labels ``(B, *spatial)`` and a validity mask.

    Args:
        logits: ``(B, K, *spatial)``; only its shape is used.
        target: integer labels ``(B, *spatial)`` or ``(B, 1, *spatial)`` (integer or integer-valued float), or
            one-hot / soft labels ``(B, K, *spatial)`` with ``K > 1`` (argmax is taken; pixels whose channels are
            all zero are treated as ignored).
        ignore_index: label value excluded from the loss, or ``None``.
        check: validate the label values (integer, in ``[0, K)`` or ``ignore_index``): one pass over the labels.
            ``False`` only checks shapes; out-of-range labels then surface as indexing errors of the caller.

    Returns:
        ``(labels, valid)``: ``labels`` is int64 ``(B, *spatial)`` with ignored pixels set to 0; ``valid`` is a
        bool ``(B, *spatial)`` mask, or ``None`` when every pixel counts.

    Raises:
        ValueError: on a shape mismatch (both shapes are named), non-integer labels, or labels outside
            ``[0, K)`` that are not ``ignore_index`` (the last two with ``check=True``).
    """
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    target = as_plain_tensor(target)
    b, k = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    valid: torch.Tensor | None = None
    if k > 1 and tuple(target.shape) == tuple(logits.shape):
        labels = target.max(dim=1).indices  # argmax (first index on ties), several times faster on a CPU
        present = target.sum(dim=1) > 0
        if not bool(present.all()):
            valid = present
        return labels, valid
    if tuple(target.shape) == (b, 1, *spatial):
        target = target[:, 0]
    elif tuple(target.shape) != (b, *spatial):
        raise ValueError(
            f"target shape {tuple(target.shape)} does not match logits shape {tuple(logits.shape)}: expected "
            f"integer labels {(b, *spatial)} or {(b, 1, *spatial)}, or one-hot {(b, k, *spatial)}"
        )
    if check and target.is_floating_point() and not bool((target == torch.round(target)).all()):
        raise ValueError("target holds non-integer label values; pass integer labels or a one-hot tensor")
    labels = target.long()
    if ignore_index is not None:
        ignored = labels == ignore_index
        if bool(ignored.any()):
            valid = ~ignored
            labels = labels.masked_fill(ignored, 0)
    if not check or labels.numel() == 0:
        return labels, valid
    lo_t, hi_t = torch.aminmax(labels)  # one pass instead of min() + max()
    lo, hi = int(lo_t), int(hi_t)
    if lo < 0 or hi >= k:
        bad = hi if hi >= k else lo
        allowed = f"0..{k - 1}" + (f" or ignore_index={ignore_index}" if ignore_index is not None else "")
        raise ValueError(
            f"target holds label {bad}, but logits have K={k} classes (allowed: {allowed}); "
            "map the labels or set ignore_index"
        )
    return labels, valid


def check_inputs(logits: torch.Tensor, target: torch.Tensor, *, ignore_index: int | None = None) -> None:
    """Every input check, including those that cost a full pass: finite logits, integer labels in range.

    Returns normally for valid inputs; otherwise raises the error of :func:`check_logits` or
    :func:`target_to_labels`, which names the argument, the bad value and the fix.

    Raises:
        TypeError / ValueError: see :func:`check_logits` and :func:`target_to_labels`.
    """
    logits = check_logits(logits, check_finite=True)
    target_to_labels(logits, target, ignore_index=ignore_index, check=True)


@dataclass(frozen=True)
class PreparedInput:
    """What :func:`prepare` hands a functional core.

    Attributes:
        pred: activated predictions ``(B, C, *spatial)`` (probabilities), float32 or wider; ignored pixels zeroed.
        onehot: one-hot targets ``(B, C, *spatial)`` in ``pred``'s dtype; ignored pixels zeroed.
        labels: int64 labels ``(B, *spatial)`` (ignored pixels hold 0).
        valid: bool mask ``(B, *spatial)`` or ``None`` when every pixel counts.
    """

    pred: torch.Tensor
    onehot: torch.Tensor
    labels: torch.Tensor
    valid: torch.Tensor | None


def prepare(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    softmax: bool = True,
    sigmoid: bool = False,
    include_background: bool = True,
    ignore_index: int | None = None,
    check: bool = True,
) -> PreparedInput:
    """Validate, activate and one-hot encode, then drop the background channel if asked.

    Half-precision logits are computed in float32.

    Args:
        logits: raw outputs ``(B, K, *spatial)``.
        target: any form accepted by :func:`target_to_labels`.
        softmax: apply softmax over the channel axis.
        sigmoid: apply a sigmoid instead (multi-label); mutually exclusive with ``softmax``.
        include_background: keep channel 0; with ``False`` channel 0 is dropped from ``pred`` and ``onehot``.
        ignore_index: label value excluded from the loss.
        check: run :func:`check_inputs`' full-pass checks (finite logits, label values); ``False`` leaves them to
            the caller (the loss modules check once per input signature, then the loss value).

    Raises:
        ValueError: for ``softmax`` and ``sigmoid`` both set, or any error of :func:`check_logits` /
            :func:`target_to_labels`.
    """
    if softmax and sigmoid:
        raise ValueError("softmax=True and sigmoid=True are mutually exclusive; choose one activation")
    logits = check_logits(logits, check_finite=check)
    labels, valid = target_to_labels(logits, target, ignore_index=ignore_index, check=check)
    x = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    k = x.shape[1]
    if softmax:
        pred = torch.softmax(x, dim=1)
    elif sigmoid:
        pred = torch.sigmoid(x)
    else:
        pred = x
    # zeros + scatter: a quarter of the time of F.one_hot (int64, channels last) + movedim + a strided copy
    onehot = torch.zeros_like(pred).scatter_(1, labels.unsqueeze(1), 1.0)
    if valid is not None:
        mask = valid.unsqueeze(1).to(pred.dtype)
        pred = pred * mask
        onehot = onehot * mask
    if not include_background:
        if k == 1:
            raise ValueError("include_background=False needs K > 1 channels; with one channel keep the default")
        pred, onehot = pred[:, 1:], onehot[:, 1:]
    return PreparedInput(pred=pred, onehot=onehot, labels=labels, valid=valid)


def apply_reduction(values: torch.Tensor, reduction: str) -> torch.Tensor:
    """Reduce per-item loss values with MONAI's ``reduction`` strings ("mean", "sum", "none")."""
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    if reduction == "none":
        return values
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def check_reduction(reduction: object) -> str:
    """Validate ``reduction`` at construction (accepts MONAI's ``LossReduction`` enum or its string value).

    Raises:
        ValueError: for anything else.
    """
    value = getattr(reduction, "value", reduction)
    if value not in ("mean", "sum", "none"):
        raise ValueError(
            f"reduction must be one of 'mean', 'sum', 'none' (or monai.utils.LossReduction), got {reduction!r}"
        )
    return str(value)
