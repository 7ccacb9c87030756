"""Evaluation: confusion-matrix metrics over a dataset and per case, boundary distances, and the MC error bound.

- :mod:`~medseg.evaluation.confusion`: ``confusion_matrix`` (numpy or torch, one ``bincount``) and
  ``ConfusionAccumulator``;
- :mod:`~medseg.evaluation.metrics`: IoU, mIoU (with/without background), Dice, accuracy from a matrix;
- :mod:`~medseg.evaluation.surface`: HD95 and average surface distance in physical units;
- :mod:`~medseg.evaluation.ignite_metrics`: ``ConfusionMatrixMetric`` and ``confusion_metrics`` for ignite/MONAI
  validation;
- :mod:`~medseg.evaluation.cases`: pairing prediction and reference files, one case's geometry check and scores;
- :mod:`~medseg.evaluation.evaluate`: ``EvaluationSettings`` and ``evaluate_folders``, the API behind
  ``medseg evaluate``;
- :mod:`~medseg.evaluation.bound`: Theorem 1's ε and Corollary 1's optimal offsets (Yu et al., IJCV 2021).

Names are imported lazily (PEP 562): ``medseg evaluate`` scores NumPy arrays and never imports torch, which only
the ignite metrics (and tensors passed in) need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.evaluation.bound import (
        bound_table,
        complexity_term,
        corollary_offsets,
        error_bound,
        error_bound_per_class,
        minimal_error_bound,
        optimal_offset_ratios,
        render_bound_table,
    )
    from medseg.evaluation.cases import evaluate_case, match_cases
    from medseg.evaluation.confusion import ConfusionAccumulator, confusion_matrix
    from medseg.evaluation.evaluate import EvaluationSettings, evaluate_folders
    from medseg.evaluation.ignite_metrics import ConfusionMatrixMetric, confusion_metrics
    from medseg.evaluation.metrics import (
        dice_per_class,
        iou_per_class,
        mean_dice,
        mean_iou,
        pixel_accuracy,
        summarize_confusion,
    )
    from medseg.evaluation.surface import surface_distances, surface_metrics_per_class

_EXPORTS = {
    "bound_table": "bound",
    "complexity_term": "bound",
    "corollary_offsets": "bound",
    "error_bound": "bound",
    "error_bound_per_class": "bound",
    "minimal_error_bound": "bound",
    "optimal_offset_ratios": "bound",
    "render_bound_table": "bound",
    "evaluate_case": "cases",
    "match_cases": "cases",
    "ConfusionAccumulator": "confusion",
    "confusion_matrix": "confusion",
    "EvaluationSettings": "evaluate",
    "evaluate_folders": "evaluate",
    "ConfusionMatrixMetric": "ignite_metrics",
    "confusion_metrics": "ignite_metrics",
    "dice_per_class": "metrics",
    "iou_per_class": "metrics",
    "mean_dice": "metrics",
    "mean_iou": "metrics",
    "pixel_accuracy": "metrics",
    "summarize_confusion": "metrics",
    "surface_distances": "surface",
    "surface_metrics_per_class": "surface",
}

__all__ = [
    "ConfusionAccumulator",
    "ConfusionMatrixMetric",
    "EvaluationSettings",
    "bound_table",
    "complexity_term",
    "confusion_matrix",
    "confusion_metrics",
    "corollary_offsets",
    "dice_per_class",
    "error_bound",
    "error_bound_per_class",
    "evaluate_case",
    "evaluate_folders",
    "iou_per_class",
    "match_cases",
    "mean_dice",
    "mean_iou",
    "minimal_error_bound",
    "optimal_offset_ratios",
    "pixel_accuracy",
    "render_bound_table",
    "summarize_confusion",
    "surface_distances",
    "surface_metrics_per_class",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medseg.evaluation' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"medseg.evaluation.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
