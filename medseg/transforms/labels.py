"""MONAI transforms of the label-value mapping: raw annotation codes -> training class indices.

The mapping itself (presets, parsing, the NumPy look-up) is :class:`medseg.data.label_map.LabelMap`, shared with
``medseg-data stats``/``check`` and ``medseg evaluate`` so that a specification means the same everywhere.
:class:`MapLabels` applies it to tensors too (on their device) and :class:`MapLabelsd` inside the Compose
factories, so class statistics are counted on exactly the labels the loss sees.

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

import logging
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config.type_definitions import KeysCollection, NdarrayOrTensor
from monai.transforms.transform import MapTransform, Transform
from monai.utils.enums import TransformBackends
from monai.utils.type_conversion import convert_to_dst_type

from medseg.data.label_map import _LUT_MAX_RANGE, _MAX_LISTED, LABEL_MAP_PRESETS, LabelMap, LabelMapSpec

logger = logging.getLogger(__name__)

__all__ = ["LABEL_MAP_PRESETS", "LabelMapSpec", "MapLabels", "MapLabelsd", "resolve_label_map"]


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
        self.map = LabelMap(mapping, default=default, ignore_index=ignore_index, dtype=dtype)
        self.name, self.table, self.rule = self.map.name, self.map.table, self.map.rule
        self.default, self.ignore_index, self.dtype = self.map.default, self.map.ignore_index, self.map.dtype

    # ----------------------------------------------------------------------------------------------- info
    @property
    def source_values(self) -> tuple[int, ...] | None:
        """Source values the table knows (``None`` for rule presets such as ``binary``)."""
        return self.map.source_values

    @property
    def class_values(self) -> tuple[int, ...] | None:
        """Class indices the mapping can produce, excluding ``ignore_index`` (``None`` for ``identity``)."""
        return self.map.class_values

    def __repr__(self) -> str:
        return (
            f"MapLabels(mapping={self.name if self.name != 'custom' else self.table!r}, "
            f"default={self.default}, ignore_index={self.ignore_index}, dtype={self.dtype})"
        )

    # ----------------------------------------------------------------------------------------------- maths
    def map_values(self, values: Sequence[int]) -> list[int]:
        """Map a list of distinct integer source values; raises for unknown ones when ``default`` is None."""
        return self.map.map_values(values)

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        """Return ``img`` with every value replaced by its class index."""
        if not isinstance(img, torch.Tensor):
            return self.map(img)
        if self.rule == "identity" and self.dtype is None:
            return img
        arr = img.as_tensor() if hasattr(img, "as_tensor") else img
        if arr.is_floating_point():
            bad = ~torch.isfinite(arr) | (arr != torch.round(arr))
            if bool(bad.any()):
                raise self.map.non_integer_error(arr[bad][:_MAX_LISTED].tolist(), int(bad.sum()))
        if self.rule == "identity" or arr.numel() == 0:
            out_t = arr
        else:
            out_t, mapped = self._lookup_torch(arr)
            out_t = out_t.to(self._out_torch_dtype(arr.dtype, mapped))
        if self.dtype is not None:
            out_t = out_t.to(getattr(torch, np.dtype(self.dtype).name))
        return convert_to_dst_type(out_t, img, dtype=out_t.dtype)[0]

    # The same dense look-up table as :class:`medseg.data.label_map.LabelMap`, on the tensor's device.
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
