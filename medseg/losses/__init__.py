"""Segmentation losses, registered by name in :data:`medseg.registry.LOSSES`.

Every loss is called as ``loss(logits, target)`` (DESIGN.md, "Loss call convention"). Pure tensor maths lives in
:mod:`medseg.losses.functional`; each module here is a thin ``nn.Module`` over it and registers itself.
"""

from __future__ import annotations

from medseg.losses.compound import DiceMCLoss, TverskyMCLoss
from medseg.losses.cross_entropy import CrossEntropyLoss
from medseg.losses.dice import DiceLoss, GeneralizedDiceLoss, TverskyLoss
from medseg.losses.dice_ce import DiceCELoss
from medseg.losses.focal import FocalLoss
from medseg.losses.lmp import LossMaxPoolingLoss
from medseg.losses.lovasz import LovaszSoftmaxLoss
from medseg.losses.margin_calibration import MarginCalibrationLoss, margin_offsets
from medseg.losses.neuroiou import NeuroIoULoss
from medseg.losses.noise_robust_dice import NoiseRobustDiceLoss
from medseg.losses.soft_iou import SoftIoULoss
from medseg.registry import LOSSES, create_loss

__all__ = [
    "LOSSES",
    "CrossEntropyLoss",
    "DiceCELoss",
    "DiceLoss",
    "DiceMCLoss",
    "FocalLoss",
    "GeneralizedDiceLoss",
    "LossMaxPoolingLoss",
    "LovaszSoftmaxLoss",
    "MarginCalibrationLoss",
    "NeuroIoULoss",
    "NoiseRobustDiceLoss",
    "SoftIoULoss",
    "TverskyLoss",
    "TverskyMCLoss",
    "create_loss",
    "margin_offsets",
]
