"""ONNX export with dynamic batch and spatial axes, and ONNX models as runnable modules (the ``[export]`` extra).

:func:`export_onnx` traces a network to ONNX with :func:`onnx_model` (the one exporter: the ONNX Runtime and
OpenVINO engines of :mod:`medseg.inference.engines` use it too), marks the batch and every spatial axis dynamic,
stores the checkpoint's metadata in the model's ``metadata_props`` (key ``"medseg"``, JSON), and checks that ONNX
Runtime reproduces the PyTorch logits on a random input before the file is moved into place. :func:`load_onnx`
runs such a file with ONNX Runtime behind a ``torch.nn.Module`` (:class:`OnnxNetwork`), so a
:class:`~medseg.inference.Predictor` can use it like any network; :func:`onnx_session` is the one place where ONNX
Runtime sessions are built.

Requires ``pip install 'medseg[export]'`` (onnx, onnxruntime).

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

__all__ = [
    "ONNX_METADATA_KEY",
    "ExportReport",
    "OnnxNetwork",
    "export_onnx",
    "half_precision_copy",
    "load_onnx",
    "onnx_model",
    "onnx_session",
]

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
    """The exporter prints progress and warns (tracer, deprecation); keep that at debug level."""
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    noisy = [logging.getLogger(name) for name in ("torch.onnx", "onnxscript", "onnx_ir")]
    levels = [n.level for n in noisy]
    for n in noisy:
        n.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), redirect_stdout(buf):
            warnings.simplefilter("ignore")
            yield
    finally:
        for n, lvl in zip(noisy, levels, strict=True):
            n.setLevel(lvl)
        if buf.getvalue().strip():
            logger.debug("torch.onnx: %s", buf.getvalue().strip())


def onnx_model(
    network: nn.Module, example: torch.Tensor, *, dynamic_spatial: bool = True, opset: int = DEFAULT_OPSET
) -> bytes:
    """The network as an ONNX model (serialised bytes): input ``image``, output ``logits``, dynamic batch axis.

    The one exporter of medseg: :func:`export_onnx` writes its bytes to a file (with metadata, after checking
    them against PyTorch), and the ``onnxruntime``/``openvino`` engines of :mod:`medseg.inference.engines` run
    them from memory.

    Args:
        network: the network, in eval mode on the CPU.
        example: an input ``(B, C, *spatial)`` to trace with.
        dynamic_spatial: make every spatial axis dynamic too (a file for any input size); ``False`` fixes them to
            the example's (the engines export once per window shape).
        opset: ONNX opset version.

    Note:
        The network is traced with PyTorch's TorchScript-based exporter (``dynamo=False``), not ``torch.export``
        (``dynamo=True``). Measured on ``coplenet_small`` (2D, traced at 128x128), one thread, on a loaded 2-core
        machine: 0.5-1.8 s per export against 15-27 s (4 exports each), while ONNX Runtime ran both graphs
        equally fast (ratio 1.08, range 0.95-1.10, over 7 interleaved pairs on a (4, 1, 128, 128) batch) with
        outputs equal to 2e-6. The engines export while predicting, so the export time counts. Tracing records
        one path through ``forward``: control flow that depends on the data is frozen at the example, which is
        why :func:`export_onnx` checks the file against PyTorch at another batch and spatial size. PyTorch 2.13
        marks this exporter deprecated; when it is removed, this function is where ``dynamo=True`` (with
        ``dynamic_shapes``) goes.
    """
    import io

    spatial = range(2, example.ndim) if dynamic_spatial else range(0)
    axes = {0: "batch", **{i: f"dim_{i - 2}" for i in spatial}}
    buffer = io.BytesIO()
    with _quiet_exporter(), torch.no_grad():
        torch.onnx.export(
            network,
            (example,),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects too
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": axes, "logits": axes},
            opset_version=opset,
            dynamo=False,
        )
    return buffer.getvalue()


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
    example = torch.rand(1, in_channels, *size)
    with atomic_path(out) as tmp:
        proto = onnx.load_from_string(onnx_model(network, example, opset=opset))
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
                f"{atol:g}; the network uses an operation the exporter does not translate faithfully (or control "
                "flow that depends on the input size)"
            )
    logger.info("exported %s (opset %d, max |ORT - torch| %s)", out, opset, difference)
    return ExportReport(out, opset, tuple(example.shape), difference)


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
    session = onnx_session(path)
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


def onnx_session(model: bytes | PathLike, device: str = "cpu", *, threads: int | None = None) -> Any:
    """An ONNX Runtime session for a model file or serialised model (the one session builder of medseg).

    Graph optimisation is at its highest level ("all"); ONNX Runtime's own log is kept to errors.

    Args:
        model: an ``.onnx`` file, or the bytes :func:`onnx_model` returns.
        device: ``"cpu"``, or ``"cuda[:N]"`` (needs onnxruntime-gpu's CUDA execution provider).
        threads: threads for one operator (``intra_op_num_threads``; one thread runs operators in sequence);
            ``None``: ONNX Runtime's default (every core).

    Raises:
        ImportError: onnxruntime is not installed (the ``[export]`` extra).
        ValueError: a model ONNX Runtime cannot load, or a device it has no provider for.
    """
    ort = _require("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads is not None:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    what = "the exported model" if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, sess_options=options, providers=_providers(device))
    except Exception as err:
        if isinstance(err, ValueError):
            raise
        raise ValueError(f"{what}: cannot be loaded by ONNX Runtime ({type(err).__name__}: {err})") from err


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
    session = onnx_session(p, device)
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


def half_precision_copy(src: PathLike, dst: PathLike, *, overwrite: bool = False) -> Path:
    """Write ``src``'s weights as float16 (half the file size) with the same metadata to ``dst``.

    The copy is meant to travel, so the metadata loses this machine's paths (:meth:`CheckpointMetadata.portable`).

    Networks are built in float32 and ``load_state_dict`` converts the stored float16 values back, so a model
    loaded from the copy differs from the original only by float16 rounding of its weights (relative 2**-11).

    Raises:
        FileExistsError: ``dst`` exists and ``overwrite`` is false.
        ValueError: ``src`` is not a readable ``.pt`` checkpoint.
    """
    from medseg.checkpoint import load_checkpoint, save_checkpoint

    out = Path(dst)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True (--overwrite) to replace it")
    loaded = load_checkpoint(src)
    state = {k: v.half() if v.is_floating_point() else v for k, v in loaded.state_dict.items()}
    save_checkpoint(out, state, loaded.metadata.portable() if loaded.metadata is not None else None)
    logger.info("wrote %s: float16 copy of %s", out, src)
    return out
