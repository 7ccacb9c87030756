"""Label-value mapping: raw annotation codes -> training class indices.

Clinical label files rarely store class indices directly: binary masks are saved as 0/255, EndoVis
2017 part masks use 10/20/30/40, palette PNGs store indices 0/1/2. :class:`MapLabels` turns such codes
into ``0..K-1`` (plus an optional ignore index), refusing values it was not told about so that a wrong
preset fails loudly instead of silently training on garbage.

The same mapping object is used by the training pipelines (:class:`MapLabelsd` inside the Compose
factories) and by ``medseg-data stats`` (through :func:`resolve_label_map`), so class statistics are
counted on exactly the labels the loss sees.

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
    >>> import numpy as np
    >>> MapLabels("endovis_parts")(np.array([[0, 10], [20, 30]], dtype=np.uint8)).tolist()
    [[0, 1], [2, 3]]
    >>> MapLabels({"0": 0, "255": 1})(np.array([0, 255, 255])).tolist()
    [0, 1, 1]
    >>> resolve_label_map("0:0,255:1").source_values
    (0, 255)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from monai.config.type_definitions import KeysCollection, NdarrayOrTensor
from monai.transforms.transform import MapTransform, Transform
from monai.utils.enums import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type

logger = logging.getLogger(__name__)

__all__ = ["LABEL_MAP_PRESETS", "LabelMapSpec", "MapLabels", "MapLabelsd", "resolve_label_map"]

#: What a label mapping can be given as: a preset name, an inline ``"src:dst,src:dst"`` / JSON string,
#: a mapping (JSON object keys may be strings of integers), or ``None`` (identity).
LabelMapSpec = str | Mapping[Any, int] | None

_Rule = Literal["identity", "positive"]

#: Named presets: a source -> target table or a rule ("identity"; "positive": x > 0 -> 1).
LABEL_MAP_PRESETS: dict[str, dict[int, int] | _Rule] = {
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
    if isinstance(value, (int, np.integer)):
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
    """Parse ``"0:0,255:1"`` (CLI-friendly) or a JSON object string."""
    text = spec.strip()
    if text.startswith("{"):
        try:
            return _parse_table(json.loads(text))
        except json.JSONDecodeError as err:
            raise ValueError(f"label mapping {spec!r} looks like JSON but does not parse: {err}") from err
    pairs: dict[str, str] = {}
    for part in text.split(","):
        if part.count(":") != 1:
            raise ValueError(
                f"label mapping {spec!r}: cannot read {part!r}; write 'src:dst' pairs separated by commas "
                f"(e.g. '0:0,255:1') or use a preset: {sorted(LABEL_MAP_PRESETS)}"
            )
        src, dst = part.split(":")
        pairs[src] = dst
    return _parse_table(pairs)


class MapLabels(Transform):
    """Map raw label values to class indices with a table or a named preset.

    Args:
        mapping: a preset name (see the module docstring), an inline ``"src:dst,..."`` or JSON string, or a
            mapping ``{source_value: class_index}`` (string keys from JSON are accepted).
        default: class index for source values absent from the table. ``None`` (default) makes such values an
            error that names them, which catches a wrong preset early.
        ignore_index: a label value that is passed through unchanged (never mapped, never an error),
            e.g. 255 for "unlabelled" pixels. It must not also be a key of the table.
        dtype: output dtype name (``"int64"``, ``"uint8"``, ``"float32"``, ...). ``None`` keeps the input
            dtype, promoting integer inputs to int64 only when a mapped value would not fit.

    Shape:
        Any shape; the output has the input's shape and type (numpy array, tensor, or MetaTensor with
        its meta).

    Raises:
        ValueError: unknown preset, malformed mapping, ``ignore_index`` that collides with the table, or
            at call time non-integer values (an interpolated label) or values missing from the table
            when ``default`` is ``None``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]  # noqa: RUF012 (MONAI declares it so)

    def __init__(
        self,
        mapping: LabelMapSpec = "identity",
        default: int | None = None,
        ignore_index: int | None = None,
        dtype: str | None = None,
    ) -> None:
        self.name = mapping if isinstance(mapping, str) else "custom"
        self.table: dict[int, int] | None
        self.rule: _Rule | None
        if mapping is None:
            mapping = "identity"
            self.name = "identity"
        if isinstance(mapping, str) and mapping in LABEL_MAP_PRESETS:
            preset = LABEL_MAP_PRESETS[mapping]
            self.table, self.rule = (None, preset) if isinstance(preset, str) else (dict(preset), None)
        elif isinstance(mapping, str):
            if ":" not in mapping and not mapping.strip().startswith("{"):
                import difflib

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
    def source_values(self) -> tuple[int, ...] | None:
        """Source values the table knows (``None`` for rule presets such as ``binary``)."""
        return None if self.table is None else tuple(sorted(self.table))

    @property
    def class_values(self) -> tuple[int, ...] | None:
        """Class indices the mapping can produce, excluding ``ignore_index`` (``None`` for ``identity``)."""
        if self.rule == "identity":
            return None
        values = {0, 1} if self.rule == "positive" else set((self.table or {}).values())
        if self.default is not None:
            values.add(self.default)
        return tuple(sorted(values))

    def __repr__(self) -> str:
        return (
            f"MapLabels(mapping={self.name if self.name != 'custom' else self.table!r}, "
            f"default={self.default}, ignore_index={self.ignore_index}, dtype={self.dtype})"
        )

    # ----------------------------------------------------------------------------------------------- maths
    def map_values(self, values: Sequence[int]) -> list[int]:
        """Map a list of distinct integer source values; raises for unknown ones when ``default`` is None."""
        out: list[int] = []
        unknown: list[int] = []
        for v in values:
            if (self.ignore_index is not None and v == self.ignore_index) or self.rule == "identity":
                out.append(v)
            elif self.rule == "positive":
                if v >= 0:
                    out.append(int(v > 0))
                elif self.default is not None:
                    out.append(self.default)
                else:
                    unknown.append(v)
            elif self.table is not None and v in self.table:
                out.append(self.table[v])
            elif self.default is not None:
                out.append(self.default)
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

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return ``img`` with every value replaced by its class index."""
        if self.rule == "identity" and self.dtype is None:
            return img
        if isinstance(img, torch.Tensor):
            arr = img.as_tensor() if hasattr(img, "as_tensor") else img
            floating = arr.is_floating_point()
            if floating:
                bad = ~torch.isfinite(arr) | (arr != torch.round(arr))
                if bool(bad.any()):
                    raise self._non_integer_error(arr[bad][:_MAX_LISTED].tolist(), int(bad.sum()))
            if self.rule == "identity" or arr.numel() == 0:
                out_t = arr
            else:
                out_t, mapped = self._lookup_torch(arr)
                out_t = out_t.to(self._out_torch_dtype(arr.dtype, mapped))
            if self.dtype is not None:
                out_t = out_t.to(getattr(torch, np.dtype(self.dtype).name))
            return convert_to_dst_type(out_t, img, dtype=out_t.dtype)[0]
        a = np.asarray(img)
        if np.issubdtype(a.dtype, np.floating):
            bad_np = ~np.isfinite(a) | (a != np.round(a))
            if bad_np.any():
                raise self._non_integer_error(a[bad_np][:_MAX_LISTED].tolist(), int(bad_np.sum()))
        elif not np.issubdtype(a.dtype, np.integer) and a.dtype != np.bool_:
            raise TypeError(f"MapLabels expects a numeric label array, got dtype {a.dtype}")
        if self.rule == "identity" or a.size == 0:
            out_np = a
        else:
            out_np, mapped = self._lookup_numpy(a)
            out_np = out_np.astype(self._out_numpy_dtype(a.dtype, mapped), copy=False)
        if self.dtype is not None:
            out_np = out_np.astype(self.dtype, copy=False)
        return out_np

    # A dense look-up table over [min, max] maps in O(n); np/torch.unique sort (O(n log n), ~10x slower on
    # CT-sized volumes) and are kept for labels whose value range is too wide for a table.
    def _lookup_torch(self, arr: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        lo, hi = int(arr.min()), int(arr.max())
        if hi - lo < _LUT_MAX_RANGE:
            idx = arr.to(torch.int64) - lo
            present = torch.bincount(idx.reshape(-1), minlength=hi - lo + 1) > 0
            values = (torch.nonzero(present).reshape(-1) + lo).tolist()
            mapped = self.map_values(values)
            lut = torch.zeros(hi - lo + 1, dtype=torch.int64, device=arr.device)
            lut[present] = torch.as_tensor(mapped, dtype=torch.int64, device=arr.device)
            return lut[idx], mapped
        uniq, inverse = torch.unique(arr, return_inverse=True)
        mapped = self.map_values([int(v) for v in uniq.tolist()])
        return torch.as_tensor(mapped, dtype=torch.int64, device=arr.device)[inverse], mapped

    def _lookup_numpy(self, a: np.ndarray) -> tuple[np.ndarray, list[int]]:
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

    def _non_integer_error(self, examples: list[float], count: int) -> ValueError:
        shown = ", ".join(f"{v:g}" for v in examples)
        return ValueError(
            f"label mapping {self.name!r}: the label has {count} non-integer or non-finite values "
            f"(e.g. {shown}); labels must be resampled with nearest-neighbour interpolation and saved "
            "losslessly (PNG, not JPEG)"
        )

    @staticmethod
    def _out_numpy_dtype(in_dtype: np.dtype[Any], mapped: list[int]) -> np.dtype[Any]:
        if np.issubdtype(in_dtype, np.floating):
            return in_dtype
        if in_dtype != np.bool_ and np.issubdtype(in_dtype, np.integer):
            info = np.iinfo(in_dtype)
            if not mapped or (info.min <= min(mapped) and max(mapped) <= info.max):
                return in_dtype
        return np.dtype(np.int64)

    @staticmethod
    def _out_torch_dtype(in_dtype: torch.dtype, mapped: list[int]) -> torch.dtype:
        if in_dtype.is_floating_point:
            return in_dtype
        if in_dtype != torch.bool:
            info = torch.iinfo(in_dtype)
            if not mapped or (info.min <= min(mapped) and max(mapped) <= info.max):
                return in_dtype
        return torch.int64


class MapLabelsd(MapTransform):
    """Dictionary wrapper of :class:`MapLabels`: maps the label values under ``keys``.

    Args:
        keys: keys of the label maps to transform.
        mapping: see :class:`MapLabels`.
        default: see :class:`MapLabels`.
        ignore_index: see :class:`MapLabels`.
        dtype: see :class:`MapLabels`.
        allow_missing_keys: do not raise when a key is absent (e.g. no label at inference).
    """

    backend = MapLabels.backend

    def __init__(
        self,
        keys: KeysCollection,
        mapping: LabelMapSpec = "identity",
        default: int | None = None,
        ignore_index: int | None = None,
        dtype: str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mapper = MapLabels(mapping, default=default, ignore_index=ignore_index, dtype=dtype)

    def __repr__(self) -> str:
        return f"MapLabelsd(keys={list(self.keys)}, {self.mapper!r})"

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.mapper(d[key])
            except ValueError as err:
                source = getattr(d[key], "meta", {}).get("filename_or_obj", None)
                if source:
                    raise ValueError(f"{key!r} ({source}): {err}") from err
                raise
        return d


def resolve_label_map(
    spec: LabelMapSpec | MapLabels, *, default: int | None = None, ignore_index: int | None = None
) -> MapLabels:
    """Build the :class:`MapLabels` that a preset name, table, inline string or ``None`` describes.

    ``medseg-data stats`` calls this with the same specification the training config passes to the transform
    factories, so counted classes match trained classes. A :class:`MapLabels` instance is returned unchanged.

    Args:
        spec: preset name, ``"src:dst,..."`` / JSON string, mapping, ``None`` (identity) or a ``MapLabels``.
        default: see :class:`MapLabels`.
        ignore_index: see :class:`MapLabels`.

    Returns:
        A callable ``MapLabels`` that works on numpy arrays and tensors.
    """
    if isinstance(spec, MapLabels):
        return spec
    return MapLabels(spec, default=default, ignore_index=ignore_index)
