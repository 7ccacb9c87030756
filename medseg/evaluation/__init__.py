"""Evaluation: confusion-matrix metrics over a dataset and per case, boundary distances, and the MC error bound.

- :mod:`~medseg.evaluation.confusion`: ``confusion_matrix`` (numpy or torch, one ``bincount``) and
  ``ConfusionAccumulator``;
- :mod:`~medseg.evaluation.metrics`: IoU, mIoU (with/without background), Dice, accuracy from a matrix;
- :mod:`~medseg.evaluation.surface`: HD95 and average surface distance in physical units;
- :mod:`~medseg.evaluation.ignite_metrics`: ``ConfusionMatrixMetric`` and ``confusion_metrics`` for ignite/MONAI
  validation;
- :mod:`~medseg.evaluation.evaluate`: ``evaluate_folders``, the API behind ``medseg evaluate``;
- :mod:`~medseg.evaluation.bound`: Theorem 1's ε and Corollary 1's optimal offsets (Yu et al., IJCV 2021).
"""

from __future__ import annotations

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
from medseg.evaluation.confusion import ConfusionAccumulator, confusion_matrix
from medseg.evaluation.evaluate import evaluate_case, evaluate_folders, match_cases, read_segmentation
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

__all__ = [
    "ConfusionAccumulator",
    "ConfusionMatrixMetric",
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
    "read_segmentation",
    "render_bound_table",
    "summarize_confusion",
    "surface_distances",
    "surface_metrics_per_class",
]
