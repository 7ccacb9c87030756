"""Boundary metrics: 95th-percentile Hausdorff distance (HD95) and average symmetric surface distance (ASD).

Distances are measured between the boundary voxels of the predicted and the reference mask of one class, in
physical units when a voxel spacing is given (millimetres for NIfTI), otherwise in pixels. The edge extraction and
the nearest-boundary distances are MONAI's (:func:`monai.metrics.utils.get_edge_surface_distance`, a binary
erosion and a KD-tree on CPU), computed once per class and reused for both metrics.

**Empty-mask conventions** (a distance needs two non-empty boundaries):

================================  =====================  =================================
reference / prediction            HD95, ASD              Dice, IoU (per case)
================================  =====================  =================================
both non-empty                    finite                 from the counts
reference empty, prediction empty NaN (undefined)        NaN (undefined), see ``both_empty``
exactly one of them empty         ``inf`` (flagged)      0
================================  =====================  =================================

NaN means "nothing to measure" and is skipped by every mean; ``inf`` means "a structure was missed or
hallucinated entirely" and is counted separately in summaries (a mean over an ``inf`` would be ``inf``), so such
cases are never silently dropped.

Example:
    >>> import numpy as np
    >>> label = np.zeros((8, 8), dtype=bool); label[2:6, 2:6] = True
    >>> pred = np.zeros((8, 8), dtype=bool); pred[2:6, 3:7] = True  # shifted by one column
    >>> hd95, asd = surface_distances(pred, label, spacing=(1.0, 2.0))
    >>> float(hd95)  # one column is 2 mm wide
    2.0
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["squeeze_spatial", "surface_distances", "surface_metrics_per_class"]

logger = logging.getLogger(__name__)


def _check_spacing(spacing: Sequence[float] | None, ndim: int) -> tuple[float, ...] | None:
    if spacing is None:
        return None
    sp = tuple(float(s) for s in spacing)
    if len(sp) != ndim or not all(np.isfinite(s) and s > 0 for s in sp):
        raise ValueError(
            f"spacing must give one positive finite voxel size per spatial axis ({ndim} values), got {spacing!r}; "
            "pass the voxel sizes in mm (e.g. from the NIfTI header) or None for pixel units"
        )
    return sp


def squeeze_spatial(
    array: npt.NDArray[Any], spacing: Sequence[float] | None
) -> tuple[npt.NDArray[Any], tuple[float, ...] | None]:
    """Drop singleton spatial axes (a 2D slice stored as ``(H, W, 1)``) together with their spacing entries.

    A singleton axis would make every foreground voxel a boundary voxel (erosion across a 1-voxel-thick axis
    removes everything), so boundary metrics on such arrays are computed in the remaining dimensions.
    """
    keep = [i for i, n in enumerate(array.shape) if n != 1]
    if len(keep) == array.ndim:
        return array, None if spacing is None else tuple(float(s) for s in spacing)
    if not keep:
        keep = [0]
    out = array.reshape([array.shape[i] for i in keep])
    sp = None if spacing is None else tuple(float(spacing[i]) for i in keep)
    return out, sp


def surface_distances(
    pred: npt.NDArray[Any] | torch.Tensor,
    label: npt.NDArray[Any] | torch.Tensor,
    spacing: Sequence[float] | None = None,
    *,
    percentile: float = 95.0,
) -> tuple[float, float]:
    r"""Percentile Hausdorff distance and average symmetric surface distance of two binary masks.

    .. math::
        \mathrm{HD}_{q} = \max\big(P_q\{d(a, \partial G)\}_{a \in \partial S},\;
        P_q\{d(b, \partial S)\}_{b \in \partial G}\big), \qquad
        \mathrm{ASD} = \frac{\sum_{a \in \partial S} d(a, \partial G)
        + \sum_{b \in \partial G} d(b, \partial S)}{|\partial S| + |\partial G|}

    with :math:`\partial S, \partial G` the boundary voxels of prediction and reference and :math:`P_q` the
    q-th percentile (linear interpolation, as ``torch.quantile``; MONAI's ``compute_hausdorff_distance``
    with ``percentile=95`` gives the same number).

    Args:
        pred: predicted binary mask (any non-zero value is foreground), 2D or 3D.
        label: reference binary mask of the same shape.
        spacing: physical voxel size per axis (e.g. mm), or ``None`` for pixel units.
        percentile: q in [0, 100]; 100 gives the classic Hausdorff distance.

    Returns:
        ``(hd, asd)`` as floats: NaN if both masks are empty, ``inf`` if exactly one is empty.

    Raises:
        ValueError: shapes differ, masks are not 2D/3D, or spacing/percentile are invalid.
    """
    p = pred.detach().cpu().numpy() if isinstance(pred, torch.Tensor) else np.asarray(pred)
    g = label.detach().cpu().numpy() if isinstance(label, torch.Tensor) else np.asarray(label)
    if p.shape != g.shape:
        raise ValueError(f"pred and label masks must have the same shape, got {p.shape} and {g.shape}")
    if not 0.0 <= percentile <= 100.0:
        raise ValueError(f"percentile must lie in [0, 100], got {percentile!r}; use 95 for HD95")
    sp = _check_spacing(spacing, p.ndim)
    p, sp = squeeze_spatial(p.astype(bool, copy=False), sp)
    g, _ = squeeze_spatial(g.astype(bool, copy=False), None)
    if p.ndim not in (1, 2, 3):
        raise ValueError(f"masks must be 2D or 3D after dropping singleton axes, got shape {p.shape}")
    has_p, has_g = bool(p.any()), bool(g.any())
    if not has_p and not has_g:
        return float("nan"), float("nan")
    if has_p != has_g:
        return float("inf"), float("inf")
    if p.ndim == 1:  # a 1-pixel-high image: give MONAI a 2D array
        p, g = p[None], g[None]
        sp = None if sp is None else (1.0, *sp)

    from monai.metrics.utils import get_edge_surface_distance

    # MONAI crops both masks to the union's bounding box, extracts edges by binary erosion and queries a KD-tree
    # of reference-edge coordinates scaled by `spacing`; symmetric=True returns both directed distance sets.
    _, distances, _ = get_edge_surface_distance(
        torch.from_numpy(p),
        torch.from_numpy(g),
        distance_metric="euclidean",
        spacing=sp,
        symmetric=True,
        warn_empty=False,
    )
    d_pg, d_gp = (torch.as_tensor(d, dtype=torch.float64).reshape(-1) for d in distances)
    q = percentile / 100.0
    hd = max(float(torch.quantile(d_pg, q)), float(torch.quantile(d_gp, q)))
    asd = float(torch.cat([d_pg, d_gp]).mean())
    return hd, asd


def surface_metrics_per_class(
    pred: npt.NDArray[Any],
    label: npt.NDArray[Any],
    classes: Sequence[int],
    spacing: Sequence[float] | None = None,
    *,
    percentile: float = 95.0,
    ignore_mask: npt.NDArray[np.bool_] | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """HD and ASD of each class in ``classes`` between two integer label maps.

    Args:
        pred: predicted integer label map (2D or 3D).
        label: reference integer label map of the same shape.
        classes: class values to measure (usually the foreground classes ``1 .. K-1``).
        spacing: physical voxel size per axis, or ``None`` for pixels.
        percentile: Hausdorff percentile (95 for HD95).
        ignore_mask: voxels to leave out of both masks (the reference's ``ignore_index`` region), or ``None``.

    Returns:
        ``(hd, asd)``: float64 arrays of ``len(classes)`` with the conventions of :func:`surface_distances`.

    Note:
        Ignored voxels are removed from both masks before the boundaries are extracted, so the edge of the ignored
        region can itself appear as a boundary.
    """
    if pred.shape != label.shape:
        raise ValueError(f"pred and label must have the same shape, got {pred.shape} and {label.shape}")
    hd = np.full(len(classes), np.nan)
    asd = np.full(len(classes), np.nan)
    for i, c in enumerate(classes):
        pm, gm = pred == c, label == c
        if ignore_mask is not None:
            pm &= ~ignore_mask
            gm &= ~ignore_mask
        hd[i], asd[i] = surface_distances(pm, gm, spacing, percentile=percentile)
    return hd, asd
