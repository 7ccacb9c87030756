"""Checks run before the first iteration so a misconfigured bundle fails with a useful message at once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["preflight"]

logger = logging.getLogger(__name__)


def _first_conv_in_channels(network: torch.nn.Module) -> int | None:
    explicit = getattr(network, "in_channels", None)
    if isinstance(explicit, int):
        return explicit
    for module in network.modules():
        if isinstance(module, torch.nn.modules.conv._ConvNd):
            return int(module.in_channels)
    return None


def preflight(
    dataset: Sequence[Any],
    network: torch.nn.Module,
    num_classes: int,
    *,
    image_key: str = "image",
    label_key: str = "label",
    name: str = "training",
) -> bool:
    """Load the first item of ``dataset`` and check it against ``network`` and ``num_classes``.

    Returns:
        ``True`` (so a bundle can list it in ``initialize``).

    Raises:
        ValueError: empty dataset, channel count not matching the network's input, or label values outside
            ``[0, num_classes)``; each message says what to change.
    """
    if len(dataset) == 0:
        raise ValueError(f"the {name} dataset is empty: check dataset_dir and the datalist's {name!r} list")
    item = dataset[0]
    if isinstance(item, list):  # random crops with num_samples > 1 give a list of dicts
        item = item[0]
    image, label = item[image_key], item.get(label_key)
    expected = _first_conv_in_channels(network)
    if expected is not None and int(image.shape[0]) != expected:
        raise ValueError(
            f"{name} images have {int(image.shape[0])} channel(s) (shape {tuple(image.shape)}) but the network "
            f"expects in_channels={expected}: set the network's in_channels or fix the image loading"
        )
    if label is not None:
        hi, lo = float(torch.as_tensor(label).max()), float(torch.as_tensor(label).min())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} labels hold values in [{lo:g}, {hi:g}] but num_classes={num_classes}: set num_classes "
                "or the label mapping (label_map) so labels lie in 0..num_classes-1"
            )
    logger.info("preflight ok: %d %s items, image shape %s", len(dataset), name, tuple(image.shape))
    return True
