"""Datalists, label maps, splits, checks, label statistics, datasets with caching, and synthetic sample data.

- :mod:`~medseg.data.datalist`: read/write decathlon-style datalists (``read_datalist``, ``write_datalist``,
  ``load_datalist`` for bundles);
- :mod:`~medseg.data.label_map`: ``LabelMap``, the one parser of ``--label-map`` presets and tables;
- :mod:`~medseg.data.split`, :mod:`~medseg.data.check`, :mod:`~medseg.data.statistics`,
  :mod:`~medseg.data.slices2d`: what ``medseg-data split/check/stats/slices2d`` run;
- :mod:`~medseg.data.dataset`, :mod:`~medseg.data.synthetic`: MONAI datasets with caching, generated data.

Images and labels are read and written through :mod:`medseg.imageio`. Names are imported lazily (PEP 562), so the
light commands import neither torch nor MONAI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.data.datalist import PATH_KEYS, SPLITS, Datalist, load_datalist, read_datalist, write_datalist
    from medseg.data.dataset import CacheMode, cached_prefix, make_dataset, transform_fingerprint
    from medseg.data.label_map import LABEL_MAP_PRESETS, LabelMap
    from medseg.data.synthetic import (
        SyntheticVolume,
        make_ct_slices,
        make_ct_volume,
        make_ct_volumes,
        make_instrument_frames,
        write_dicom_series,
    )

_EXPORTS = {
    "PATH_KEYS": "datalist",
    "SPLITS": "datalist",
    "load_datalist": "datalist",
    "read_datalist": "datalist",
    "write_datalist": "datalist",
    "Datalist": "datalist",
    "LABEL_MAP_PRESETS": "label_map",
    "LabelMap": "label_map",
    "CacheMode": "dataset",
    "cached_prefix": "dataset",
    "make_dataset": "dataset",
    "transform_fingerprint": "dataset",
    "SyntheticVolume": "synthetic",
    "make_ct_slices": "synthetic",
    "make_ct_volume": "synthetic",
    "make_ct_volumes": "synthetic",
    "make_instrument_frames": "synthetic",
    "write_dicom_series": "synthetic",
}

__all__ = [
    "LABEL_MAP_PRESETS",
    "PATH_KEYS",
    "SPLITS",
    "CacheMode",
    "Datalist",
    "LabelMap",
    "SyntheticVolume",
    "cached_prefix",
    "load_datalist",
    "make_ct_slices",
    "make_ct_volume",
    "make_ct_volumes",
    "make_dataset",
    "make_instrument_frames",
    "read_datalist",
    "transform_fingerprint",
    "write_datalist",
    "write_dicom_series",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medseg.data' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"medseg.data.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
