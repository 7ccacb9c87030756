"""MONAI transforms and Compose factories for CT volumes, CT slices and video frames.

Factories (JSON-configurable from bundles by their full dotted path):

* :func:`ct_volume_transforms`: NIfTI volumes or DICOM series folders, 3D (or single-slice 2D crops).
* :func:`ct_slice_transforms`: 2D CT slices, 1 channel.
* :func:`frame_transforms`: RGB video frames.

Array conventions (also what the inference writers assume) are documented in :mod:`medseg.transforms.readers`:
3D arrays ``(x, y, z)`` with a RAS affine; 2D images ``(H, W)`` in NumPy/Pillow row-column order.
"""

from __future__ import annotations

from medseg.transforms.channels import AdaptChannels, AdaptChannelsd, EnsureSpatialDims, EnsureSpatialDimsd
from medseg.transforms.ct import ct_slice_transforms, ct_volume_transforms
from medseg.transforms.frames import frame_transforms
from medseg.transforms.intensity import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WINDOW_PRESETS,
    AdjustColor,
    AdjustColord,
    RandColorJitter,
    RandColorJitterd,
    window_range,
)
from medseg.transforms.labels import LABEL_MAP_PRESETS, LabelMapSpec, MapLabels, MapLabelsd, resolve_label_map
from medseg.transforms.readers import (
    LoadMedicalImage,
    LoadMedicalImaged,
    MedicalImageReader,
    RowMajorPILReader,
    SimpleITKSeriesReader,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LABEL_MAP_PRESETS",
    "WINDOW_PRESETS",
    "AdaptChannels",
    "AdaptChannelsd",
    "AdjustColor",
    "AdjustColord",
    "EnsureSpatialDims",
    "EnsureSpatialDimsd",
    "LabelMapSpec",
    "LoadMedicalImage",
    "LoadMedicalImaged",
    "MapLabels",
    "MapLabelsd",
    "MedicalImageReader",
    "RandColorJitter",
    "RandColorJitterd",
    "RowMajorPILReader",
    "SimpleITKSeriesReader",
    "ct_slice_transforms",
    "ct_volume_transforms",
    "frame_transforms",
    "resolve_label_map",
    "window_range",
]
