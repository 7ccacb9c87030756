"""Tiny synthetic inputs for the EndoVis conversion tests (all written on the fly)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def gray_image(h: int, w: int, seed: int) -> np.ndarray:
    """A non-constant uint8 slice: a gradient plus noise (deterministic per seed)."""
    rng = np.random.default_rng(seed)
    base = np.add.outer(np.arange(h), np.arange(w)).astype(np.float64)
    img = 255 * base / max(base.max(), 1) * 0.8 + rng.integers(0, 40, (h, w))
    return np.clip(img, 0, 255).astype(np.uint8)


def save_gray(path: Path, arr: np.ndarray, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **kwargs)
    return path


def part_mask(h: int, w: int, seed: int, values: Sequence[int] = (10, 20, 30)) -> np.ndarray:
    """An instrument part mask: background 0 with random rectangles of the given part values."""
    rng = np.random.default_rng(seed)
    m = np.zeros((h, w), dtype=np.uint8)
    for v in values:
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        m[y0 : y0 + rng.integers(2, h // 2 + 3), x0 : x0 + rng.integers(2, w // 2 + 3)] = v
    return m


def make_endovis_challenge(
    root: Path,
    *,
    sequences: int = 2,
    frames: int = 3,
    size: tuple[int, int] = (24, 32),
    instruments: Sequence[str] = ("Left_Prograsp_Forceps_labels", "Right_Large_Needle_Driver_labels"),
    other: bool = True,
) -> dict[tuple[str, str], list[np.ndarray]]:
    """The EndoVis 2017 training layout; returns ``{(sequence, frame stem): [instrument masks..., other]}``."""
    h, w = size
    out: dict[tuple[str, str], list[np.ndarray]] = {}
    for s in range(1, sequences + 1):
        seq = root / f"instrument_dataset_{s}"
        for f in range(frames):
            name = f"frame{f:03d}.png"
            rgb = np.stack([gray_image(h, w, 10 * s + f + c) for c in range(3)], axis=-1)
            save_gray(seq / "left_frames" / name, rgb)
            masks = []
            for k, inst in enumerate(instruments):
                m = part_mask(h, w, 1000 * s + 10 * f + k)
                save_gray(seq / "ground_truth" / inst / name, m)
                masks.append(m)
            if other:
                m = part_mask(h, w, 7 + s + f, values=(10,))
                save_gray(seq / "ground_truth" / "Other_labels" / name, m)
                masks.append(m)
            out[(seq.name, Path(name).stem)] = masks
    return out


def write_video(path: Path, frames: Sequence[np.ndarray], fps: float = 10.0, faststart: bool = False) -> Path:
    """Encode RGB uint8 frames with the bundled FFmpeg (MPEG-4 part 2, near-lossless quantiser)."""
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    params = ["-movflags", "faststart"] if faststart else []
    writer = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec="mpeg4",
        quality=10,
        pix_fmt_out="yuv420p",
        output_params=params,
        macro_block_size=8,
        ffmpeg_log_level="error",
    )
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


def run_cli(argv: Sequence[str]) -> int:
    """``medseg-data`` exit code for ``argv``, whether it returns it or argparse exits with it."""
    from data_tools.cli import main

    try:
        return main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
