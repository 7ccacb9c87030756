"""Bundle training glue: handlers, metrics, curves, NeuroIoU surrogate fitting, the protocol.

The papers' protocol (Li, Yu, Zhang, "Distribution-aware Margin Calibration for Medical Image Segmentation",
arXiv:2011.01462, Settings): AdamW at 1e-4 with GroupNorm and small batches, CE
pre-training, then fine-tuning from that checkpoint with another loss (``pretrained_ckpt``).
"""

from __future__ import annotations

from medseg.training.amp import AutocastInferer
from medseg.training.curves import plot_curves, read_history
from medseg.training.handlers import (
    AtomicCheckpointSaver,
    HistoryRecorder,
    ResumeFromCheckpoint,
    load_pretrained,
)
from medseg.training.metrics import LossMetric, validation_metrics
from medseg.training.neuroiou_fit import (
    collect_neuroiou_statistics,
    fit_neuroiou_surrogate,
    fit_neuroiou_surrogate_on_statistics,
)
from medseg.training.preflight import preflight, preflight_loss
from medseg.training.schedules import build_lr_scheduler

__all__ = [
    "AtomicCheckpointSaver",
    "AutocastInferer",
    "HistoryRecorder",
    "LossMetric",
    "ResumeFromCheckpoint",
    "build_lr_scheduler",
    "collect_neuroiou_statistics",
    "fit_neuroiou_surrogate",
    "fit_neuroiou_surrogate_on_statistics",
    "load_pretrained",
    "plot_curves",
    "preflight",
    "preflight_loss",
    "read_history",
    "validation_metrics",
]
