"""Private helpers shared by the Compose factories (argument checks, key splitting, common blocks)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
from monai.transforms.compose import Compose
from monai.transforms.croppad.dictionary import ResizeWithPadOrCropd
from monai.transforms.spatial.dictionary import Resized
from monai.transforms.transform import Randomizable
from monai.transforms.utility.dictionary import CastToTyped, EnsureTyped

from medseg.transforms.labels import LabelMapSpec, MapLabels, MapLabelsd
from medseg.transforms.readers import LoadMedicalImaged

ResizeMode = Literal["resize", "pad_crop", "none"]


def split_keys(keys: Sequence[str] | str, factory: str) -> tuple[str, list[str]]:
    """``keys[0]`` is the image, the rest are label maps (nearest-neighbour, integer)."""
    key_list = [keys] if isinstance(keys, str) else list(keys)
    if not key_list or not all(isinstance(k, str) and k for k in key_list):
        raise ValueError(
            f"{factory}: keys must be a non-empty list of strings, image first then labels, e.g. "
            f"['image', 'label']; got {keys!r}"
        )
    if len(set(key_list)) != len(key_list):
        raise ValueError(f"{factory}: keys {key_list} contain duplicates")
    return key_list[0], key_list[1:]


def check_size(name: str, value: Any, ndim: int, factory: str, *, allow_none: bool = False) -> list[int] | None:
    """Validate a spatial size given as one int or ``ndim`` positive ints."""
    if value is None:
        if allow_none:
            return None
        raise ValueError(f"{factory}: {name} is required (a list of {ndim} positive ints)")
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * ndim
    try:
        sizes = [int(v) for v in value]
        ok = len(sizes) == ndim and all(s > 0 and float(s) == float(v) for s, v in zip(sizes, value, strict=True))
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{factory}: {name} must be {ndim} positive integers (e.g. {[128] * ndim}), got {value!r}")
    return sizes


def check_prob(name: str, value: Any, factory: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{factory}: {name} must be a probability in [0, 1], got {value!r}")
    return float(value)


def check_nonneg(name: str, value: Any, factory: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(float(value)) or value < 0:
        raise ValueError(f"{factory}: {name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_axes(name: str, axes: Any, ndim: int, factory: str) -> list[int]:
    try:
        out = [int(a) for a in ([axes] if isinstance(axes, int) else axes)]
    except (TypeError, ValueError):
        out = [-1]
    if any(a < 0 or a >= ndim for a in out):
        raise ValueError(f"{factory}: {name} must be spatial axes in 0..{ndim - 1}, got {axes!r}")
    return out


def check_dtype(name: str, value: str | None, factory: str) -> str | None:
    if value is None:
        return None
    try:
        return np.dtype(value).name
    except TypeError as err:
        raise ValueError(f"{factory}: {name}={value!r} is not a dtype name; use e.g. 'int64' or 'float32'") from err


def load_block(
    image_key: str, label_keys: list[str], *, series_uid: str | None = None, check_spacing: bool = True
) -> list[Callable[..., Any]]:
    """Load image and labels channel-first as float32 MetaTensors."""
    return [
        LoadMedicalImaged(
            [image_key, *label_keys],
            dtype="float32",
            ensure_channel_first=True,
            series_uid=series_uid,
            check_spacing=check_spacing,
        )
    ]


def label_map_block(
    label_keys: list[str], label_map: LabelMapSpec, ignore_index: int | None
) -> list[Callable[..., Any]]:
    """Map label values (validated now, at construction); nothing for the identity or without labels."""
    mapper = MapLabels(label_map, ignore_index=ignore_index)
    if not label_keys or mapper.rule == "identity":
        return []
    return [MapLabelsd(label_keys, label_map, ignore_index=ignore_index)]


def resize_block(
    image_key: str, label_keys: list[str], mode: ResizeMode, spatial_size: list[int] | None, factory: str
) -> list[Callable[..., Any]]:
    """Bring 2D samples to ``spatial_size``: interpolate (labels nearest) or pad/crop around the centre."""
    keys = [image_key, *label_keys]
    if mode == "none":
        return []
    if spatial_size is None:
        raise ValueError(f"{factory}: resize_mode={mode!r} needs spatial_size")
    if mode == "resize":
        return [
            Resized(
                keys,
                spatial_size=spatial_size,
                mode=["bilinear"] + ["nearest"] * len(label_keys),
                align_corners=[False] + [None] * len(label_keys),
                anti_aliasing=[True] + [False] * len(label_keys),
            )
        ]
    if mode == "pad_crop":
        return [ResizeWithPadOrCropd(keys, spatial_size=spatial_size)]
    raise ValueError(f"{factory}: resize_mode must be 'resize', 'pad_crop' or 'none', got {mode!r}")


def final_block(image_key: str, label_keys: list[str], label_dtype: str | None) -> list[Callable[..., Any]]:
    """Images float32, labels ``label_dtype`` (metadata kept: MetaTensors)."""
    out: list[Callable[..., Any]] = [EnsureTyped(image_key, dtype=np.float32, track_meta=True)]
    if label_keys and label_dtype is not None:
        out.append(CastToTyped(label_keys, dtype=np.dtype(label_dtype).type))
    return out


def _randomizables(obj: Any, depth: int, seen: set[int], out: list[Any]) -> None:
    """Collect ``obj`` and the MONAI/medseg objects it holds (transforms inside transforms) that have an RNG."""
    if depth < 0 or id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Randomizable):
        out.append(obj)
    children = obj if isinstance(obj, (list, tuple)) else list(getattr(obj, "__dict__", {}).values())
    for child in children:
        if isinstance(child, (list, tuple)) or type(child).__module__.startswith(("monai", "medseg")):
            _randomizables(child, depth - 1, seen, out)


class SeededCompose(Compose):
    """A MONAI ``Compose`` whose ``flatten()`` (and ``len()``) keep the random state of its transforms.

    MONAI's ``Compose.__init__`` reseeds every transform it receives (``set_random_state(get_seed())``), and
    ``flatten()`` builds a new ``Compose`` around the *same* transform objects, so merely calling
    ``len(pipeline)`` or building a ``PersistentDataset`` (whose ``set_transform_hash`` flattens) replaced the
    seeded generators with randomly seeded ones: a pipeline built with ``seed=0`` stopped being reproducible.
    Here the generators in place before the call are put back afterwards.
    """

    def flatten(self) -> Compose:
        found: list[Any] = []
        _randomizables(self.transforms, 4, set(), found)
        saved = [(t, t.__dict__.get("R")) for t in found]
        try:
            return super().flatten()
        finally:
            for t, generator in saved:
                if generator is None:
                    t.__dict__.pop("R", None)
                else:
                    t.R = generator


def compose(transforms: list[Callable[..., Any]], seed: int | None) -> Compose:
    """A :class:`SeededCompose`; with ``seed`` its random transforms are seeded (reproducible samples)."""
    pipeline = SeededCompose(transforms)
    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ValueError(f"seed must be a non-negative int or None, got {seed!r}")
        pipeline.set_random_state(seed=seed)
    return pipeline
