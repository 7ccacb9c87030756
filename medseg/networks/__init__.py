"""Networks, registered by name in :data:`medseg.registry.NETWORKS`."""

from __future__ import annotations

from medseg.networks.coplenet import CopleNet
from medseg.registry import NETWORKS, create_network

__all__ = ["NETWORKS", "CopleNet", "create_network"]
