"""Predict with a MONAI bundle's ``configs/inference.json`` (the ids it must provide: see :mod:`medseg.inference`).

``medseg predict --bundle DIR`` and ``python -m monai.bundle run --config_file DIR/configs/inference.json``
build the same :class:`~medseg.inference.Predictor`, :class:`~medseg.inference.Preprocessing` and
:class:`~medseg.inference.MaskWriter` from the same ids and call the same :func:`~medseg.inference.predict_files`,
so they write identical masks.

A bundle is code: parsing its configs calls every ``_target_`` and evaluates every ``$`` expression with Python's
``eval``. The bundles shipped inside medseg are trusted; any other bundle is refused unless the caller says it
trusts it (``trust=True``, ``medseg predict --trust-bundle``).

The model (:func:`load_bundle`): the weights file (``ckpt``, else the bundle's ``ckpt_path``) is read with
:func:`medseg.checkpoint.load_model`: a medseg checkpoint, a bundle's ``last.pt``, a bare state dict (loaded into
the bundle's ``network_def``, with a one-line note that its metadata is missing), the TorchScript file of
``monai.bundle ckpt_export`` or an ONNX file. What a file records wins over the bundle's config, unless the
caller overrides the id: the network is rebuilt from the checkpoint (a model trained with other widths or
classes runs without flags), and the input size (``spatial_size``/``roi_size``), intensity ``normalization``,
``window``/``intensity_range`` and ``class_names`` follow it. Each difference between the checkpoint and the
bundle (after the caller's overrides) is logged as one warning line that says which value is used. When the
checkpoint carries its training plan, the inputs' intensity check compares them with the training data's
intensity percentiles (:meth:`~medseg.inference.Preprocessing.use_training_intensities`).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.inference.api import INPUT_ERRORS, PredictionReport, predict_files, root_cause
from medseg.inference.predictor import Predictor
from medseg.inference.preprocessing import Preprocessing
from medseg.inference.writers import MaskWriter
from medseg.typing import PathLike

if TYPE_CHECKING:
    from torch import nn

    from medseg.checkpoint import CheckpointMetadata, LoadedModel

logger = logging.getLogger(__name__)

__all__ = [
    "INFERENCE_CONFIG",
    "BundleInference",
    "UntrustedBundleError",
    "is_shipped_bundle",
    "load_bundle",
    "parse_override",
    "predict_with_bundle",
]

#: Where a bundle keeps its inference config, relative to the bundle folder.
INFERENCE_CONFIG = Path("configs") / "inference.json"


class UntrustedBundleError(ValueError):
    """A bundle from outside medseg was given without saying that it is trusted (its configs run code)."""


def is_shipped_bundle(bundle: PathLike) -> bool:
    """Whether ``bundle`` is one of the bundles installed inside the medseg package (``medseg/bundles/<name>``)."""
    from medseg.resources import package_root

    shipped = (package_root() / "bundles").resolve()
    folder = Path(bundle).resolve()
    return folder.parent == shipped and (folder / "configs").is_dir()


@dataclass
class BundleInference:
    """The inference objects of a bundle, parsed from its ``inference.json``.

    Attributes:
        predictor, preprocessing, writer: the configured objects.
        config_file: the ``inference.json`` read.
        bundle_root: the bundle folder.
        model: the loaded model file and what it records (``None`` when the config builds the weights itself).
        notes: the one-line warnings logged while loading (checkpoint vs bundle differences).
    """

    predictor: Predictor
    preprocessing: Preprocessing
    writer: MaskWriter
    config_file: Path
    bundle_root: Path
    model: LoadedModel | None = None
    notes: list[str] = field(default_factory=list)


#: What follows a checkpoint's metadata: topic of :func:`medseg.checkpoint.disagreements` -> the config ids that
#: set it (the first one present is set; the caller overriding any of them keeps the caller's value).
_FOLLOWED: dict[str, tuple[str, ...]] = {
    "roi_size": ("spatial_size", "roi_size", "predictor#roi_size"),
    "classes": ("class_names",),
    "preprocessing.normalization": ("normalization",),
    "preprocessing.window": ("window",),
    "preprocessing.intensity_range": ("intensity_range",),
    "preprocessing.volume_window": ("volume_window",),
}


def parse_override(text: str) -> tuple[str, Any]:
    """``ID=VALUE`` of ``medseg predict --override``: the value parsed as JSON, else kept as a string.

    Example:
        >>> parse_override("spatial_size=[128, 128]"), parse_override("predictor#mode=constant")
        (('spatial_size', [128, 128]), ('predictor#mode', 'constant'))

    Raises:
        ValueError: without ``=`` or with an empty id.
    """
    import json

    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ValueError(
            f"--override takes ID=VALUE with a config id of inference.json (e.g. spatial_size=[128,128]), got {text!r}"
        )
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def _parsed(parser: Any, key: str, bundle: Path) -> Any:
    try:
        return parser.get_parsed_content(key)
    except Exception as err:
        cause = root_cause(err)
        message = " ".join(str(cause).split())
        if isinstance(cause, FileNotFoundError):
            raise FileNotFoundError(f"bundle {bundle}: {message}") from err
        if isinstance(cause, INPUT_ERRORS):
            raise ValueError(f"bundle {bundle}: cannot build {key!r}: {message}") from err
        raise


def _weights_file(parser: Any, bundle: Path) -> Path | None:
    """The weights the predictor would load: ``predictor#checkpoint`` (usually ``@ckpt_path``), resolved."""
    value = _parsed(parser, "predictor#checkpoint", bundle) if "predictor#checkpoint" in parser else None
    if value in (None, ""):
        return None  # the config provides its weights another way (or runs an untrained network)
    path = Path(str(value))
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {path}: no such file; trained weights are needed (a bundle keeps them in models/model.pt: "
            "train it first, or pass another checkpoint with --ckpt FILE)"
        )
    return path


def _network_builder(parser: Any, bundle: Path) -> Callable[[], nn.Module]:
    def build() -> nn.Module:
        network = parser.get_parsed_content("predictor#network", instantiate=True)
        from torch import nn

        if not isinstance(network, nn.Module):
            raise ValueError(f"bundle {bundle}: predictor#network builds a {type(network).__name__}, not a network")
        return network

    return build


def _follow_checkpoint(parser: Any, metadata: CheckpointMetadata, overridden: set[str], rebuilt: bool) -> list[str]:
    """Log each checkpoint/bundle difference in one line; set the ids that follow the checkpoint. Returns the lines."""
    from medseg.checkpoint import bundle_settings, disagreements

    lines = []
    for item in disagreements(metadata, bundle_settings(parser)):
        ids = _FOLLOWED.get(item.topic, ())
        present = [i for i in ids if i in parser]
        if item.topic == "network":
            outcome = "running the checkpoint's network" if rebuilt else "loading the weights into the bundle's"
        elif any(i in overridden for i in ids):
            outcome = "using the overridden value"
        elif present:
            outcome = "using the checkpoint's"
        else:
            outcome = "using the bundle's (no id to set)"
        line = f"{item.text}: {outcome}"
        logger.warning("%s", line)
        lines.append(line)
    values: dict[str, Any] = {
        "roi_size": metadata.roi_size,
        "classes": metadata.classes,
        **{f"preprocessing.{k}": v for k, v in (metadata.preprocessing or {}).items()},
    }
    for topic, ids in _FOLLOWED.items():
        present = [i for i in ids if i in parser]
        if topic not in values or (values[topic] is None and topic in ("roi_size", "classes")):
            continue
        if not present or any(i in overridden for i in ids):
            continue
        parser[present[0]] = values[topic]
    return lines


def load_bundle(
    bundle_dir: PathLike,
    *,
    ckpt: PathLike | None = None,
    device: str | None = None,
    tta: bool | None = None,
    overrides: Mapping[str, Any] | None = None,
    trust: bool = False,
    engine: str | None = None,
) -> BundleInference:
    """Parse ``bundle_dir/configs/inference.json``, load the model and build the predictor, preprocessing and writer.

    Args:
        bundle_dir: the bundle folder, or the name of a bundle shipped with medseg (``"covid19_ct_lesion"``).
        ckpt: the model file to use instead of the bundle's ``ckpt_path``: a medseg checkpoint, a ``last.pt``,
            a state dict, a TorchScript (``.ts``) or ONNX (``.onnx``) file (see the module docstring).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``, overriding the bundle's
            (``device`` and ``predictor#device``).
        tta: turn flip test-time augmentation on or off (``predictor#tta``); ``None`` keeps the bundle's.
        overrides: further ``{id: value}`` config overrides (MONAI ``#`` id syntax), applied before the
            checkpoint is compared with the bundle; an overridden id keeps its value.
        trust: run a bundle that is not shipped with medseg (its configs are code: see the module docstring).
        engine: what runs the network (``predictor#engine``: ``eager``, ``compile``, ``onnxruntime``,
            ``openvino``); ``None`` keeps the bundle's (eager by default).

    Returns:
        The parsed objects, the loaded model and the warning lines.

    Raises:
        FileNotFoundError: missing bundle folder, config, or weights.
        UntrustedBundleError: a bundle from outside medseg without ``trust=True``.
        ValueError: a config that lacks ``predictor`` or builds objects of the wrong type, or a model file
            that cannot be read or does not fit.
    """
    from monai.bundle.config_parser import ConfigParser

    from medseg.checkpoint import load_model
    from medseg.inference.devices import check_device_spec
    from medseg.resources import bundle_dir as find_bundle

    bundle = find_bundle(bundle_dir)
    if not is_shipped_bundle(bundle):
        if not trust:
            raise UntrustedBundleError(
                f"bundle {bundle} is not shipped with medseg, and a bundle is code (its configs run Python through "
                "'$' expressions and '_target_' calls); read its configs/inference.json, then pass --trust-bundle "
                "(trust=True) to run it"
            )
        logger.info("bundle %s: running its configs as code (trusted by the caller)", bundle)
    if device is not None:
        device = check_device_spec(device)
    config_file = bundle / INFERENCE_CONFIG
    if not config_file.is_file():
        raise FileNotFoundError(f"bundle {bundle}: {INFERENCE_CONFIG} not found; is this a MONAI bundle folder?")
    parser = ConfigParser()
    try:
        parser.read_config(str(config_file))
    except Exception as err:
        raise ValueError(f"bundle {bundle}: cannot read {INFERENCE_CONFIG}: {' '.join(str(err).split())}") from err
    meta = bundle / "configs" / "metadata.json"
    if meta.is_file():
        parser.read_meta(str(meta))
    if "predictor" not in parser or not isinstance(parser["predictor"], dict):
        raise ValueError(
            f"bundle {bundle}: {INFERENCE_CONFIG} must define 'predictor' as a component "
            '({"_target_": "medseg.inference.Predictor", "network": "@network_def", ...})'
        )
    parser["bundle_root"] = str(bundle)
    if device is not None:
        if "device" in parser:
            parser["device"] = device
        parser["predictor#device"] = device
    if tta is not None:
        parser["predictor#tta"] = bool(tta)
    if engine is not None:
        parser["predictor#engine"] = engine
    if ckpt is not None:
        if "ckpt_path" in parser:
            parser["ckpt_path"] = str(ckpt)
        parser["predictor#checkpoint"] = str(ckpt)
    for key, value in (overrides or {}).items():
        parser[key] = value
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"monai\.")
        loaded = _load_model(parser, bundle, load_model)
        notes = []
        if loaded is not None:
            if loaded.metadata is not None:
                rebuilt = loaded.rebuilt or loaded.kind != "checkpoint"
                notes = _follow_checkpoint(parser, loaded.metadata, set(overrides or {}), rebuilt)
            _use_model(parser, loaded)
        predictor = _parsed(parser, "predictor", bundle)
        preprocessing = _parsed(parser, "preprocessing", bundle) if "preprocessing" in parser else Preprocessing()
        writer = _parsed(parser, "writer", bundle) if "writer" in parser else MaskWriter()
    for key, obj, cls in (
        ("predictor", predictor, Predictor),
        ("preprocessing", preprocessing, Preprocessing),
        ("writer", writer, MaskWriter),
    ):
        if not isinstance(obj, cls):
            raise ValueError(
                f"bundle {bundle}: '{key}' must build a medseg.inference.{cls.__name__}, got {type(obj).__name__}"
            )
    _describe_outputs(writer, parser, bundle, loaded)
    plan = loaded.metadata.plan if loaded is not None and loaded.metadata is not None else None
    intensity = ((plan or {}).get("fingerprint") or {}).get("intensity") if isinstance(plan, Mapping) else None
    if intensity:
        try:
            preprocessing.use_training_intensities(intensity, "the training data's 0.5-99.5th percentiles")
        except ValueError as err:
            logger.warning("the checkpoint's plan has no usable intensities (%s); using the bundle's range", err)
    return BundleInference(predictor, preprocessing, writer, config_file, bundle, loaded, notes)


def _load_model(parser: Any, bundle: Path, load_model: Callable[..., LoadedModel]) -> LoadedModel | None:
    """The model file named by the predictor, read with :func:`medseg.checkpoint.load_model` (``None``: none)."""
    path = _weights_file(parser, bundle)
    if path is None:
        return None
    try:
        return load_model(path, network=_network_builder(parser, bundle), device="cpu")
    except ImportError as err:  # an ONNX file without onnxruntime
        raise ValueError(str(err)) from err


def _use_model(parser: Any, loaded: LoadedModel) -> None:
    """Hand the loaded network to the predictor (its weights are in it: the predictor loads nothing)."""
    parser["predictor#network"] = loaded.model
    parser["predictor#checkpoint"] = None
    if loaded.kind != "checkpoint":
        meta = loaded.metadata
        dims = getattr(loaded.model, "spatial_dims", None) or (meta.spatial_dims if meta else None)
        if dims is None and "network_def#spatial_dims" in parser:
            dims = parser.get_parsed_content("network_def#spatial_dims")
        if dims is not None and "predictor#spatial_dims" not in parser:
            parser["predictor#spatial_dims"] = int(dims)
        channels = getattr(loaded.model, "in_channels", None) or (meta.in_channels if meta else None)
        if isinstance(channels, int) and "predictor#in_channels" not in parser:
            parser["predictor#in_channels"] = channels
        if loaded.kind == "onnx" and parser.get("predictor#engine", "eager") not in ("eager", None):
            raise ValueError(
                f"{loaded.path} is an ONNX model, which ONNX Runtime runs already; drop --engine "
                f"{parser.get('predictor#engine')}"
            )


def _describe_outputs(writer: MaskWriter, parser: Any, bundle: Path, loaded: LoadedModel | None) -> None:
    """Class names (the checkpoint's, else the bundle's) and provenance for the label sidecars and DICOM outputs."""
    import hashlib

    from medseg.checkpoint import bundle_settings

    meta = loaded.metadata if loaded is not None else None
    if writer.class_names is None:
        names = (meta.classes if meta is not None else None) or bundle_settings(parser).get("classes")
        if names:
            try:
                writer.class_names = writer.check_class_names(names)
            except ValueError as err:
                logger.warning("class names %s not used (%s)", names, err)
    model = {}
    if loaded is not None:  # the file's SHA-256, as sha256sum prints it
        with loaded.path.open("rb") as fh:
            model = {"model_file": loaded.path.name, "model_sha256": hashlib.file_digest(fh, "sha256").hexdigest()}
    name = meta.bundle if meta is not None and meta.bundle else bundle.name
    writer.provenance = {"bundle": name, **model, **writer.provenance}  # what the config states wins


def predict_with_bundle(
    bundle_dir: PathLike,
    inputs: list[PathLike],
    output_dir: PathLike,
    *,
    ckpt: PathLike | None = None,
    device: str | None = None,
    tta: bool | None = None,
    overwrite: bool = False,
    save_probabilities: bool | None = None,
    progress: bool = False,
    overrides: dict[str, Any] | None = None,
    trust: bool = False,
    output_types: Sequence[str] | None = None,
    engine: str | None = None,
    **options: Any,
) -> PredictionReport:
    """:func:`load_bundle` then :func:`~medseg.inference.predict_files` (``medseg predict --bundle``).

    ``save_probabilities`` and ``output_types`` override the bundle writer's settings when not ``None``;
    ``options`` are further keyword arguments of :func:`~medseg.inference.predict_files` (``nonfinite``,
    ``intensity_check``, ``num_parts``, ``part_id``, ``volumes``); the other arguments are those of
    :func:`load_bundle`.
    """
    loaded = load_bundle(bundle_dir, ckpt=ckpt, device=device, tta=tta, overrides=overrides, trust=trust, engine=engine)
    if save_probabilities is not None:
        loaded.writer.save_probabilities = bool(save_probabilities)
    if output_types is not None:
        loaded.writer.output_types = loaded.writer.check_output_types(output_types)
    return predict_files(
        inputs,
        output_dir,
        loaded.predictor,
        preprocessing=loaded.preprocessing,
        writer=loaded.writer,
        overwrite=overwrite,
        progress=progress,
        **options,
    )
