"""Tiny synthetic inputs for the datalist, conversion, split, check and statistics tests (all written on the fly)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)


def gray_image(h: int, w: int, seed: int) -> np.ndarray:
    """A non-constant uint8 slice: a gradient plus noise (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    base = np.add.outer(np.arange(h), np.arange(w)).astype(np.float64)
    img = 255 * base / max(base.max(), 1) * 0.8 + rng.integers(0, 40, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def class_mask(h: int, w: int, seed: int, num_classes: int = 3) -> np.ndarray:
    """Random blocky class indices 0..num_classes-1 (every class present when the image is big enough)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, num_classes, (max(h // 4, 1), max(w // 4, 1)))
    mask = np.kron(coarse, np.ones((4, 4), dtype=np.int64))[:h, :w]
    mask = np.pad(mask, ((0, h - mask.shape[0]), (0, w - mask.shape[1])))
    mask.flat[:num_classes] = np.arange(num_classes)
    return mask.astype(np.uint8)


def save_gray(path: Path, arr: np.ndarray, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


def save_palette(path: Path, indices: np.ndarray) -> Path:
    """A P-mode PNG whose raw indices are ``indices`` (like the COVID ``gt_multiclass`` masks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    im = Image.fromarray(indices.astype(np.uint8), mode="P")
    im.putpalette(PALETTE)
    im.save(path)
    return path


def save_nifti(path: Path, arr: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(arr, np.eye(4) if affine is None else affine), str(path))
    return path


def make_slice_folders(
    root: Path, sizes: Sequence[tuple[int, int]], *, mask: str = "binary", image_ext: str = ".jpg"
) -> tuple[Path, Path, dict[str, np.ndarray]]:
    """``root/imgs/<i>.jpg`` + ``root/masks/<i>.png``; returns both folders and the expected labels by stem.

    ``mask="binary"`` writes 0/255 L masks (expected 0/1); ``"palette"`` writes P-mode 0/1/2 (kept).
    """
    imgs, masks = root / "imgs", root / "masks"
    expected: dict[str, np.ndarray] = {}
    for i, (h, w) in enumerate(sizes):
        save_gray(imgs / f"{i}{image_ext}", gray_image(h, w, i), **({"quality": 95} if image_ext == ".jpg" else {}))
        if mask == "binary":
            lab = (class_mask(h, w, 100 + i, 2) > 0).astype(np.uint8)
            save_gray(masks / f"{i}.png", lab * 255)
        else:
            lab = class_mask(h, w, 100 + i, 3)
            save_palette(masks / f"{i}.png", lab)
        expected[str(i)] = lab
    return imgs, masks, expected


def write_datalist(path: Path, splits: dict[str, list[dict[str, str]]]) -> Path:
    """A datalist JSON with the given (already relative) entries."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(splits, indent=1))
    return path


def label_datalist(root: Path, labels: Sequence[np.ndarray], *, fmt: str = "png", split: str = "training") -> Path:
    """Write each label (and a matching non-constant image) and a datalist listing them under ``split``."""
    entries = []
    for i, lab in enumerate(labels):
        if fmt == "png":
            save_gray(root / "labels" / f"c{i}.png", lab.astype(np.uint8))
            save_gray(root / "images" / f"c{i}.png", gray_image(*lab.shape[:2], i))
            entries.append({"image": f"images/c{i}.png", "label": f"labels/c{i}.png"})
        else:
            save_nifti(root / "labels" / f"c{i}.nii.gz", lab)
            save_nifti(
                root / "images" / f"c{i}.nii.gz", np.random.default_rng(i).normal(size=lab.shape).astype(np.float32)
            )
            entries.append({"image": f"images/c{i}.nii.gz", "label": f"labels/c{i}.nii.gz"})
    return write_datalist(root / "datalist.json", {split: entries})


def run_cli(argv: Sequence[str]) -> int:
    """``medseg-data`` exit code for ``argv``, whether it returns it or argparse exits with it."""
    from data_tools.cli import main

    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
