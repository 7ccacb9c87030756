"""The project's embedded sample data: small synthetic CT slices, CT volumes and instrument video frames.

Generated on demand (no download, no ``../shared``), deterministic for a seed, and fast (well under a second
for the default sizes). ``medseg demo``, the bundle tests and the inference tests train and predict on them.

Each generator writes images, integer label maps and a decathlon-style datalist (``training``, ``validation``,
``test`` lists of ``{"image", "label"}`` with paths relative to the datalist) and returns the datalist's path.
Files are written atomically (temporary name, then rename).

* :func:`make_ct_slices`: axial chest-CT-like slices: air, a body ellipse of soft tissue, two lungs, and
  lesions inside the lungs: ground-glass opacity (GGO, about -450 HU) and consolidation (about -20 HU). Labels
  are 0/1 (infection) or 0/1/2 (GGO/consolidation, ``multiclass=True``), like the COVID-19 slice data after
  ``medseg-data slices2d``. Stored, like that converter's default output, as 2D NIfTI ``(H, W)`` in row/column
  order holding 8-bit lung-window display values 0-255 (``intensity="uint8"``), or in HU
  (``intensity="hu"``, int16); or as PNG (``fmt="png"``, 8-bit only).
* :func:`make_instrument_frames`: RGB frames of a tissue-like background with one or two surgical
  instruments; parts labels 1 shaft / 2 wrist / 3 claspers (``task="parts"``, the EndoVis part indices after
  ``medseg-data endovis``) or 0/1 (``task="binary"``). Consecutive frames move the tools a little, like video,
  and the split is sequential by frame order (as in the papers' 1200/200/400 split).
* :func:`make_ct_volume`: one NIfTI CT volume in HU with a spherical lesion at a known world position, plus its
  label volume; :func:`make_ct_volumes` writes several with a datalist.
* :func:`write_dicom_series`: write a volume as an uncompressed CT DICOM series with pydicom (for tests of the
  DICOM loading path).

Example:
    >>> import tempfile
    >>> from medseg.data import load_datalist
    >>> path = make_ct_slices(tempfile.mkdtemp(), num_cases=5, size=(32, 32))
    >>> [len(load_datalist(path, s)) for s in ("training", "validation", "test")]
    [3, 1, 1]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.imageio import write_png
from medseg.io import atomic_path, write_json
from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = [
    "HU",
    "SyntheticVolume",
    "make_ct_slices",
    "make_ct_volume",
    "make_ct_volumes",
    "make_instrument_frames",
    "split_counts",
    "write_dicom_series",
]

#: Mean HU of the synthetic tissues.
HU: dict[str, float] = {
    "air": -1000.0,
    "lung": -850.0,
    "soft_tissue": 40.0,
    "ggo": -450.0,
    "consolidation": -20.0,
}
_NOISE_HU = 20.0
_LUNG_WINDOW = (-1400.0, 100.0)  # W1500/L-650, the same window medseg.transforms uses


# ----------------------------------------------------------------------------------------------- helpers
def split_counts(n: int, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> tuple[int, int, int]:
    """Sizes of the training/validation/test splits: at least one case each, the rest by ``fractions``.

    >>> split_counts(10)
    (6, 2, 2)
    >>> split_counts(3)
    (1, 1, 1)
    """
    if n < 3:
        raise ValueError(f"need at least 3 cases for training/validation/test splits, got {n}")
    val = max(1, round(n * fractions[1]))
    test = max(1, round(n * fractions[2]))
    return n - val - test, val, test


def _check_size(size: Sequence[int], ndim: int, name: str, minimum: int = 16) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in size)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be {ndim} integers >= {minimum}, got {size!r}") from err
    if len(out) != ndim or min(out) < minimum:
        raise ValueError(f"{name} must be {ndim} integers >= {minimum}, got {size!r}")
    return out


def _ellipse(shape: tuple[int, int], center: Sequence[float], radii: Sequence[float], angle: float = 0.0) -> Any:
    """Boolean mask of a rotated ellipse on a ``(H, W)`` grid (center/radii in (row, col) pixels)."""
    rr, cc = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float64)
    dr, dc = rr - center[0], cc - center[1]
    ca, sa = math.cos(angle), math.sin(angle)
    u, v = ca * dr + sa * dc, -sa * dr + ca * dc
    return (u / radii[0]) ** 2 + (v / radii[1]) ** 2 <= 1.0


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: a coarse random grid, bilinearly upsampled."""
    from scipy.ndimage import zoom

    coarse = rng.uniform(-1.0, 1.0, size=tuple(max(2, cells) for _ in shape))
    factors = [s / c for s, c in zip(shape, coarse.shape, strict=True)]
    out = zoom(coarse, factors, order=1, mode="nearest")
    return np.asarray(out[tuple(slice(0, s) for s in shape)], dtype=np.float64)


def _to_display(hu: np.ndarray) -> np.ndarray:
    """HU -> 8-bit lung-window display values (what the JPEG slices of the real COVID-19 data hold)."""
    lo, hi = _LUNG_WINDOW
    return np.round(np.clip((hu - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def _write_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(np.ascontiguousarray(array), affine)
    img.header.set_data_dtype(array.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def _write_datalist(out_dir: Path, name: str, splits: dict[str, list[dict[str, Any]]], meta: dict[str, Any]) -> Path:
    path = out_dir / name
    write_json(path, {**meta, **splits})
    return path


# ----------------------------------------------------------------------------------------------- CT slices
def _chest_tissues(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """An axial chest section ``(H, W)`` in HU without lesions (float64) and its lung mask."""
    h, w = size
    hu = np.full(size, HU["air"], dtype=np.float64)
    body = _ellipse(size, (h * 0.5, w * 0.5), (h * rng.uniform(0.36, 0.42), w * rng.uniform(0.44, 0.48)))
    hu[body] = HU["soft_tissue"]
    lungs = np.zeros(size, dtype=bool)
    for side in (-1, 1):
        center = (h * rng.uniform(0.46, 0.52), w * (0.5 + side * rng.uniform(0.2, 0.23)))
        radii = (h * rng.uniform(0.25, 0.29), w * rng.uniform(0.14, 0.17))
        lungs |= _ellipse(size, center, radii, angle=side * rng.uniform(0.0, 0.15)) & body
    hu[lungs] = HU["lung"] + 60.0 * _smooth_noise(rng, size, 6)[lungs]
    return hu, lungs


def _chest_slice(rng: np.random.Generator, size: tuple[int, int], multiclass: bool) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic axial slice ``(H, W)`` in HU (float32) and its labels (uint8: 1 GGO, 2 consolidation)."""
    h, w = size
    hu, lungs = _chest_tissues(rng, size)
    label = np.zeros(size, dtype=np.uint8)
    lung_pixels = np.argwhere(lungs)
    for _ in range(int(rng.integers(1, 4))):
        r0, c0 = lung_pixels[rng.integers(len(lung_pixels))]
        radius = (h * rng.uniform(0.05, 0.12), w * rng.uniform(0.05, 0.12))
        blob = _ellipse(size, (r0, c0), radius, angle=rng.uniform(0, math.pi))
        # An irregular outline: a second, offset ellipse joined to the first.
        offset = (r0 + rng.uniform(-0.8, 0.8) * radius[0], c0 + rng.uniform(-0.8, 0.8) * radius[1])
        blob |= _ellipse(size, offset, (radius[0] * 0.7, radius[1] * 0.7), angle=rng.uniform(0, math.pi))
        blob &= lungs
        hu[blob] = HU["ggo"] + 40.0 * _smooth_noise(rng, size, 5)[blob]
        label[blob] = 1
        if rng.uniform() < 0.6:  # a consolidation core inside the ground glass
            core = _ellipse(size, (r0, c0), (radius[0] * 0.45, radius[1] * 0.45)) & blob
            hu[core] = HU["consolidation"]
            label[core] = 2
    if not label.any():  # every slice has a lesion, like the real slice set (no empty mask)
        r0, c0 = lung_pixels[len(lung_pixels) // 2]
        blob = _ellipse(size, (r0, c0), (h * 0.06, w * 0.06)) & lungs
        hu[blob], label[blob] = HU["ggo"], 1
    hu += rng.normal(0.0, _NOISE_HU, size=size)
    if not multiclass:
        label = (label > 0).astype(np.uint8)
    return hu.astype(np.float32), label


def make_ct_slices(
    out_dir: PathLike,
    num_cases: int = 12,
    size: Sequence[int] = (128, 128),
    seed: int = 0,
    multiclass: bool = False,
    *,
    fmt: Literal["nifti", "png"] = "nifti",
    intensity: Literal["uint8", "hu"] = "uint8",
    datalist_name: str = "datalist.json",
) -> Path:
    """Write synthetic 2D CT slices with lesion labels and a datalist; return the datalist path.

    Args:
        out_dir: output folder (``images/``, ``labels/`` and the datalist are written there).
        num_cases: number of slices (>= 3), split 60/20/20 into training/validation/test (at least 1 each).
        size: ``(H, W)`` in pixels (>= 16 each).
        seed: random seed; the same seed gives byte-identical files.
        multiclass: labels 0/1/2 (GGO/consolidation) instead of 0/1.
        fmt: ``"nifti"`` (2D ``.nii.gz``, ``(H, W)`` row/column order, 1 mm pixels, like ``medseg-data
            slices2d``) or ``"png"``.
        intensity: ``"uint8"``: lung-window display values 0-255 (like the real JPEG slices; pipeline:
            ``intensity_range=[0, 255]``); ``"hu"``: int16 Hounsfield units (pipeline: ``window="lung"``;
            NIfTI only).
        datalist_name: file name of the datalist.

    Returns:
        Path of the datalist JSON.

    Raises:
        ValueError: bad sizes or counts, an unknown format, or HU requested as PNG.
    """
    h, w = _check_size(size, 2, "size")
    if fmt not in ("nifti", "png"):
        raise ValueError(f"fmt must be 'nifti' or 'png', got {fmt!r}")
    if intensity not in ("uint8", "hu"):
        raise ValueError(f"intensity must be 'uint8' or 'hu', got {intensity!r}")
    if fmt == "png" and intensity == "hu":
        raise ValueError("intensity='hu' needs fmt='nifti' (PNG holds 8-bit display values only)")
    counts = split_counts(int(num_cases))
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    suffix = ".nii.gz" if fmt == "nifti" else ".png"
    entries: list[dict[str, Any]] = []
    for i in range(int(num_cases)):
        hu, label = _chest_slice(rng, (h, w), multiclass)
        image = _to_display(hu) if intensity == "uint8" else np.round(hu).astype(np.int16)
        stem = f"case_{i:03d}"
        img_path, lab_path = out / "images" / f"{stem}{suffix}", out / "labels" / f"{stem}{suffix}"
        if fmt == "png":
            write_png(img_path, image)
            write_png(lab_path, label)
        else:
            affine = np.eye(4)
            _write_nifti(img_path, image, affine)
            _write_nifti(lab_path, label, affine)
        entries.append({"image": f"images/{stem}{suffix}", "label": f"labels/{stem}{suffix}", "case": stem})
    n_train, n_val, _ = counts
    splits = {
        "training": entries[:n_train],
        "validation": entries[n_train : n_train + n_val],
        "test": entries[n_train + n_val :],
    }
    labels = {"0": "background", "1": "ground-glass opacity", "2": "consolidation"} if multiclass else {
        "0": "background", "1": "infection"
    }  # fmt: skip
    meta = {
        "name": "medseg synthetic CT slices",
        "description": f"{num_cases} synthetic chest CT slices, seed {seed}, {intensity} intensities",
        "labels": labels,
        "numTraining": n_train,
    }
    path = _write_datalist(out, datalist_name, splits, meta)
    logger.info("wrote %d synthetic CT slices to %s", num_cases, out)
    return path


# ----------------------------------------------------------------------------------------------- frames
_PART_COLORS = {1: (150, 152, 160), 2: (80, 82, 92), 3: (205, 205, 212)}


@dataclass
class _Tool:
    tip: np.ndarray  # (x, y) of the clasper tips in frame 0
    angle: float  # direction from the tip back to the image border
    sway: np.ndarray  # amplitude (x, y) in pixels of the slow back-and-forth motion
    phase: float  # of that motion


def _tool_polygons(tip: np.ndarray, angle: float, size: tuple[int, int]) -> list[tuple[int, list[tuple[float, float]]]]:
    """Polygons (label, [(x, y), ...]) of one instrument whose claspers end at ``tip`` (x, y)."""
    h, w = size
    scale = min(h, w)
    d = np.array([math.cos(angle), math.sin(angle)])  # direction from the tip back towards the image border
    n = np.array([-d[1], d[0]])
    shaft_w, wrist_w = 0.075 * scale, 0.065 * scale
    jaw_len, wrist_len = 0.12 * scale, 0.12 * scale
    wrist_start = tip + d * jaw_len
    shaft_start = wrist_start + d * wrist_len
    shaft_end = shaft_start + d * 2.0 * (h + w)  # far outside the frame

    def quad(a: np.ndarray, b: np.ndarray, half: float) -> list[tuple[float, float]]:
        return [tuple(p) for p in (a + n * half, b + n * half, b - n * half, a - n * half)]

    jaw_open = 0.35
    jaws = []
    for sign in (-1, 1):
        jd = np.array(
            [
                math.cos(angle + math.pi + sign * jaw_open),
                math.sin(angle + math.pi + sign * jaw_open),
            ]
        )
        base = wrist_start + n * sign * wrist_w * 0.25
        jaws.append([tuple(base + n * wrist_w * 0.22), tuple(base + jd * jaw_len), tuple(base - n * wrist_w * 0.22)])
    return [
        (1, quad(shaft_start, shaft_end, shaft_w / 2)),
        (2, quad(wrist_start, shaft_start, wrist_w / 2)),
        (3, jaws[0]),
        (3, jaws[1]),
    ]


def make_instrument_frames(
    out_dir: PathLike,
    num_frames: int = 20,
    size: Sequence[int] = (128, 160),
    seed: int = 0,
    *,
    task: Literal["parts", "binary"] = "parts",
    num_sequences: int = 1,
    datalist_name: str = "datalist.json",
) -> Path:
    """Write synthetic RGB instrument frames with part labels and a datalist; return the datalist path.

    Args:
        out_dir: output folder (``images/<sequence>/``, ``labels/<sequence>/`` and the datalist).
        num_frames: frames per sequence (>= 3 in total); the split is sequential: first 60 % training, next
            20 % validation, last 20 % test (at least one each), over the frames in order.
        size: ``(H, W)`` (>= 16 each).
        seed: random seed; the same seed gives byte-identical files.
        task: ``"parts"`` (1 shaft, 2 wrist, 3 claspers) or ``"binary"`` (instrument = 1).
        num_sequences: independent "videos"; entries carry ``sequence`` and ``frame`` keys.
        datalist_name: file name of the datalist.

    Returns:
        Path of the datalist JSON.
    """
    from PIL import Image, ImageDraw

    h, w = _check_size(size, 2, "size")
    if task not in ("parts", "binary"):
        raise ValueError(f"task must be 'parts' or 'binary', got {task!r}")
    if num_sequences < 1:
        raise ValueError(f"num_sequences must be >= 1, got {num_sequences!r}")
    total = int(num_frames) * int(num_sequences)
    split_counts(total)  # validates >= 3
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    entries: list[dict[str, Any]] = []
    for s in range(int(num_sequences)):
        seq = f"seq_{s + 1}"
        base_color = np.array([rng.uniform(150, 190), rng.uniform(60, 90), rng.uniform(60, 90)])
        texture = _smooth_noise(rng, (h, w), 8)[..., None] * np.array([30.0, 18.0, 18.0])
        n_tools = int(rng.integers(1, 3))
        tools = []
        for k in range(n_tools):
            side = -1 if k == 0 else 1
            tools.append(
                _Tool(
                    tip=np.array([w * (0.5 + side * rng.uniform(0.05, 0.2)), h * rng.uniform(0.35, 0.65)]),
                    angle=(math.pi * (1.0 if side < 0 else 0.0)) + rng.uniform(-0.5, 0.5),
                    sway=rng.uniform(-0.15, 0.15, size=2) * min(h, w),
                    phase=rng.uniform(0, 2 * math.pi),
                )
            )
        for f in range(int(num_frames)):
            rgb = base_color + texture + rng.normal(0.0, 4.0, size=(h, w, 3))
            canvas = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
            lab_img = Image.new("L", (w, h), 0)
            draw, draw_lab = ImageDraw.Draw(canvas), ImageDraw.Draw(lab_img)
            for tool in tools:
                tip = tool.tip + tool.sway * math.sin(tool.phase + 0.3 * f)  # bounded: tools stay in view
                angle = tool.angle + 0.05 * math.sin(tool.phase + 0.3 * f)
                for part, poly in _tool_polygons(tip, angle, (h, w)):
                    draw.polygon(poly, fill=_PART_COLORS[part])
                    draw_lab.polygon(poly, fill=part if task == "parts" else 1)
            frame = np.asarray(canvas).astype(np.float64)
            shade = 1.0 + 0.15 * _smooth_noise(rng, (h, w), 4)[..., None]  # uneven endoscope lighting
            frame = np.clip(frame * shade, 0, 255).astype(np.uint8)
            stem = f"frame{f:03d}"
            write_png(out / "images" / seq / f"{stem}.png", frame)
            write_png(out / "labels" / seq / f"{stem}.png", np.asarray(lab_img, dtype=np.uint8))
            entries.append(
                {
                    "image": f"images/{seq}/{stem}.png",
                    "label": f"labels/{seq}/{stem}.png",
                    "sequence": seq,
                    "frame": f,
                }
            )
    entries.sort(key=lambda e: (e["frame"], e["sequence"]))  # sequential split by frame order
    n_train, n_val, _ = split_counts(total)
    splits = {
        "training": entries[:n_train],
        "validation": entries[n_train : n_train + n_val],
        "test": entries[n_train + n_val :],
    }
    labels = {"0": "background", "1": "shaft", "2": "wrist", "3": "claspers"} if task == "parts" else {
        "0": "background", "1": "instrument"
    }  # fmt: skip
    meta = {
        "name": "medseg synthetic instrument frames",
        "description": f"{total} synthetic RGB frames, task {task}, seed {seed}",
        "labels": labels,
        "numTraining": n_train,
    }
    path = _write_datalist(out, datalist_name, splits, meta)
    logger.info("wrote %d synthetic instrument frames to %s", total, out)
    return path


# ----------------------------------------------------------------------------------------------- volumes
@dataclass(frozen=True)
class SyntheticVolume:
    """What :func:`make_ct_volume` wrote and where its lesion is.

    Attributes:
        image: path of the CT NIfTI (int16 HU).
        label: path of the label NIfTI (uint8; 1 = lesion).
        affine: the RAS voxel-to-world affine of both files.
        lesion_center_voxel: lesion centre in voxel indices ``(i, j, k)``.
        lesion_center_world: lesion centre in RAS mm.
        lesion_radius_mm: lesion radius in mm.
        lesion_voxels: number of label voxels.
    """

    image: Path
    label: Path
    affine: np.ndarray
    lesion_center_voxel: tuple[float, float, float]
    lesion_center_world: tuple[float, float, float]
    lesion_radius_mm: float
    lesion_voxels: int


def make_ct_volume(
    out_path: PathLike,
    shape: Sequence[int] = (64, 64, 24),
    affine: np.ndarray | Sequence[Sequence[float]] | None = None,
    seed: int = 0,
    *,
    lesion_center: Sequence[float] | None = None,
    lesion_radius_mm: float | None = None,
    label_path: PathLike | None = None,
) -> SyntheticVolume:
    """Write one synthetic CT volume in HU with a spherical lesion at a known place, and its label volume.

    The body is an elliptic cylinder along the third axis with two lungs; the lesion (GGO, label 1) is a ball in
    world millimetres, so it stays round under anisotropic or oblique affines.

    Args:
        out_path: image file (``.nii.gz``/``.nii``).
        shape: ``(I, J, K)`` voxels (in-plane ``I, J >= 16``, ``K >= 4``).
        affine: 4x4 voxel-to-RAS affine (default ``diag(0.8, 0.8, 2.5)``, origin 0).
        seed: random seed (noise and lung shapes).
        lesion_center: voxel indices of the lesion centre (default: inside the first lung, mid-volume).
        lesion_radius_mm: lesion radius (default: 12 % of the in-plane field of view).
        label_path: label file (default: ``<image stem>_label.nii.gz`` next to the image).

    Returns:
        A :class:`SyntheticVolume` with the paths and the lesion geometry.
    """
    ni, nj, nk = _check_size(shape, 3, "shape", minimum=4)
    if min(ni, nj) < 16:
        raise ValueError(f"shape must have at least 16 voxels in-plane (first two axes), got {shape!r}")
    aff = np.diag([0.8, 0.8, 2.5, 1.0]) if affine is None else np.asarray(affine, dtype=np.float64)
    if aff.shape != (4, 4) or abs(np.linalg.det(aff[:3, :3])) < 1e-9:
        raise ValueError(f"affine must be an invertible 4x4 matrix, got {aff.tolist()!r}")
    rng = np.random.default_rng(seed)
    image_path = Path(out_path)
    if label_path is None:
        name = image_path.name
        stem = name[: -len(".nii.gz")] if name.endswith(".nii.gz") else image_path.stem
        label_path = image_path.with_name(f"{stem}_label.nii.gz")
    section, lung2d = _chest_tissues(rng, (ni, nj))
    vol = np.repeat(section[:, :, None], nk, axis=2)
    lung = np.repeat(lung2d[:, :, None], nk, axis=2)
    ends = np.abs(np.linspace(-1.0, 1.0, nk)) > 0.92  # end slices: no lung (apex/base)
    lung[:, :, ends] = False
    vol[:, :, ends] = np.where(lung2d[:, :, None], HU["soft_tissue"], section[:, :, None])
    if lesion_center is None:
        cand = np.argwhere(lung[:, :, nk // 2])
        center = np.array([*cand[len(cand) // 3], nk // 2], dtype=np.float64)
    else:
        center = np.asarray(lesion_center, dtype=np.float64)
        if center.shape != (3,):
            raise ValueError(f"lesion_center must be 3 voxel indices, got {lesion_center!r}")
    fov = min(ni * np.linalg.norm(aff[:3, 0]), nj * np.linalg.norm(aff[:3, 1]))
    radius = float(lesion_radius_mm) if lesion_radius_mm is not None else float(0.12 * fov)
    if radius <= 0:
        raise ValueError(f"lesion_radius_mm must be > 0, got {lesion_radius_mm!r}")
    idx = np.stack(np.meshgrid(np.arange(ni), np.arange(nj), np.arange(nk), indexing="ij"), axis=-1)
    world = idx @ aff[:3, :3].T + aff[:3, 3]
    center_world = aff[:3, :3] @ center + aff[:3, 3]
    lesion = np.linalg.norm(world - center_world, axis=-1) <= radius
    vol[lesion] = HU["ggo"]
    vol += rng.normal(0.0, _NOISE_HU, size=vol.shape)
    image = np.round(vol).astype(np.int16)
    label = lesion.astype(np.uint8)
    _write_nifti(image_path, image, aff)
    _write_nifti(Path(label_path), label, aff)
    return SyntheticVolume(
        image=image_path,
        label=Path(label_path),
        affine=aff,
        lesion_center_voxel=(float(center[0]), float(center[1]), float(center[2])),
        lesion_center_world=(float(center_world[0]), float(center_world[1]), float(center_world[2])),
        lesion_radius_mm=radius,
        lesion_voxels=int(label.sum()),
    )


def make_ct_volumes(
    out_dir: PathLike,
    num_cases: int = 3,
    shape: Sequence[int] = (64, 64, 24),
    seed: int = 0,
    *,
    datalist_name: str = "datalist.json",
) -> Path:
    """Write ``num_cases`` synthetic CT volumes (:func:`make_ct_volume`) and a datalist; return its path."""
    out = Path(out_dir)
    counts = split_counts(int(num_cases))
    entries = []
    for i in range(int(num_cases)):
        stem = f"case_{i:03d}"
        make_ct_volume(
            out / "images" / f"{stem}.nii.gz",
            shape,
            seed=seed * 1000 + i,
            label_path=out / "labels" / f"{stem}.nii.gz",
        )
        entries.append({"image": f"images/{stem}.nii.gz", "label": f"labels/{stem}.nii.gz", "case": stem})
    n_train, n_val, _ = counts
    splits = {
        "training": entries[:n_train],
        "validation": entries[n_train : n_train + n_val],
        "test": entries[n_train + n_val :],
    }
    meta = {"name": "medseg synthetic CT volumes", "labels": {"0": "background", "1": "lesion"}}
    return _write_datalist(out, datalist_name, splits, meta)


# ----------------------------------------------------------------------------------------------- DICOM
def write_dicom_series(
    out_dir: PathLike,
    volume_hu: np.ndarray,
    affine: np.ndarray | Sequence[Sequence[float]],
    *,
    series_uid: str | None = None,
    slope: float = 1.0,
    intercept: float = -1024.0,
    shuffle_instance_numbers: bool = False,
    seed: int = 0,
    prefix: str = "slice",
) -> list[Path]:
    """Write a volume ``(I, J, K)`` in HU as an uncompressed CT DICOM series (one file per ``k`` slice).

    Geometry follows the RAS ``affine``: voxel ``(i, j, k)`` is column ``i``, row ``j`` of slice ``k``;
    ImagePositionPatient/ImageOrientationPatient are its LPS equivalents. Stored values are
    ``round((hu - intercept) / slope)`` as uint16 or int16, with RescaleSlope/Intercept set.

    Args:
        out_dir: folder for the files (created).
        volume_hu: the volume in HU, nibabel index order.
        affine: its 4x4 voxel-to-RAS affine (orthogonal direction cosines).
        series_uid: SeriesInstanceUID (a fresh one by default).
        slope: RescaleSlope.
        intercept: RescaleIntercept.
        shuffle_instance_numbers: give InstanceNumbers in random order (readers must sort by position).
        seed: seed for the shuffle.
        prefix: file name prefix.

    Returns:
        The written file paths, in slice order ``k``.
    """
    import pydicom
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    vol = np.asarray(volume_hu, dtype=np.float64)
    if vol.ndim != 3:
        raise ValueError(f"volume_hu must be 3D (I, J, K), got shape {vol.shape}")
    aff = np.asarray(affine, dtype=np.float64)
    lps = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    cosines = lps[:3, :3] / spacing
    stored = np.round((vol - intercept) / slope)
    signed = bool(stored.min() < 0)
    dtype = np.int16 if signed else np.uint16
    if stored.min() < np.iinfo(dtype).min or stored.max() > np.iinfo(dtype).max:
        raise ValueError("volume values do not fit 16 bits with this slope/intercept")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid, frame_uid = generate_uid(), generate_uid()
    nk = vol.shape[2]
    numbers = np.arange(1, nk + 1)
    if shuffle_instance_numbers:
        numbers = np.random.default_rng(seed).permutation(numbers)
    paths = []
    for k in range(nk):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        path = out / f"{prefix}_{k:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality = "CT"
        ds.PatientName, ds.PatientID = "Synthetic^Phantom", "SYNTH0001"
        ds.SeriesNumber, ds.InstanceNumber = 1, int(numbers[k])
        position = lps[:3, :3] @ np.array([0.0, 0.0, float(k)]) + lps[:3, 3]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in (*cosines[:, 0], *cosines[:, 1])]
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[0]:.6f}"]  # row spacing (j), column spacing (i)
        ds.SliceThickness = f"{spacing[2]:.6f}"
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        ds.PixelData = np.ascontiguousarray(stored[:, :, k].T.astype(dtype)).tobytes()  # rows = j
        with atomic_path(path) as tmp:
            pydicom.dcmwrite(tmp, ds, enforce_file_format=True)
        paths.append(path)
    return paths
