r"""The lungs of a chest CT in Hounsfield units: a mask, and the crop that makes a volume look like lung-cropped slices.

2D lesion models are often trained on slices that their publishers windowed *and cropped around the lungs* (the
MedSeg / Inf-Net COVID-19 slices are such crops, resized to the network's input size). Segmenting a full field of
view of a clinical CT slice by slice shows such a model the lungs at another scale and the body wall, table and
air it never saw: on the shared LIDC-IDRI chest CT (no COVID-19) the COVID model then marked 218 mL of "lesion" in
a 16-slice slab, half of it outside the lungs. Cropped to the lungs' bounding box, resized to the training size
and restricted to the lungs, it marked 6.1 mL, mostly in the slab's one nodule (6.6-8.5 mL by the four readers).

The mask (:func:`lung_mask`) is the classic threshold-and-components construction used before learned lung
models (e.g. Hofmanninger et al., "Automatic lung segmentation in routine imaging is primarily a data diversity
problem, not a methodology problem", European Radiology Experimental 4:50, 2020, compare their threshold baseline):

1. air: voxels below ``threshold`` HU (-320 by default, between aerated lung, about -850, and soft tissue);
2. drop every air component that touches the in-plane border of the volume (the air around the body, the
   padding outside the scanner's field of view);
3. drop the components of gas: the median of aerated lung lies near -850 HU (-790 to -880 on the shared chest
   and abdominal CT), that of the trachea, bowel and stomach gas near -1000 (-965 to -980 there): ``gas_hu``
   (-950) separates them. Severe emphysema with a lung median below -950 HU would be dropped too;
4. keep the components holding at least ``min_fraction`` of the largest remaining one's volume (both lungs, not
   small pockets);
5. close with a ball of ``closing_mm`` and fill holes slice by slice, so vessels, nodules and the dense
   lesions inside the lungs are part of the mask. A consolidation that fills the lung up to the pleura over more
   than ``closing_mm`` is not closed back in: the known weakness of threshold lung masks.

:class:`LungMaskd` adds the mask to a data dictionary; :func:`medseg.transforms.ct_volume_transforms` with
``crop_lungs=True`` crops to it (MONAI's ``CropForegroundd``), resizes the slices to the training size
(``Resized``) and keeps it under ``roi_mask`` so that predictions outside the lungs become background.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config.type_definitions import KeysCollection
from monai.transforms.transform import MapTransform

logger = logging.getLogger(__name__)

__all__ = ["ROI_MASK_KEY", "BackgroundOutsided", "LungMaskd", "background_outside", "lung_mask"]

#: Key of the mask outside which a prediction is background (see :func:`medseg.inference.segment`).
ROI_MASK_KEY = "roi_mask"


def lung_mask(
    hu: np.ndarray,
    spacing: Sequence[float] | np.ndarray,
    *,
    threshold: float = -320.0,
    gas_hu: float = -950.0,
    min_fraction: float = 0.1,
    closing_mm: float = 15.0,
    min_ml: float = 5.0,
) -> np.ndarray | None:
    """Boolean lung mask of a CT volume in HU whose last axis is the slice axis (see the module docstring).

    Args:
        hu: ``(X, Y, Z)`` Hounsfield units; axes 0 and 1 span the axial plane.
        spacing: voxel size in mm per axis.
        threshold: air below this HU.
        gas_hu: a component whose median is at or below this HU is gas (trachea, bowel, stomach), not lung.
        min_fraction: keep air components of at least this fraction of the largest one's volume.
        closing_mm: radius of the closing ball in mm.
        min_ml: below this many mL of lung the volume has no lungs to speak of.

    Returns:
        The mask, or ``None`` when the air inside the body is under ``min_ml`` (not a chest CT, or not in HU).

    Raises:
        ValueError: not a 3D array, or a spacing that is not 3 positive numbers.

    Example:
        >>> hu = np.full((40, 40, 4), -1000.0)  # air around a body ...
        >>> hu[5:35, 5:35] = 40.0  # ... of soft tissue ...
        >>> hu[10:18, 10:30] = hu[22:30, 10:30] = -850.0  # ... holding two lungs
        >>> m = lung_mask(hu, (10.0, 10.0, 10.0), closing_mm=5.0)
        >>> int(m.sum()) == 2 * 8 * 20 * 4, bool(m[0, 0, 0]), bool(m[12, 15, 2])
        (True, False, True)
    """
    from scipy import ndimage as ndi

    arr = np.asarray(hu)
    if arr.ndim != 3:
        raise ValueError(f"lung_mask needs a 3D (X, Y, Z) volume, got shape {arr.shape}")
    sp = np.asarray(spacing, dtype=np.float64)
    if sp.shape != (3,) or not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise ValueError(f"lung_mask: spacing must be 3 positive numbers in mm, got {spacing!r}")
    air = arr < threshold
    labels, count = ndi.label(air)
    if count == 0:
        return None
    border = np.unique(
        np.concatenate([labels[0].ravel(), labels[-1].ravel(), labels[:, 0].ravel(), labels[:, -1].ravel()])
    )
    sizes = np.bincount(labels.ravel(), minlength=count + 1).astype(np.float64)
    sizes[0] = 0.0
    sizes[border] = 0.0
    voxel_ml = float(np.prod(sp)) / 1000.0
    # gas (airways, bowel, stomach) is pure air; aerated lung is air mixed with tissue: its median is well above
    candidates = np.flatnonzero(sizes * voxel_ml >= min_ml / 10.0)
    if candidates.size:
        medians = np.asarray(ndi.median(arr, labels, candidates), dtype=np.float64)
        sizes[candidates[medians <= gas_hu]] = 0.0
    if sizes.max() * voxel_ml < min_ml:
        return None
    keep = sizes >= min_fraction * sizes.max()
    keep[0] = False
    mask = keep[labels]
    # closing by a ball of closing_mm (anisotropic voxels: distances in mm), then holes filled slice by slice
    dilated = ndi.distance_transform_edt(~mask, sampling=sp) <= closing_mm
    closed = ndi.distance_transform_edt(dilated, sampling=sp) > closing_mm
    closed |= mask
    for z in range(closed.shape[2]):
        closed[:, :, z] = ndi.binary_fill_holes(closed[:, :, z])
    return np.asarray(closed, dtype=bool)


def _spacing(image: Any) -> np.ndarray:
    affine = getattr(image, "affine", None)
    if affine is None:
        return np.ones(3)
    a = np.asarray(affine.cpu() if isinstance(affine, torch.Tensor) else affine, dtype=np.float64)
    return np.linalg.norm(a[:3, :3], axis=0)


class LungMaskd(MapTransform):
    """Add the lung mask of ``keys`` (a channel-first CT volume in HU) under ``mask_key`` (see :func:`lung_mask`).

    The mask is a ``(1, X, Y, Z)`` float tensor (1 inside the lungs) with the image's metadata, so the spatial
    transforms that follow (crop, resize) can move it with the image. A volume without lungs (e.g. not a chest CT,
    or not in HU) gets a mask of ones and one warning line: nothing is cropped or masked then.
    """

    def __init__(
        self,
        keys: KeysCollection,
        mask_key: str = ROI_MASK_KEY,
        *,
        threshold: float = -320.0,
        closing_mm: float = 15.0,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"LungMaskd takes one image key, got {list(self.keys)}")
        self.mask_key = mask_key
        self.threshold = float(threshold)
        self.closing_mm = float(closing_mm)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        from monai.data.meta_tensor import MetaTensor

        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            if array.ndim != 4:
                raise ValueError(f"LungMaskd: {key!r} must be a channel-first 3D volume, got shape {array.shape}")
            mask = lung_mask(array[0], _spacing(image), threshold=self.threshold, closing_mm=self.closing_mm)
            if mask is None:
                name = getattr(image, "meta", {}).get("filename_or_obj", key)
                logger.warning(
                    "%s: found no lungs (no air inside the body below %g HU): segmenting the whole field of view, "
                    "which this model was not trained on; check that the input is a chest CT in HU",
                    name,
                    self.threshold,
                )
                mask = np.ones(array.shape[1:], dtype=bool)
            tensor = torch.from_numpy(mask[None].astype(np.float32))
            d[self.mask_key] = MetaTensor(tensor, meta=dict(image.meta)) if isinstance(image, MetaTensor) else tensor
        return d


def background_outside(probabilities: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Set class probabilities ``(K, *spatial)`` to certain background where ``mask`` ``(1, *spatial)`` is <= 0.5.

    What a region of interest such as the lungs means for a prediction: nothing outside it is a finding.
    """
    inside = torch.as_tensor(mask, device=probabilities.device)[0] > 0.5
    background = torch.zeros_like(probabilities)
    background[0] = 1.0
    return torch.where(inside, probabilities, background)


class BackgroundOutsided(MapTransform):
    """:func:`background_outside` as a dictionary transform: ``keys`` (probabilities) outside ``mask_key``.

    For MONAI post-processing chains (a bundle's ``postprocessing``) after ``Invertd`` has brought the
    probabilities and the mask back to the input's grid. Without a mask in the data it changes nothing.
    """

    def __init__(self, keys: KeysCollection, mask_key: str = ROI_MASK_KEY, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.mask_key = mask_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = d.get(self.mask_key)
        if mask is None:
            return d
        for key in self.key_iterator(d):
            d[key] = background_outside(d[key], mask)
        return d
