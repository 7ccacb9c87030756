"""medseg: medical-image segmentation on MONAI.

Margin-calibrated and IoU-oriented losses (:mod:`medseg.losses`), COPLE-Net (:mod:`medseg.networks`), MONAI
transform pipelines for CT volumes and video frames (:mod:`medseg.transforms`), bundle training glue
(:mod:`medseg.training`), sliding-window inference (:mod:`medseg.inference`) and evaluation
(:mod:`medseg.evaluation`).
"""

from __future__ import annotations

import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())
