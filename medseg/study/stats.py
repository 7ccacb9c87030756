"""Statistics of a study: per-image means and pooled IoU with bootstrap confidence intervals, paired tests.

Per-image scores are resampled with replacement (the percentile bootstrap; Efron and Tibshirani, "An
Introduction to the Bootstrap", Chapman & Hall 1993, Ch. 13). The pooled ("dataset") IoU is recomputed from the
resampled images' intersection and union sums, so its interval reflects which images happen to be in the test
set. Paired comparisons of two runs on the same images use the per-image differences: their mean with a
bootstrap interval, and the Wilcoxon signed-rank test (Wilcoxon, Biometrics Bulletin 1945; ``scipy.stats.
wilcoxon``, two-sided, zero differences dropped as in Wilcoxon's original treatment).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["bootstrap_mean", "bootstrap_pooled_iou", "paired_comparison"]

#: Bootstrap resamples and the interval's coverage.
RESAMPLES = 10000
LEVEL = 0.95


def _interval(samples: np.ndarray) -> tuple[float, float]:
    alpha = (1.0 - LEVEL) / 2.0
    lo, hi = np.quantile(samples, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_mean(values: Sequence[float], *, seed: int = 0) -> dict[str, Any]:
    """Mean of finite ``values`` with a 95 % percentile-bootstrap interval (``n``, ``mean``, ``ci``, ``std``).

    Example:
        >>> r = bootstrap_mean([0.5, 0.7, 0.9])
        >>> round(r["mean"], 3), r["n"]
        (0.7, 3)
    """
    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if x.size == 0:
        return {"n": 0, "mean": None, "ci": [None, None], "std": None}
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(RESAMPLES, x.size))].mean(axis=1)
    lo, hi = _interval(means)
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "ci": [lo, hi],
        "std": float(x.std(ddof=1)) if x.size > 1 else 0.0,
    }


def bootstrap_pooled_iou(intersections: Sequence[float], unions: Sequence[float], *, seed: int = 0) -> dict[str, Any]:
    """Pooled IoU ``Σ I / Σ U`` over images with a 95 % interval from resampling images.

    Example:
        >>> r = bootstrap_pooled_iou([5, 0, 3], [10, 2, 4])
        >>> round(r["value"], 4)  # 8 / 16
        0.5
    """
    inter = np.asarray(intersections, dtype=np.float64)
    union = np.asarray(unions, dtype=np.float64)
    if inter.size == 0 or union.sum() <= 0:
        return {"n": int(inter.size), "value": None, "ci": [None, None]}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, inter.size, size=(RESAMPLES, inter.size))
    u = union[idx].sum(axis=1)
    samples = np.where(u > 0, inter[idx].sum(axis=1) / np.maximum(u, 1e-12), np.nan)
    lo, hi = _interval(samples[np.isfinite(samples)])
    return {"n": int(inter.size), "value": float(inter.sum() / union.sum()), "ci": [lo, hi]}


def paired_comparison(
    a: Sequence[float | None], b: Sequence[float | None], *, tie: float = 0.0, seed: int = 0
) -> dict[str, Any]:
    """Per-image differences ``a - b`` (images finite in both): mean, 95 % bootstrap interval, Wilcoxon p.

    Args:
        a: scores of the run under test, one per image.
        b: scores of the reference run on the same images, in the same order.
        tie: differences with ``|a - b| <= tie`` count as ties in the win/tie/loss tally.
        seed: bootstrap seed.

    Returns:
        ``n``, ``mean_diff``, ``ci``, ``p_wilcoxon`` (``None`` when every difference is 0), ``wins``, ``ties``,
        ``losses`` and ``verdict``: ``"better"``/``"worse"`` when the interval excludes 0, else ``"tie"``.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    from scipy.stats import wilcoxon

    if len(a) != len(b):
        raise ValueError(f"paired_comparison: {len(a)} scores against {len(b)}; the same images are needed")
    pairs = [
        (float(x), float(y))
        for x, y in zip(a, b, strict=True)
        if x is not None and y is not None and math.isfinite(x) and math.isfinite(y)
    ]
    d = np.asarray([x - y for x, y in pairs], dtype=np.float64)
    if d.size == 0:
        return {"n": 0, "mean_diff": None, "ci": [None, None], "p_wilcoxon": None, "verdict": "n/a"}
    boot = bootstrap_mean(d.tolist(), seed=seed)
    p = None
    if np.any(d != 0):
        p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    lo, hi = boot["ci"]
    verdict = "better" if lo > 0 else "worse" if hi < 0 else "tie"
    return {
        "n": int(d.size),
        "mean_diff": float(d.mean()),
        "ci": [lo, hi],
        "p_wilcoxon": p,
        "wins": int((d > tie).sum()),
        "ties": int((np.abs(d) <= tie).sum()),
        "losses": int((d < -tie).sum()),
        "verdict": verdict,
    }
