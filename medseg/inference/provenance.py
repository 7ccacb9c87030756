"""What produced each prediction: a small sidecar ``NAME_prediction.json`` next to a case's outputs.

The sidecar records digests of the input (its bytes), of the model (network class, weights and prediction
settings: :meth:`~medseg.inference.Predictor.fingerprint`), of the preprocessing and of the output options, and
whether the case is finished. ``predict`` skips a case only when a finished sidecar matches what it would do now
and every output exists; another input with the same name, new weights or new settings recompute it.

Write order (a kill at any point leaves nothing that a later run mistakes for current):

1. when the digests differ (or there is no sidecar), the old sidecar is removed, then the case's old outputs;
2. a sidecar with ``"state": "partial"`` and the new digests is written;
3. the outputs are written, each atomically (temporary name, then rename);
4. the sidecar is rewritten with ``"state": "complete"``.

When the digests match but the case is unfinished or an output is missing, the outputs that exist are current
(they were written under these digests): frames of a folder or video are kept and only the missing ones computed.
An output without a sidecar (from an interrupted run, an older medseg, or another tool) counts as unfinished.
No paths or patient data go into the sidecar: the input is identified by its SHA-256 only.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

logger = logging.getLogger(__name__)

__all__ = [
    "SIDECAR_SUFFIX",
    "Provenance",
    "describe",
    "digest_files",
    "digest_json",
    "read_sidecar",
    "sidecar_path",
]

#: The sidecar of case ``NAME`` is ``NAME_prediction.json`` in the output folder.
SIDECAR_SUFFIX = "_prediction.json"
FORMAT = "medseg-prediction/1"
_CHUNK = 1 << 20


def sidecar_path(folder: Path, name: str) -> Path:
    """``folder / f"{name}_prediction.json"``."""
    return folder / f"{name}{SIDECAR_SUFFIX}"


def digest_files(files: Iterable[Path], root: Path | None = None) -> str:
    """SHA-256 over the files' names (relative to ``root``) and bytes, in the order given."""
    digest = hashlib.sha256()
    for path in files:
        name = path.relative_to(root).as_posix() if root is not None else path.name
        digest.update(name.encode() + b"\0")
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def describe(obj: Any, depth: int = 0) -> Any:
    """A JSON-able description of a transform pipeline (classes and their plain settings), for digests.

    Compose-like objects become the list of their steps; other objects their class name with the public
    attributes that are numbers, strings, booleans or short sequences of those, and nested objects up to six
    levels down. Random states and callables are left out.
    """
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [describe(v, depth + 1) for v in obj[:64]] if depth < 8 else len(obj)
    if isinstance(obj, Mapping):
        return {str(k): describe(v, depth + 1) for k, v in list(obj.items())[:64]} if depth < 8 else len(obj)
    if isinstance(obj, type):
        return f"{obj.__module__}.{obj.__qualname__}"
    if isinstance(obj, (np.ndarray, np.generic, torch.Tensor)):
        return obj.tolist() if int(np.prod(obj.shape)) <= 64 else f"array{tuple(obj.shape)}"
    if isinstance(obj, (torch.dtype, torch.device, np.dtype)):
        return str(obj)
    steps = getattr(obj, "transforms", None)
    if isinstance(steps, (list, tuple)):
        return {"class": type(obj).__name__, "steps": [describe(t, depth + 1) for t in steps]}
    out: dict[str, Any] = {"class": f"{type(obj).__module__}.{type(obj).__qualname__}"}
    if depth >= 6:
        return out
    plain = (bool, int, float, str, type(None), list, tuple, Mapping)
    for key, value in sorted(vars(obj).items()) if hasattr(obj, "__dict__") else []:
        if key.startswith("_") or "random" in key.lower() or isinstance(value, type):
            continue
        if isinstance(value, (*plain, np.ndarray, np.generic, torch.Tensor)) or hasattr(value, "__dict__"):
            out[key] = describe(value, depth + 1)
    return out


def digest_json(obj: Any) -> str:
    """SHA-256 of ``obj`` as canonical JSON (sorted keys; anything else by ``str``)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Provenance:
    """The digests that decide whether a case's outputs are current.

    Attributes:
        input: SHA-256 of the input's bytes (all files of a DICOM series or frame folder).
        model: :meth:`~medseg.inference.Predictor.fingerprint`.
        preprocessing: digest of the preprocessing pipeline's description.
        outputs: digest of the output options (kinds written, colours, probabilities).
    """

    input: str
    model: str
    preprocessing: str
    outputs: str

    def record(self, state: Literal["partial", "complete"], version: str) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "state": state,
            "input_sha256": self.input,
            "model_sha256": self.model,
            "preprocessing_sha256": self.preprocessing,
            "outputs_sha256": self.outputs,
            "medseg_version": version,
        }

    def matches(self, record: Mapping[str, Any] | None) -> bool:
        """Whether a sidecar record was written for these same digests."""
        if not record or record.get("format") != FORMAT:
            return False
        return (
            record.get("input_sha256") == self.input
            and record.get("model_sha256") == self.model
            and record.get("preprocessing_sha256") == self.preprocessing
            and record.get("outputs_sha256") == self.outputs
        )

    def differences(self, record: Mapping[str, Any] | None) -> list[str]:
        """What differs from ``record`` (``["input", "model", ...]``), for messages."""
        if not record or record.get("format") != FORMAT:
            return ["no provenance record"]
        pairs = (
            ("input", self.input, "input_sha256"),
            ("model", self.model, "model_sha256"),
            ("preprocessing", self.preprocessing, "preprocessing_sha256"),
            ("output options", self.outputs, "outputs_sha256"),
        )
        return [what for what, mine, key in pairs if record.get(key) != mine]


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """The sidecar's record, or ``None`` when it is missing or unreadable (then the case counts as unfinished)."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
