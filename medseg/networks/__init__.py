"""Networks, registered by name in :data:`medseg.registry.NETWORKS`.

- :class:`CopleNet`: COPLE-Net (Wang et al., IEEE TMI 2020) in 2D or 3D, GroupNorm by default; registered as
  ``coplenet`` (widths 32–512) and ``coplenet_small`` (widths 16–256).
- :class:`SliceWise`: runs a 2D network on 3D volumes slice by slice.
- ``basic_unet``: MONAI's ``BasicUNet`` (the plain-MONAI baseline), registered by name.

The registered factories live in :mod:`medseg.networks.coplenet` (not re-exported here, so that the dotted path
``medseg.networks.coplenet`` keeps naming the module).
"""

from __future__ import annotations

from medseg.networks import basic_unet as basic_unet  # registers "basic_unet"
from medseg.networks.coplenet import CopleNet, nearest_valid_sizes
from medseg.networks.slicewise import SliceWise
from medseg.registry import NETWORKS, create_network

__all__ = [
    "NETWORKS",
    "CopleNet",
    "SliceWise",
    "create_network",
    "nearest_valid_sizes",
]
