"""Engines that run the network's forward pass: eager PyTorch (default), ``torch.compile``, ONNX Runtime, OpenVINO.

Inference of COPLE-Net on a CPU is bound by its convolutions and the memory-bound GroupNorm/LeakyReLU between
them; graph engines fuse those, which eager PyTorch cannot. Measured on coplenet_small, 1 thread, on a heavily
loaded 2-core machine (``docs/results/inference_benchmark.md`` has the commands, loads and ranges), as time
relative to eager channels-last PyTorch, masks identical (agreement 1.0): the forward pass on 8 whole 256x256
slices took 0.60x with ONNX Runtime, 0.67x with ``torch.compile`` and 0.76x with OpenVINO; on 2 windows of 64^3
(3D) 0.87x, 0.68x and 0.73x; end to end through the Predictor (256x256x16, 128x128 windows) 0.75x, 0.70x and
0.80x of MONAI best-configured. ``torch.compile`` first spends minutes compiling in every new process (218-435 s
here). Eager stays the default: it needs nothing else installed, runs on every device and supports mixed
precision on CUDA.

An engine wraps the network once per window shape (ONNX export and session creation take seconds) and is called
with window batches ``(n, C, *roi)``; the batch axis is dynamic, so the last, smaller batch of a volume reuses the
session. The graph comes from :func:`medseg.export.onnx_model` and the ONNX Runtime session from
:func:`medseg.export.onnx_session` (the exporter and session builder of ``medseg export``); both live in memory only.

References:
    ONNX Runtime, https://onnxruntime.ai (CPU execution provider, graph optimisation level "all").
    OpenVINO toolkit, https://docs.openvino.ai (CPU plugin, f32 inference precision).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable
from typing import Any, Literal

import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = ["ENGINES", "Engine", "available_engines", "build_engine"]

Engine = Literal["eager", "compile", "onnxruntime", "openvino"]
#: Engine name -> (Python packages it needs: ``onnx`` for the export, the runtime; the pip extra installing them).
ENGINES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "eager": ((), None),
    "compile": ((), None),
    "onnxruntime": (("onnx", "onnxruntime"), "export"),
    "openvino": (("onnx", "openvino"), "openvino"),
}


def _missing(engine: str) -> list[str]:
    return [p for p in ENGINES[engine][0] if importlib.util.find_spec(p) is None]


def available_engines() -> list[str]:
    """The engines whose packages are installed here."""
    return [name for name in ENGINES if not _missing(name)]


def _check(engine: str, device: torch.device) -> None:
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    missing = _missing(engine)
    if missing:
        raise ValueError(
            f"engine={engine!r} needs {' and '.join(missing)}, not installed here; install them with "
            f"`pip install 'medseg[{ENGINES[engine][1]}]'`, or use engine='eager'"
        )
    if engine in ("onnxruntime", "openvino") and device.type != "cpu":
        raise ValueError(
            f"engine={engine!r} runs on the CPU here, but device={str(device)!r}; use engine='eager' on {device.type} "
            "(with mixed precision on CUDA)"
        )


class _PerShape:
    """Builds one runner per window shape ``(C, *roi)`` and dispatches window batches to it."""

    def __init__(self, network: nn.Module, build: Callable[[bytes], Callable[[Any], Any]]) -> None:
        self.network = network
        self.build = build
        self.runners: dict[tuple[int, ...], Callable[[Any], Any]] = {}

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        key = tuple(int(s) for s in windows.shape[1:])
        runner = self.runners.get(key)
        if runner is None:
            from medseg.export import onnx_model

            example = torch.zeros((1, *key), dtype=torch.float32)
            logger.info("exporting the network to ONNX for windows of shape %s", key)
            runner = self.runners[key] = self.build(onnx_model(self.network, example, dynamic_spatial=False))
        array = windows.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(runner(array))


def _onnxruntime(model: bytes) -> Callable[[Any], Any]:
    from medseg.export import onnx_session

    session = onnx_session(model, "cpu", threads=torch.get_num_threads())
    return lambda array: session.run(None, {"image": array})[0]


def _openvino(model: bytes) -> Callable[[Any], Any]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(model=model),
        "CPU",
        {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "INFERENCE_PRECISION_HINT": "f32"},
    )
    request = compiled.create_infer_request()
    return lambda array: request.infer({0: array})[0].copy()


def build_engine(network: nn.Module, engine: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable running ``network`` (already on ``device``, in eval mode) on window batches with ``engine``.

    Args:
        network: the network.
        engine: ``"eager"``, ``"compile"``, ``"onnxruntime"`` or ``"openvino"``.
        device: where the network runs (ONNX Runtime and OpenVINO: the CPU only).

    Raises:
        ValueError: for an unknown engine, one whose package is missing (the message names the pip extra), or an
            engine that cannot run on ``device``.
    """
    _check(engine, device)
    if engine == "eager":
        return network
    if engine == "compile":
        return torch.compile(network)
    return _PerShape(network, _onnxruntime if engine == "onnxruntime" else _openvino)
