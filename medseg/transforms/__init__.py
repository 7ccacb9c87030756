"""MONAI transforms and Compose factories for CT volumes, CT slices and video frames."""

from __future__ import annotations

from medseg.transforms.labels import LABEL_MAP_PRESETS, LabelMapSpec, MapLabels, MapLabelsd, resolve_label_map

__all__ = ["LABEL_MAP_PRESETS", "LabelMapSpec", "MapLabels", "MapLabelsd", "resolve_label_map"]
