"""Self-describing checkpoints: the weights plus what rebuilds and runs the network, as JSON-compatible metadata.

A medseg checkpoint (``model.pt``) is one ``torch.save`` file holding a plain dictionary::

    {"format": "medseg.checkpoint", "format_version": 1,
     "state_dict": {name: tensor, ...},          # the network weights
     "medseg_metadata": "<JSON text>"}           # CheckpointMetadata.to_dict(), as a JSON string

Only tensors, strings and integers are stored, so it loads with ``torch.load(..., weights_only=True)``: nothing
is unpickled but tensors and plain containers. The weights sit under ``"state_dict"``, a key that PyTorch
Lightning, MONAI's ``ckpt_export --key_in_ckpt state_dict`` and medseg's own weight loaders already look for.

Which files load:

======================================  ==================================================================
file                                    what :func:`load_model` returns
======================================  ==================================================================
medseg checkpoint (format 1)            the network rebuilt from its metadata, weights loaded
bundle ``last.pt`` (resume file)        its ``network`` weights (and metadata, when it carries it)
bare state dict (older ``model.pt``)    the weights, loaded into the network the caller gives; a
                                        one-line note says that the metadata is missing
TorchScript (``ckpt_export``'s .ts)     the scripted module; metadata from its embedded ``metadata.json``
                                        and ``inference.json`` (or ``medseg.json``)
ONNX (``medseg export``)                an ONNX Runtime session as a module (``[export]`` extra)
======================================  ==================================================================

Rebuilding never runs code named by a file: a network is rebuilt only from a ``_target_`` class under
:data:`TRUSTED_NETWORK_MODULES` that is a ``torch.nn.Module``, called with JSON arguments. TorchScript and ONNX
files are programs in their own (restricted) languages: load only files you trust.

Example:
    >>> import tempfile, pathlib, torch
    >>> from medseg.networks import CopleNet
    >>> net = CopleNet(2, 1, 2, features=(8, 16, 32, 64, 128))
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "model.pt"
    >>> save_checkpoint(path, net, {"classes": ["background", "infection"], "roi_size": [64, 64]})
    >>> loaded = load_model(path)
    >>> loaded.metadata.classes, loaded.metadata.network["features"]
    (['background', 'infection'], [8, 16, 32, 64, 128])
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import importlib
import inspect
import json
import logging
import math
import pickle
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PureWindowsPath
from typing import Any, Literal

import torch
from torch import nn

from medseg.typing import PathLike

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "TRUSTED_NETWORK_MODULES",
    "CheckpointMetadata",
    "Disagreement",
    "LoadedCheckpoint",
    "LoadedModel",
    "build_network",
    "bundle_settings",
    "checkpoint_disagreements",
    "class_path",
    "describe_checkpoint",
    "disagreements",
    "load_checkpoint",
    "load_model",
    "network_spec",
    "save_checkpoint",
]

logger = logging.getLogger(__name__)

#: The ``"format"`` value of a medseg checkpoint file.
FORMAT = "medseg.checkpoint"
#: The newest checkpoint format this medseg reads and the one it writes.
FORMAT_VERSION = 1
#: Key of the weights in a checkpoint file.
STATE_KEY = "state_dict"
#: Key of the JSON metadata text in a checkpoint file (and in a bundle's ``last.pt``).
METADATA_KEY = "medseg_metadata"
#: Module prefixes whose ``torch.nn.Module`` classes a checkpoint's ``network._target_`` may name.
TRUSTED_NETWORK_MODULES: tuple[str, ...] = ("medseg.networks.", "monai.networks.nets.")

ModelKind = Literal["checkpoint", "torchscript", "onnx"]
CheckpointKind = Literal["medseg", "resume", "state_dict"]


# --------------------------------------------------------------------------------------------- JSON helpers
def _json_safe(value: Any, where: str) -> Any:
    """``value`` as JSON data (tuples become lists, numpy and tensor scalars numbers); raise for anything else."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"metadata {where}: {value!r} is not a finite number; JSON cannot hold it")
        return float(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise TypeError(f"metadata {where}: key {key!r} ({type(key).__name__}) is not a string")
            out[str(key)] = _json_safe(item, f"{where}.{key}")
        return out
    if isinstance(value, list | tuple):
        return [_json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    item = getattr(value, "item", None)  # numpy / torch scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        return _json_safe(item(), where)
    tolist = getattr(value, "tolist", None)  # small numpy arrays / tensors
    if callable(tolist) and getattr(value, "ndim", 2) == 1:
        return _json_safe(tolist(), where)
    raise TypeError(
        f"metadata {where}: {type(value).__name__} values cannot be stored; give JSON data (numbers, strings, "
        "lists, dicts)"
    )


def _int_list(value: Any, where: str) -> list[int] | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return [int(value)]
    try:
        out = [int(v) for v in value]
    except (TypeError, ValueError) as err:
        raise ValueError(f"metadata {where} must be a list of integers, got {value!r}") from err
    if any(v < 1 for v in out) or any(float(v) != float(w) for v, w in zip(out, value, strict=True)):
        raise ValueError(f"metadata {where} must be a list of positive integers, got {value!r}")
    return out


def _optional_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"metadata {where} must be an integer or null, got {value!r}")
    return int(value)


def _optional_dict(value: Any, where: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise ValueError(f"metadata {where} must be an object (dict) or null, got {type(value).__name__}")
    safe: dict[str, Any] = _json_safe(value, where)
    return safe


def _medseg_version() -> str:
    from medseg import __version__

    return __version__


# --------------------------------------------------------------------------------------------- metadata
@dataclasses.dataclass(frozen=True)
class CheckpointMetadata:
    """What a checkpoint records besides its weights (all JSON data).

    Attributes:
        network: the network as a MONAI config component, ``{"_target_": "medseg.networks.CopleNet",
            "spatial_dims": 2, ...}`` (every constructor argument); ``None`` when it could not be recorded.
        classes: class names by index, background first (``["background", "infection"]``).
        roi_size: the spatial input size the network was trained on (its natural sliding window).
        in_channels: image channels the network takes.
        out_channels: classes (logit channels) it returns.
        spatial_dims: 2 or 3.
        preprocessing: intensity preprocessing (CT window or intensity range, normalisation statistics,
            spacing, label map), as the training config gave it.
        loss: the loss (``{"name": "mc", "_target_": ...}``).
        plan: the training plan (``medseg-data plan`` output), when one was used.
        bundle: the bundle it was trained with.
        training: run facts: epoch, key metric and its best value, the run tag.
        medseg_version: the medseg version that wrote it.
        format_version: the checkpoint format version.
        created: UTC time of writing (ISO 8601).
        extra: anything else (JSON).
    """

    network: dict[str, Any] | None = None
    classes: list[str] | None = None
    roi_size: list[int] | None = None
    in_channels: int | None = None
    out_channels: int | None = None
    spatial_dims: int | None = None
    preprocessing: dict[str, Any] | None = None
    loss: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    bundle: str | None = None
    training: dict[str, Any] | None = None
    medseg_version: str = dataclasses.field(default_factory=_medseg_version)
    format_version: int = FORMAT_VERSION
    created: str | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "metadata") -> CheckpointMetadata:
        """Validate ``data`` (e.g. parsed JSON) and build the metadata; unknown keys go to :attr:`extra`.

        Raises:
            ValueError: a field of the wrong type, or a format newer than this medseg reads.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"{source}: metadata must be a JSON object, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        version = data.get("format_version", FORMAT_VERSION)
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ValueError(f"{source}: format_version must be a positive integer, got {version!r}")
        if version > FORMAT_VERSION:
            raise ValueError(
                f"{source}: written in checkpoint format {version}, but this medseg ({_medseg_version()}) reads up "
                f"to format {FORMAT_VERSION}; upgrade medseg"
            )
        network = _optional_dict(data.get("network"), f"{source}: network")
        if network is not None and not isinstance(network.get("_target_"), str):
            raise ValueError(f"{source}: network must name its class under '_target_', got keys {sorted(network)}")
        classes = data.get("classes")
        if classes is not None:
            if isinstance(classes, Mapping):  # {"0": "background", ...}
                try:
                    classes = [classes[k] for k in sorted(classes, key=int)]
                except (TypeError, ValueError) as err:
                    raise ValueError(f"{source}: classes keys must be class indices, got {sorted(classes)}") from err
            if isinstance(classes, str) or not all(isinstance(c, str) for c in classes):
                raise ValueError(f"{source}: classes must be a list of class names, got {classes!r}")
            classes = [str(c) for c in classes]
        spatial_dims = _optional_int(data.get("spatial_dims"), f"{source}: spatial_dims")
        if spatial_dims is not None and spatial_dims not in (2, 3):
            raise ValueError(f"{source}: spatial_dims must be 2 or 3, got {spatial_dims}")
        extra = dict(_optional_dict(data.get("extra"), f"{source}: extra") or {})
        for key in data:
            if key not in fields:
                extra[str(key)] = _json_safe(data[key], f"{source}: {key}")
        bundle = data.get("bundle")
        created = data.get("created")
        return cls(
            network=network,
            classes=classes,
            roi_size=_int_list(data.get("roi_size"), f"{source}: roi_size"),
            in_channels=_optional_int(data.get("in_channels"), f"{source}: in_channels"),
            out_channels=_optional_int(data.get("out_channels"), f"{source}: out_channels"),
            spatial_dims=spatial_dims,
            preprocessing=_optional_dict(data.get("preprocessing"), f"{source}: preprocessing"),
            loss=_optional_dict(data.get("loss"), f"{source}: loss"),
            plan=_optional_dict(data.get("plan"), f"{source}: plan"),
            bundle=None if bundle is None else str(bundle),
            training=_optional_dict(data.get("training"), f"{source}: training"),
            medseg_version=str(data.get("medseg_version") or _medseg_version()),
            format_version=version,
            created=None if created is None else str(created),
            extra=extra,
        )

    def to_dict(self) -> dict[str, Any]:
        """The metadata as JSON data."""
        out: dict[str, Any] = _json_safe(dataclasses.asdict(self), "metadata")
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    def replace(self, **changes: Any) -> CheckpointMetadata:
        """A copy with ``changes`` applied (validated like :meth:`from_dict`)."""
        return CheckpointMetadata.from_dict({**self.to_dict(), **changes})

    def portable(self) -> CheckpointMetadata:
        """A copy without this machine's paths: the plan's ``datalist`` keeps only its file name.

        A checkpoint travels (shared, shipped, published) while a local path can name a patient, a site or a user;
        the plan's other fields describe the data without naming where it lives.
        """
        plan = self.plan
        if not plan or not isinstance(plan.get("datalist"), str):
            return self
        return self.replace(
            plan={**plan, "datalist": PureWindowsPath(plan["datalist"]).name}
        )  # "/" and "\\" both split

    def completed(self, state_dict: Mapping[str, torch.Tensor] | None = None) -> CheckpointMetadata:
        """Fill ``in_channels``/``out_channels``/``spatial_dims`` from the network arguments or the weights."""
        args = self.network or {}
        found: dict[str, Any] = {}
        for key in ("in_channels", "out_channels", "spatial_dims"):
            if getattr(self, key) is None and isinstance(args.get(key), int):
                found[key] = args[key]
        if state_dict and (self.in_channels is None or self.spatial_dims is None or self.out_channels is None):
            convs = [v for k, v in state_dict.items() if k.endswith("weight") and v.ndim in (4, 5)]
            if convs:
                found.setdefault("spatial_dims", convs[0].ndim - 2)
                found.setdefault("in_channels", int(convs[0].shape[1]))
                found.setdefault("out_channels", int(convs[-1].shape[0]))
        found = {k: v for k, v in found.items() if getattr(self, k) is None}
        return self.replace(**found) if found else self


def _as_metadata(metadata: CheckpointMetadata | Mapping[str, Any] | None) -> CheckpointMetadata:
    if metadata is None:
        return CheckpointMetadata()
    if isinstance(metadata, CheckpointMetadata):
        return metadata
    return CheckpointMetadata.from_dict(metadata)


# --------------------------------------------------------------------------------------------- network specs
def _unwrap(network: nn.Module) -> nn.Module:
    if isinstance(network, nn.DataParallel | nn.parallel.DistributedDataParallel):
        inner: nn.Module = network.module
        return inner
    return network


def class_path(cls: type) -> str:
    """The dotted path of ``cls``, shortened to its package when the package re-exports it.

    Example:
        >>> from medseg.networks import CopleNet
        >>> class_path(CopleNet)
        'medseg.networks.CopleNet'
    """
    module = cls.__module__
    # report the public path (medseg.networks.CopleNet) when the package re-exports the class
    parent = module.rsplit(".", 1)[0] if "." in module else module
    try:
        if getattr(importlib.import_module(parent), cls.__name__, None) is cls:
            module = parent
    except ImportError:  # pragma: no cover - the defining package is importable by construction
        pass
    return f"{module}.{cls.__qualname__}"


def network_spec(network: nn.Module) -> dict[str, Any] | None:
    """The network as a JSON config component ``{"_target_": class path, **constructor arguments}``, or ``None``.

    A network that has an ``init_args`` mapping gives its arguments directly. Otherwise each constructor
    parameter is read from the instance attribute of the same name, or taken at its default; the result is
    accepted only if a network rebuilt from it (on PyTorch's ``meta`` device, without memory) has the same
    ``repr`` — every layer, width, normalisation, activation and dropout rate — as ``network``.

    Returns:
        The specification, or ``None`` (with a warning) when the arguments cannot be recovered.
    """
    net = _unwrap(network)
    cls = type(net)
    target = class_path(cls)
    given = getattr(net, "init_args", None)
    try:
        params = list(inspect.signature(cls).parameters.values())
    except (TypeError, ValueError):
        params = []
    if isinstance(given, Mapping):
        args = dict(given)
    else:
        args = {}
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            if hasattr(net, p.name) and not isinstance(getattr(net, p.name), nn.Module | torch.Tensor):
                args[p.name] = getattr(net, p.name)
            elif p.default is not p.empty:
                args[p.name] = p.default
            else:
                logger.warning(
                    "network %s: cannot record its constructor argument %r (no attribute of that name); the "
                    "checkpoint will not rebuild it by itself: pass metadata={'network': {...}} to the saver",
                    target,
                    p.name,
                )
                return None
    try:
        spec = {"_target_": target, **_json_safe(args, "network")}
    except (TypeError, ValueError) as err:
        logger.warning("network %s: its constructor arguments are not JSON data (%s); not recorded", target, err)
        return None
    try:
        with torch.device("meta"):
            rebuilt = cls(**{k: v for k, v in spec.items() if k != "_target_"})
    except Exception as err:
        logger.warning("network %s: rebuilding from the recorded arguments failed (%s); not recorded", target, err)
        return None
    if repr(rebuilt) != repr(net):
        logger.warning(
            "network %s: the arguments read from the instance do not rebuild the same layers; not recorded (give "
            "the network an init_args mapping, or pass metadata={'network': {...}} to the saver)",
            target,
        )
        return None
    return spec


def _locate_network_class(target: str, trusted: Sequence[str]) -> type[nn.Module]:
    if not any(target.startswith(prefix) for prefix in trusted):
        raise ValueError(
            f"network _target_ {target!r} is outside the trusted modules {list(trusted)}; a checkpoint may only "
            "name network classes from these packages (pass trusted_modules=... to allow your own package)"
        )
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        obj = getattr(module, name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"network _target_ {target!r} cannot be imported: {err}") from err
    if not (isinstance(obj, type) and issubclass(obj, nn.Module)):
        raise ValueError(f"network _target_ {target!r} is not a torch.nn.Module class")
    return obj


def build_network(
    metadata: CheckpointMetadata | Mapping[str, Any],
    *,
    trusted_modules: Sequence[str] = TRUSTED_NETWORK_MODULES,
) -> nn.Module:
    """A fresh network (random weights) from ``metadata.network`` (or a component dict ``{"_target_": ...}``).

    Raises:
        ValueError: no network recorded, an untrusted or unknown class, or arguments it refuses.
    """
    spec = metadata.network if isinstance(metadata, CheckpointMetadata) else dict(metadata)
    if not spec:
        raise ValueError(
            "the checkpoint records no network; give the network to load the weights into (a bundle's network_def)"
        )
    target = spec.get("_target_")
    if not isinstance(target, str):
        raise ValueError(f"network spec must name its class under '_target_', got keys {sorted(spec)}")
    cls = _locate_network_class(target, trusted_modules)
    args = {k: v for k, v in spec.items() if k != "_target_"}
    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        raise ValueError(f"network {target} cannot be built from the checkpoint's arguments {args}: {err}") from err


# --------------------------------------------------------------------------------------------- saving
def _state_dict(weights: nn.Module | Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if isinstance(weights, nn.Module):
        state = _unwrap(weights).state_dict()
    elif isinstance(weights, Mapping):
        state = dict(weights)
    else:
        raise TypeError(f"weights must be a torch.nn.Module or a state dict, got {type(weights).__name__}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise TypeError(f"weights: entries {bad[:5]} are not tensors; give a network or its state_dict()")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return {k: v.detach().cpu() for k, v in state.items()}


def checkpoint_payload(
    weights: nn.Module | Mapping[str, torch.Tensor],
    metadata: CheckpointMetadata | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dictionary :func:`save_checkpoint` writes (for callers that save it themselves, e.g. atomically).

    The network specification is recorded from ``weights`` when it is a network and ``metadata`` has none; the
    channel counts and dimensionality are filled from the weights; ``created`` is set to now.
    """
    meta = _as_metadata(metadata)
    if meta.network is None and isinstance(weights, nn.Module):
        spec = network_spec(weights)
        if spec is not None:
            meta = meta.replace(network=spec)
    state = _state_dict(weights)
    meta = meta.completed(state)
    names, outputs = meta.classes, meta.out_channels
    # one sigmoid channel is background + one class
    if names is not None and outputs is not None and len(names) != outputs and (outputs, len(names)) != (1, 2):
        logger.warning(
            "checkpoint metadata names %d classes (%s) but the network has %d outputs; class names not recorded "
            "(set class_names to match num_classes)",
            len(names),
            ", ".join(names),
            outputs,
        )
        meta = meta.replace(classes=None)
    if meta.created is None:
        meta = meta.replace(created=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))
    return {"format": FORMAT, "format_version": FORMAT_VERSION, STATE_KEY: state, METADATA_KEY: meta.to_json()}


def save_checkpoint(
    path: PathLike,
    weights: nn.Module | Mapping[str, torch.Tensor],
    metadata: CheckpointMetadata | Mapping[str, Any] | None = None,
) -> None:
    """Write a medseg checkpoint (weights + metadata) to ``path`` atomically.

    Args:
        path: output file (``model.pt``); replaced if it exists.
        weights: the network (its specification is then recorded too, see :func:`network_spec`) or its state dict.
        metadata: :class:`CheckpointMetadata` or a dict of its fields (classes, roi_size, preprocessing, ...).

    Raises:
        TypeError, ValueError: metadata that is not JSON data or has fields of the wrong type.
    """
    from medseg.io import atomic_path

    payload = checkpoint_payload(weights, metadata)
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


# --------------------------------------------------------------------------------------------- loading
@dataclasses.dataclass
class LoadedCheckpoint:
    """Weights and metadata of a ``.pt`` file (see :func:`load_checkpoint`).

    Attributes:
        path: the file.
        state_dict: network weights (``module.`` prefixes removed), on the CPU.
        metadata: the recorded metadata, or ``None`` for files without it.
        kind: ``"medseg"`` (format 1 file), ``"resume"`` (a bundle's ``last.pt``) or ``"state_dict"`` (bare
            weights, or another tool's ``{"model": ...}`` wrapper).
    """

    path: Path
    state_dict: dict[str, torch.Tensor]
    metadata: CheckpointMetadata | None
    kind: CheckpointKind


def _is_tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any("/code/" in n or n.endswith("constants.pkl") for n in names)


def _parse_metadata(text: Any, path: Path) -> CheckpointMetadata:
    if not isinstance(text, str):
        raise ValueError(f"checkpoint {path}: {METADATA_KEY} must be JSON text, got {type(text).__name__}")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"checkpoint {path}: its metadata is not valid JSON ({err})") from err
    return CheckpointMetadata.from_dict(data, source=f"checkpoint {path}")


def load_checkpoint(path: PathLike, *, quiet: bool = False) -> LoadedCheckpoint:
    """Read a ``.pt`` checkpoint with ``weights_only=True``: weights and, where recorded, metadata.

    Args:
        path: a medseg checkpoint, a bundle's ``last.pt``, or a bare state dict.
        quiet: do not log the note about missing metadata.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable weights file (a TorchScript or ONNX file: use :func:`load_model`), no
            weights inside, or invalid metadata.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"checkpoint {p}: no such file")
    if _is_torchscript(p):
        raise ValueError(f"checkpoint {p} is a TorchScript file; load it with medseg.checkpoint.load_model")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        if isinstance(err, pickle.UnpicklingError):  # torch's text suggests weights_only=False: never here
            detail = "not a PyTorch weights file, or one holding pickled Python objects, which medseg does not load"
        else:
            detail = f"{type(err).__name__}: {' '.join(str(err).split())[:200]}"
        raise ValueError(
            f"checkpoint {p}: cannot be read as PyTorch weights ({detail}); expected a medseg checkpoint, a state "
            "dict, a TorchScript (.ts) or an ONNX (.onnx) file"
        ) from err
    metadata: CheckpointMetadata | None = None
    kind: CheckpointKind
    if isinstance(obj, Mapping) and obj.get("format") == FORMAT:
        version = obj.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"checkpoint {p}: format version {version!r}; this medseg ({_medseg_version()}) reads up to "
                f"{FORMAT_VERSION}: upgrade medseg"
            )
        state = obj.get(STATE_KEY)
        if not _is_tensor_dict(state):
            raise ValueError(f"checkpoint {p}: its {STATE_KEY!r} entry holds no weights")
        metadata = _parse_metadata(obj.get(METADATA_KEY), p) if METADATA_KEY in obj else None
        kind = "medseg"
    elif _is_tensor_dict(obj):
        state, kind = obj, "state_dict"
    elif isinstance(obj, Mapping) and _is_tensor_dict(obj.get("network")):
        state, kind = obj["network"], "resume"
        if METADATA_KEY in obj:
            metadata = _parse_metadata(obj[METADATA_KEY], p)
    else:
        inner = None
        if isinstance(obj, Mapping):
            inner = next(
                (obj[k] for k in ("model", STATE_KEY, "net", "model_state_dict") if _is_tensor_dict(obj.get(k))), None
            )
        if inner is None:
            keys = sorted(obj)[:8] if isinstance(obj, Mapping) else type(obj).__name__
            raise ValueError(
                f"checkpoint {p}: no network weights found ({keys}); expected a medseg checkpoint, a state dict or a "
                "dict holding one under 'model', 'network' or 'state_dict'"
            )
        state, kind = inner, "state_dict"
    state = dict(state or {})
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    if metadata is None and not quiet:
        logger.warning("checkpoint %s has no medseg metadata (older or foreign file): using the bundle's settings", p)
    return LoadedCheckpoint(p, state, metadata.completed(state) if metadata else None, kind)


def _load_into(network: nn.Module, state: Mapping[str, torch.Tensor], path: Path) -> nn.Module:
    target = _unwrap(network)
    inner = getattr(target, "network", None)
    if isinstance(inner, nn.Module) and not any(k.startswith("network.") for k in state):
        target = inner  # 2D weights for a slice-wise wrapper
    try:
        target.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise ValueError(
            f"checkpoint {path}: its weights do not fit {type(network).__name__} ({' '.join(lines)[:300]}); the "
            "network differs from the one that was trained (widths? class count?)"
        ) from err
    return network


@dataclasses.dataclass
class LoadedModel:
    """A runnable model and what is known about it (see :func:`load_model`).

    Attributes:
        model: a ``torch.nn.Module`` mapping ``(B, C, *spatial)`` to logits ``(B, K, *spatial)``: the rebuilt
            network, the TorchScript module, or an ONNX Runtime session wrapped as a module.
        metadata: what the file records, or ``None``.
        kind: ``"checkpoint"``, ``"torchscript"`` or ``"onnx"``.
        path: the file.
        rebuilt: ``True`` when the network was rebuilt from the checkpoint's own metadata (not the caller's).
    """

    model: nn.Module
    metadata: CheckpointMetadata | None
    kind: ModelKind
    path: Path
    rebuilt: bool = False


def _literal(config: Mapping[str, Any], key: str, depth: int = 0) -> Any:
    """The value of config id ``key`` (``a#b#c``) when it is data or a chain of ``@`` references to data.

    Expressions (``$...``) and macros are never evaluated: a file's config text is data here, not code.
    """
    node: Any = config
    for part in key.split("#"):
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    if isinstance(node, str) and node.startswith("@") and depth < 8:
        return _literal(config, node[1:], depth + 1)
    if isinstance(node, str) and node.startswith(("$", "%")):
        return None
    if isinstance(node, Mapping):
        return {k: _literal(config, f"{key}#{k}", depth) for k in node}
    if isinstance(node, list):
        return [_literal(config, f"{key}#{i}", depth) for i in range(len(node))]
    return node


def _metadata_from_bundle_files(meta: Mapping[str, Any], inference: Mapping[str, Any]) -> CheckpointMetadata:
    """Metadata from a MONAI bundle's ``metadata.json`` and ``inference.json`` (as embedded by ``ckpt_export``)."""
    data: dict[str, Any] = {}
    outputs = (meta.get("network_data_format") or {}).get("outputs") or {}
    pred: Any = next(iter(outputs.values()), {}) if isinstance(outputs, Mapping) else {}
    channel_def = pred.get("channel_def") if isinstance(pred, Mapping) else None
    if isinstance(channel_def, Mapping) and channel_def:
        with contextlib.suppress(TypeError, ValueError):  # channel_def keys that are not class indices
            data["classes"] = [str(channel_def[k]) for k in sorted(channel_def, key=int)]
    inputs = (meta.get("network_data_format") or {}).get("inputs") or {}
    image: Any = next(iter(inputs.values()), {}) if isinstance(inputs, Mapping) else {}
    if isinstance(image, Mapping) and isinstance(image.get("num_channels"), int):
        data["in_channels"] = image["num_channels"]
    # network_def is not taken: ckpt_export embeds the config file without its command-line overrides (e.g. other
    # widths), so it may not describe the exported network; a TorchScript module needs no rebuilding anyway.
    for key in ("predictor#roi_size", "roi_size", "spatial_size"):
        roi = _literal(inference, key)
        if isinstance(roi, list) and roi and all(isinstance(v, int) and v > 0 for v in roi):
            data["roi_size"] = roi
            break
    pre = {k: _literal(inference, k) for k in ("window", "intensity_range", "volume_window") if k in inference}
    if pre:
        data["preprocessing"] = pre
    if meta.get("version"):
        data["extra"] = {"bundle_version": str(meta["version"])}
    if meta.get("name"):
        data["bundle"] = str(meta["name"])
    data["medseg_version"] = str((meta.get("required_packages_version") or {}).get("medseg") or "unknown")
    return CheckpointMetadata.from_dict(data, source="TorchScript metadata")


def _load_torchscript(path: Path, device: str) -> LoadedModel:
    extra = {"medseg.json": "", "metadata.json": "", "inference.json": ""}
    try:
        module = torch.jit.load(str(path), map_location=device, _extra_files=extra)
    except Exception as err:
        raise ValueError(f"{path}: cannot be read as TorchScript ({type(err).__name__}: {err})") from err

    def parsed(name: str) -> dict[str, Any]:
        text = extra.get(name) or ""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        try:
            value = json.loads(text) if text else {}
        except json.JSONDecodeError:
            logger.warning("%s: embedded %s is not valid JSON; ignored", path, name)
            return {}
        return value if isinstance(value, dict) else {}

    own = parsed("medseg.json")
    if own:
        metadata: CheckpointMetadata | None = CheckpointMetadata.from_dict(own, source=f"{path} medseg.json")
    elif extra.get("metadata.json") or extra.get("inference.json"):
        metadata = _metadata_from_bundle_files(parsed("metadata.json"), parsed("inference.json"))
    else:
        metadata = None
        logger.warning("TorchScript file %s embeds no metadata: using the bundle's settings", path)
    module.eval()
    return LoadedModel(module, metadata, "torchscript", path)


def load_model(
    path: PathLike,
    *,
    network: nn.Module | Callable[[], nn.Module] | None = None,
    device: str | torch.device = "cpu",
    trusted_modules: Sequence[str] = TRUSTED_NETWORK_MODULES,
) -> LoadedModel:
    """Load a runnable model from a medseg checkpoint, a bare state dict, a TorchScript or an ONNX file.

    Args:
        path: ``.pt``/``.pth`` (checkpoint or state dict), TorchScript (``.ts``, any zip archive of TorchScript)
            or ``.onnx``.
        network: the network to load a checkpoint's weights into when the checkpoint does not record one (a
            bundle's ``network_def``), or a function building it (called only then). A checkpoint that records
            its network is rebuilt from its own metadata (then ``network`` is not used: compare the two with
            :func:`checkpoint_disagreements`).
        device: where the model runs (ONNX: the execution provider: CUDA when ``cuda``).
        trusted_modules: module prefixes a checkpoint's network class may come from.

    Returns:
        The model in eval mode, its metadata (``None`` when the file has none) and the kind of file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, weights that do not fit, or nothing to load the weights into.
        ImportError: an ONNX file without the ``[export]`` extra (onnxruntime) installed.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file {p}: no such file")
    dev = str(device)
    if p.suffix.lower() == ".onnx":
        from medseg.export import load_onnx

        return load_onnx(p, device=dev)
    if _is_torchscript(p):
        return _load_torchscript(p, dev)
    loaded = load_checkpoint(p, quiet=network is not None)
    if loaded.metadata is not None and loaded.metadata.network:
        target = str(loaded.metadata.network.get("_target_"))
        if network is None or any(target.startswith(prefix) for prefix in trusted_modules):
            model = _load_into(build_network(loaded.metadata, trusted_modules=trusted_modules), loaded.state_dict, p)
            return LoadedModel(model.to(dev).eval(), loaded.metadata, "checkpoint", p, rebuilt=True)
        logger.warning(
            "checkpoint %s records its network as %s, a class outside the trusted modules %s: loading the weights "
            "into the bundle's network instead",
            p,
            target,
            list(trusted_modules),
        )
    if network is None:
        raise ValueError(
            f"checkpoint {p} records no network; give the network to load it into (e.g. medseg predict --bundle "
            "NAME whose network_def matches the training)"
        )
    if loaded.metadata is None:
        logger.warning("checkpoint %s has no medseg metadata (older or foreign file): using the bundle's network", p)
    model = _load_into(network if isinstance(network, nn.Module) else network(), loaded.state_dict, p)
    return LoadedModel(model.to(dev).eval(), loaded.metadata, "checkpoint", p)


# --------------------------------------------------------------------------------------------- describing
def _size(values: Sequence[int] | None) -> str:
    return "x".join(str(v) for v in values) if values else "?"


def _text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)


def _args_text(spec: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={_text(v)}" for k, v in spec.items() if k != "_target_")


def _metadata_lines(meta: CheckpointMetadata) -> list[str]:
    lines = []
    if meta.network:
        lines.append(f"network: {meta.network['_target_']}({_args_text(meta.network)})")
    else:
        lines.append("network: not recorded (needs the bundle's network_def)")
    if meta.classes:
        lines.append("classes: " + ", ".join(f"{i} {name}" for i, name in enumerate(meta.classes)))
    elif meta.out_channels:
        lines.append(f"classes: {meta.out_channels} (names not recorded)")
    io = []
    if meta.in_channels is not None:
        io.append(f"{meta.in_channels} input channel{'s' if meta.in_channels != 1 else ''}")
    if meta.spatial_dims is not None:
        io.append(f"{meta.spatial_dims}D")
    io.append(f"trained on {_size(meta.roi_size)} inputs" if meta.roi_size else "input size not recorded")
    lines.append("input: " + ", ".join(io))
    if meta.preprocessing:
        lines.append("preprocessing: " + ", ".join(f"{k} {_text(v)}" for k, v in meta.preprocessing.items()))
    if meta.loss:
        lines.append("loss: " + ", ".join(f"{k} {_text(v)}" for k, v in meta.loss.items()))
    lines.append("plan: " + ("recorded (" + ", ".join(sorted(meta.plan)[:6]) + ")" if meta.plan else "not recorded"))
    if meta.training:
        lines.append("training: " + ", ".join(f"{k} {_text(v)}" for k, v in meta.training.items()))
    return lines


def describe_checkpoint(path: PathLike) -> str:
    """A short, human-readable description of a model file (what ``medseg export --describe`` prints).

    Raises:
        FileNotFoundError, ValueError: as :func:`load_checkpoint` / :func:`load_model`.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file {p}: no such file")
    if p.suffix.lower() == ".onnx" or _is_torchscript(p):
        loaded = load_model(p)
        head = f"{p.name}: {'ONNX' if loaded.kind == 'onnx' else 'TorchScript'} model"
        meta = loaded.metadata
        if meta is None:
            return f"{head} without metadata"
        parameters = ""
    else:
        ck = load_checkpoint(p, quiet=True)
        count = sum(int(v.numel()) for v in ck.state_dict.values() if v.is_floating_point())
        parameters = f", {count:,} weights in {len(ck.state_dict)} tensors"
        if ck.metadata is None:
            return (
                f"{p.name}: a bare state dict{parameters}, without medseg metadata: run it with a bundle whose "
                "network_def matches the trained network"
            )
        meta = ck.metadata
        head = {"medseg": "medseg checkpoint", "resume": "training resume file", "state_dict": "state dict"}[ck.kind]
        head = f"{p.name}: {head}"
    head += f" (format {meta.format_version}, medseg {meta.medseg_version}"
    head += f", bundle {meta.bundle})" if meta.bundle else ")"
    head += parameters
    return "\n".join([head, *("  " + line for line in _metadata_lines(meta))])


# --------------------------------------------------------------------------------------------- comparing
def bundle_settings(parser: Any) -> dict[str, Any]:
    """The settings of a parsed MONAI bundle config that a checkpoint's metadata can be compared with.

    Args:
        parser: a ``monai.bundle.ConfigParser`` with the bundle's ``inference.json`` (and metadata) read.

    Returns:
        A dict with any of ``network`` (``network_def`` with its arguments resolved, not instantiated),
        ``roi_size`` (``predictor#roi_size``, ``roi_size`` or ``spatial_size``), ``classes`` (from the
        metadata's output ``channel_def``, or ``class_names``), ``num_classes`` and ``preprocessing``
        (``window``, ``volume_window``, ``intensity_range``, ``normalization``).
    """
    out: dict[str, Any] = {}

    def value(key: str) -> Any:
        try:
            return parser.get_parsed_content(key, instantiate=False)
        except Exception:
            return None

    raw = parser.get("network_def") if "network_def" in parser else None
    if isinstance(raw, Mapping) and isinstance(raw.get("_target_"), str):
        out["network"] = {"_target_": raw["_target_"], **{k: value(f"network_def#{k}") for k in raw if k != "_target_"}}
    for key in ("predictor#roi_size", "roi_size", "spatial_size"):
        if key in parser:
            roi = value(key)
            if isinstance(roi, Sequence) and not isinstance(roi, str):
                out["roi_size"] = [int(v) for v in roi]
                break
    classes = value("class_names") if "class_names" in parser else None
    if classes is None and "_meta_#network_data_format#outputs#pred#channel_def" in parser:
        channel_def = value("_meta_#network_data_format#outputs#pred#channel_def")
        if isinstance(channel_def, Mapping):
            classes = [str(channel_def[k]) for k in sorted(channel_def, key=int)]
    if classes is not None:
        out["classes"] = [str(c) for c in classes]
    if "num_classes" in parser:
        out["num_classes"] = value("num_classes")
    pre = {k: value(k) for k in ("window", "volume_window", "intensity_range", "normalization") if k in parser}
    if pre:
        out["preprocessing"] = pre
    return out


def _norm(value: Any) -> Any:
    """Compare JSON-wise: tuples as lists."""
    try:
        return _json_safe(value, "value")
    except (TypeError, ValueError):
        return repr(value)


@dataclasses.dataclass(frozen=True)
class Disagreement:
    """One way a checkpoint's metadata and a bundle's settings differ.

    Attributes:
        topic: what differs: ``"network"``, ``"roi_size"``, ``"classes"`` or ``"preprocessing.<key>"``
            (``preprocessing.window``, ``preprocessing.normalization``, ...).
        text: one line for the user ("checkpoint trained at 128x128, bundle runs at 256x256").
    """

    topic: str
    text: str


def disagreements(metadata: CheckpointMetadata | None, settings: Mapping[str, Any]) -> list[Disagreement]:
    """Where a checkpoint's metadata and a bundle's settings differ, one :class:`Disagreement` each.

    Args:
        metadata: the checkpoint's metadata (``None``: nothing to compare, no lines).
        settings: the bundle's settings, as :func:`bundle_settings` returns them.
    """
    if metadata is None:
        return []
    found: list[Disagreement] = []
    theirs = settings.get("network")
    ours = metadata.network
    if ours and isinstance(theirs, Mapping):
        if ours.get("_target_") != theirs.get("_target_"):
            found.append(
                Disagreement(
                    "network", f"network differs: checkpoint {ours.get('_target_')}, bundle {theirs.get('_target_')}"
                )
            )
        else:
            keys = [k for k in ours if k != "_target_" and k in theirs and _norm(ours[k]) != _norm(theirs[k])]
            if keys:
                diffs = [
                    f"{k} {json.dumps(_norm(ours[k]))} in the checkpoint, {json.dumps(_norm(theirs[k]))} in the bundle"
                    for k in keys
                ]
                found.append(
                    Disagreement("network", f"network arguments differ ({', '.join(keys)}): " + "; ".join(diffs))
                )
    roi = settings.get("roi_size")
    if metadata.roi_size and roi and list(metadata.roi_size) != [int(v) for v in roi]:
        found.append(
            Disagreement(
                "roi_size", f"checkpoint trained at {_size(metadata.roi_size)}, bundle runs at {_size(list(roi))}"
            )
        )
    classes = settings.get("classes")
    n_bundle = len(classes) if classes else settings.get("num_classes")
    n_ckpt = len(metadata.classes) if metadata.classes else metadata.out_channels
    if n_ckpt and n_bundle and int(n_ckpt) != int(n_bundle):
        found.append(Disagreement("classes", f"checkpoint has {n_ckpt} classes, bundle {n_bundle}"))
    elif metadata.classes and classes and list(metadata.classes) != list(classes):
        found.append(
            Disagreement(
                "classes",
                f"class names differ: checkpoint {', '.join(metadata.classes)}; bundle {', '.join(map(str, classes))}",
            )
        )
    pre = settings.get("preprocessing") or {}
    for key, value in (metadata.preprocessing or {}).items():
        if key in pre and _norm(pre[key]) != _norm(value):
            found.append(
                Disagreement(
                    f"preprocessing.{key}",
                    f"preprocessing {key} differs: {json.dumps(_norm(value))} in the checkpoint, "
                    f"{json.dumps(_norm(pre[key]))} in the bundle",
                )
            )
    return found


def checkpoint_disagreements(metadata: CheckpointMetadata | None, settings: Mapping[str, Any]) -> list[str]:
    """One line per disagreement between a checkpoint's metadata and a bundle's settings (empty: they agree).

    The lines of :func:`disagreements`.

    Args:
        metadata: the checkpoint's metadata (``None``: nothing to compare, no lines).
        settings: the bundle's settings, as :func:`bundle_settings` returns them.

    Example:
        >>> meta = CheckpointMetadata(roi_size=[128, 128], classes=["background", "infection"])
        >>> checkpoint_disagreements(meta, {"roi_size": [256, 256], "classes": ["background", "infection"]})
        ['checkpoint trained at 128x128, bundle runs at 256x256']
    """
    return [d.text for d in disagreements(metadata, settings)]
