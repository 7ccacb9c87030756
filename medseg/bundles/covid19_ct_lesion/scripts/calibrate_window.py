"""Find the CT window (width, level in HU) that makes HU chest CT look like the bundle's 8-bit training slices.

The COVID-19 training slices (MedSeg / Inf-Net) are 8-bit images already windowed by their publishers; a
clinical user has CT in Hounsfield units. This script measures which linear window maps HU onto [0, 255] so that
the intensity distribution of chest CT cropped around the lungs matches that of the training slices: it grid-
searches width and level for the smallest 1-Wasserstein distance between the two distributions (gray levels).

Usage (from a checkout with ``../shared`` beside it)::

    python medseg/bundles/covid19_ct_lesion/scripts/calibrate_window.py \\
        --slices ../shared/data/covid19_ct_infection_medseg_infnet/imgs \\
        --ct ../shared/data/lidc_idri_ct_nodule_slabs

Measured on the shared data (50 slices; the 28 LIDC-IDRI slices of two patients, cropped to the lungs' bounding
box plus 10 pixels): width 1475 HU, level -450 HU, distance 11.3 gray levels, against 23.2 for the common lung
window W1500/L-600 and 28.9 for W1500/L-650. The histogram landmarks agree: the training slices' lung
parenchyma peak lies at gray 45 and their soft-tissue peak at 211; in HU the lungs peak at about -920 and soft
tissue (fat and muscle together) at about -20, and W1475/L-450 maps those to gray 45 and 201.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger("calibrate_window")


def window_to_gray(hu: np.ndarray, width: float, level: float) -> np.ndarray:
    """HU -> gray levels in [0, 255] by the window (width, level), clipped."""
    low = level - width / 2.0
    return np.clip((hu - low) / width, 0.0, 1.0) * 255.0


def fit_window(
    hu: np.ndarray,
    gray: np.ndarray,
    widths: Sequence[float] = tuple(range(900, 2101, 25)),
    levels: Sequence[float] = tuple(range(-800, -199, 10)),
) -> tuple[float, float, float]:
    """The (width, level) minimising the 1-Wasserstein distance between windowed ``hu`` and ``gray`` samples.

    The distance is the mean absolute difference of the two quantile functions on a grid of 2,000
    probabilities (the 1-Wasserstein distance in one dimension); a window is monotone, so the windowed HU
    quantiles are the window applied to the HU quantiles, computed once.

    Returns:
        ``(width, level, distance)``.
    """
    q = np.linspace(0.00025, 0.99975, 2000)
    hq = np.quantile(hu, q)
    gq = np.quantile(gray, q)
    best = (float("inf"), 0.0, 0.0)
    for w in widths:
        for lv in levels:
            d = float(np.mean(np.abs(window_to_gray(hq, w, lv) - gq)))
            if d < best[0]:
                best = (d, float(w), float(lv))
    return best[1], best[2], best[0]


def lung_crops(volume: np.ndarray, margin: int = 10) -> list[np.ndarray]:
    """Axial slices of a HU volume ``(z, y, x)`` cropped to the bounding box of the two largest lung regions."""
    from scipy import ndimage

    crops = []
    for a in volume:
        body = ndimage.binary_fill_holes(ndimage.binary_opening(a > -500, iterations=3))
        lab, n = ndimage.label(body)
        if n == 0:
            continue
        body = ndimage.binary_fill_holes(lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1))
        lung, n_lung = ndimage.label(body & (a < -400))
        if n_lung == 0:
            continue
        keep = np.argsort(np.bincount(lung.ravel())[1:])[-2:] + 1
        ys, xs = np.where(np.isin(lung, keep))
        crops.append(a[max(ys.min() - margin, 0) : ys.max() + margin, max(xs.min() - margin, 0) : xs.max() + margin])
    return crops


def _read_series(folder: Path) -> np.ndarray:
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return sitk.GetArrayFromImage(reader.Execute()).astype(np.float64)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=Path, required=True, help="folder of the 8-bit training slices (*.jpg/*.png)")
    parser.add_argument("--ct", type=Path, required=True, help="folder holding chest CT DICOM series in HU")
    parser.add_argument("--samples", type=int, default=200000, help="pixels sampled from each side (default 200000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from PIL import Image

    rng = np.random.default_rng(args.seed)
    images = sorted(p for p in args.slices.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if not images:
        sys.stderr.write(f"calibrate_window: no .jpg/.png slices in {args.slices}\n")
        return 2
    gray = np.concatenate([np.asarray(Image.open(p).convert("L"), np.float64).ravel() for p in images])
    series = sorted({p.parent for p in args.ct.rglob("*.dcm")})
    if not series:
        sys.stderr.write(f"calibrate_window: no DICOM series under {args.ct}\n")
        return 2
    hu = np.concatenate([c.ravel() for s in series for c in lung_crops(_read_series(s))])
    gray = rng.choice(gray, min(args.samples, gray.size), replace=False)
    hu = rng.choice(hu, min(args.samples, hu.size), replace=False)
    width, level, dist = fit_window(hu, gray)
    result = {"width": width, "level": level, "wasserstein_gray_levels": round(dist, 2), "slices": len(images)}
    for w, lv in ((1500.0, -600.0), (1500.0, -650.0)):
        _, _, d = fit_window(hu, gray, widths=(w,), levels=(lv,))
        result[f"distance_W{w:g}_L{lv:g}"] = round(d, 2)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
