r"""Theorem 1's mIoU generalisation bound ε and Corollary 1's optimal margin offsets.

Yu et al. (IJCV 2021) bound the data-distribution mIoU from below by the empirical lower bound minus ε
(Eq. (13)). With N training pixels, N_k of class k, K classes, margin offsets ρ_0k (a non-k pixel scored as k)
and ρ_k0 (a k pixel scored as not k), μ_k = ρ_k0 / ρ_0k and a complexity term F:

.. math::
    \epsilon = \frac{1}{K} \sum_{k=1}^{K}
    \frac{\sqrt{N - N_k} + \sqrt{N_k} / \mu_k}{\frac{N_k}{4 K \mathcal{F}} \rho_{0k} - \sqrt{N - N_k}}
    \qquad \text{(Eq. (14))}

Corollary 1 (Eq. (15)): under a fixed budget :math:`\sum_k \rho_{0k}` and with
:math:`\mu_k = P_k \sqrt{N_k} / (v (N - N_k) - P_k \sqrt{N - N_k})`, ε is smallest when
:math:`\rho_{0k} \propto \sqrt{N - N_k} / N_k`; Algorithm 1 writes the proportionality constant as τ. Then every
term's numerator is :math:`vN (N - N_k) / N_k` and, by the Cauchy-Schwarz step of the appendix (Eq. (35)),

.. math::
    \epsilon_{\min} = \frac{vN}{K} \cdot
    \frac{\big(\sum_k \sqrt{N - N_k} / N_k\big)^2}{\frac{1}{4K\mathcal{F}} \sum_k \rho_{0k}
    - \sum_k \sqrt{N - N_k} / N_k}
    = \frac{vN}{K} \cdot \frac{S}{\tau / (4K\mathcal{F}) - 1},\quad S = \sum_k \frac{\sqrt{N - N_k}}{N_k}.

What the formulas imply, and what this module therefore does:

- the bound is only meaningful where every denominator is positive; with Algorithm 1's offsets that is
  ``τ > 4 K F`` whatever the counts. Where a denominator is <= 0 the per-class term (and ε) is ``inf``
  (vacuous), never a negative number;
- with Corollary 1's μ_k, ε grows like ``v·sqrt(N)``: for real pixel counts (millions) ε is far above 1, i.e. the
  bound says nothing about the absolute mIoU. Its practical content is the SHAPE of the optimal offsets (larger
  margins for rarer classes) and how ε moves with τ and v, which :func:`bound_table` shows;
- F = C(Θ) + σ(1/η) is unknown for a deep network; it is an explicit argument here
  (:func:`complexity_term` builds it from C(Θ), η and the pixels per image as defined in Theorem 1).

References:
    Yu, Li, Xu, Gao, Luo, Zhang, "Distribution-aware Margin Calibration for Semantic Segmentation in Images",
    International Journal of Computer Vision (accepted 2021), arXiv:2112.11554, doi:10.1007/s11263-021-01533-0:
    Theorem 1 (Eqs. (13)-(14)), Corollary 1 (Eq. (15)), Algorithm 1, appendix Eqs. (30)-(35).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "bound_table",
    "complexity_term",
    "corollary_offsets",
    "error_bound",
    "error_bound_per_class",
    "minimal_error_bound",
    "optimal_offset_ratios",
    "render_bound_table",
]

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


def _counts(class_counts: Any) -> FloatArray:
    try:
        n = np.asarray(class_counts, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"class_counts must be a sequence of pixel counts, got {class_counts!r}") from err
    if n.ndim != 1 or n.size < 2:
        raise ValueError(
            f"class_counts must be a 1-D sequence with one pixel count per class (K >= 2), got shape {n.shape}"
        )
    if not np.all(np.isfinite(n)):
        raise ValueError(f"class_counts must be finite, got {n.tolist()}")
    bad = [i for i, x in enumerate(n) if x <= 0 or x >= n.sum()]
    if bad:
        raise ValueError(
            f"class_counts must be positive and no class may hold every pixel (0 < N_k < N), got {n.tolist()} "
            f"(classes {bad}); the bound and the offsets are undefined there: drop or merge such classes"
        )
    return n


def _positive(name: str, value: Any) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a positive number, got {value!r}") from err
    if not (math.isfinite(x) and x > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return x


def _mu(n: FloatArray, v: float) -> FloatArray:
    """μ_k of Corollary 1 / Algorithm 1 line 3, with P_k = N_k / N."""
    total = n.sum()
    p = n / total
    den = v * (total - n) - p * np.sqrt(total - n)
    if np.any(den <= 0):
        bad = [int(i) for i in np.flatnonzero(den <= 0)]
        raise ValueError(
            f"v={v!r} is too small for class_counts: the denominator v(N-N_k) - P_k sqrt(N-N_k) of mu_k is <= 0 for "
            f"classes {bad}, so no positive rho_k0 exists; use v > P_k / sqrt(N-N_k) (e.g. the default v=1)"
        )
    return p * np.sqrt(n) / den


def complexity_term(
    c_theta: float,
    *,
    rho_max: float,
    num_classes: int,
    pixels_per_image: int,
    eta: float = 0.05,
) -> float:
    r"""The complexity term F = C(Θ) + σ(1/η) of Theorem 1.

    .. math::
        \mathcal{F} = C(\Theta) + \frac{\rho_{\max}}{4K} \sqrt{2 M \log \frac{2K}{\eta}}

    Args:
        c_theta: C(Θ) >= 0, the complexity of the hypothesis class (unknown in practice: a free constant).
        rho_max: the largest margin offset max_k {ρ_k0, ρ_0k}.
        num_classes: K.
        pixels_per_image: M, pixels in one image.
        eta: confidence parameter η in (0, 1): the bound holds with probability >= 1 - η.

    References:
        Yu et al., IJCV 2021, Theorem 1 (definition of F and σ).
    """
    if not (math.isfinite(c_theta) and c_theta >= 0):
        raise ValueError(f"c_theta must be a finite number >= 0, got {c_theta!r}")
    if not 0 < eta < 1:
        raise ValueError(f"eta must lie in (0, 1) (the failure probability), got {eta!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    _positive("pixels_per_image", pixels_per_image)
    rho_max = _positive("rho_max", rho_max)
    return float(
        c_theta + rho_max / (4 * num_classes) * math.sqrt(2 * pixels_per_image * math.log(2 * num_classes / eta))
    )


def error_bound_per_class(
    class_counts: Sequence[float] | FloatArray,
    rho_neg: Sequence[float] | FloatArray,
    rho_pos: Sequence[float] | FloatArray,
    complexity: float,
) -> FloatArray:
    r"""The per-class terms ε_k of Theorem 1 (appendix Eq. (30)); their mean is ε (Eq. (14)).

    .. math::
        \epsilon_k = \frac{\sqrt{N - N_k} + \sqrt{N_k} / \mu_k}
        {\frac{N_k}{4 K \mathcal{F}} \rho_{0k} - \sqrt{N - N_k}}, \qquad \mu_k = \rho_{k0} / \rho_{0k}

    Args:
        class_counts: N_k, pixels of each class in the training set (K >= 2 entries, 0 < N_k < N).
        rho_neg: ρ_0k > 0 per class (the offset for pixels of other classes scored as k).
        rho_pos: ρ_k0 > 0 per class (the offset for pixels of class k).
        complexity: F > 0.

    Returns:
        float64 ``(K,)``; ``inf`` where the denominator is <= 0 (the bound is vacuous for that class).

    References:
        Yu et al., IJCV 2021, Theorem 1, Eq. (14); appendix Eq. (30).
    """
    n = _counts(class_counts)
    k = n.size
    rn = np.asarray(rho_neg, dtype=np.float64)
    rp = np.asarray(rho_pos, dtype=np.float64)
    for name, r in (("rho_neg", rn), ("rho_pos", rp)):
        if r.shape != n.shape:
            raise ValueError(f"{name} must have one value per class ({k}), got shape {r.shape}")
        if not np.all(np.isfinite(r)) or np.any(r <= 0):
            raise ValueError(f"{name} must be positive and finite, got {r.tolist()}")
    f = _positive("complexity", complexity)
    total = n.sum()
    rest = np.sqrt(total - n)
    mu = rp / rn
    num = rest + np.sqrt(n) / mu
    den = n * rn / (4 * k * f) - rest
    out = np.full(k, np.inf)
    np.divide(num, den, out=out, where=den > 0)
    return out


def error_bound(
    class_counts: Sequence[float] | FloatArray,
    rho_neg: Sequence[float] | FloatArray,
    rho_pos: Sequence[float] | FloatArray,
    complexity: float,
) -> float:
    """Theorem 1's ε (Eq. (14)): mIoU(distribution) >= lower-bound mIoU - ε with probability >= 1 - η.

    Args: see :func:`error_bound_per_class`.

    Returns:
        ε as a float; ``inf`` if any class's term is vacuous.

    Example:
        >>> # K=2, N=100, N_k=(80, 20), rho_0k=(1, 1), rho_k0=(1, 1), F=0.01:
        >>> # class 0: (sqrt(20) + sqrt(80)) / (80/0.08 - sqrt(20)) = 13.416/995.53 = 0.013477
        >>> # class 1: (sqrt(80) + sqrt(20)) / (20/0.08 - sqrt(80)) = 13.416/241.06 = 0.055656; mean 0.034566
        >>> round(error_bound([80, 20], [1, 1], [1, 1], 0.01), 5)
        0.03457

    References:
        Yu et al., IJCV 2021, Theorem 1, Eqs. (13)-(14).
    """
    return float(np.mean(error_bound_per_class(class_counts, rho_neg, rho_pos, complexity)))


def optimal_offset_ratios(class_counts: Sequence[float] | FloatArray, v: float = 1.0) -> tuple[FloatArray, FloatArray]:
    r"""Corollary 1's optimal offset ratios: the relative ρ_0k and the ratio μ_k = ρ_k0 / ρ_0k.

    .. math::
        \frac{\rho_{0i}}{\rho_{0j}} = \frac{N_j}{N_i} \frac{\sqrt{N - N_i}}{\sqrt{N - N_j}}, \qquad
        \mu_k = \frac{P_k \sqrt{N_k}}{v (N - N_k) - P_k \sqrt{N - N_k}}, \quad P_k = N_k / N

    Args:
        class_counts: N_k per class (0 < N_k < N).
        v: the hyper-parameter v > 0 of Corollary 1.

    Returns:
        ``(weights, mu)``: ``weights`` sum to 1 and are proportional to ``sqrt(N - N_k) / N_k`` (so
        ``weights[i] / weights[j]`` is Eq. (15)'s ratio); ``mu`` as above.

    Raises:
        ValueError: invalid counts, or v so small that a μ_k denominator is <= 0 (no positive ρ_k0 exists).

    References:
        Yu et al., IJCV 2021, Corollary 1, Eq. (15).
    """
    n = _counts(class_counts)
    v = _positive("v", v)
    w = np.sqrt(n.sum() - n) / n
    return w / w.sum(), _mu(n, v)


def corollary_offsets(
    class_counts: Sequence[float] | FloatArray,
    *,
    tau: float | None = None,
    rho_sum: float | None = None,
    v: float = 1.0,
) -> tuple[FloatArray, FloatArray]:
    """Optimal ``(rho_neg, rho_pos)`` = (ρ_0k, ρ_k0), scaled either by τ (Algorithm 1) or by the budget Σ ρ_0k.

    Args:
        class_counts: N_k per class.
        tau: Algorithm 1's scale: ρ_0k = τ·sqrt(N - N_k)/N_k. Give exactly one of ``tau`` and ``rho_sum``.
        rho_sum: Corollary 1's constraint Σ_k ρ_0k = rho_sum.
        v: Corollary 1's v > 0.

    Returns:
        float64 ``(rho_neg, rho_pos)``, one value per class; ``rho_pos = mu * rho_neg``.

    Note:
        With ``tau`` this is Algorithm 1 exactly, i.e. what :func:`medseg.losses.margin_offsets` computes for the
        loss; it is re-derived here from Corollary 1 so the bound can be evaluated for any offsets.

    References:
        Yu et al., IJCV 2021, Corollary 1, Eq. (15), and Algorithm 1.
    """
    if (tau is None) == (rho_sum is None):
        raise ValueError(
            f"give exactly one of tau (Algorithm 1 scale) and rho_sum (sum of rho_0k), got tau={tau!r}, "
            f"rho_sum={rho_sum!r}"
        )
    n = _counts(class_counts)
    _, mu = optimal_offset_ratios(n, v)
    shape = np.sqrt(n.sum() - n) / n  # Eq. 15: rho_0k is proportional to sqrt(N - N_k) / N_k
    scale = _positive("tau", tau) if tau is not None else _positive("rho_sum", rho_sum) / float(shape.sum())
    rho_neg = scale * shape
    return rho_neg, mu * rho_neg


def minimal_error_bound(
    class_counts: Sequence[float] | FloatArray, rho_sum: float, complexity: float, v: float = 1.0
) -> float:
    """The smallest ε over offsets with Σ ρ_0k = ``rho_sum`` and Corollary 1's μ_k (appendix Eq. (35)).

    Returns:
        ε_min (``inf`` if the budget is too small for a positive denominator:
        ``rho_sum <= 4KF·Σ sqrt(N-N_k)/N_k``).

    References:
        Yu et al., IJCV 2021, appendix Eq. (35) with r = Nv.
    """
    n = _counts(class_counts)
    v = _positive("v", v)
    f = _positive("complexity", complexity)
    rho_sum = _positive("rho_sum", rho_sum)
    k, total = n.size, n.sum()
    s = float(np.sum(np.sqrt(total - n) / n))
    den = rho_sum / (4 * k * f) - s
    return float(v * total / k * s * s / den) if den > 0 else math.inf


def bound_table(
    class_counts: Sequence[float] | FloatArray,
    *,
    taus: Iterable[float] = (1.0, 5.0, 10.0, 20.0, 50.0),
    vs: Iterable[float] = (0.1, 1.0, 10.0),
    complexity: float = 1.0,
) -> list[dict[str, Any]]:
    """Rows of ε and Algorithm 1's offsets over a grid of τ and v, for one class distribution.

    Args:
        class_counts: N_k per class (e.g. ``stats.json["class_counts"]``).
        taus: τ values (rows vary τ fastest within each v).
        vs: v values.
        complexity: F, the unknown complexity term (same for every row).

    Returns:
        One dict per (v, τ): ``{"tau", "v", "epsilon", "epsilon_per_class", "rho_neg", "rho_pos", "mu",
        "tau_min"}``; ``tau_min = 4KF`` is the τ below which ε is vacuous (inf); lists are per class.

    Example:
        >>> rows = bound_table([900, 100], taus=[10.0], vs=[1.0], complexity=0.5)
        >>> rows[0]["tau_min"], [round(r, 4) for r in rows[0]["rho_neg"]]  # 4*2*0.5; 10*sqrt(100)/900, 10*sqrt(900)/100
        (4.0, [0.1111, 3.0])
    """
    n = _counts(class_counts)
    f = _positive("complexity", complexity)
    rows = []
    for v in vs:
        for tau in taus:
            rho_neg, rho_pos = corollary_offsets(n, tau=tau, v=v)
            eps_k = error_bound_per_class(n, rho_neg, rho_pos, f)
            rows.append(
                {
                    "tau": float(tau),
                    "v": float(v),
                    "epsilon": float(np.mean(eps_k)),
                    "epsilon_per_class": eps_k.tolist(),
                    "rho_neg": rho_neg.tolist(),
                    "rho_pos": rho_pos.tolist(),
                    "mu": (rho_pos / rho_neg).tolist(),
                    "tau_min": 4 * n.size * f,
                }
            )
    return rows


def _g(x: float, digits: int) -> str:
    return "inf" if math.isinf(x) else f"{x:.{digits}g}"


def render_bound_table(
    rows: Sequence[Mapping[str, Any]], *, class_names: Sequence[str] | None = None, digits: int = 4
) -> str:
    """Markdown table of :func:`bound_table` rows: τ, v, ε, then ρ_0k and ρ_k0 per class.

    Example:
        >>> print(render_bound_table(bound_table([900, 100], taus=[10.0], vs=[1.0], complexity=0.5)).splitlines()[0])
        | τ | v | ε | ρ_0k 0 | ρ_0k 1 | ρ_k0 0 | ρ_k0 1 |
    """
    if not rows:
        return ""
    k = len(rows[0]["rho_neg"])
    names = [str(i) for i in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise ValueError(f"class_names must have {k} entries, got {len(names)}")
    head = ["τ", "v", "ε"] + [f"ρ_0k {c}" for c in names] + [f"ρ_k0 {c}" for c in names]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [_g(r["tau"], digits), _g(r["v"], digits), _g(r["epsilon"], digits)]
        cells += [_g(x, digits) for x in r["rho_neg"]] + [_g(x, digits) for x in r["rho_pos"]]
        lines.append("| " + " | ".join(cells) + " |")
    f_note = rows[0]["tau_min"] / (4 * k)
    lines.append("")
    lines.append(
        f"F = {f_note:.{digits}g} (complexity term, assumed); ε is inf (vacuous) for "
        f"τ <= 4KF = {rows[0]['tau_min']:.{digits}g}."
    )
    return "\n".join(lines) + "\n"
