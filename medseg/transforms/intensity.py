r"""Intensity transforms: CT windows, fixed-range scaling, ImageNet normalisation and colour jitter.

CT window (level :math:`L`, width :math:`W`) mapped linearly onto [0, 1] and clipped:

.. math::
    x' = \operatorname{clip}\left(\frac{x - (L - W/2)}{W},\ 0,\ 1\right)

With the lung window used for COPLE-Net inputs (W = 1500, L = -650 HU) the window is [-1400, 100] HU, so
-1400 HU -> 0, -650 HU -> 0.5 and 100 HU -> 1. The scaling itself is MONAI's ``ScaleIntensityRanged``
(``a_min = L - W/2``, ``a_max = L + W/2``, ``b_min = 0``, ``b_max = 1``, ``clip=True``); this module only turns
window names and ``(width, level)`` pairs into those arguments.

Example:
    >>> window_range("lung")
    (-1400.0, 100.0)
    >>> window_range([400, 40])
    (-160.0, 240.0)

References:
    G. Wang, X. Liu, C. Li, et al., "A Noise-robust Framework for Automatic Segmentation of COVID-19
    Pneumonia Lesions from CT Images", IEEE Trans. Medical Imaging 39(8), 2020, doi:10.1109/TMI.2020.3000314
    (COPLE-Net; the networks this project trains).

Note:
    The W1500/L-650 values are the project's specification of the COPLE-Net lung window;
    the COPLE-Net paper is not among the project's paper copies, so they could not be checked against it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config.type_definitions import KeysCollection, NdarrayOrTensor
from monai.transforms.intensity.dictionary import NormalizeIntensityd, ScaleIntensityRanged
from monai.transforms.transform import MapTransform, RandomizableTransform, Transform
from monai.utils.enums import TransformBackends

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WINDOW_PRESETS",
    "AdjustColor",
    "AdjustColord",
    "RandColorJitter",
    "RandColorJitterd",
    "WindowSpec",
    "channel_normalize",
    "imagenet_normalize",
    "intensity_range_transform",
    "window_range",
    "window_transform",
    "zscore_transforms",
]

#: Named CT windows as (width, level) in HU.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {"lung": (1500.0, -650.0)}
#: ImageNet channel statistics of [0, 1] RGB images (torchvision's ``Normalize`` values).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
_LUMA = (0.299, 0.587, 0.114)

#: A window: a preset name, a ``(width, level)`` pair in HU, or ``None`` for no windowing.
WindowSpec = str | Sequence[float] | None


def window_range(window: str | Sequence[float]) -> tuple[float, float]:
    """``(a_min, a_max) = (L - W/2, L + W/2)`` of a window preset name or a ``(width, level)`` pair.

    Raises:
        ValueError: unknown preset, not a pair, non-finite values, or width <= 0.
    """
    if isinstance(window, str):
        if window not in WINDOW_PRESETS:
            raise ValueError(
                f"window={window!r} is not a preset; use one of {sorted(WINDOW_PRESETS)} or a "
                "[width, level] pair in HU, e.g. [1500, -650]"
            )
        width, level = WINDOW_PRESETS[window]
    else:
        try:
            width, level = (float(v) for v in window)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"window must be a preset name or a [width, level] pair of numbers in HU, got {window!r}"
            ) from err
    if not (math.isfinite(width) and math.isfinite(level)) or width <= 0:
        raise ValueError(f"window (width, level) = ({width}, {level}): width must be > 0 and both finite")
    return level - width / 2.0, level + width / 2.0


def window_transform(keys: KeysCollection, window: str | Sequence[float]) -> ScaleIntensityRanged:
    """MONAI ``ScaleIntensityRanged`` mapping ``window`` linearly onto [0, 1] with clipping."""
    a_min, a_max = window_range(window)
    return ScaleIntensityRanged(keys, a_min=a_min, a_max=a_max, b_min=0.0, b_max=1.0, clip=True)


def intensity_range_transform(keys: KeysCollection, intensity_range: Sequence[float]) -> ScaleIntensityRanged:
    """MONAI ``ScaleIntensityRanged`` mapping ``[lo, hi]`` (e.g. 8-bit ``[0, 255]``) onto [0, 1], clipped.

    Raises:
        ValueError: not a pair of finite numbers with ``lo < hi``.
    """
    try:
        lo, hi = (float(v) for v in intensity_range)
    except (TypeError, ValueError) as err:
        raise ValueError(f"intensity_range must be a [low, high] pair, got {intensity_range!r}") from err
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
        raise ValueError(f"intensity_range=({lo}, {hi}): need finite values with low < high, e.g. [0, 255]")
    return ScaleIntensityRanged(keys, a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)


def _finite(value: Any, what: str, factory: str) -> float:
    try:
        out = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{factory}: {what} must be a number, got {value!r}") from err
    if not math.isfinite(out):
        raise ValueError(f"{factory}: {what} must be finite, got {value!r}")
    return out


def zscore_transforms(
    keys: KeysCollection, normalize: Mapping[str, Any] | None, factory: str = "normalize"
) -> list[Transform]:
    """Clip to ``normalize["clip"]`` then standardise with ``normalize["mean"]``/``["std"]`` (MONAI transforms).

    The statistics are those of ``medseg-data plan`` (its ``normalization``): percentiles and moments of the
    training images on the [0, 1] scale. ``None`` gives no step.

    Raises:
        ValueError: missing or unknown keys, non-finite values, ``std <= 0`` or ``clip`` not ``[lo, hi]``
            with ``lo < hi``.
    """
    if normalize is None:
        return []
    if not isinstance(normalize, Mapping):
        raise ValueError(f"{factory}: normalize must be None or a mapping with mean and std, got {normalize!r}")
    allowed = {"kind", "clip", "mean", "std"}
    unknown = sorted(set(normalize) - allowed)
    if unknown or "mean" not in normalize or "std" not in normalize:
        raise ValueError(
            f"{factory}: normalize needs 'mean' and 'std' (optional 'clip': [lo, hi], 'kind': 'zscore'); "
            f"got keys {sorted(normalize)}"
        )
    if normalize.get("kind", "zscore") != "zscore":
        raise ValueError(f"{factory}: normalize kind must be 'zscore', got {normalize.get('kind')!r}")
    mean = _finite(normalize["mean"], "normalize.mean", factory)
    std = _finite(normalize["std"], "normalize.std", factory)
    if std <= 0:
        raise ValueError(f"{factory}: normalize.std must be > 0, got {std}")
    out: list[Transform] = []
    clip = normalize.get("clip")
    if clip is not None:
        try:
            lo, hi = (_finite(v, "normalize.clip", factory) for v in clip)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{factory}: normalize.clip must be [lo, hi], got {clip!r}") from err
        if lo >= hi:
            raise ValueError(f"{factory}: normalize.clip must have lo < hi, got {clip!r}")
        out.append(ScaleIntensityRanged(keys, a_min=lo, a_max=hi, b_min=lo, b_max=hi, clip=True))
    out.append(
        NormalizeIntensityd(
            keys, subtrahend=np.asarray(mean, np.float32), divisor=np.asarray(std, np.float32), nonzero=False
        )
    )
    return out


def channel_normalize(
    keys: KeysCollection, normalize: str | Mapping[str, Any] | None, factory: str = "normalize"
) -> list[Transform]:
    """Per-channel standardisation of colour images: ``"imagenet"``, ``"unit"``/``None`` (none) or ``{"mean", "std"}``.

    Raises:
        ValueError: another name, or mean/std that are not one positive-std value per channel (3).
    """
    if normalize is None or normalize == "unit":
        return []
    if normalize == "imagenet":
        return [imagenet_normalize(keys)]
    if not isinstance(normalize, Mapping) or "mean" not in normalize or "std" not in normalize:
        raise ValueError(
            f"{factory}: normalize must be 'imagenet', 'unit' or {{'mean': [r, g, b], 'std': [r, g, b]}}, "
            f"got {normalize!r}"
        )
    try:
        mean = np.asarray(normalize["mean"], dtype=np.float32).reshape(-1)
        std = np.asarray(normalize["std"], dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{factory}: normalize mean/std must be numbers per channel, got {normalize!r}") from err
    if mean.size != 3 or std.size != 3 or not np.all(np.isfinite(mean)) or not np.all(std > 0):
        raise ValueError(f"{factory}: normalize needs 3 finite means and 3 stds > 0, got {normalize!r}")
    return [NormalizeIntensityd(keys, subtrahend=mean, divisor=std, channel_wise=True, nonzero=False)]


def imagenet_normalize(keys: KeysCollection) -> NormalizeIntensityd:
    """MONAI ``NormalizeIntensityd`` with ImageNet's per-channel mean/std (input RGB in [0, 1])."""
    return NormalizeIntensityd(
        keys,
        subtrahend=np.asarray(IMAGENET_MEAN, dtype=np.float32),
        divisor=np.asarray(IMAGENET_STD, dtype=np.float32),
        channel_wise=True,
        nonzero=False,
    )


def _gray(img: torch.Tensor) -> torch.Tensor:
    if img.shape[0] == 3:
        return img[0:1] * _LUMA[0] + img[1:2] * _LUMA[1] + img[2:3] * _LUMA[2]
    return img


class AdjustColor(Transform):
    r"""Deterministic brightness, contrast and saturation change of an image in [0, 1].

    .. math::
        x_1 = b\,x, \qquad x_2 = c\,(x_1 - \bar{g}(x_1)) + \bar{g}(x_1), \qquad
        x_3 = s\,(x_2 - g(x_2)) + g(x_2)

    where :math:`g` is the per-pixel BT.601 luma and :math:`\bar g` its image mean; the result is clipped to
    [0, 1] when ``clip`` is set. Factor 1 leaves the image unchanged.

    Args:
        brightness: multiplicative factor ``b >= 0``.
        contrast: factor ``c >= 0`` around the mean gray level (0 gives a flat gray image).
        saturation: factor ``s >= 0`` around the pixel's gray value (0 gives grayscale; no effect on 1 channel).
        clip: clip to [0, 1] afterwards.

    Shape:
        ``(C, *spatial)`` with C = 1 or 3, values in [0, 1].

    Note:
        Same three operations as torchvision's ``ColorJitter`` (not installed here, and MONAI has no colour
        jitter), applied in a fixed order and without hue, whose RGB<->HSV round trip is costly and rarely
        useful for surgical scenes.
    """

    backend = [TransformBackends.TORCH]  # noqa: RUF012 (MONAI declares it so)

    def __init__(
        self, brightness: float = 1.0, contrast: float = 1.0, saturation: float = 1.0, clip: bool = True
    ) -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} factor must be a finite number >= 0, got {value!r}")
        self.brightness = float(brightness)
        self.contrast = float(contrast)
        self.saturation = float(saturation)
        self.clip = clip

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        if img.shape[0] not in (1, 3):
            raise ValueError(f"AdjustColor expects 1 or 3 channels first, got shape {tuple(img.shape)}")
        was_numpy = isinstance(img, np.ndarray)
        x = torch.as_tensor(img)
        out = x * self.brightness
        if self.contrast != 1.0:
            mean = _gray(out).mean()
            out = (out - mean) * self.contrast + mean
        if self.saturation != 1.0 and out.shape[0] == 3:
            gray = _gray(out)
            out = (out - gray) * self.saturation + gray
        if self.clip:
            out = out.clamp(0.0, 1.0)
        return out.numpy() if was_numpy else out


class AdjustColord(MapTransform):
    """Dictionary wrapper of :class:`AdjustColor`."""

    backend = AdjustColor.backend

    def __init__(
        self,
        keys: KeysCollection,
        brightness: float = 1.0,
        contrast: float = 1.0,
        saturation: float = 1.0,
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.adjuster = AdjustColor(brightness, contrast, saturation, clip)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.adjuster(d[key])
        return d


def _jitter_bounds(name: str, value: float | Sequence[float]) -> tuple[float, float]:
    if isinstance(value, (int, float)):
        if value < 0 or not math.isfinite(value):
            raise ValueError(f"{name}={value!r}: a jitter strength must be a finite number >= 0, e.g. 0.2")
        return max(0.0, 1.0 - float(value)), 1.0 + float(value)
    lo, hi = (float(v) for v in value)
    if not (0 <= lo <= hi) or not math.isfinite(hi):
        raise ValueError(f"{name}={value!r}: a factor range must satisfy 0 <= low <= high, e.g. [0.8, 1.2]")
    return lo, hi


class RandColorJitter(RandomizableTransform):
    """Random :class:`AdjustColor`: factors drawn uniformly, then applied by the deterministic twin.

    Args:
        prob: probability of changing the image at all.
        brightness: strength ``j`` (factor drawn from ``[max(0, 1-j), 1+j]``) or an explicit ``[low, high]``.
        contrast: as ``brightness``.
        saturation: as ``brightness``.
        clip: see :class:`AdjustColor`.

    The factors last drawn are in :attr:`params` (``None`` when the transform was skipped), so a result can be
    replayed with ``AdjustColor(**params)``.
    """

    backend = AdjustColor.backend

    def __init__(
        self,
        prob: float = 0.8,
        brightness: float | Sequence[float] = 0.2,
        contrast: float | Sequence[float] = 0.2,
        saturation: float | Sequence[float] = 0.2,
        clip: bool = True,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        self.bounds = {
            "brightness": _jitter_bounds("brightness", brightness),
            "contrast": _jitter_bounds("contrast", contrast),
            "saturation": _jitter_bounds("saturation", saturation),
        }
        self.clip = clip
        self.params: dict[str, float] | None = None

    def randomize(self, data: Any = None) -> None:
        super().randomize(None)
        if not self._do_transform:
            self.params = None
            return
        self.params = {name: float(self.R.uniform(lo, hi)) for name, (lo, hi) in self.bounds.items()}

    def __call__(self, img: NdarrayOrTensor, randomize: bool = True) -> NdarrayOrTensor:
        if randomize:
            self.randomize()
        if self.params is None:
            return img
        return AdjustColor(**self.params, clip=self.clip)(img)


class RandColorJitterd(RandomizableTransform, MapTransform):
    """Dictionary wrapper of :class:`RandColorJitter`: the same factors for every key of one sample."""

    backend = RandColorJitter.backend

    def __init__(
        self,
        keys: KeysCollection,
        prob: float = 0.8,
        brightness: float | Sequence[float] = 0.2,
        contrast: float | Sequence[float] = 0.2,
        saturation: float | Sequence[float] = 0.2,
        clip: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, 1.0)  # the array transform owns ``prob``
        self.jitter = RandColorJitter(prob, brightness, contrast, saturation, clip)

    def set_random_state(self, seed: int | None = None, state: np.random.RandomState | None = None) -> Any:
        super().set_random_state(seed, state)
        self.jitter.set_random_state(seed, state)
        return self

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        self.jitter.randomize()
        for key in self.key_iterator(d):
            d[key] = self.jitter(d[key], randomize=False)
        return d
