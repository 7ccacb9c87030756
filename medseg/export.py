"""ONNX export with dynamic batch and spatial axes, and ONNX models as runnable modules (the ``[export]`` extra).

:func:`export_onnx` traces a network with PyTorch's ``torch.export``-based ONNX exporter, marks the batch and
every spatial axis dynamic, stores the checkpoint's metadata in the model's ``metadata_props`` (key
``"medseg"``, JSON), and checks that ONNX Runtime reproduces the PyTorch logits on a random input before the
file is moved into place. :func:`load_onnx` runs such a file with ONNX Runtime behind a ``torch.nn.Module``
(:class:`OnnxNetwork`), so a :class:`~medseg.inference.Predictor` can use it like any network.

Requires ``pip install 'medseg[export]'`` (onnx, onnxscript, onnxruntime).

Example:
    >>> import tempfile, pathlib, torch
    >>> from medseg.networks import CopleNet
    >>> net = CopleNet(2, 1, 2, features=(8, 16, 32, 64, 128)).eval()
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "model.onnx"
    >>> report = export_onnx(net, out, example_size=(32, 32))  # doctest: +SKIP
    >>> load_onnx(out).model(torch.rand(3, 1, 48, 64)).shape  # doctest: +SKIP
    torch.Size([3, 2, 48, 64])
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medseg.checkpoint import CheckpointMetadata, LoadedModel, load_model
from medseg.typing import PathLike

__all__ = ["ONNX_METADATA_KEY", "ExportReport", "OnnxNetwork", "export_onnx", "load_onnx"]

logger = logging.getLogger(__name__)

#: The ``metadata_props`` key under which the checkpoint metadata (JSON) is stored in an ONNX model.
ONNX_METADATA_KEY = "medseg"
#: The default opset: the lowest the torch.export-based exporter supports well.
DEFAULT_OPSET = 18
_INSTALL = "install the export extra: pip install 'medseg[export]' (onnx, onnxscript, onnxruntime)"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(f"{module} is not installed; {_INSTALL}") from err


@dataclasses.dataclass
class ExportReport:
    """What :func:`export_onnx` wrote and how closely ONNX Runtime matched PyTorch.

    Attributes:
        path: the ONNX file.
        opset: its opset version.
        input_shape: the example input it was traced with.
        max_abs_difference: largest absolute difference between ONNX Runtime and PyTorch logits on a random
            input of another batch size and spatial size than the trace (``None`` when not checked).
    """

    path: Path
    opset: int
    input_shape: tuple[int, ...]
    max_abs_difference: float | None


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter prints progress and warns about optional torchvision ops; keep that at debug level."""
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    noisy = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [n.level for n in noisy]
    for n in noisy:
        n.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(buf):
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for n, lvl in zip(noisy, levels, strict=True):
            n.setLevel(lvl)
        if buf.getvalue().strip():
            logger.debug("torch.onnx: %s", buf.getvalue().strip())


def _example_size(meta: CheckpointMetadata | None, spatial_dims: int, example_size: Sequence[int] | None) -> list[int]:
    if example_size is not None:
        size = [int(s) for s in example_size]
    elif meta is not None and meta.roi_size:
        size = [int(s) for s in meta.roi_size]
    else:
        size = [64] * spatial_dims
    if len(size) != spatial_dims or any(s < 1 for s in size):
        raise ValueError(
            f"example_size must have {spatial_dims} positive entries for a {spatial_dims}D network, got {size}"
        )
    return size


def export_onnx(
    model: nn.Module | PathLike,
    path: PathLike,
    *,
    metadata: CheckpointMetadata | Mapping[str, Any] | None = None,
    example_size: Sequence[int] | None = None,
    opset: int = DEFAULT_OPSET,
    check: bool = True,
    atol: float = 1e-4,
    overwrite: bool = False,
) -> ExportReport:
    """Export a network (or a checkpoint file) to ONNX with dynamic batch and spatial axes.

    Args:
        model: a network, or a medseg checkpoint / TorchScript-free ``.pt`` file to load with
            :func:`~medseg.checkpoint.load_model` (its metadata is then stored too).
        path: the ``.onnx`` file to write (atomically).
        metadata: metadata to store (default: the checkpoint's, or none for a bare network).
        example_size: spatial size of the tracing input (default: the metadata's ``roi_size``, else 64 per
            axis). The exported graph accepts other sizes the network accepts (COPLE-Net: multiples of 16).
        opset: ONNX opset version (default 18).
        check: run the exported file with ONNX Runtime on a random input of another batch and spatial size and
            compare with PyTorch; raise if they differ by more than ``atol``.
        atol: tolerance of that check (float32 logits).
        overwrite: replace an existing ``path`` (default: refuse).

    Returns:
        An :class:`ExportReport`.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ImportError: the ``[export]`` extra is missing.
        ValueError: bad arguments, or ONNX Runtime disagreeing with PyTorch.
    """
    from medseg.io import atomic_path

    out = Path(path)
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"path must end in .onnx, got {str(out)!r}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (medseg export --overwrite) to replace it")
    onnx = _require("onnx")
    _require("onnxscript")
    meta: CheckpointMetadata | None
    if isinstance(model, nn.Module):
        network = model
        meta = None
    else:
        loaded = load_model(model)
        if loaded.kind != "checkpoint":
            raise ValueError(f"{model}: export a .pt checkpoint, not a {loaded.kind} file")
        network, meta = loaded.model, loaded.metadata
    if metadata is not None:
        meta = metadata if isinstance(metadata, CheckpointMetadata) else CheckpointMetadata.from_dict(metadata)
    network = network.eval().to("cpu")
    spatial_dims = _spatial_dims(network, meta)
    in_channels = _in_channels(network, meta)
    size = _example_size(meta, spatial_dims, example_size)
    example = torch.rand(2, in_channels, *size)  # batch 2: a batch of 1 would be specialised to a constant
    batch = torch.export.Dim("batch", min=1)
    dynamic = {0: batch, **{2 + i: torch.export.Dim.DYNAMIC for i in range(spatial_dims)}}
    arg_name = next(iter(_forward_parameters(network)), "x")
    with atomic_path(out) as tmp, _quiet_exporter():
        torch.onnx.export(
            network,
            (example,),
            str(tmp),
            input_names=["image"],
            output_names=["logits"],
            dynamic_shapes={arg_name: dynamic},
            opset_version=opset,
            dynamo=True,
            external_data=False,
        )
        proto = onnx.load(str(tmp))
        if meta is not None:
            entry = proto.metadata_props.add()
            entry.key = ONNX_METADATA_KEY
            entry.value = meta.to_json()
        proto.producer_name = "medseg"
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        difference = _check_against_torch(tmp, network, in_channels, size) if check else None
        if difference is not None and difference > atol:
            raise ValueError(
                f"ONNX Runtime disagrees with PyTorch on {out.name}: max |difference| {difference:.3g} > atol "
                f"{atol:g}; the network uses an operation the exporter does not translate faithfully"
            )
    logger.info("exported %s (opset %d, max |ORT - torch| %s)", out, opset, difference)
    return ExportReport(out, opset, tuple(example.shape), difference)


def _forward_parameters(network: nn.Module) -> list[str]:
    import inspect

    try:
        return [p for p in inspect.signature(network.forward).parameters if p != "self"]
    except (TypeError, ValueError):
        return []


def _spatial_dims(network: nn.Module, meta: CheckpointMetadata | None) -> int:
    dims = getattr(network, "spatial_dims", None) or (meta.spatial_dims if meta else None)
    if dims is None:
        for module in network.modules():
            if isinstance(module, nn.Conv2d | nn.Conv3d):
                dims = 2 if isinstance(module, nn.Conv2d) else 3
                break
    if dims not in (2, 3):
        raise ValueError("cannot tell whether the network is 2D or 3D; give metadata with spatial_dims")
    return int(dims)


def _in_channels(network: nn.Module, meta: CheckpointMetadata | None) -> int:
    channels = getattr(network, "in_channels", None) or (meta.in_channels if meta else None)
    if channels is None:
        for module in network.modules():
            if isinstance(module, nn.modules.conv._ConvNd):
                channels = module.in_channels
                break
    if not isinstance(channels, int) or channels < 1:
        raise ValueError("cannot tell the network's input channels; give metadata with in_channels")
    return channels


def _check_against_torch(path: Path, network: nn.Module, in_channels: int, size: Sequence[int]) -> float:
    """Max |ORT - torch| on a random input with another batch size and a larger spatial size than the trace."""
    session = _session(path, "cpu")
    generator = torch.Generator().manual_seed(0)
    shape = (3, in_channels, *(s + 16 for s in size))  # +16 keeps COPLE-Net's multiple-of-16 sizes valid
    x = torch.rand(shape, generator=generator)
    with torch.inference_mode():
        expected = network(x).float().numpy()
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    if got.shape != expected.shape:
        raise ValueError(f"ONNX Runtime returned shape {got.shape} for input {shape}, PyTorch {expected.shape}")
    return float(np.abs(got - expected).max())


def _providers(device: str) -> list[str]:
    ort = _require("onnxruntime")
    available = set(ort.get_available_providers())
    if device.startswith("cuda"):
        if "CUDAExecutionProvider" not in available:
            raise ValueError(
                f"device {device!r}: this onnxruntime has no CUDA provider (available: {sorted(available)}); install "
                "onnxruntime-gpu or use device 'cpu'"
            )
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _session(path: Path, device: str) -> Any:
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=_providers(device))
    except Exception as err:
        if isinstance(err, ValueError):
            raise
        raise ValueError(f"{path}: cannot be loaded by ONNX Runtime ({type(err).__name__}: {err})") from err


class OnnxNetwork(nn.Module):
    """An ONNX Runtime session as a parameter-free ``torch.nn.Module``: ``(B, C, *spatial)`` in, logits out.

    Inputs are converted to contiguous float32 NumPy arrays; the output comes back as a tensor on the input's
    device. ``spatial_dims`` and ``in_channels`` are read from the model's input shape, so a
    :class:`~medseg.inference.Predictor` configures itself as for a PyTorch network.
    """

    def __init__(self, session: Any) -> None:
        super().__init__()
        self.session = session
        first = session.get_inputs()[0]
        self.input_name = str(first.name)
        shape = list(first.shape)
        self.spatial_dims = len(shape) - 2
        self.in_channels = shape[1] if len(shape) > 1 and isinstance(shape[1], int) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        out = self.session.run(None, {self.input_name: array})[0]
        return torch.from_numpy(np.asarray(out)).to(x.device)


def load_onnx(path: PathLike, *, device: str = "cpu") -> LoadedModel:
    """Load an ONNX model as an :class:`OnnxNetwork` with the metadata it stores (``None`` if none).

    Raises:
        FileNotFoundError: no such file.
        ImportError: onnxruntime is not installed (the ``[export]`` extra).
        ValueError: not a model ONNX Runtime can load, or invalid stored metadata.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"ONNX model {p}: no such file")
    session = _session(p, device)
    props = dict(session.get_modelmeta().custom_metadata_map)
    metadata = None
    if ONNX_METADATA_KEY in props:
        try:
            data = json.loads(props[ONNX_METADATA_KEY])
        except json.JSONDecodeError as err:
            raise ValueError(f"ONNX model {p}: its {ONNX_METADATA_KEY!r} metadata is not valid JSON") from err
        metadata = CheckpointMetadata.from_dict(data, source=f"ONNX model {p}")
    else:
        logger.warning("ONNX model %s stores no medseg metadata: using the bundle's settings", p)
    return LoadedModel(OnnxNetwork(session), metadata, "onnx", p)
