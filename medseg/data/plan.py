"""Data fingerprint and training plan: ``medseg-data plan DATALIST --out plan.json``.

The idea is nnU-Net's (Isensee et al., "nnU-Net: a self-configuring method for deep learning-based biomedical
image segmentation", Nature Methods 18, 2021, doi:10.1038/s41592-020-01008-z): measure the training data once
(a *fingerprint*: image sizes and spacings, intensity distribution, class frequencies) and derive the training
configuration from it by fixed rules (a *plan*), so that a user gets a sound recipe without tuning. The rules
here are our own and sized for COPLE-Net on 2D slices and frames:

- **normalisation**: intensities are first mapped onto [0, 1] exactly as the bundle's pipeline does (the 8-bit
  range, or a CT window), then clipped to the training set's 0.5/99.5 percentiles and standardised with the
  mean and standard deviation of the clipped values (nnU-Net's CT scheme, over all pixels: the labelled
  structures here are small lesions or instruments, not organs that cover the body). Colour frames are
  standardised per channel.
- **input size**: every image is resized to one size: the median image shape, rounded to a multiple of 16
  (COPLE-Net pools four times) and capped by the device (256 px per side on a CPU, 512 on a GPU), keeping the
  median aspect ratio.
- **network and schedule**: ``coplenet_small`` widths (16-256) on a CPU, the published widths (32-512) on a GPU;
  batches of 2 images on a CPU (many optimizer steps for a small budget; GroupNorm is made for small batches) and
  16 on a GPU; AdamW with linear warm-up then cosine decay per iteration; the number of epochs is set so that the
  whole run sees a fixed number of images (a compute budget), whatever the data set's size.
- **precision**: mixed precision (``amp``): float16 autocast on a GPU (MONAI's ``amp``), bfloat16 autocast on
  a CPU with bfloat16 instructions (:class:`medseg.training.amp.AutocastInferer`: ~1.6x the images per
  CPU-second), float32 elsewhere; the CPU budget (3,000 images per run) is what float32 training would do with
  ~1,900 images.
- **augmentation**: the ``"strong"`` preset of :mod:`medseg.transforms.augment`; **loss**: Dice + cross-entropy
  (``dice_ce``), nnU-Net's default; **test-time augmentation**: flips.

``plan.json``::

    {"version": 1, "datalist", "split", "num_cases", "device",
     "fingerprint": {"channels", "shape": {"median", "min", "max"}, "spacing": {"median"} | null,
                     "intensity": {"unit_range", "percentile_00_5", "percentile_99_5", "mean", "std"} per channel,
                     "classes": {"num_classes", "pixel_fraction", "image_fraction"}},
     "normalization": {"kind": "zscore", "clip": [lo, hi], "mean", "std"}   (gray)
                    | {"mean": [r, g, b], "std": [r, g, b]}                  (colour),
     "spatial_size": [H, W], "network": {"features": [...]}, "batch_size", "num_epochs",
     "optimizer": {"lr", "weight_decay"}, "schedule": {"name": "cosine", "warmup_fraction"},
     "augmentation": {...}, "loss": "dice_ce", "amp": true, "tta": true}

The bundles' ``train.json`` read it (``plan_file``); every value can still be overridden on the command line.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.io import write_json
from medseg.typing import PathLike

__all__ = [
    "PLAN_VERSION",
    "Budget",
    "Fingerprint",
    "fingerprint_datalist",
    "load_plan",
    "make_plan",
    "plan_datalist",
    "write_plan",
]

logger = logging.getLogger(__name__)

PLAN_VERSION = 1
Device = Literal["cpu", "cuda"]

#: Images seen over a whole run (epochs x training cases), per device.
IMAGES_PER_RUN: dict[str, int] = {"cpu": 3000, "cuda": 24000}
#: Largest input side per device (pixels).
MAX_SIDE: dict[str, int] = {"cpu": 256, "cuda": 512}
#: Images per optimizer step. On a CPU the budget buys few images, so small batches give four times the optimizer
#: steps of a batch of 8 for ~9 % more CPU per image (measured: coplenet_small, 256 x 240, 1 thread); GroupNorm
#: keeps them stable (Wu and He, "Group Normalization", ECCV 2018). On a GPU a larger batch fills the device.
BATCH_SIZE: dict[str, int] = {"cpu": 2, "cuda": 16}
FEATURES: dict[str, list[int]] = {"cpu": [16, 32, 64, 128, 256], "cuda": [32, 64, 128, 256, 512]}
LEARNING_RATE: dict[str, float] = {"cpu": 1e-3, "cuda": 1e-3}
#: Pixels sampled per image for the intensity percentiles (a fixed-size reservoir keeps memory flat).
SAMPLES_PER_IMAGE = 20000


@dataclass(frozen=True)
class Budget:
    """Compute budget of a plan: how many images a run sees (``epochs x cases``) and the epoch bounds."""

    images_per_run: int
    min_epochs: int = 10
    max_epochs: int = 1000

    def epochs(self, num_cases: int) -> int:
        """Epochs for ``num_cases`` training cases: ``images_per_run / num_cases`` within the bounds."""
        return int(min(self.max_epochs, max(self.min_epochs, round(self.images_per_run / max(num_cases, 1)))))


@dataclass
class Fingerprint:
    """What :func:`fingerprint_datalist` measured (see the module docstring for the JSON layout)."""

    num_cases: int
    channels: int
    shapes: np.ndarray  # (cases, 2) int
    spacing: list[float] | None
    intensity: list[dict[str, float]]  # one per channel, on the [0, 1] scale
    class_pixels: np.ndarray  # (K,) int64
    class_images: np.ndarray  # (K,) int64: images containing each class

    def to_dict(self) -> dict[str, Any]:
        total = max(int(self.class_pixels.sum()), 1)
        return {
            "channels": self.channels,
            "shape": {
                "median": [int(v) for v in np.median(self.shapes, axis=0)],
                "min": [int(v) for v in self.shapes.min(axis=0)],
                "max": [int(v) for v in self.shapes.max(axis=0)],
            },
            "spacing": None if self.spacing is None else {"median": self.spacing},
            "intensity": self.intensity,
            "classes": {
                "num_classes": len(self.class_pixels),
                "pixel_fraction": [round(int(c) / total, 6) for c in self.class_pixels],
                "image_fraction": [round(int(c) / max(self.num_cases, 1), 4) for c in self.class_images],
            },
        }


def _pipeline(channels: int | None, label_map: Any, intensity_range: Sequence[float] | None, window: Any) -> Any:
    """The deterministic part of the bundles' pipelines: load, channels, label mapping, range onto [0, 1]."""
    from medseg.transforms import ct_slice_transforms, frame_transforms

    if channels == 3:
        return frame_transforms(
            train=False,
            resize_mode="none",
            normalize="unit",
            label_map=label_map,
            intensity_range=intensity_range if intensity_range is not None else (0.0, 255.0),
        )
    return ct_slice_transforms(
        train=False,
        resize_mode="none",
        window=window,
        intensity_range=intensity_range,
        label_map=label_map,
    )


def _peek_channels(path: str) -> int:
    """3 for colour images (PNG/JPEG with distinct channels), else 1."""
    from medseg.transforms.readers import LoadMedicalImaged

    data = LoadMedicalImaged(["image"], dtype="float32", ensure_channel_first=True)({"image": path})
    image = np.asarray(data["image"])
    if image.shape[0] == 3 and not (np.array_equal(image[0], image[1]) and np.array_equal(image[1], image[2])):
        return 3
    return 1


def fingerprint_datalist(
    datalist: PathLike,
    num_classes: int,
    *,
    split: str = "training",
    label_map: Any = None,
    intensity_range: Sequence[float] | None = (0.0, 255.0),
    window: Any = None,
    channels: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Fingerprint:
    """Measure the ``split`` of a datalist (images through the bundles' deterministic preprocessing).

    Args:
        datalist: a decathlon-style datalist JSON.
        num_classes: K; label values must lie in ``0..K-1`` after ``label_map``.
        split: the list to measure (only training data: the plan must not see test cases).
        label_map: the label mapping of the training pipeline (e.g. ``"binary"``).
        intensity_range: raw ``[low, high]`` mapped onto [0, 1] (8-bit: ``[0, 255]``); ignored with ``window``.
        window: a CT window (``"lung"`` or ``[width, level]`` in HU) for data stored in HU.
        channels: 1 (gray) or 3 (colour); ``None`` looks at the first image.
        seed: seed of the pixel sampling for the percentiles.
        progress: a progress bar over the cases.

    Returns:
        A :class:`Fingerprint`.

    Raises:
        ValueError: an empty split, labels outside ``0..K-1``, images with different channel counts.
    """
    from tqdm.auto import tqdm

    from medseg.data.datalist import load_datalist

    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}")
    items = load_datalist(datalist, split)
    if not items:
        raise ValueError(f"{datalist}: split {split!r} is empty; the plan needs training cases")
    first = items[0]["image"]
    chans = channels if channels is not None else _peek_channels(first if isinstance(first, str) else first[0])
    if chans not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {chans!r}")
    pipeline = _pipeline(chans, label_map, intensity_range, window)
    rng = np.random.default_rng(seed)
    samples: list[np.ndarray] = []
    sums = np.zeros(chans)
    sq = np.zeros(chans)
    count = 0
    shapes: list[tuple[int, int]] = []
    spacings: list[list[float]] = []
    pixels = np.zeros(num_classes, np.int64)
    images = np.zeros(num_classes, np.int64)
    for item in tqdm(items, desc="fingerprint", unit="case", disable=not progress):
        data = pipeline(dict(item))
        image = np.asarray(data["image"], dtype=np.float64)
        label = np.asarray(data["label"]).astype(np.int64)[0]
        if image.shape[0] != chans:
            raise ValueError(f"{item['image']}: {image.shape[0]} channel(s), expected {chans} like the first case")
        shapes.append((int(image.shape[1]), int(image.shape[2])))
        pixdim = getattr(data["image"], "pixdim", None)
        if pixdim is not None and len(pixdim) >= 2:
            spacings.append([float(v) for v in list(pixdim)[:2]])
        if label.min() < 0 or label.max() >= num_classes:
            raise ValueError(
                f"{item['label']}: label values {sorted(np.unique(label).tolist())[:8]} fall outside "
                f"0..{num_classes - 1}; check num_classes and the label mapping"
            )
        hist = np.bincount(label.ravel(), minlength=num_classes)
        pixels += hist
        images += hist > 0
        flat = image.reshape(chans, -1)
        sums += flat.sum(axis=1)
        sq += (flat**2).sum(axis=1)
        count += flat.shape[1]
        take = rng.choice(flat.shape[1], size=min(SAMPLES_PER_IMAGE, flat.shape[1]), replace=False)
        samples.append(flat[:, take])
    sample = np.concatenate(samples, axis=1)
    intensity = []
    for c in range(chans):
        lo, hi = np.percentile(sample[c], [0.5, 99.5])
        clipped = np.clip(sample[c], lo, hi)
        intensity.append(
            {
                "mean_unclipped": round(float(sums[c] / count), 6),
                "std_unclipped": round(float(math.sqrt(max(sq[c] / count - (sums[c] / count) ** 2, 0.0))), 6),
                "percentile_00_5": round(float(lo), 6),
                "percentile_99_5": round(float(hi), 6),
                "mean": round(float(clipped.mean()), 6),
                "std": round(float(clipped.std()), 6),
            }
        )
    spacing = [float(v) for v in np.median(np.asarray(spacings), axis=0)] if spacings else None
    return Fingerprint(
        num_cases=len(items),
        channels=chans,
        shapes=np.asarray(shapes, dtype=np.int64),
        spacing=spacing,
        intensity=intensity,
        class_pixels=pixels,
        class_images=images,
    )


def _round16(value: float, cap: int) -> int:
    return int(max(16, min(cap, 16 * math.floor(value / 16 + 0.5))))  # halves round up


def make_plan(
    fingerprint: Fingerprint,
    *,
    device: Device = "cpu",
    budget: Budget | None = None,
    source: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``plan.json`` document for a fingerprint (rules: see the module docstring).

    Args:
        fingerprint: from :func:`fingerprint_datalist`.
        device: ``"cpu"`` (half-width COPLE-Net, inputs up to 256 px, ~1900 images per run) or ``"cuda"``
            (published widths, up to 512 px, 24,000 images per run).
        budget: replaces the device's default budget.
        source: recorded as is (datalist path, split, label map, intensity range or window).

    Returns:
        The plan as a JSON-ready dict.
    """
    if device not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    run_budget = budget if budget is not None else Budget(IMAGES_PER_RUN[device])
    median = np.median(fingerprint.shapes, axis=0).astype(float)
    cap = MAX_SIDE[device]
    scale = min(1.0, cap / float(median.max()))
    size = [_round16(median[0] * scale, cap), _round16(median[1] * scale, cap)]
    if fingerprint.channels == 1:
        stats = fingerprint.intensity[0]
        normalization: dict[str, Any] = {
            "kind": "zscore",
            "clip": [stats["percentile_00_5"], stats["percentile_99_5"]],
            "mean": stats["mean"],
            "std": max(stats["std"], 1e-6),
        }
    else:
        normalization = {
            "mean": [s["mean_unclipped"] for s in fingerprint.intensity],
            "std": [max(s["std_unclipped"], 1e-6) for s in fingerprint.intensity],
        }
    return {
        "version": PLAN_VERSION,
        **dict(source or {}),
        "num_cases": fingerprint.num_cases,
        "device": device,
        "fingerprint": fingerprint.to_dict(),
        "normalization": normalization,
        "spatial_size": size,
        "network": {"features": FEATURES[device]},
        "batch_size": BATCH_SIZE[device],
        "num_epochs": run_budget.epochs(fingerprint.num_cases),
        "images_per_run": run_budget.images_per_run,
        "optimizer": {"lr": LEARNING_RATE[device], "weight_decay": 0.01},
        "schedule": {"name": "cosine", "warmup_fraction": 0.05},
        "augmentation": {"preset": "strong"},
        "loss": "dice_ce",
        "amp": True,
        "tta": True,
    }


def write_plan(path: PathLike, plan: Mapping[str, Any]) -> Path:
    """Write ``plan.json`` atomically; returns its path."""
    write_json(path, dict(plan))
    return Path(path)


def plan_datalist(
    datalist: PathLike,
    num_classes: int,
    out: PathLike | None = None,
    *,
    split: str = "training",
    label_map: Any = None,
    intensity_range: Sequence[float] | None = (0.0, 255.0),
    window: Any = None,
    device: Device = "cpu",
    budget: Budget | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Fingerprint a datalist's ``split`` and write its plan (``out``, default ``plan.json`` beside the datalist).

    What ``medseg-data plan`` runs. Arguments as :func:`fingerprint_datalist` and :func:`make_plan`.

    Returns:
        The plan document.
    """
    fingerprint = fingerprint_datalist(
        datalist,
        num_classes,
        split=split,
        label_map=label_map,
        intensity_range=intensity_range,
        window=window,
        progress=progress,
    )
    source = {
        "datalist": str(Path(datalist).resolve()),
        "split": split,
        "label_map": label_map if label_map is None or isinstance(label_map, (str, int, float)) else str(label_map),
        "intensity_range": None if intensity_range is None else [float(v) for v in intensity_range],
        "window": window,
    }
    plan = make_plan(fingerprint, device=device, budget=budget, source=source)
    write_plan(Path(out) if out is not None else Path(datalist).parent / "plan.json", plan)
    return plan


_REQUIRED = ("normalization", "spatial_size", "network", "batch_size", "num_epochs", "optimizer", "schedule")


def load_plan(path: PathLike) -> dict[str, Any]:
    """Read and check a ``plan.json`` (what the bundles' ``train.json`` call).

    Raises:
        FileNotFoundError: no such file (the message says how to make one).
        ValueError: not a plan of this version, or a required key missing.
    """
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(
            f"plan file {str(p)!r} does not exist; make it with `medseg-data plan DATALIST --num-classes K "
            f"--out {p}` (or point plan_file at one)"
        )
    try:
        plan = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{p}: not valid JSON ({err})") from err
    if not isinstance(plan, dict) or plan.get("version") != PLAN_VERSION:
        raise ValueError(f"{p}: not a medseg plan of version {PLAN_VERSION} (got version {plan.get('version')!r})")
    missing = [k for k in _REQUIRED if k not in plan]
    if missing:
        raise ValueError(f"{p}: plan lacks {missing}; re-create it with `medseg-data plan`")
    return plan
