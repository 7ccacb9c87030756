"""Segmentation metrics derived from one confusion matrix.

All functions take a ``(K, K)`` confusion matrix (rows = reference, columns = prediction; see
:mod:`medseg.evaluation.confusion`) as a numpy array or torch tensor and return float64 numpy values.

**Dataset-level versus per-case.** The papers (Yu et al., IJCV 2021, Sec. 3.1) compute IoU "globally over an image
dataset": the counts of every image are summed into ONE matrix first and IoU is taken from the sums. Feeding the
accumulated matrix to :func:`iou_per_class` gives exactly that; feeding one case's matrix gives that case's IoU,
and the mean of per-case IoUs is a different (usually lower) number because small structures weigh as much as
large ones.

**Absent classes.** A class with no pixel in the reference AND none in the prediction has ``TP + FP + FN = 0``;
its IoU and Dice are undefined and returned as NaN, and every mean here skips NaN (``nanmean``). A class present in
only one of the two gets 0. If every class is undefined the mean is NaN.

Example:
    >>> import numpy as np
    >>> cm = np.array([[6, 2], [1, 3]])  # TP_1 = 3, FP_1 = 2, FN_1 = 1
    >>> iou_per_class(cm).round(4).tolist()  # class 0: 6 / (6+1+2); class 1: 3 / (3+2+1)
    [0.6667, 0.5]
    >>> round(float(mean_iou(cm, include_background=False)), 4)
    0.5
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.evaluation.confusion import is_tensor

__all__ = [
    "counts",
    "dice_per_class",
    "iou_per_class",
    "mean_dice",
    "mean_iou",
    "nanmean",
    "pixel_accuracy",
    "precision_per_class",
    "recall_per_class",
    "summarize_confusion",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def _as_matrix(cm: Any) -> npt.NDArray[np.float64]:
    if is_tensor(cm):
        cm = cm.detach().cpu().numpy()
    m = np.asarray(cm)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] < 2:
        raise ValueError(
            f"cm must be a square (K, K) confusion matrix with K >= 2, got shape {m.shape}; "
            "build it with medseg.evaluation.confusion_matrix"
        )
    if np.any(m < 0):
        raise ValueError("cm must hold non-negative counts, got a negative entry")
    return m.astype(np.float64)


def counts(cm: Any) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Per-class true positives, false positives and false negatives (one-vs-rest).

    Returns:
        ``(tp, fp, fn)``, each float64 of length K: ``tp_k = cm[k, k]``, ``fp_k`` = column sum minus ``tp_k``
        (predicted k, reference not k), ``fn_k`` = row sum minus ``tp_k``.
    """
    m = _as_matrix(cm)
    tp = np.diag(m).copy()
    return tp, m.sum(axis=0) - tp, m.sum(axis=1) - tp


def _ratio(num: FloatArray, den: FloatArray) -> FloatArray:
    out = np.full_like(num, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def iou_per_class(cm: Any) -> FloatArray:
    r"""Per-class intersection over union (Jaccard index).

    .. math::
        \mathrm{IoU}_k = \frac{TP_k}{TP_k + FP_k + FN_k}
        = \frac{P_k - P_{k0}}{P_k + P_{0k}}

    Args:
        cm: ``(K, K)`` confusion matrix.

    Returns:
        float64 ``(K,)``; NaN for a class absent from both reference and prediction.

    References:
        Yu, Li, Xu, Gao, Luo, Zhang, "Distribution-aware Margin Calibration for Semantic Segmentation in Images",
        International Journal of Computer Vision (accepted 2021), arXiv:2112.11554, Eq. (1) and its empirical
        form Eq. (3).
    """
    tp, fp, fn = counts(cm)
    return _ratio(tp, tp + fp + fn)


def dice_per_class(cm: Any) -> FloatArray:
    r"""Per-class Dice similarity coefficient (F1 score).

    .. math::
        \mathrm{DSC}_k = \frac{2\,TP_k}{2\,TP_k + FP_k + FN_k}

    Returns:
        float64 ``(K,)``; NaN for a class absent from both reference and prediction.

    References:
        Yu et al., IJCV 2021 (see :func:`iou_per_class`), Eq. (2).
    """
    tp, fp, fn = counts(cm)
    return _ratio(2 * tp, 2 * tp + fp + fn)


def recall_per_class(cm: Any) -> FloatArray:
    """Per-class recall (sensitivity, class accuracy) ``TP / (TP + FN)``; NaN if the class has no reference pixel."""
    tp, _, fn = counts(cm)
    return _ratio(tp, tp + fn)


def precision_per_class(cm: Any) -> FloatArray:
    """Per-class precision ``TP / (TP + FP)``; NaN if the class was never predicted."""
    tp, fp, _ = counts(cm)
    return _ratio(tp, tp + fp)


def pixel_accuracy(cm: Any) -> float:
    """Fraction of counted pixels whose predicted label equals the reference, ``trace(cm) / sum(cm)``.

    Returns:
        float; NaN if the matrix is empty (no pixel counted).
    """
    m = _as_matrix(cm)
    total = m.sum()
    return float(np.trace(m) / total) if total > 0 else float("nan")


def nanmean(values: Any) -> float:
    """Mean over the finite entries of ``values`` (NaN, i.e. undefined, entries skipped); NaN if none is left."""
    v = np.asarray(values, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if v.size else float("nan")


def _class_mean(per_class: FloatArray, include_background: bool, background_index: int) -> float:
    if not include_background:
        if not 0 <= background_index < per_class.size:
            raise ValueError(
                f"background_index must lie in [0, {per_class.size}), got {background_index}; "
                "it is the label value of the background class (0 in this project)"
            )
        per_class = np.delete(per_class, background_index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return nanmean(per_class)


def mean_iou(cm: Any, *, include_background: bool = True, background_index: int = 0) -> float:
    r"""Mean IoU over classes, skipping classes absent from both reference and prediction.

    .. math::
        \mathrm{mIoU} = \frac{1}{K} \sum_{k=1}^{K} \mathrm{IoU}_k

    Args:
        cm: ``(K, K)`` confusion matrix; pass the dataset-accumulated matrix for the papers' dataset-level mIoU.
        include_background: average over every class (True, the papers' K-class mean) or leave out the
            background class (False, the usual medical "foreground" mean).
        background_index: label value of the background class.

    Note:
        The paper averages over all K classes; undefined (NaN) classes are skipped here rather than counted as 0
        or 1, so that a class missing from a subset does not distort the mean.

    References:
        Yu et al., IJCV 2021 (see :func:`iou_per_class`), Sec. 3.1 (definition of mIoU after Eq. (7)).
    """
    return _class_mean(iou_per_class(cm), include_background, background_index)


def mean_dice(cm: Any, *, include_background: bool = True, background_index: int = 0) -> float:
    """Mean Dice over classes, NaN classes skipped (see :func:`mean_iou` for the arguments)."""
    return _class_mean(dice_per_class(cm), include_background, background_index)


def summarize_confusion(cm: Any, *, class_names: list[str] | None = None, background_index: int = 0) -> dict[str, Any]:
    """All matrix-derived metrics as a JSON-ready dict (NaN written as ``None``).

    Returns:
        ``{"pixel_accuracy", "mean_iou", "mean_iou_foreground", "mean_dice", "mean_dice_foreground",
        "per_class": {name: {"iou", "dice", "recall", "precision", "reference_pixels", "predicted_pixels"}},
        "num_pixels"}``.
    """
    m = _as_matrix(cm)
    k = m.shape[0]
    names = class_names if class_names is not None else [str(i) for i in range(k)]
    if len(names) != k:
        raise ValueError(f"class_names has {len(names)} entries but the matrix has K={k} classes")
    iou, dice = iou_per_class(m), dice_per_class(m)
    rec, prec = recall_per_class(m), precision_per_class(m)
    ref, predicted = m.sum(axis=1), m.sum(axis=0)

    def js(x: float) -> float | None:
        return None if not np.isfinite(x) else float(x)

    return {
        "pixel_accuracy": js(pixel_accuracy(m)),
        "mean_iou": js(mean_iou(m, background_index=background_index)),
        "mean_iou_foreground": js(mean_iou(m, include_background=False, background_index=background_index)),
        "mean_dice": js(mean_dice(m, background_index=background_index)),
        "mean_dice_foreground": js(mean_dice(m, include_background=False, background_index=background_index)),
        "num_pixels": int(m.sum()),
        "per_class": {
            names[i]: {
                "iou": js(iou[i]),
                "dice": js(dice[i]),
                "recall": js(rec[i]),
                "precision": js(prec[i]),
                "reference_pixels": int(ref[i]),
                "predicted_pixels": int(predicted[i]),
            }
            for i in range(k)
        },
    }
