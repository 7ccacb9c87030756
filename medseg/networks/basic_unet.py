"""MONAI's ``BasicUNet`` in the network registry (``basic_unet``): the plain-MONAI baseline of our studies.

Registered so that a study or a bundle can name the baseline a MONAI user starts from next to COPLE-Net; the
network itself is MONAI's, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from monai.networks.nets.basic_unet import BasicUNet

from medseg.registry import NETWORKS

__all__ = ["basic_unet"]

#: MONAI's default widths for BasicUNet.
DEFAULT_FEATURES = (32, 32, 64, 128, 256, 32)


@NETWORKS.register("basic_unet")
def basic_unet(
    spatial_dims: int = 2,
    in_channels: int = 1,
    out_channels: int = 2,
    features: Sequence[int] = DEFAULT_FEATURES,
    act: Any = ("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
    norm: Any = ("instance", {"affine": True}),
    dropout: float = 0.0,
    upsample: str = "deconv",
) -> BasicUNet:
    """``monai.networks.nets.BasicUNet`` with MONAI's defaults (six widths: five levels and the output stage).

    Example:
        >>> net = basic_unet(features=(16, 32, 64, 128, 256, 16))
        >>> sum(p.numel() for p in net.parameters()) > 0
        True
    """
    return BasicUNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        features=tuple(int(f) for f in features),
        act=act,
        norm=norm,
        dropout=dropout,
        upsample=upsample,
    )
