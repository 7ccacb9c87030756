"""Reading single values out of a pydicom ``Dataset`` without tripping over blanks, multi-values or junk."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["SeriesError", "float_or_none", "int_or_none", "text"]


class SeriesError(ValueError):
    """A series that cannot be converted (the message says which series and why)."""


def int_or_none(value: Any) -> int | None:
    """``value`` as an int, or None when blank or not a number.

    Example:
        >>> int_or_none("12"), int_or_none(""), int_or_none("x")
        (12, None, None)
    """
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def float_or_none(value: Any) -> float | None:
    """``value`` (or its first item, for a multi-value) as a finite float, or None.

    Example:
        >>> float_or_none("2.5"), float_or_none(["1", "2"]), float_or_none("nan"), float_or_none(None)
        (2.5, 1.0, None, None)
    """
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
        if value is None:
            return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def text(ds: Any, keyword: str) -> str | None:
    """The value of ``keyword`` as stripped text (multi-values joined by backslashes), or None when absent or blank."""
    value = ds.get(keyword)
    if value is None:
        return None
    if type(value).__name__ == "MultiValue" or isinstance(value, (list, tuple)):
        value = "\\".join(str(v) for v in value)
    out = str(value).strip()
    return out or None
