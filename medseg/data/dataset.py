"""Datasets with optional caching of the deterministic part of a transform pipeline.

``make_dataset(data, transform, cache=...)``:

* ``"none"``: ``monai.data.Dataset``; everything runs every epoch.
* ``"memory"``: ``monai.data.CacheDataset``; the transforms before the first random one run once, results stay in
  RAM (``cache_rate`` of the items).
* ``"persistent"``: ``monai.data.PersistentDataset``; the same prefix is computed once and stored in
  ``cache_dir``, reused by later runs and processes.

Settings that make the persistent cache actually hit (each is a way it silently misses or goes stale):

* ``cache_dir`` must be given; MONAI's ``PersistentDataset(cache_dir=None)`` caches nothing.
* The pipeline must put the deterministic work first: the medseg factories load, reorient, resample, window and
  resize before the first random transform. Anything that is not a MONAI ``Transform`` (a lambda) also ends the
  cached prefix.
* Entries are hashed from their content (paths and other values), plus the size and modification time of every
  file they name, so an edited image is recomputed instead of served stale.
* The pipeline is hashed too, from the class names *and settings* of the cached prefix
  (:func:`transform_fingerprint`). MONAI's ``json_hashing`` cannot serialise transform objects and falls back to
  class names only, so changing e.g. the CT window would have reused stale results; pickling them is not
  stable across processes either (reader objects, random states).
* Cached items are stored as plain tensors (``track_meta=False``) and read with ``weights_only=True``: a
  MetaTensor file needs ``weights_only=False`` in PyTorch >= 2.6, and with MONAI's defaults each load would fail,
  be treated as a corrupt file and recomputed: a cache that never hits. Metadata (affine, file name) is thus
  dropped for persistent caching; use it for training, not for inference that writes files back.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import json
import logging
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from monai.data.dataset import CacheDataset, Dataset, PersistentDataset
from monai.transforms.compose import Compose
from monai.transforms.traits import RandomizableTrait
from monai.transforms.transform import Transform
from monai.utils.type_conversion import convert_to_tensor

from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = ["CacheMode", "cached_prefix", "item_hash", "make_dataset", "transform_fingerprint"]

CacheMode = Literal["none", "memory", "persistent"]
_MAX_DEPTH = 6


def _flat(transforms: Sequence[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """Inline nested plain ``Compose`` objects, like ``Compose.flatten()`` without its reseeding.

    ``Compose.flatten()`` builds a new ``Compose``, whose constructor reseeds every transform it holds.
    """
    out: list[Callable[..., Any]] = []
    for t in transforms:
        out += _flat(t.transforms) if type(t) is Compose else [t]
    return out


def cached_prefix(transform: Callable[..., Any] | Sequence[Callable[..., Any]]) -> list[Callable[..., Any]]:
    """The transforms MONAI's caching datasets run once: those before the first random or non-MONAI one."""
    if isinstance(transform, Compose):
        items = list(transform.transforms)
    elif isinstance(transform, Sequence):
        items = list(transform)
    else:
        items = [transform]
    prefix: list[Callable[..., Any]] = []
    for t in _flat(items):
        if isinstance(t, RandomizableTrait) or not isinstance(t, Transform):
            break
        prefix.append(t)
    return prefix


def _describe(obj: Any, depth: int, path: set[int]) -> Any:
    """A JSON-able, process-independent description of ``obj``'s configuration."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, enum.Enum):
        return f"{type(obj).__name__}.{obj.name}"
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        arr = obj.detach().cpu().numpy() if isinstance(obj, torch.Tensor) else obj
        if arr.size <= 4096:
            return {"array": arr.tolist(), "dtype": str(arr.dtype)}
        digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        return {"array_sha256": digest, "shape": list(arr.shape), "dtype": str(arr.dtype)}
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, (np.dtype, torch.dtype)):
        return str(obj)
    if isinstance(obj, type) or inspect.isroutine(obj):
        return f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"
    if depth <= 0 or id(obj) in path:
        return type(obj).__qualname__
    path = path | {id(obj)}
    if isinstance(obj, Mapping):
        return {str(k): _describe(v, depth - 1, path) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_describe(v, depth - 1, path) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted(str(_describe(v, depth - 1, path)) for v in obj)
    cls = type(obj)
    module = cls.__module__ or ""
    if isinstance(obj, np.random.RandomState) or not module.startswith(("monai", "medseg")):
        return f"{module}.{cls.__qualname__}"
    fields = sorted((k, v) for k, v in vars(obj).items() if k != "R") if hasattr(obj, "__dict__") else []
    return {"__class__": f"{module}.{cls.__qualname__}", **{k: _describe(v, depth - 1, path) for k, v in fields}}


def transform_fingerprint(transforms: Callable[..., Any] | Sequence[Callable[..., Any]]) -> bytes:
    """SHA-256 of the classes and settings of ``transforms`` (usable as ``PersistentDataset(hash_transform=)``).

    Two pipelines built with the same factory arguments give the same fingerprint in any process; changing a
    setting of the cached prefix (window, spacing, size, label map) changes it.
    """
    items = list(transforms) if isinstance(transforms, Sequence) else [transforms]
    desc = [_describe(t, _MAX_DEPTH, set()) for t in items]
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode("utf-8")).hexdigest().encode()


def item_hash(item: Any, path_keys: Sequence[str] = ("image", "label")) -> bytes:
    """Hash of a data entry plus size and mtime of the files under ``path_keys`` (stale-cache guard)."""
    stamp: list[Any] = []
    if isinstance(item, Mapping):
        for key in path_keys:
            values = item.get(key)
            for p in [values] if isinstance(values, (str, os.PathLike)) else values or []:
                try:
                    st = os.stat(p)
                    stamp.append([str(p), st.st_size, st.st_mtime_ns])
                except (OSError, TypeError):
                    stamp.append([str(p), None, None])
        content = dict(sorted((str(k), v) for k, v in item.items()))
    else:
        content = item
    blob = pickle.dumps([content, stamp], protocol=4)
    return hashlib.sha256(blob).hexdigest().encode()


class _PlainPersistentDataset(PersistentDataset):
    """``PersistentDataset`` whose cache misses hand the random part the same plain tensors a cache hit does.

    Cached items are stored without metadata (``track_meta=False``); MONAI returns the freshly computed
    MetaTensors on a miss, so a cold and a warm run fed different types to the random transforms. Converting
    on a miss too makes the first epoch identical to the later ones and to a rerun on a warm cache.
    """

    def _pre_transform(self, item_transformed: Any) -> Any:
        out = super()._pre_transform(item_transformed)
        return convert_to_tensor(out, convert_numeric=False, track_meta=self.track_meta)


def make_dataset(
    data: Sequence[Any],
    transform: Callable[..., Any] | Sequence[Callable[..., Any]],
    cache: CacheMode = "none",
    cache_dir: PathLike | None = None,
    *,
    cache_rate: float = 1.0,
    num_workers: int | None = 0,
    progress: bool = False,
) -> Dataset:
    """A MONAI dataset over ``data`` with the requested caching (see the module docstring for the details).

    Args:
        data: entries, e.g. from :func:`medseg.data.load_datalist`.
        transform: the pipeline (a ``Compose`` from a ``medseg.transforms`` factory, or a list of transforms).
        cache: ``"none"``, ``"memory"`` (``CacheDataset``) or ``"persistent"`` (``PersistentDataset``).
        cache_dir: folder for ``"persistent"`` (created if needed; required there, ignored otherwise).
        cache_rate: fraction of items kept in memory for ``"memory"``.
        num_workers: threads filling the memory cache (``0``/``None``: in the calling thread).
        progress: show a progress bar while filling the memory cache.

    Returns:
        ``monai.data.Dataset``, ``CacheDataset`` or ``PersistentDataset``.

    Raises:
        ValueError: unknown ``cache``, ``cache="persistent"`` without ``cache_dir``, a bad ``cache_rate``, or
            ``data`` that is not a list of entries.
    """
    if isinstance(data, (str, bytes, Mapping)) or not isinstance(data, Sequence):
        raise ValueError(
            f"data must be a list of entries (e.g. load_datalist(path, 'training')), got {type(data).__name__}"
        )
    pipeline = transform if isinstance(transform, Compose) else Compose(transform)
    if cache == "none":
        return Dataset(data=data, transform=pipeline)
    if cache == "memory":
        if not 0.0 <= float(cache_rate) <= 1.0:
            raise ValueError(f"cache_rate must be in [0, 1], got {cache_rate!r}")
        return CacheDataset(
            data=data,
            transform=pipeline,
            cache_rate=float(cache_rate),
            num_workers=num_workers if num_workers else 0,
            progress=progress,
        )
    if cache == "persistent":
        if cache_dir is None:
            raise ValueError(
                "cache='persistent' needs cache_dir (a folder for the cached tensors); MONAI would otherwise "
                "silently cache nothing. Pass cache_dir=... or use cache='memory'"
            )
        folder = Path(cache_dir).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        prefix = cached_prefix(pipeline)
        if not prefix:
            logger.warning(
                "persistent cache in %s: the pipeline starts with a random transform, so nothing is cached", folder
            )
        dataset = _PlainPersistentDataset(
            data=data,
            transform=pipeline,
            cache_dir=folder,
            hash_func=item_hash,
            hash_transform=None,  # MONAI's set_transform_hash flattens (reseeds) the pipeline: hash it here
            track_meta=False,
            weights_only=True,
        )
        dataset.transform_hash = transform_fingerprint(prefix).decode("ascii")
        return dataset
    raise ValueError(f"cache must be 'none', 'memory' or 'persistent', got {cache!r}")
