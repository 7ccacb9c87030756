"""Validation metrics that MONAI's handlers do not provide: the training loss on validation data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from medseg.losses._input import as_plain_tensor

__all__ = ["LossMetric", "validation_metrics"]


def _items(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return list(x) if x.ndim > 0 else [x]
    return list(x)


class LossMetric(Metric):
    """Average a loss function over validation items (decollated lists or batched tensors).

    Each item ``(pred (K, *spatial), label (1, *spatial))`` is scored on its own, so validation images of
    different sizes work; the result is the mean over items.

    Args:
        loss_fn: a loss following the call convention ``loss(logits, target)``.
        output_transform: maps the engine output to ``(preds, labels)``; MONAI's ``from_engine(["pred", "label"])``.
    """

    def __init__(
        self,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        output_transform: Callable[[Any], Any] = lambda x: x,
        device: str | torch.device = "cpu",
    ) -> None:
        self.loss_fn = loss_fn
        super().__init__(output_transform=output_transform, device=device)

    @reinit__is_reduced
    def reset(self) -> None:
        self._sum = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._num = torch.tensor(0, dtype=torch.int64, device=self._device)

    @reinit__is_reduced
    def update(self, output: Sequence[Any]) -> None:
        preds, labels = output
        with torch.no_grad():
            for pred, label in zip(_items(preds), _items(labels), strict=True):
                value = self.loss_fn(as_plain_tensor(pred)[None].float(), as_plain_tensor(label)[None])
                self._sum += float(value)
                self._num += 1

    @sync_all_reduce("_sum", "_num")
    def compute(self) -> float:
        if int(self._num) == 0:
            raise RuntimeError("LossMetric needs at least one item before compute()")
        return float(self._sum / self._num)


def validation_metrics(
    num_classes: int,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    *,
    ignore_index: int | None = None,
    prefix: str = "val_",
) -> dict[str, Metric]:
    """The validation metrics every medseg bundle reports, sharing one confusion matrix per epoch.

    Keys (with ``prefix``): ``miou`` (dataset-level mIoU, background included: the papers' definition and the
    key metric that selects ``model.pt``), ``miou_fg`` (without background), ``mdice``, ``pixel_accuracy``,
    ``iou_<k>`` per class and, when ``loss_fn`` is given, ``loss`` (the training loss on validation data, for the
    generalisation gap of Li, Yu and Zhang, arXiv:2011.01462, Fig. 2).
    """
    from monai.handlers.utils import from_engine

    from medseg.evaluation import confusion_metrics

    names = {
        "miou": "mean_iou",
        "miou_fg": "mean_iou_foreground",
        "mdice": "mean_dice",
        "pixel_accuracy": "pixel_accuracy",
        **{f"iou_{k}": f"iou_{k}" for k in range(num_classes)},
    }
    shared = confusion_metrics(num_classes, names=tuple(names.values()), ignore_index=ignore_index)
    out: dict[str, Metric] = {prefix + ours: shared[theirs] for ours, theirs in names.items()}
    if loss_fn is not None:
        out[prefix + "loss"] = LossMetric(loss_fn, output_transform=from_engine(["pred", "label"]))
    return out
