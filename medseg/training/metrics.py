"""Validation metrics that MONAI's handlers do not provide: the training loss on validation data."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from ignite.metrics import Metric
from ignite.metrics.metric import reinit__is_reduced, sync_all_reduce

from medseg.losses._input import as_plain_tensor

__all__ = ["LossMetric"]


def _items(x: Any) -> list[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return list(x) if x.ndim > 0 else [x]
    return list(x)


class LossMetric(Metric):  # type: ignore[misc]
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

    @reinit__is_reduced  # type: ignore[untyped-decorator]
    def reset(self) -> None:
        self._sum = torch.tensor(0.0, dtype=torch.float64, device=self._device)
        self._num = torch.tensor(0, dtype=torch.int64, device=self._device)

    @reinit__is_reduced  # type: ignore[untyped-decorator]
    def update(self, output: Sequence[Any]) -> None:
        preds, labels = output
        with torch.no_grad():
            for pred, label in zip(_items(preds), _items(labels), strict=True):
                value = self.loss_fn(as_plain_tensor(pred)[None].float(), as_plain_tensor(label)[None])
                self._sum += float(value)
                self._num += 1

    @sync_all_reduce("_sum", "_num")  # type: ignore[untyped-decorator]
    def compute(self) -> float:
        if int(self._num) == 0:
            raise RuntimeError("LossMetric needs at least one item before compute()")
        return float(self._sum / self._num)
