"""Predict with a MONAI bundle's ``configs/inference.json`` (the ids it must provide: see :mod:`medseg.inference`).

``medseg predict --bundle DIR`` and ``python -m monai.bundle run --config_file DIR/configs/inference.json``
build the same :class:`~medseg.inference.Predictor`, :class:`~medseg.inference.Preprocessing` and
:class:`~medseg.inference.MaskWriter` from the same ids and call the same :func:`~medseg.inference.predict_files`,
so they write identical masks.

A bundle is code: parsing its configs calls every ``_target_`` and evaluates every ``$`` expression with Python's
``eval``. The bundles shipped inside medseg are trusted; any other bundle is refused unless the caller says it
trusts it (``trust=True``, ``medseg predict --trust-bundle``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.inference.api import INPUT_ERRORS, PredictionReport, predict_files, root_cause
from medseg.inference.predictor import Predictor
from medseg.inference.preprocessing import Preprocessing
from medseg.inference.writers import MaskWriter
from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = [
    "INFERENCE_CONFIG",
    "BundleInference",
    "UntrustedBundleError",
    "is_shipped_bundle",
    "load_bundle",
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
    """The inference objects of a bundle, parsed from its ``inference.json``."""

    predictor: Predictor
    preprocessing: Preprocessing
    writer: MaskWriter
    config_file: Path
    bundle_root: Path


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


def load_bundle(
    bundle_dir: PathLike,
    *,
    ckpt: PathLike | None = None,
    device: str | None = None,
    tta: bool | None = None,
    overrides: dict[str, Any] | None = None,
    trust: bool = False,
    engine: str | None = None,
) -> BundleInference:
    """Parse ``bundle_dir/configs/inference.json`` and build its predictor, preprocessing and writer.

    Args:
        bundle_dir: the bundle folder, or the name of a bundle shipped with medseg (``"covid19_ct_lesion"``).
        ckpt: weights to use instead of the bundle's (sets ``predictor#checkpoint`` and ``ckpt_path``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"mps"``, overriding the bundle's
            (``device`` and ``predictor#device``).
        tta: turn flip test-time augmentation on or off (``predictor#tta``); ``None`` keeps the bundle's.
        overrides: further ``{id: value}`` config overrides (MONAI ``#`` id syntax).
        trust: run a bundle that is not shipped with medseg (its configs are code: see the module docstring).
        engine: what runs the network (``predictor#engine``: ``eager``, ``compile``, ``onnxruntime``,
            ``openvino``); ``None`` keeps the bundle's (eager by default).

    Returns:
        The parsed objects.

    Raises:
        FileNotFoundError: missing bundle folder, config, or weights.
        UntrustedBundleError: a bundle from outside medseg without ``trust=True``.
        ValueError: a config that lacks ``predictor`` or builds objects of the wrong type.
    """
    from monai.bundle.config_parser import ConfigParser

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
    return BundleInference(predictor, preprocessing, writer, config_file, bundle)


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
    ``intensity_check``, ``num_parts``, ``part_id``); the other arguments are those of :func:`load_bundle`.
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
