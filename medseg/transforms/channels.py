"""Channel and dimensionality adapters for images as they come off disk.

Real data is untidy: CT slices saved as RGB JPEGs with three equal channels, frames with an alpha channel,
"binary" masks saved as RGB, 2D slices stored as ``(H, W, 1)`` NIfTI volumes. These transforms bring them to
what a network expects, and refuse what cannot be fixed without guessing (a colour label map).

Example:
    >>> import numpy as np
    >>> AdaptChannels(1)(np.stack([np.eye(2)] * 3)).shape
    (1, 2, 2)
    >>> AdaptChannels(3)(np.zeros((1, 2, 2))).shape
    (3, 2, 2)
    >>> EnsureSpatialDims(2)(np.zeros((1, 4, 5, 1))).shape
    (1, 4, 5)
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping
from typing import Literal

import numpy as np
import torch
from monai.config.type_definitions import KeysCollection, NdarrayOrTensor
from monai.transforms.transform import MapTransform, Transform
from monai.utils.enums import TransformBackends

logger = logging.getLogger(__name__)

__all__ = ["LUMA_WEIGHTS", "AdaptChannels", "AdaptChannelsd", "EnsureSpatialDims", "EnsureSpatialDimsd"]

#: ITU-R BT.601 luma weights (the ones Pillow's ``convert("L")`` uses).
LUMA_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)

ChannelMode = Literal["luma", "first", "strict"]


def _channels_equal(img: NdarrayOrTensor) -> bool:
    if isinstance(img, torch.Tensor):
        return bool((img == img[:1]).all())
    return bool(np.all(img == img[:1]))


class AdaptChannels(Transform):
    """Bring a channel-first image to ``num_channels`` channels (1 or 3).

    Rules, in order: an alpha channel (2 -> 1 or 4 -> 3 channels) is dropped; 1 -> 3 repeats the gray channel;
    3 -> 1 keeps one channel when all three are equal, otherwise follows ``mode``.

    Args:
        num_channels: channels wanted, 1 or 3.
        mode: what 3 -> 1 does with unequal channels: ``"luma"`` (ITU-R BT.601 weighted sum, for images),
            ``"first"`` (take channel 0), ``"strict"`` (raise; for label maps, where a colour mask cannot be
            turned into class indices by a formula).

    Shape:
        ``(C, *spatial)`` -> ``(num_channels, *spatial)``.

    Raises:
        ValueError: unsupported ``num_channels``/``mode``, an input channel count that cannot be adapted, or
            unequal channels with ``mode="strict"``.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]  # noqa: RUF012 (MONAI declares it so)

    def __init__(self, num_channels: int = 1, mode: ChannelMode = "luma") -> None:
        if num_channels not in (1, 3):
            raise ValueError(f"num_channels must be 1 or 3, got {num_channels!r}")
        if mode not in ("luma", "first", "strict"):
            raise ValueError(f"mode must be 'luma', 'first' or 'strict', got {mode!r}")
        self.num_channels = num_channels
        self.mode = mode

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        c = int(img.shape[0])
        if c == self.num_channels:
            return img
        if c in (2, 4):  # gray+alpha, RGBA: drop alpha
            img, c = img[: c - 1], c - 1
            if c == self.num_channels:
                return img
        if c == 1 and self.num_channels == 3:
            return img.repeat(3, *([1] * (img.ndim - 1))) if isinstance(img, torch.Tensor) else np.repeat(img, 3, 0)
        if c == 3 and self.num_channels == 1:
            if _channels_equal(img) or self.mode == "first":
                return img[:1]
            if self.mode == "strict":
                source = getattr(img, "meta", {}).get("filename_or_obj", "the input")
                raise ValueError(
                    f"{source}: a colour (RGB) label map with unequal channels cannot be read as class "
                    "indices; save masks as grayscale or palette PNGs with integer labels"
                )
            w = LUMA_WEIGHTS
            return img[0:1] * w[0] + img[1:2] * w[1] + img[2:3] * w[2]
        raise ValueError(
            f"cannot adapt an image with {c} channels (shape {tuple(img.shape)}) to {self.num_channels}; "
            "expected 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) channels first"
        )


class AdaptChannelsd(MapTransform):
    """Dictionary wrapper of :class:`AdaptChannels`."""

    backend = AdaptChannels.backend

    def __init__(
        self,
        keys: KeysCollection,
        num_channels: int = 1,
        mode: ChannelMode = "luma",
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.adapter = AdaptChannels(num_channels, mode)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.adapter(d[key])
        return d


class EnsureSpatialDims(Transform):
    """Drop trailing singleton spatial axes until ``spatial_dims`` remain: ``(C, H, W, 1)`` -> ``(C, H, W)``.

    A 2D slice saved as a one-slice NIfTI volume loads as ``(C, H, W, 1)``; 2D pipelines need ``(C, H, W)``.

    Args:
        spatial_dims: number of spatial axes wanted (2 or 3).

    Raises:
        ValueError: when the extra axes are not singletons (a real volume given to a 2D pipeline) or there
            are too few axes.
    """

    backend = [TransformBackends.TORCH, TransformBackends.NUMPY]  # noqa: RUF012 (MONAI declares it so)

    def __init__(self, spatial_dims: int = 2) -> None:
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims!r}")
        self.spatial_dims = spatial_dims

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        shape = tuple(img.shape)
        if len(shape) - 1 < self.spatial_dims:
            raise ValueError(f"expected a channel-first image with {self.spatial_dims} spatial dims, got shape {shape}")
        while img.ndim - 1 > self.spatial_dims:
            if img.shape[-1] != 1:
                source = getattr(img, "meta", {}).get("filename_or_obj", "the input")
                raise ValueError(
                    f"{source}: shape {shape} has more than {self.spatial_dims} spatial dims and the extra "
                    "ones are not singletons; a 3D volume cannot go through a 2D pipeline (extract slices first)"
                )
            img = img[..., 0]
        return img


class EnsureSpatialDimsd(MapTransform):
    """Dictionary wrapper of :class:`EnsureSpatialDims`."""

    backend = EnsureSpatialDims.backend

    def __init__(self, keys: KeysCollection, spatial_dims: int = 2, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.squeezer = EnsureSpatialDims(spatial_dims)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.squeezer(d[key])
        return d
