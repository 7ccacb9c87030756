"""Label-value mapping: raw annotation codes -> class indices (the one parser of ``--label-map``, NumPy only).

Clinical label files rarely store class indices directly: binary masks are saved as 0/255, EndoVis 2017 part
masks use 10/20/30/40, palette PNGs store indices 0/1/2. :class:`LabelMap` turns such codes into ``0..K-1``
(plus an optional ignore index), refusing values it was not told about so that a wrong preset fails loudly instead
of silently training on garbage. The training transform (``medseg.transforms.labels.MapLabels``), the class
statistics, ``medseg-data check`` and ``medseg evaluate`` all parse and apply mappings here, so a specification
means the same everywhere.

A specification is a preset name, an inline ``"src:dst,src:dst"`` table, a JSON object string, a mapping (JSON
keys may be strings of integers) or ``None`` (identity). On the command line it may also name a JSON file
(:func:`parse_label_map_text`).

Stored values that a table does not name are an error for training, ``stats`` and ``check`` (a wrong preset must
fail, not train on garbage). ``medseg evaluate`` maps predictions (already class indices) and references alike,
so there they pass through unchanged (``keep_unmapped=True``) and its class-range check catches stray values.

Presets (``LABEL_MAP_PRESETS``):

==================== ===================================================================================
``identity``         values pass through unchanged (no check)
``binary``           0 -> 0, every value > 0 -> 1 (the ignore index, if given, is kept)
``binary255``        0 -> 0, 255 -> 1 (8-bit binary masks such as the COVID-19 ``gt_binary`` PNGs)
``endovis_binary``   0 -> 0; 10, 20, 30, 40 -> 1 (EndoVis 2017 instrument vs background)
``endovis_parts``    0 -> 0, 10 -> 1 shaft, 20 -> 2 wrist, 30 -> 3 claspers, 40 -> 4 probe
``covid_multiclass`` 0 -> 0, 1 -> 1 ground-glass opacity, 2 -> 2 consolidation (palette indices kept)
==================== ===================================================================================

Example:
    >>> LabelMap("endovis_parts")(np.array([[0, 10], [20, 30]], dtype=np.uint8)).tolist()
    [[0, 1], [2, 3]]
    >>> LabelMap({"0": 0, "255": 1})(np.array([0, 255, 255])).tolist()
    [0, 1, 1]
    >>> LabelMap("255:1", keep_unmapped=True)(np.array([0, 255, 7])).tolist()
    [0, 1, 7]
"""

from __future__ import annotations

import argparse
import difflib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "LABEL_MAP_PRESETS",
    "LabelMap",
    "LabelMapSpec",
    "label_map_arg",
    "parse_label_map_text",
]

#: What a label mapping can be given as: a preset name, an inline ``"src:dst,src:dst"`` / JSON string,
#: a mapping (JSON object keys may be strings of integers), or ``None`` (identity).
LabelMapSpec = str | Mapping[Any, int] | None

Rule = Literal["identity", "positive"]

#: Named presets: a source -> target table or a rule ("identity"; "positive": x > 0 -> 1).
LABEL_MAP_PRESETS: dict[str, dict[int, int] | Rule] = {
    "identity": "identity",
    "binary": "positive",
    "binary255": {0: 0, 255: 1},
    "endovis_binary": {0: 0, 10: 1, 20: 1, 30: 1, 40: 1},
    "endovis_parts": {0: 0, 10: 1, 20: 2, 30: 3, 40: 4},
    "covid_multiclass": {0: 0, 1: 1, 2: 2},
}

_MAX_LISTED = 10  # how many offending values an error message lists
_LUT_MAX_RANGE = 1 << 20  # label value ranges up to this size are mapped with a look-up table


def _as_int(value: Any, what: str, spec: Any) -> int:
    """Parse one mapping key or value as an integer (JSON object keys arrive as strings)."""
    if isinstance(value, bool):
        raise TypeError(f"label mapping {spec!r}: {what} {value!r} is a bool; use integers")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError as err:
            raise ValueError(
                f"label mapping {spec!r}: {what} {value!r} is not an integer; write e.g. {{'255': 1}}"
            ) from err
    raise TypeError(
        f"label mapping {spec!r}: {what} {value!r} ({type(value).__name__}) is not an integer; "
        "mappings go from integer source values to integer class indices"
    )


def _parse_table(spec: Any) -> dict[int, int]:
    if not isinstance(spec, Mapping) or not spec:
        raise ValueError(f"label mapping must be a non-empty mapping of source value -> class, got {spec!r}")
    table: dict[int, int] = {}
    for key, value in spec.items():
        src = _as_int(key, "source value", spec)
        if src in table:
            raise ValueError(f"label mapping {spec!r}: source value {src} appears twice; keep one entry")
        table[src] = _as_int(value, f"target of {key!r}", spec)
    return table


def _parse_inline(spec: str) -> dict[int, int]:
    """Parse ``"0:0,255:1"`` (command-line friendly) or a JSON object string."""
    text = spec.strip()
    if text.startswith("{"):
        try:
            return _parse_table(json.loads(text))
        except json.JSONDecodeError as err:
            raise ValueError(f"label mapping {spec!r} looks like JSON but does not parse: {err}") from err
    pairs: list[tuple[str, str]] = []
    for part in (p.strip() for p in text.split(",")):
        if part.count(":") != 1:
            raise ValueError(
                f"label mapping {spec!r}: cannot read {part!r}; write 'src:dst' pairs separated by commas "
                f"(e.g. '0:0,255:1') or use a preset: {sorted(LABEL_MAP_PRESETS)}"
            )
        src, dst = part.split(":")
        pairs.append((src, dst))
    table: dict[int, int] = {}
    for src, dst in pairs:
        s = _as_int(src, "source value", spec)
        if s in table:
            raise ValueError(f"label mapping {spec!r}: source value {s} appears twice; keep one entry")
        table[s] = _as_int(dst, f"target of {src!r}", spec)
    return table


class LabelMap:
    """Map raw label values to class indices with a table or a named preset (NumPy arrays).

    Args:
        mapping: a preset name (see the module docstring), an inline ``"src:dst,..."`` or JSON string, a mapping
            ``{source_value: class_index}`` (string keys from JSON are accepted), or ``None`` (identity).
        default: class index for source values absent from the table. ``None`` (default) makes such values an
            error that names them, which catches a wrong preset early.
        ignore_index: a label value that is passed through unchanged (never mapped, never an error), e.g. 255 for
            "unlabelled" pixels. It must not also be a key of the table.
        dtype: output dtype name (``"int64"``, ``"uint8"``, ...). ``None`` keeps the input dtype, promoting
            integer inputs to int64 only when a mapped value would not fit.
        keep_unmapped: values absent from the table pass through unchanged instead of being an error (what
            ``medseg evaluate`` does, so ``255:1`` maps a 0/255 mask; its class-range check still catches stray
            values). Exclusive with ``default``.

    Raises:
        ValueError: unknown preset (with the closest names), malformed mapping, an ``ignore_index`` that collides
            with the table, or ``default`` together with ``keep_unmapped``; at call time non-integer values (an
            interpolated label) or values missing from the table.
    """

    def __init__(
        self,
        mapping: LabelMapSpec = "identity",
        default: int | None = None,
        ignore_index: int | None = None,
        dtype: str | None = None,
        keep_unmapped: bool = False,
    ) -> None:
        self.name = mapping if isinstance(mapping, str) else "custom"
        self.table: dict[int, int] | None
        self.rule: Rule | None
        if mapping is None:
            mapping = "identity"
            self.name = "identity"
        if isinstance(mapping, str) and mapping.strip() in LABEL_MAP_PRESETS:
            self.name = mapping.strip()
            preset = LABEL_MAP_PRESETS[self.name]
            self.table, self.rule = (None, preset) if isinstance(preset, str) else (dict(preset), None)
        elif isinstance(mapping, str):
            if ":" not in mapping and not mapping.strip().startswith("{"):
                close = difflib.get_close_matches(mapping, LABEL_MAP_PRESETS, n=3)
                hint = f"; did you mean {close}?" if close else ""
                raise ValueError(
                    f"label mapping {mapping!r} is not a preset (presets: {sorted(LABEL_MAP_PRESETS)}) nor a "
                    f"'src:dst,...' table{hint}"
                )
            self.table, self.rule = _parse_inline(mapping), None
        else:
            self.table, self.rule = _parse_table(mapping), None
        self.default = None if default is None else _as_int(default, "default", mapping)
        self.ignore_index = None if ignore_index is None else _as_int(ignore_index, "ignore_index", mapping)
        self.keep_unmapped = bool(keep_unmapped)
        if self.keep_unmapped and self.default is not None:
            raise ValueError(
                f"label mapping {mapping!r}: default={self.default} and keep_unmapped=True both say what happens to "
                "unknown values; give one"
            )
        if self.table is not None and self.ignore_index is not None and self.ignore_index in self.table:
            raise ValueError(
                f"ignore_index={self.ignore_index} is also a source value of the label mapping {mapping!r}; "
                "an ignored value cannot be mapped: drop it from the table or choose another ignore_index"
            )
        if dtype is not None:
            try:
                np.dtype(dtype)
            except TypeError as err:
                raise ValueError(f"dtype={dtype!r} is not a numpy dtype name; use e.g. 'int64' or 'uint8'") from err
        self.dtype = dtype

    # ----------------------------------------------------------------------------------------------- info
    @property
    def is_identity(self) -> bool:
        """Whether the mapping leaves every value as it is."""
        return self.rule == "identity"

    @property
    def source_values(self) -> tuple[int, ...] | None:
        """Source values the table knows (``None`` for rule presets such as ``binary``)."""
        return None if self.table is None else tuple(sorted(self.table))

    @property
    def class_values(self) -> tuple[int, ...] | None:
        """Class indices the mapping can produce, excluding ``ignore_index`` (``None`` for ``identity``)."""
        if self.rule == "identity" or self.keep_unmapped:
            return None
        values = {0, 1} if self.rule == "positive" else set((self.table or {}).values())
        if self.default is not None:
            values.add(self.default)
        return tuple(sorted(values))

    def __repr__(self) -> str:
        shown = self.name if self.name != "custom" else self.table
        return (
            f"LabelMap(mapping={shown!r}, default={self.default}, ignore_index={self.ignore_index}, "
            f"dtype={self.dtype}, keep_unmapped={self.keep_unmapped})"
        )

    # ----------------------------------------------------------------------------------------------- maths
    def map_values(self, values: Sequence[int]) -> list[int]:
        """Map a list of distinct integer source values; raises for unknown ones unless told what to do."""
        out: list[int] = []
        unknown: list[int] = []
        for v in values:
            if (self.ignore_index is not None and v == self.ignore_index) or self.rule == "identity":
                out.append(v)
            elif self.rule == "positive" and v >= 0:
                out.append(int(v > 0))
            elif self.table is not None and v in self.table:
                out.append(self.table[v])
            elif self.default is not None:
                out.append(self.default)
            elif self.keep_unmapped:
                out.append(v)
            else:
                unknown.append(v)
        if unknown:
            listed = ", ".join(str(v) for v in unknown[:_MAX_LISTED])
            more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
            known = "values >= 0" if self.rule == "positive" else f"{self.source_values}"
            ignore = f" (ignore_index {self.ignore_index} passes through)" if self.ignore_index is not None else ""
            raise ValueError(
                f"label mapping {self.name!r}: label values [{listed}]{more} are not in the mapping, "
                f"which knows {known}{ignore}; pass default=<class> to map unknown values, set "
                "ignore_index, or choose the preset that matches these label files"
            )
        return out

    def non_integer_error(self, examples: Sequence[float], count: int) -> ValueError:
        """The error for a label holding ``count`` non-integer values (``examples`` of them shown)."""
        shown = ", ".join(f"{v:g}" for v in examples)
        return ValueError(
            f"label mapping {self.name!r}: the label has {count} non-integer or non-finite values "
            f"(e.g. {shown}); labels must be resampled with nearest-neighbour interpolation and saved "
            "losslessly (PNG, not JPEG)"
        )

    def __call__(self, labels: Any) -> np.ndarray:
        """Return ``labels`` (a NumPy array) with every value replaced by its class index."""
        a = np.asarray(labels)
        if self.rule == "identity" and self.dtype is None:
            return a
        if np.issubdtype(a.dtype, np.floating):
            bad = ~np.isfinite(a) | (a != np.round(a))
            if bad.any():
                raise self.non_integer_error(a[bad][:_MAX_LISTED].tolist(), int(bad.sum()))
        elif not np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_:
            raise TypeError(f"a label mapping expects a numeric label array, got dtype {a.dtype}")
        if self.rule == "identity" or a.size == 0:
            out = a
        else:
            out, mapped = self._lookup(a)
            out = out.astype(self.output_dtype(a.dtype, mapped), copy=False)
        if self.dtype is not None:
            out = out.astype(self.dtype, copy=False)
        return out

    # A dense look-up table over [min, max] maps in O(n); np.unique sorts (O(n log n), ~10x slower on CT-sized
    # volumes) and is kept for labels whose value range is too wide for a table.
    def _lookup(self, a: np.ndarray) -> tuple[np.ndarray, list[int]]:
        lo, hi = int(a.min()), int(a.max())
        if hi - lo < _LUT_MAX_RANGE:
            idx = a.astype(np.int64) - lo
            present = np.bincount(idx.reshape(-1), minlength=hi - lo + 1) > 0
            values = (np.flatnonzero(present) + lo).tolist()
            mapped = self.map_values(values)
            lut = np.zeros(hi - lo + 1, dtype=np.int64)
            lut[present] = mapped
            return lut[idx], mapped
        uniq, inverse = np.unique(a, return_inverse=True)
        mapped = self.map_values([int(v) for v in uniq.tolist()])
        return np.asarray(mapped, dtype=np.int64)[inverse.reshape(a.shape)], mapped

    @staticmethod
    def output_dtype(in_dtype: np.dtype[Any], mapped: Sequence[int]) -> np.dtype[Any]:
        """The input dtype when every mapped value fits it (floats stay floats), else int64."""
        if np.issubdtype(in_dtype, np.floating):
            return in_dtype
        if in_dtype != np.bool_ and np.issubdtype(in_dtype, np.integer):
            info = np.iinfo(in_dtype)
            if not mapped or (info.min <= min(mapped) and max(mapped) <= info.max):
                return in_dtype
        return np.dtype(np.int64)


def parse_label_map_text(text: str | Sequence[str]) -> str | dict[int, int]:
    """Read a command-line label mapping: a preset name, ``"src:dst,..."``, a JSON object, or a JSON file path.

    Several words (``255:1 128:2``, as ``nargs="+"`` gives them) are joined into one table. The result is
    validated by building a :class:`LabelMap`, so a bad value fails while the arguments are parsed.

    Returns:
        The preset name or inline table text as given (stays JSON-ready for configs), or ``{int: int}`` from a
        JSON object or file.

    Raises:
        ValueError: unknown preset, malformed table, unreadable or invalid JSON file.

    Example:
        >>> parse_label_map_text("binary255"), parse_label_map_text(["255:1", "128:2"])
        ('binary255', '255:1,128:2')
        >>> parse_label_map_text('{"9": 1}')
        {9: 1}
    """
    value = (text if isinstance(text, str) else ",".join(str(t) for t in text)).strip()
    spec: str | dict[int, int]
    if value.lower().endswith(".json"):
        path = Path(value)
        if not path.is_file():
            raise ValueError(f"label mapping file {value!r} does not exist")
        try:
            obj = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"label mapping file {value!r} is not valid JSON ({err})") from err
        spec = _parse_table(obj)
    elif value.startswith("{"):
        spec = _parse_inline(value)
    else:
        spec = value
    LabelMap(spec)  # validates presets and tables now
    return spec


def label_map_arg(value: str) -> str | dict[int, int]:
    """``argparse`` type of ``--label-map`` in both console scripts (errors become one usage line)."""
    try:
        return parse_label_map_text(value)
    except (ValueError, TypeError) as err:
        raise argparse.ArgumentTypeError(f"--label-map: {err}") from err
