"""Input checks before a network sees an image: non-finite values and intensities far from what the model expects.

Both failures turn into confident-looking wrong masks without them: a few NaN voxels make every window's logits
NaN (and the mask all background), and a 16-bit PNG or a CT rescaled to [0, 1] is clipped or flattened by the
model's fixed intensity window, so the network sees a blank image.

The intensity check compares robust percentiles of the raw input (before the window) with an
:class:`IntensityReference`: today the model's window or intensity range (``intensity_range`` / ``window`` of a
bundle), or the percentiles of the training data when a plan or checkpoint records them
(:meth:`IntensityReference.from_summary`).

Example:
    >>> import numpy as np
    >>> ref = IntensityReference(0.0, 255.0, source="intensity_range")
    >>> check_intensities(np.linspace(0, 255, 1000), ref) is None
    True
    >>> "far outside" in check_intensities(np.linspace(0, 4000, 1000), ref)
    True
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "IntensityPolicy",
    "IntensityReference",
    "NonFinitePolicy",
    "check_intensities",
    "fill_nonfinite",
    "nonfinite_count",
]

#: What to do with NaN/inf voxels: refuse the input (default) or fill them and warn.
NonFinitePolicy = Literal["error", "fill"]
#: What to do with intensities far outside the expected range: refuse (default), warn, or skip the check.
IntensityPolicy = Literal["error", "warn", "off"]

#: Percentiles that describe an input's range robustly (outliers such as metal or padding ignored).
LOW_PERCENTILE = 0.5
HIGH_PERCENTILE = 99.5
#: Far outside: more than this fraction of voxels beyond the reference range widened by ``MARGIN`` widths.
MAX_FAR_FRACTION = 0.25
MARGIN = 2.0
#: Far outside: more than this fraction of voxels beyond the reference range itself (clipped by a window).
MAX_CLIPPED_FRACTION = 0.9
#: Far outside: the input's robust range spans less than this fraction of the reference width.
MIN_CONTRAST = 0.02
#: Voxels sampled for the percentiles (a regular stride over the array; exact for smaller inputs).
MAX_SAMPLES = 2_000_000


@dataclass(frozen=True)
class IntensityReference:
    """The raw intensity range a model expects, e.g. ``[-1400, 100]`` HU for the lung window.

    Attributes:
        low: lower end (the window's minimum, or a low percentile of the training data).
        high: upper end (``high > low``).
        source: where the range comes from, named in messages (``"window 'lung'"``, ``"training data"``).
    """

    low: float
    high: float
    source: str = "the model's intensity range"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.high <= self.low:
            raise ValueError(
                f"an intensity reference needs finite low < high, got low={self.low!r}, high={self.high!r}"
            )

    @property
    def width(self) -> float:
        return self.high - self.low

    @classmethod
    def from_summary(cls, summary: Mapping[str, Any], source: str = "training data") -> IntensityReference:
        """From percentiles of the training intensities, as nnU-Net's dataset fingerprint records them.

        Args:
            summary: ``{"percentile_00_5": lo, "percentile_99_5": hi, ...}`` (nnU-Net's names), or
                ``{"low": lo, "high": hi}``, or ``{"min": lo, "max": hi}``.
            source: named in messages.

        Raises:
            ValueError: if no known pair of keys is present.
        """
        for low_key, high_key in (("percentile_00_5", "percentile_99_5"), ("low", "high"), ("min", "max")):
            if low_key in summary and high_key in summary:
                return cls(float(summary[low_key]), float(summary[high_key]), source)
        raise ValueError(
            f"intensity summary {dict(summary)!r} has no percentile_00_5/percentile_99_5, low/high or min/max pair"
        )


def _sample(values: np.ndarray) -> np.ndarray:
    flat = np.asarray(values).reshape(-1)
    if flat.size > MAX_SAMPLES:
        flat = flat[:: math.ceil(flat.size / MAX_SAMPLES)]
    return flat


def nonfinite_count(values: Any) -> int:
    """Number of NaN or ±inf entries (0 for integer arrays)."""
    arr = np.asarray(values)
    if not np.issubdtype(arr.dtype, np.floating):
        return 0
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def fill_nonfinite(values: np.ndarray) -> tuple[np.ndarray, float]:
    """Replace NaN and -inf by the smallest finite value and +inf by the largest one.

    The smallest value is the background of a CT (air) or an image (black), which makes the least of voxels
    with no data. An array without finite values becomes zeros.

    Returns:
        The filled copy and the value used for NaN.
    """
    dtype = np.float64 if np.asarray(values).dtype == np.float64 else np.float32
    arr: np.ndarray[Any, np.dtype[np.floating[Any]]] = np.array(values, dtype=dtype)
    finite = np.isfinite(arr)
    if finite.all():
        return arr, float("nan")
    low = float(arr[finite].min()) if finite.any() else 0.0
    high = float(arr[finite].max()) if finite.any() else 0.0
    arr[np.isnan(arr)] = low
    arr[np.isneginf(arr)] = low
    arr[np.isposinf(arr)] = high
    return arr, low


def check_intensities(values: Any, reference: IntensityReference) -> str | None:
    """Whether the raw intensities of an input lie far outside ``reference``; a one-line reason if so.

    With :math:`[a, b]` the reference range, :math:`w = b - a` and :math:`[q_l, q_h]` the 0.5th and 99.5th
    percentiles of the input's finite values, the input is far outside when

    * more than 25 % of its voxels lie beyond :math:`[a - 2w, b + 2w]` (e.g. a 16-bit PNG given to a model of
      8-bit images, or raw scanner values given to a model of HU), or
    * more than 90 % of its voxels lie beyond :math:`[a, b]` itself (a window would clip nearly all of it), or
    * its range :math:`q_h - q_l` is positive but below 2 % of :math:`w` (e.g. a CT rescaled to [0, 1] given
      to a model with a 1500 HU window: the window turns it into a flat image).

    A constant image is not flagged (it carries no contrast whatever the range).

    Args:
        values: the raw image (any shape; non-finite values are ignored).
        reference: the expected range.

    Returns:
        ``None`` when the input looks compatible, else a reason without the input's name (the caller adds it).
    """
    flat = _sample(np.asarray(values))
    if flat.dtype.kind == "f":
        flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return None
    flat = flat.astype(np.float64, copy=False)
    low, high = (float(v) for v in np.percentile(flat, [LOW_PERCENTILE, HIGH_PERCENTILE]))
    a, b, w = reference.low, reference.high, reference.width
    far = float(np.count_nonzero((flat < a - MARGIN * w) | (flat > b + MARGIN * w))) / flat.size
    clipped = float(np.count_nonzero((flat < a) | (flat > b))) / flat.size
    spread = high - low
    shown = f"{reference.low:g}..{reference.high:g} ({reference.source})"
    if far > MAX_FAR_FRACTION:
        return (
            f"intensities {low:g}..{high:g} (0.5-99.5th percentiles) lie far outside the expected {shown}: "
            f"{100 * far:.0f}% of the voxels are more than {MARGIN:g} range widths beyond it (wrong bit depth, "
            "units or scaling?)"
        )
    if clipped > MAX_CLIPPED_FRACTION:
        return (
            f"intensities {low:g}..{high:g} (0.5-99.5th percentiles) lie outside the expected {shown} for "
            f"{100 * clipped:.0f}% of the voxels, which the model's scaling clips (wrong units or scaling?)"
        )
    if 0 < spread < MIN_CONTRAST * w:
        return (
            f"intensities span only {low:g}..{high:g} (0.5-99.5th percentiles), under {100 * MIN_CONTRAST:g}% of "
            f"the expected {shown}: the image looks rescaled (e.g. to [0, 1]) and would reach the network flat"
        )
    return None
