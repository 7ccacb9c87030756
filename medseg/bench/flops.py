"""Floating-point work of a network and the dense peak of the GPU it runs on: how far a run is from the bound.

:func:`network_flops` counts one forward pass with PyTorch's ``torch.utils.flop_counter.FlopCounterMode`` (matrix
products and convolutions, 2 FLOPs per multiply-add; elementwise work, normalisation and activations are not
counted, so it is the tensor-core work that a peak figure bounds). :func:`peak_tflops` looks the device up in
:data:`PEAK_TFLOPS`, the dense (no structured sparsity) peaks from NVIDIA's datasheets:

- NVIDIA H100 Tensor Core GPU datasheet (2023): H100 SXM FP32 67, TF32 Tensor Core 989 and BF16/FP16 Tensor
  Core 1,979 teraFLOPS, H100 PCIe 51 / 756 / 1,513, H100 NVL 60 / 835 / 1,671, the tensor-core figures "with
  sparsity"; the dense figures are half of those.
- NVIDIA H200 Tensor Core GPU datasheet (2024): H200 SXM FP32 67, TF32 989, BF16 1,979, H200 NVL 60 / 835 /
  1,671 teraFLOPS, tensor-core figures with sparsity; dense is half.

A float32 run on CUDA uses TF32 tensor cores for convolutions when ``torch.backends.cudnn.allow_tf32`` is set
(PyTorch's default), so its bound is the TF32 peak then, the plain FP32 peak otherwise (:func:`fp32_peak_key`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["PEAK_TFLOPS", "flops_per_voxel", "fp32_peak_key", "network_flops", "peak_tflops"]

#: Dense peak teraFLOP/s by device, keyed by a substring of ``torch.cuda.get_device_name`` (first match wins, so
#: the more specific names come first; an H100 SXM reports e.g. "NVIDIA H100 80GB HBM3").
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    "H200": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "fp16": 835.5},
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "fp16": 756.5},
    "H100": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "fp16": 989.5},
}


def peak_tflops(device_name: str, precision: str) -> float | None:
    """The dense peak for ``precision`` (``fp32``, ``tf32``, ``bf16``, ``fp16``) of a device, or ``None`` if unknown.

    Args:
        device_name: what ``torch.cuda.get_device_name`` returns.
        precision: one of the keys of the :data:`PEAK_TFLOPS` rows.

    Raises:
        ValueError: for an unknown precision.
    """
    if precision not in ("fp32", "tf32", "bf16", "fp16"):
        raise ValueError(f"precision must be fp32, tf32, bf16 or fp16, got {precision!r}")
    for key, row in PEAK_TFLOPS.items():
        if key.lower() in device_name.lower():
            return row[precision]
    return None


def fp32_peak_key() -> str:
    """``"tf32"`` when cuDNN may run float32 convolutions on TF32 tensor cores (PyTorch's default), else ``"fp32"``."""
    import torch

    return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"


def network_flops(network: Any, example: Any) -> int:
    """FLOPs of one forward pass of ``network`` on ``example``, counted by ``FlopCounterMode`` (no gradients).

    Args:
        network: a ``torch.nn.Module``.
        example: its input tensor (batch included).

    Returns:
        Total FLOPs (a multiply-add counts 2).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        network(example)
    return int(counter.get_total_flops())


def flops_per_voxel(network: Any, window: Sequence[int], in_channels: int = 1) -> float:
    """Forward FLOPs per output voxel of ``network`` on one window of size ``window`` (2 or 3 spatial sizes).

    The network is run once on CPU zeros of shape ``(1, in_channels, *window)`` (FLOPs do not depend on values
    or device), on a copy so that the caller's module is not moved.
    """
    import copy
    import math

    import torch

    if len(window) not in (2, 3) or any(int(s) < 1 for s in window):
        raise ValueError(f"window must be 2 or 3 positive sizes, got {list(window)}")
    net = copy.deepcopy(network).to("cpu").float().eval()
    example = torch.zeros((1, in_channels, *(int(s) for s in window)))
    return network_flops(net, example) / math.prod(int(s) for s in window)
