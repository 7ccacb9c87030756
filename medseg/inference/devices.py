"""Devices for inference: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` and ``mps``, validated with a clear error.

``auto`` (the default of the shipped bundles) picks CUDA when PyTorch sees a GPU, else Apple's MPS when present,
else the CPU. An explicit device that is not available here is refused with a message that names what is.

Example:
    >>> resolve_device("cpu")
    device(type='cpu')
    >>> check_device_spec("cuda:1")
    'cuda:1'
"""

from __future__ import annotations

import logging
import re

import torch

logger = logging.getLogger(__name__)

__all__ = ["DEVICE_CHOICES", "available_devices", "check_device_spec", "resolve_device"]

#: What ``--device`` accepts (``cuda:N`` with any index N).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_SPEC = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _auto_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if _mps_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_devices() -> list[str]:
    """The devices usable here, e.g. ``["cpu"]`` or ``["cpu", "cuda:0", "cuda:1"]``."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    return found


def check_device_spec(spec: str, name: str = "device") -> str:
    """Check the spelling of a device (not its availability) and return it normalised to lower case.

    Raises:
        ValueError: if ``spec`` is none of ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps``.
    """
    text = str(spec).strip().lower()
    if not _SPEC.match(text):
        raise ValueError(
            f"{name}={spec!r} is not a device; use one of {', '.join(DEVICE_CHOICES)} (e.g. 'cuda:0' for the "
            "first GPU, 'auto' for the best one available)"
        )
    return text


def resolve_device(spec: torch.device | str | None, name: str = "device") -> torch.device:
    """The ``torch.device`` for ``spec``: ``auto``/``None`` picks CUDA, else MPS, else CPU.

    Args:
        spec: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"mps"``, a ``torch.device`` or ``None`` (auto).
        name: the parameter name used in error messages.

    Returns:
        An available device (``cuda`` without an index means PyTorch's current GPU).

    Raises:
        ValueError: for an unknown spelling, or a device that is not available here (the message lists the
            available ones).
    """
    spelled = "auto" if spec is None else spec
    text = str(spec) if isinstance(spec, torch.device) else check_device_spec(str(spelled), name)
    if text == "auto":
        return _auto_device()
    device = torch.device(text)
    here = ", ".join(available_devices())
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name}={text!r} asks for CUDA, but CUDA is not available here (available: {here}); use "
                "'auto' or 'cpu'"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={text!r}: there are {torch.cuda.device_count()} CUDA device(s) (available: {here}); "
                "pick one of them"
            )
    elif device.type == "mps":
        if not _mps_available():
            raise ValueError(f"{name}={text!r}: MPS is not available here (available: {here}); use 'auto' or 'cpu'")
    elif device.type != "cpu":
        raise ValueError(f"{name}={text!r}: use one of {', '.join(DEVICE_CHOICES)}")
    return device
