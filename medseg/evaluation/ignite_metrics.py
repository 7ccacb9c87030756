"""Confusion-matrix metrics for ignite / MONAI engines (validation during training).

:class:`ConfusionMatrixMetric` accumulates one ``(K, K)`` int64 matrix over an epoch (on the engine's device, summed
across processes in distributed runs) and computes every matrix-derived metric from it at the end, so the
validation mIoU is the papers' dataset-level mIoU, not a mean of per-batch values.

It accepts what the engines give it:

- plain ignite: ``(y_pred, y)`` with ``y_pred`` logits/probabilities ``(B, K, *spatial)`` (argmax is taken over
  the channel axis) or a label map ``(B, 1, *spatial)``, and ``y`` labels ``(B, 1, *spatial)``, ``(B, *spatial)``
  or one-hot ``(B, K, *spatial)``;
- MONAI's ``SupervisedEvaluator`` with ``decollate=True``: ``engine.state.output`` is a list of per-item dicts;
  the default ``output_transform`` takes their ``"pred"`` and ``"label"`` entries (what
  ``monai.handlers.from_engine(["pred", "label"])`` does) and ignite feeds the items one by one.

:func:`confusion_metrics` returns scalar metrics that share ONE accumulator, for MONAI's ``key_val_metric`` (which
needs a scalar to select the best checkpoint) and ``additional_metrics``.

Example:
    >>> import torch
    >>> from ignite.engine import Engine
    >>> batches = [(torch.tensor([[[[2.0, -1.0]], [[0.0, 3.0]]]]), torch.tensor([[[[0, 1]]]]))]
    >>> engine = Engine(lambda e, batch: batch)
    >>> ConfusionMatrixMetric(num_classes=2).attach(engine, "cm")
    >>> state = engine.run(batches)
    >>> state.metrics["mean_iou"]
    1.0
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from ignite.metrics import Metric, MetricsLambda
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from medseg.evaluation import metrics as M
from medseg.evaluation.confusion import _check_ignore_index, check_num_classes, confusion_matrix

__all__ = ["ConfusionMatrixMetric", "confusion_metrics", "pred_label_from_output"]

logger = logging.getLogger(__name__)

#: Names of the scalar metrics :meth:`ConfusionMatrixMetric.compute` returns (plus ``iou_<k>``/``dice_<k>``).
SCALAR_METRICS = (
    "mean_iou",
    "mean_iou_foreground",
    "mean_dice",
    "mean_dice_foreground",
    "pixel_accuracy",
)


def pred_label_from_output(output: Any, keys: Sequence[str] = ("pred", "label")) -> Any:
    """Default output transform: ``(pred, label)`` from a MONAI dict / list of dicts, else ``output`` unchanged.

    Args:
        output: ``engine.state.output``: a ``(y_pred, y)`` pair, one dict, or a list of per-item dicts (MONAI's
            decollated batch).
        keys: dictionary keys of prediction and label.
    """
    pk, lk = keys
    if isinstance(output, Mapping):
        return output[pk], output[lk]
    if isinstance(output, list | tuple) and output and all(isinstance(o, Mapping) for o in output):
        return [o[pk] for o in output], [o[lk] for o in output]
    return output


def _plain(x: Any) -> torch.Tensor:
    t = torch.as_tensor(x)
    return t.as_tensor() if hasattr(t, "as_tensor") else t


class ConfusionMatrixMetric(Metric):
    """Epoch-level confusion matrix and the IoU/Dice/accuracy metrics derived from it.

    Args:
        num_classes: number of classes K (>= 2); background is class ``background_index``.
        ignore_index: reference value left out of the counts, or ``None``.
        background_index: label of the background class, left out of the ``*_foreground`` means.
        class_names: names used in the per-class keys (``iou_<name>``); default ``"0" .. "K-1"``.
        output_transform: maps ``engine.state.output`` to ``(y_pred, y)``; the default understands MONAI's
            decollated dicts (see :func:`pred_label_from_output`).
        device: where the matrix is accumulated (the engine's device avoids host transfers per batch).

    Shape:
        - ``y_pred``: ``(B, K, *spatial)`` scores (argmax over channels) or ``(B, 1, *spatial)`` labels.
        - ``y``: ``(B, 1, *spatial)`` or ``(B, *spatial)`` labels, or one-hot ``(B, K, *spatial)``.

    Returns (from ``compute``):
        a dict of floats: ``mean_iou``, ``mean_iou_foreground``, ``mean_dice``, ``mean_dice_foreground``,
        ``pixel_accuracy`` and ``iou_<name>``, ``dice_<name>`` per class (NaN where undefined, see
        :mod:`medseg.evaluation.metrics`). ignite flattens it into ``engine.state.metrics``.
    """

    _state_dict_all_req_keys = ("_matrix",)

    def __init__(
        self,
        num_classes: int,
        *,
        ignore_index: int | None = None,
        background_index: int = 0,
        class_names: Sequence[str] | None = None,
        output_transform: Callable[[Any], Any] = pred_label_from_output,
        device: str | torch.device = "cpu",
    ) -> None:
        self.num_classes = check_num_classes(num_classes)
        self.ignore_index = _check_ignore_index(ignore_index, self.num_classes)
        if not 0 <= background_index < self.num_classes:
            raise ValueError(
                f"background_index must lie in [0, {self.num_classes}), got {background_index!r}; "
                "it is the label value of the background class"
            )
        self.background_index = int(background_index)
        names = [str(i) for i in range(self.num_classes)] if class_names is None else [str(n) for n in class_names]
        if len(names) != self.num_classes:
            raise ValueError(f"class_names must have num_classes={self.num_classes} entries, got {len(names)}: {names}")
        self.class_names = names
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._matrix = torch.zeros((self.num_classes, self.num_classes), dtype=torch.int64, device=self._device)

    def _labels(self, x: torch.Tensor, ref_ndim: int, what: str) -> torch.Tensor:
        """Integer labels ``(B, *spatial)`` from scores, one-hot or label maps."""
        if x.ndim == ref_ndim and x.shape[1] == 1:
            return x[:, 0]
        if x.ndim == ref_ndim and x.shape[1] == self.num_classes:
            return x.argmax(dim=1)
        if x.ndim == ref_ndim - 1:
            return x
        raise ValueError(
            f"{what} must be (B, {self.num_classes}, *spatial) scores/one-hot, (B, 1, *spatial) labels or "
            f"(B, *spatial) labels, got shape {tuple(x.shape)}; check num_classes={self.num_classes} and the "
            "post-processing transforms"
        )

    @reinit__is_reduced
    def update(self, output: Sequence[torch.Tensor]) -> None:
        y_pred, y = (_plain(o) for o in output[:2])
        if y_pred.ndim < 3:
            raise ValueError(
                f"y_pred must be batched (B, C, *spatial), got shape {tuple(y_pred.shape)}; add the batch axis"
            )
        pred = self._labels(y_pred, y_pred.ndim, "y_pred")
        label = self._labels(y.to(pred.device), y_pred.ndim, "y")
        if pred.shape != label.shape:
            raise ValueError(
                f"prediction and label disagree: y_pred {tuple(y_pred.shape)} gives labels {tuple(pred.shape)}, "
                f"y {tuple(y.shape)} gives {tuple(label.shape)}"
            )
        cm = confusion_matrix(pred, label, self.num_classes, ignore_index=self.ignore_index)
        self._matrix += cm.to(self._matrix.device)

    @property
    def matrix(self) -> torch.Tensor:
        """The accumulated (this process's, before ``compute``) ``(K, K)`` int64 confusion matrix."""
        return self._matrix

    @sync_all_reduce("_matrix")
    def compute(self) -> dict[str, float]:
        cm = self._matrix.cpu().numpy()
        if cm.sum() == 0:
            logger.warning("ConfusionMatrixMetric.compute: no pixel was counted; every metric is NaN")
        out = {
            "mean_iou": M.mean_iou(cm, background_index=self.background_index),
            "mean_iou_foreground": M.mean_iou(cm, include_background=False, background_index=self.background_index),
            "mean_dice": M.mean_dice(cm, background_index=self.background_index),
            "mean_dice_foreground": M.mean_dice(cm, include_background=False, background_index=self.background_index),
            "pixel_accuracy": M.pixel_accuracy(cm),
        }
        iou, dice = M.iou_per_class(cm), M.dice_per_class(cm)
        for i, name in enumerate(self.class_names):
            out[f"iou_{name}"] = float(iou[i])
            out[f"dice_{name}"] = float(dice[i])
        return out


def confusion_metrics(
    num_classes: int,
    *,
    names: Sequence[str] = SCALAR_METRICS,
    **kwargs: Any,
) -> dict[str, Metric]:
    """Scalar ignite metrics that share ONE :class:`ConfusionMatrixMetric` (one update per iteration).

    Args:
        num_classes: number of classes K.
        names: which scalars to return: any of :data:`SCALAR_METRICS` or ``iou_<class>`` / ``dice_<class>``.
        **kwargs: passed to :class:`ConfusionMatrixMetric` (``ignore_index``, ``class_names``,
            ``output_transform``, ``device``, ``background_index``).

    Returns:
        ``{name: MetricsLambda}``; attach any subset (e.g. MONAI's ``key_val_metric={"val_mean_iou":
        m["mean_iou"]}`` and ``additional_metrics``). The shared accumulator is attached once.

    Example:
        >>> m = confusion_metrics(3, names=("mean_iou", "iou_1"))
        >>> sorted(m)
        ['iou_1', 'mean_iou']
    """
    base = ConfusionMatrixMetric(num_classes, **kwargs)
    allowed = set(SCALAR_METRICS) | {f"{p}_{c}" for p in ("iou", "dice") for c in base.class_names}
    out: dict[str, Metric] = {}
    for name in names:
        if name not in allowed:
            raise ValueError(f"unknown confusion metric {name!r}; choose from {sorted(allowed)}")
        out[name] = MetricsLambda(lambda d, key=name: d[key], base)
    return out
