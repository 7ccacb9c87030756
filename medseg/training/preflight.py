"""Checks run before the first iteration so a misconfigured bundle fails with a useful message at once."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch

__all__ = ["preflight", "preflight_loss"]

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


def preflight_loss(loss: Any, num_classes: int, *, name: str = "loss", spatial_size: Sequence[int] = (16, 16)) -> bool:
    """Build-time check of the training loss: call it once on a small synthetic batch.

    Run from a bundle's ``initialize`` before any data is loaded, so that a loss that cannot be built (for
    example a margin-calibration overlay without its ``stats.json``) or that does not fit ``num_classes`` fails
    at once with its own message instead of after the data is cached.

    Args:
        loss: the instantiated loss, called as ``loss(logits, target)``.
        num_classes: classes the network predicts (the logits' channel count).
        name: the loss's name for messages (a bundle passes ``@loss_name``).
        spatial_size: size of the synthetic batch; every class occupies some pixels of it.

    Returns:
        ``True`` (so a bundle can list it in ``initialize``).

    Raises:
        TypeError: when ``loss`` is not callable.
        ValueError: when the loss raises on logits with ``num_classes`` channels, or returns a non-finite or
            non-scalar value; the message names the loss and the original error.
    """
    if not callable(loss):
        raise TypeError(f"the {name!r} loss must be callable as loss(logits, target), got {type(loss).__name__}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
    size = tuple(int(s) for s in spatial_size)
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn((1, num_classes, *size), generator=generator)
    # stripes cover every class, so class-wise losses see each label at least once
    target = (torch.arange(size[-1]) * num_classes // size[-1]).expand(1, 1, *size).clone()
    try:
        with torch.no_grad():
            value = loss(logits, target)
    except Exception as err:
        raise ValueError(
            f"the {name!r} loss ({type(loss).__name__}) fails on logits with num_classes={num_classes} channels: "
            f"{err}; check num_classes and the loss overlay's arguments"
        ) from err
    value = torch.as_tensor(value)
    if value.numel() != 1 or not bool(torch.isfinite(value).all()):
        raise ValueError(
            f"the {name!r} loss ({type(loss).__name__}) must return a finite scalar with reduction='mean', got "
            f"{value.flatten()[:4].tolist()} (shape {tuple(value.shape)}); use reduction='mean'"
        )
    logger.info("preflight ok: loss %r (%s) on %d classes gives %.4g", name, type(loss).__name__, num_classes, value)
    return True
