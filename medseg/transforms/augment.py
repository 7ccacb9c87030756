"""Training augmentation for 2D slices and frames: named presets and a validated, JSON-configurable spec.

A pipeline factory takes ``augmentation`` as a preset name or a mapping; a mapping may name a ``"preset"`` and
override some of its fields (``{"preset": "strong", "rotate_deg": 30}``). Every transform is MONAI's, applied after
the deterministic, cached part of the pipeline.

Presets:

- ``"none"``: nothing.
- ``"flips"``: left-right flips only (what a plain MONAI baseline usually starts with).
- ``"light"``: flips, a small rotation/scaling (p = 0.3, ±10°, ±10 %), small intensity scale/shift/noise
  (p = 0.15); for frames, colour jitter (p = 0.8, ±20 % brightness/contrast/saturation).
- ``"strong"``: the training recipe's augmentation, following the choices of nnU-Net (Isensee et al., Nature
  Methods 2021, Supplementary Note 4) scaled to 2D: rotation ±15°, scaling ±15 %, translation ±6 % (p = 0.5),
  flips, Gaussian noise (p = 0.15, σ up to 0.1 of the normalised intensities), Gaussian blur (p = 0.1,
  σ 0.5–1 px), brightness (multiplicative, p = 0.15, ±25 %), contrast (p = 0.15, ±25 %), gamma (p = 0.15,
  0.7–1.5); for frames, colour jitter (p = 0.8, ±25 % brightness/contrast/saturation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

__all__ = ["PRESETS", "Augmentation", "AugmentationSpec", "resolve_augmentation"]


@dataclass(frozen=True)
class Augmentation:
    """What a 2D training pipeline does at random (probabilities per sample; 0 switches a step off).

    Args:
        flip_prob: probability of a flip along each of ``flip_axes``.
        flip_axes: spatial axes that may be flipped (0 = rows/up-down, 1 = columns/left-right).
        affine_prob: probability of a random rotation/scaling/translation (one ``RandAffined``).
        rotate_deg: rotation drawn from ``U(-rotate_deg, rotate_deg)`` degrees.
        scale: zoom drawn from ``1 + U(-scale, scale)``.
        translate: shift drawn from ``U(-translate, translate)`` times the image size, per axis.
        elastic_prob: probability of an elastic deformation (``Rand2DElasticd``; slow on CPU).
        noise_prob: probability of additive Gaussian noise.
        noise_std: the noise's standard deviation is drawn from ``U(0, noise_std)`` (intensity units after
            normalisation).
        blur_prob: probability of a Gaussian blur.
        blur_sigma: ``[low, high]`` of the blur's σ in pixels.
        brightness_prob: probability of a multiplicative intensity change ``x (1 + U(-brightness, brightness))``.
        brightness: its strength.
        shift_prob: probability of an additive shift ``x + U(-shift, shift)``.
        shift: its strength.
        contrast_prob: probability of a contrast change around the mean (``RandScaleIntensityFixedMeand``).
        contrast: its strength (factor ``1 + U(-contrast, contrast)``).
        gamma_prob: probability of a gamma change (``RandAdjustContrastd``, on the min-max range).
        gamma: ``[low, high]`` of the gamma.
        jitter_prob: colour frames only: probability of colour jitter.
        jitter: colour frames only: ``[brightness, contrast, saturation]`` strengths (factors ``1 ± s``).
    """

    flip_prob: float = 0.0
    flip_axes: tuple[int, ...] = (1,)
    affine_prob: float = 0.0
    rotate_deg: float = 0.0
    scale: float = 0.0
    translate: float = 0.0
    elastic_prob: float = 0.0
    noise_prob: float = 0.0
    noise_std: float = 0.0
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    brightness_prob: float = 0.0
    brightness: float = 0.0
    shift_prob: float = 0.0
    shift: float = 0.0
    contrast_prob: float = 0.0
    contrast: float = 0.0
    gamma_prob: float = 0.0
    gamma: tuple[float, float] = (0.7, 1.5)
    jitter_prob: float = 0.0
    jitter: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.endswith("_prob"):
                if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f"augmentation.{f.name} must be a probability in [0, 1], got {value!r}")
            elif f.name == "flip_axes":
                if not all(isinstance(a, int) and not isinstance(a, bool) and a in (0, 1) for a in value):
                    raise ValueError(f"augmentation.flip_axes must list 2D spatial axes (0, 1), got {value!r}")
            elif isinstance(value, tuple):
                if not all(_is_number(v) and float(v) >= 0 for v in value):
                    raise ValueError(f"augmentation.{f.name} must hold numbers >= 0, got {value!r}")
                if f.name in ("blur_sigma", "gamma") and (len(value) != 2 or value[0] > value[1]):
                    raise ValueError(f"augmentation.{f.name} must be [low, high] with low <= high, got {value!r}")
                if f.name == "gamma" and value[0] <= 0:
                    raise ValueError(f"augmentation.gamma must be positive, got {value!r}")
                if f.name == "jitter" and len(value) != 3:
                    raise ValueError(f"augmentation.jitter must be [brightness, contrast, saturation], got {value!r}")
            elif not _is_number(value) or float(value) < 0:
                raise ValueError(f"augmentation.{f.name} must be a number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def spatial(
        self, image_key: str, label_keys: list[str], spatial_size: list[int] | None
    ) -> list[Callable[..., Any]]:
        """Flips, affine and elastic steps (labels nearest, zero padding).

        ``spatial_size`` turns ``translate`` (a fraction) into MONAI's translation range in pixels; without it
        (pipelines that keep each image's size) there is no translation.
        """
        from monai.transforms.spatial.dictionary import Rand2DElasticd, RandAffined, RandFlipd

        keys = [image_key, *label_keys]
        modes = ["bilinear"] + ["nearest"] * len(label_keys)
        out: list[Callable[..., Any]] = []
        if self.flip_prob > 0:
            out += [RandFlipd(keys, prob=self.flip_prob, spatial_axis=axis) for axis in self.flip_axes]
        if self.affine_prob > 0 and (self.rotate_deg > 0 or self.scale > 0 or self.translate > 0):
            shift = None
            if self.translate > 0 and spatial_size is not None:
                shift = [self.translate * s for s in spatial_size]
            out.append(
                RandAffined(
                    keys,
                    prob=self.affine_prob,
                    rotate_range=math.radians(self.rotate_deg) if self.rotate_deg > 0 else None,
                    scale_range=[self.scale, self.scale] if self.scale > 0 else None,
                    translate_range=shift,
                    mode=modes,
                    padding_mode="zeros",
                )
            )
        if self.elastic_prob > 0:
            out.append(
                Rand2DElasticd(keys, spacing=(32, 32), magnitude_range=(1.0, 2.0), prob=self.elastic_prob, mode=modes)
            )
        return out

    def intensity(self, image_key: str, *, color: bool = False) -> list[Callable[..., Any]]:
        """Noise, blur, brightness/shift, contrast and gamma, in nnU-Net's order.

        Colour frames (``color=True``) take colour jitter in place of the gray-level brightness, shift,
        contrast and gamma steps.
        """
        from monai.transforms.intensity.dictionary import (
            RandAdjustContrastd,
            RandGaussianNoised,
            RandGaussianSmoothd,
            RandScaleIntensityd,
            RandScaleIntensityFixedMeand,
            RandShiftIntensityd,
        )

        out: list[Callable[..., Any]] = []
        if self.noise_prob > 0 and self.noise_std > 0:
            out.append(RandGaussianNoised(image_key, prob=self.noise_prob, mean=0.0, std=self.noise_std))
        if self.blur_prob > 0:
            lo, hi = self.blur_sigma
            out.append(RandGaussianSmoothd(image_key, sigma_x=(lo, hi), sigma_y=(lo, hi), prob=self.blur_prob))
        if color:
            if self.jitter_prob > 0 and any(self.jitter):
                from medseg.transforms.intensity import RandColorJitterd

                b, c, sat = self.jitter
                out.append(RandColorJitterd(image_key, prob=self.jitter_prob, brightness=b, contrast=c, saturation=sat))
            return out
        if self.brightness_prob > 0 and self.brightness > 0:
            out.append(RandScaleIntensityd(image_key, factors=self.brightness, prob=self.brightness_prob))
        if self.shift_prob > 0 and self.shift > 0:
            out.append(RandShiftIntensityd(image_key, offsets=self.shift, prob=self.shift_prob))
        if self.contrast_prob > 0 and self.contrast > 0:
            out.append(
                RandScaleIntensityFixedMeand(
                    image_key, factors=self.contrast, prob=self.contrast_prob, preserve_range=True
                )
            )
        if self.gamma_prob > 0:
            out.append(RandAdjustContrastd(image_key, gamma=self.gamma, prob=self.gamma_prob))
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


PRESETS: dict[str, Augmentation] = {
    "none": Augmentation(),
    "flips": Augmentation(flip_prob=0.5),
    "light": Augmentation(
        flip_prob=0.5,
        affine_prob=0.3,
        rotate_deg=10.0,
        scale=0.1,
        brightness_prob=0.15,
        brightness=0.1,
        shift_prob=0.15,
        shift=0.1,
        noise_prob=0.15,
        noise_std=0.01,
        jitter_prob=0.8,
        jitter=(0.2, 0.2, 0.2),
    ),
    "strong": Augmentation(
        flip_prob=0.5,
        affine_prob=0.5,
        rotate_deg=15.0,
        scale=0.15,
        translate=0.06,
        noise_prob=0.15,
        noise_std=0.1,
        blur_prob=0.1,
        blur_sigma=(0.5, 1.0),
        brightness_prob=0.15,
        brightness=0.25,
        contrast_prob=0.15,
        contrast=0.25,
        gamma_prob=0.15,
        gamma=(0.7, 1.5),
        jitter_prob=0.8,
        jitter=(0.25, 0.25, 0.25),
    ),
}


AugmentationSpec = str | Mapping[str, Any] | Augmentation | None


def resolve_augmentation(spec: AugmentationSpec) -> Augmentation:
    """An :class:`Augmentation` from a preset name, a mapping (optionally ``{"preset": ..., overrides}``) or itself.

    Raises:
        ValueError: unknown preset or field, or an invalid value (the message names it and what is allowed).

    Example:
        >>> resolve_augmentation({"preset": "strong", "rotate_deg": 30}).rotate_deg
        30
        >>> resolve_augmentation("flips").affine_prob
        0.0
    """
    if spec is None:
        return PRESETS["none"]
    if isinstance(spec, Augmentation):
        return spec
    if isinstance(spec, str):
        if spec not in PRESETS:
            raise ValueError(f"augmentation preset {spec!r} is unknown; use one of {', '.join(PRESETS)}")
        return PRESETS[spec]
    if not isinstance(spec, Mapping):
        raise ValueError(f"augmentation must be a preset name or a mapping, got {type(spec).__name__} {spec!r}")
    raw = dict(spec)
    base = resolve_augmentation(str(raw.pop("preset", "none")))
    names = {f.name for f in fields(Augmentation)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ValueError(f"augmentation: unknown field(s) {unknown}; allowed: preset, {', '.join(sorted(names))}")
    tuples = {f.name for f in fields(Augmentation) if f.name in ("flip_axes", "blur_sigma", "gamma", "jitter")}
    values = {k: tuple(v) if k in tuples and isinstance(v, (list, tuple)) else v for k, v in raw.items()}
    return replace(base, **values)  # type: ignore[arg-type]  # field types are checked in __post_init__
