"""Datalists, datasets with caching, label statistics, and the embedded synthetic sample data.

Names are imported lazily (PEP 562), so ``import medseg.data.statistics`` from a command line stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medseg.data.datalist import PATH_KEYS, SPLITS, load_datalist
    from medseg.data.dataset import CacheMode, cached_prefix, make_dataset, transform_fingerprint
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
    "PATH_KEYS",
    "SPLITS",
    "CacheMode",
    "SyntheticVolume",
    "cached_prefix",
    "load_datalist",
    "make_ct_slices",
    "make_ct_volume",
    "make_ct_volumes",
    "make_dataset",
    "make_instrument_frames",
    "transform_fingerprint",
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
