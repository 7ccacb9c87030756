"""Bundle training glue: loss construction from class statistics, handlers, metrics, curves, the protocol.

The papers' protocol (002_1f3568bddcc5ea2b.txt, Settings): AdamW at 1e-4 with GroupNorm and small batches, CE
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
from medseg.training.losses import MC_FAMILY, build_loss, load_class_stats
from medseg.training.metrics import LossMetric, validation_metrics
from medseg.training.preflight import preflight, preflight_loss
from medseg.training.schedules import build_lr_scheduler

__all__ = [
    "MC_FAMILY",
    "AtomicCheckpointSaver",
    "AutocastInferer",
    "HistoryRecorder",
    "LossMetric",
    "ResumeFromCheckpoint",
    "build_loss",
    "build_lr_scheduler",
    "load_class_stats",
    "load_pretrained",
    "plot_curves",
    "preflight",
    "preflight_loss",
    "read_history",
    "validation_metrics",
]
