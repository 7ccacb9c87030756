"""Margin offsets of distribution-aware margin calibration (Algorithm 1), and the class statistics they come from.

Numpy only, kept apart from the loss (:mod:`medseg.losses.margin_calibration`) so that ``medseg-data stats``, the
bound tables and :func:`medseg.registry.create_loss` use them without importing torch.
:func:`medseg.losses.margin_offsets` is :func:`margin_offsets`.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = ["EmptyPolicy", "as_float64_vector", "check_positive", "load_class_stats", "margin_offsets"]

EmptyPolicy = Literal["error", "zero"]
_EMPTY = ("error", "zero")


def as_float64_vector(values: Any, name: str) -> np.ndarray:
    """A 1-D float64 copy of ``values`` (sequence, numpy array or tensor), validated finite."""
    if hasattr(values, "detach"):  # a torch tensor, without importing torch here
        values = values.detach().cpu().numpy()
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"{name} must be a sequence of numbers, one per class, got {type(values).__name__} {values!r}"
        ) from err
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"{name} must be a non-empty 1-D sequence (one value per class), got shape {arr.shape}; "
            "flatten it or give one value per class"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr.tolist()}; remove NaN/inf entries")
    return arr


def check_positive(value: Any, name: str, hint: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a positive number, got {type(value).__name__} {value!r}; {hint}") from err
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}; {hint}")
    return out


def margin_offsets(
    class_counts: Sequence[float] | np.ndarray | Any,
    tau: float = 10.0,
    v: float = 1.0,
    *,
    empty: EmptyPolicy = "error",
) -> tuple[np.ndarray, np.ndarray]:
    r"""Margin offsets ρ_0k and ρ_k0 of every class from its pixel count (Algorithm 1).

    .. math::

        P_k = \frac{N_k}{N},\quad
        μ_k = \frac{P_k \sqrt{N_k}}{v(N - N_k) - P_k\sqrt{N - N_k}},\quad
        ρ_{0k} = τ \frac{\sqrt{N - N_k}}{N_k},\quad ρ_{k0} = μ_k ρ_{0k},

    with ``N = Σ_k N_k``. ρ_0k is the offset added to the margin of pixels *not* of class k, ρ_k0 the one
    subtracted for pixels of class k (Algorithm 2); their ratios are the optimum of Corollary 1, Eq. (15).

    Args:
        class_counts: ``N_k``, pixels of each class over the training set (``medseg-data stats``), one
            non-negative finite number per class (K >= 2). Non-integers (e.g. averaged counts) are accepted.
        tau: τ > 0, the scale of the offsets (paper default 10).
        v: ν > 0 of μ_k (paper default 1); smaller ν gives larger ρ_k0.
        empty: what to do for a degenerate class, one with ``N_k = 0`` (ρ_0k would be infinite) or one holding
            every pixel (``N_k = N``: ρ_0k = 0 and μ_k = 0/0). ``"error"`` (default) raises; ``"zero"`` gives such a
            class ρ_0k = ρ_k0 = 0, i.e. the plain margin log-loss for it, and logs a warning.

    Shape:
        Both outputs are ``(K,)``.

    Returns:
        ``(rho_neg, rho_pos)`` = (ρ_0k, ρ_k0) as float64 numpy arrays.

    Raises:
        ValueError: counts not 1-D, fewer than 2 classes, negative or non-finite counts, all zero; ``tau``/``v``
            not positive; a degenerate class with ``empty="error"``; or a class whose μ_k denominator
            ``v(N − N_k) − P_k√(N − N_k)`` is ≤ 0 (see the note).

    Note:
        μ_k's denominator is ``√(N−N_k)·(v√(N−N_k) − P_k)``, so for ``0 < N_k < N`` it is ≤ 0 exactly when
        ``v ≤ P_k/√(N−N_k)``. There μ_k is infinite or negative, while Theorem 1 defines μ_k = ρ_k0/ρ_0k for positive
        offsets and the ρ-margin loss of Eq. (9) needs ρ > 0: no valid offset exists, so this raises (naming the
        smallest admissible ν) rather than returning a negative ρ_k0 as the public reference code would. With
        integer counts and ν ≥ 1 it cannot happen (``√(N−N_k) ≥ 1 > P_k``).

    Example:
        >>> rho_neg, rho_pos = margin_offsets([3, 1], tau=1.0, v=1.0)
        >>> round(float(rho_neg[1]), 6), round(float(rho_pos[1]), 6)  # √3/1; μ = 0.25·1/(3 − 0.25·√3)
        (1.732051, 0.168685)

    References:
        L. Yu, Z. Li, M. Xu, Y. Gao, J. Luo, J. Zhang, "Distribution-aware Margin Calibration for Semantic
        Segmentation in Images", International Journal of Computer Vision, 2021, doi:10.1007/s11263-021-01533-0,
        arXiv:2112.11554 — Algorithm 1, Corollary 1, Eq. (15).
    """
    counts = as_float64_vector(class_counts, "class_counts")
    tau_f = check_positive(tau, "tau", "the paper uses tau=10")
    v_f = check_positive(v, "v", "the paper uses v=1")
    if empty not in _EMPTY:
        raise ValueError(f"empty must be one of {_EMPTY}, got {empty!r}")
    if counts.size < 2:
        raise ValueError(
            f"class_counts must hold at least 2 classes (background included), got {counts.tolist()}; "
            "count every class the network predicts"
        )
    if np.any(counts < 0):
        bad = [k for k in range(counts.size) if counts[k] < 0]
        raise ValueError(f"class_counts must be non-negative, got {counts.tolist()} (negative at classes {bad})")
    n = float(counts.sum())
    if n <= 0:
        raise ValueError(f"class_counts are all zero ({counts.tolist()}); count the training labels first")
    degenerate = (counts == 0) | (counts == n)
    if np.any(degenerate):
        bad = [k for k in range(counts.size) if degenerate[k]]
        if empty == "error":
            raise ValueError(
                f"class_counts {counts.tolist()}: class(es) {bad} hold no pixels or every pixel, so their margin "
                "offsets are undefined (ρ_0k = τ√(N−N_k)/N_k); check num_classes and the label mapping, or pass "
                "empty='zero' to give such classes zero offsets"
            )
        logger.warning("class(es) %s hold no pixels or every pixel (counts %s): zero margin offsets", bad, counts)
    ok = ~degenerate
    nk = np.where(ok, counts, 1.0)
    rest = np.where(ok, n - counts, 1.0)
    p = nk / n
    denom = v_f * rest - p * np.sqrt(rest)
    bad_mu = ok & (denom <= 0)
    if np.any(bad_mu):
        k = int(np.flatnonzero(bad_mu)[0])
        v_min = p[k] / math.sqrt(rest[k])
        raise ValueError(
            f"v={v_f!r} is too small for class {k} (N_k={counts[k]:g} of N={n:g}): μ_k's denominator "
            f"v(N−N_k) − P_k√(N−N_k) = {denom[k]:.6g} ≤ 0, so ρ_k0 would be infinite or negative; "
            f"use v > P_k/√(N−N_k) = {v_min:.6g} (the paper uses v=1)"
        )
    mu = p * np.sqrt(nk) / np.where(ok, denom, 1.0)
    rho_neg = np.where(ok, tau_f * np.sqrt(rest) / nk, 0.0)
    rho_pos = np.where(ok, mu * rho_neg, 0.0)
    return rho_neg, rho_pos


def load_class_stats(stats: PathLike | Mapping[str, Any] | None, num_classes: int | None = None) -> dict[str, Any]:
    """Read and validate the class statistics of a training split (a ``stats.json`` of ``medseg-data stats``).

    Args:
        stats: the path of the ``stats.json``, or its parsed content (a mapping with ``class_counts``).
        num_classes: classes the network predicts; when given, the statistics must hold counts for that many.

    Returns:
        The statistics as a dict (the keys of ``stats.json``: ``class_counts`` and, when written, ``tau``, ``v``,
        ``num_classes`` and the rest).

    Raises:
        FileNotFoundError: the file does not exist (or ``stats`` is ``None``); the message says which command
            writes it.
        ValueError: it is malformed, or its class count does not match ``num_classes``.
    """
    k_hint = num_classes if num_classes is not None else "K"
    if isinstance(stats, Mapping):
        data: Any = dict(stats)
        where = "stats"
    else:
        if stats is None or not Path(stats).is_file():
            raise FileNotFoundError(
                f"class statistics file {None if stats is None else str(stats)!r} not found; margin calibration "
                "needs the class pixel counts of the training split: run `medseg-data stats DATALIST --num-classes "
                f"{k_hint} --out STATS_JSON` and pass its path as --stats_file"
            )
        where = f"stats_file {str(stats)!r}"
        try:
            data = json.loads(Path(stats).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{where} is not valid JSON: {err}; rerun `medseg-data stats`") from err
    counts = data.get("class_counts") if isinstance(data, dict) else None
    if not isinstance(counts, (list, tuple)):
        raise ValueError(f"{where} has no 'class_counts' list; rerun `medseg-data stats`")
    stored = data.get("num_classes", len(counts))
    if stored != len(counts):
        raise ValueError(
            f"{where} says num_classes={stored!r} but holds {len(counts)} class counts; rerun `medseg-data stats "
            f"DATALIST --num-classes {len(counts)}`"
        )
    if num_classes is not None and len(counts) != num_classes:
        raise ValueError(
            f"{where} holds counts for {len(counts)} classes but the network predicts num_classes={num_classes}; "
            f"rerun `medseg-data stats DATALIST --num-classes {num_classes}` with the same label mapping as this "
            "training, or fix num_classes"
        )
    return dict(data)
