"""Confusion matrices of integer label maps, accumulated over a dataset.

``cm[i, j]`` counts the pixels (voxels) whose reference label is ``i`` and whose predicted label is ``j``: rows are
the reference, columns the prediction (the scikit-learn convention). The matrix is int64 so that it can hold the
pixel counts of any realistic dataset (2**63 voxels) without overflow; every metric in
:mod:`medseg.evaluation.metrics` derives from it.

Example:
    >>> import numpy as np
    >>> label = np.array([[0, 0], [1, 1]])
    >>> pred = np.array([[0, 1], [1, 1]])
    >>> confusion_matrix(pred, label, num_classes=2)
    array([[1, 1],
           [0, 2]])
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import torch

__all__ = ["ConfusionAccumulator", "check_num_classes", "confusion_matrix", "is_tensor"]

logger = logging.getLogger(__name__)

#: Elements processed per ``bincount`` call: bounds the temporary int64 arrays to ~32 MiB each, so a
#: 512x512x600 CT volume does not need gigabytes of scratch memory.
_CHUNK = 1 << 22


def is_tensor(x: Any) -> TypeGuard[torch.Tensor]:
    """Whether ``x`` is a torch tensor, without importing torch (a tensor exists only once torch is imported).

    The evaluation modules take numpy arrays or tensors; checking this way keeps ``medseg evaluate`` and the other
    numpy-only callers free of torch's import cost.
    """
    torch_module = sys.modules.get("torch")
    return torch_module is not None and isinstance(x, torch_module.Tensor)


def check_num_classes(num_classes: Any) -> int:
    """Validate ``num_classes`` (an int >= 2) and return it as ``int``."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an integer >= 2 (background plus at least one class), got {num_classes!r} "
            f"({type(num_classes).__name__}); pass the number of label values, e.g. 2 for a binary task"
        )
    return int(num_classes)


def _check_ignore_index(ignore_index: Any, num_classes: int) -> int | None:
    if ignore_index is None:
        return None
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int | np.integer):
        raise ValueError(
            f"ignore_index must be an integer label value or None, got {ignore_index!r} ({type(ignore_index).__name__})"
        )
    if 0 <= ignore_index < num_classes:
        logger.debug(
            "ignore_index=%d lies inside [0, %d): that class is excluded everywhere", ignore_index, num_classes
        )
    return int(ignore_index)


def _range_error(what: str, lo: float, hi: float, num_classes: int, ignore_index: int | None) -> ValueError:
    extra = f" or ignore_index={ignore_index}" if ignore_index is not None and what == "label" else ""
    return ValueError(
        f"{what} values must be integers in [0, {num_classes}){extra}, got values in [{lo:g}, {hi:g}]; "
        "check num_classes, or map the stored values to class indices (e.g. a 0/255 mask: label map 255:1)"
        + ("" if what == "pred" else ", or set ignore_index")
    )


def _confusion_numpy(
    pred: npt.NDArray[Any], label: npt.NDArray[Any], num_classes: int, ignore_index: int | None
) -> npt.NDArray[np.int64]:
    pred = pred.reshape(-1)
    label = label.reshape(-1)
    out = np.zeros(num_classes * num_classes, dtype=np.int64)
    for start in range(0, pred.size, _CHUNK):
        p = pred[start : start + _CHUNK]
        t = label[start : start + _CHUNK]
        if ignore_index is not None:
            keep = t != ignore_index
            if not keep.all():
                p, t = p[keep], t[keep]
        if p.size == 0:
            continue
        for what, arr in (("label", t), ("pred", p)):
            lo, hi = arr.min(), arr.max()
            if lo < 0 or hi >= num_classes:
                raise _range_error(what, float(lo), float(hi), num_classes, ignore_index)
        idx = t.astype(np.int64, copy=False) * num_classes + p.astype(np.int64, copy=False)
        out += np.bincount(idx, minlength=num_classes * num_classes)
    return out.reshape(num_classes, num_classes)


def _confusion_torch(
    pred: torch.Tensor, label: torch.Tensor, num_classes: int, ignore_index: int | None
) -> torch.Tensor:
    import torch

    pred = pred.reshape(-1)
    label = label.reshape(-1)
    if ignore_index is not None:
        keep = label != ignore_index
        pred, label = pred[keep], label[keep]
    out = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=pred.device)
    if pred.numel() == 0:
        return out.reshape(num_classes, num_classes)
    for what, arr in (("label", label), ("pred", pred)):
        lo, hi = torch.aminmax(arr)
        if bool(lo < 0) or bool(hi >= num_classes):
            raise _range_error(what, float(lo), float(hi), num_classes, ignore_index)
    idx = label.long() * num_classes + pred.long()
    out += torch.bincount(idx, minlength=num_classes * num_classes)
    return out.reshape(num_classes, num_classes)


def _check_integral(x: Any, name: str) -> None:
    if is_tensor(x):
        import torch

        if x.is_floating_point() and x.numel() and not bool(torch.equal(x, torch.round(x))):
            raise ValueError(
                f"{name} must hold integer class labels, got non-integer floats (dtype {x.dtype}); "
                "take the argmax over the class channel (or threshold) before computing a confusion matrix"
            )
        if x.is_complex():
            raise TypeError(f"{name} must hold integer class labels, got complex dtype {x.dtype}")
    elif np.issubdtype(x.dtype, np.floating):
        if x.size and not np.array_equal(x, np.round(x)):
            raise ValueError(
                f"{name} must hold integer class labels, got non-integer floats (dtype {x.dtype}); "
                "take the argmax over the class channel (or threshold) before computing a confusion matrix"
            )
    elif not (np.issubdtype(x.dtype, np.integer) or x.dtype == np.bool_):
        raise TypeError(f"{name} must be an integer (or integer-valued) array, got dtype {x.dtype}")


def confusion_matrix(
    pred: Any,
    label: Any,
    num_classes: int,
    *,
    ignore_index: int | None = None,
) -> Any:
    r"""Confusion matrix of two integer label maps, computed with one ``bincount``.

    .. math::
        \mathrm{cm}_{ij} = \sum_{n} [y_n = i]\,[\hat y_n = j]

    Args:
        pred: predicted labels, any shape; a numpy array or a torch tensor (integers, booleans or integer-valued
            floats). Take the argmax over the class channel first.
        label: reference labels with the same number of elements as ``pred`` (a trailing/leading singleton
            channel difference is fine: both are flattened).
        num_classes: number of classes K (>= 2); valid labels are ``0 .. K-1``.
        ignore_index: reference value whose pixels are left out of the matrix (e.g. 255 for "unlabelled"),
            or ``None``.

    Returns:
        ``(K, K)`` int64 matrix, rows = reference, columns = prediction. A torch tensor on the input's device
        when ``pred`` is a tensor (accumulation stays on the GPU during validation), else a numpy array.

    Raises:
        ValueError: element counts differ, values fall outside ``[0, K)`` (other than ``ignore_index`` in the
            reference), or float inputs are not integer-valued.
        TypeError: unsupported input types.
    """
    num_classes = check_num_classes(num_classes)
    ignore_index = _check_ignore_index(ignore_index, num_classes)
    if is_tensor(pred) or is_tensor(label):
        import torch

        p = torch.as_tensor(pred)
        t = torch.as_tensor(label, device=p.device)
        p = p.as_tensor() if hasattr(p, "as_tensor") else p
        t = t.as_tensor() if hasattr(t, "as_tensor") else t
        if p.numel() != t.numel():
            raise ValueError(
                f"pred and label must have the same number of elements, got shapes {tuple(p.shape)} and "
                f"{tuple(t.shape)}"
            )
        _check_integral(p, "pred")
        _check_integral(t, "label")
        p = p.to(torch.uint8) if p.dtype == torch.bool else p
        t = t.to(torch.uint8) if t.dtype == torch.bool else t
        out = _confusion_torch(p, t, num_classes, ignore_index)
        return out if is_tensor(pred) else out.cpu().numpy()
    p_np = np.asarray(pred)
    t_np = np.asarray(label)
    if p_np.size != t_np.size:
        raise ValueError(
            f"pred and label must have the same number of elements, got shapes {p_np.shape} and {t_np.shape}"
        )
    _check_integral(p_np, "pred")
    _check_integral(t_np, "label")
    return _confusion_numpy(p_np, t_np, num_classes, ignore_index)


class ConfusionAccumulator:
    """Sum confusion matrices case by case; memory stays one ``(K, K)`` int64 matrix.

    Args:
        num_classes: number of classes K (>= 2).
        ignore_index: reference value left out of the counts, or ``None``.

    Example:
        >>> import numpy as np
        >>> acc = ConfusionAccumulator(2)
        >>> _ = acc.update(np.array([0, 1]), np.array([0, 1]))
        >>> _ = acc.update(np.array([1, 1]), np.array([0, 1]))
        >>> acc.matrix.tolist()
        [[1, 1], [0, 2]]
    """

    def __init__(self, num_classes: int, *, ignore_index: int | None = None) -> None:
        self.num_classes = check_num_classes(num_classes)
        self.ignore_index = _check_ignore_index(ignore_index, self.num_classes)
        self.matrix: npt.NDArray[np.int64] = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        self.num_updates = 0

    def reset(self) -> None:
        self.matrix[...] = 0
        self.num_updates = 0

    def update(self, pred: Any, label: Any) -> npt.NDArray[np.int64]:
        """Add one case (or batch); returns that case's own matrix (useful for per-case metrics)."""
        cm = confusion_matrix(pred, label, self.num_classes, ignore_index=self.ignore_index)
        cm_np = cm.cpu().numpy() if is_tensor(cm) else cm
        self.matrix += cm_np
        self.num_updates += 1
        return cm_np

    def merge(self, other: ConfusionAccumulator) -> None:
        """Add another accumulator's counts (e.g. from a worker process)."""
        if other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge accumulators with different num_classes: {self.num_classes} and {other.num_classes}"
            )
        self.matrix += other.matrix
        self.num_updates += other.num_updates
