"""EndoVis 2017 robotic instrument data -> merged label maps per frame + a datalist; video -> PNG frames.

Layouts read by :func:`find_frames`:

* **challenge** (the released training data): ``SRC_DIR/instrument_dataset_N/left_frames/frameNNN.png`` with one
  mask folder per instrument, ``SRC_DIR/instrument_dataset_N/ground_truth/<Instrument>_labels/frameNNN.png``.
  ``SRC_DIR`` may also be a single ``instrument_dataset_N`` folder.
* **flat** (Intel's IoT DevCloud surgery-segmentation sample, adapted from ternaus/robot-surgery-segmentation):
  frames ``X.png`` and their per-instrument masks ``<instrument>_X.png`` in one folder (``frame.png``,
  ``left_frame.png``, ``right_frame.png``).

Each instrument mask holds part values 10 = shaft, 20 = wrist, 30 = claspers, 40 = probe (0 = background). The
masks of one frame are merged into one label map:

* ``task="parts"``: 10/20/30/40 -> 1/2/3/4 (the same table as the ``endovis_parts`` preset of
  :mod:`medseg.data.label_map`); where two instrument masks overlap, the later folder in sorted name order wins
  (as in the ternaus ``prepare_data.py`` loop).
* ``task="binary"``: any part of any instrument -> 1.

Folders whose name contains ``Other`` (non-robotic instruments, ultrasound probe, clips) are left out by default,
because both tasks of the MICCAI 2017 challenge (and Li, Yu and Zhang, *Distribution-aware Margin Calibration for
Medical Image Segmentation*: "background class (ultrasound probe, surgical clips and porcine tissues)") count them
as background; ``include_other=True`` merges them like the others.
Mask values outside {0, 10, 20, 30, 40} fail that frame with a message naming the file and the values.

ROI crop (``crop_roi=True``): the raw frames are 1920x1080 with black borders; the challenge's valid camera area
is the 1280x1024 region starting at pixel (x=320, y=28) (the challenge instructions and the shared sample's
README; the sample's content spans x 320..1599, y ~28..1055). Frames and labels are cropped to
``[28:1052, 320:1600]``.

Output (``OUT_DIR``)::

    images/<sequence>/<frame>.png        RGB frame (cropped when asked)
    labels_<task>/<sequence>/<frame>.png uint8 label map
    datalist.json                        {"training": [{"image", "label", "sequence", "frame"}, ...]}

``frame`` is the frame number taken from the file name (``frame012`` -> 12), which ``medseg-data split --by
frame-order`` uses for the papers' sequential 1200/200/400 split.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.data.datalist import ConversionReport, write_datalist
from medseg.imageio import IMAGE_SUFFIXES, file_stem, natural_key, open_image, read_rgb, write_label_png, write_png
from medseg.typing import PathLike

__all__ = [
    "PART_VALUES",
    "ROI",
    "FrameRecord",
    "convert_endovis",
    "crop_roi",
    "extract_video_frames",
    "find_frames",
    "merge_part_masks",
]

logger = logging.getLogger(__name__)

Task = Literal["binary", "parts"]

#: EndoVis 2017 raw part value -> class index of the parts task (shaft, wrist, claspers, probe).
PART_VALUES: dict[int, int] = {10: 1, 20: 2, 30: 3, 40: 4}
#: The challenge region of interest in a 1920x1080 frame: (x, y, width, height).
ROI: tuple[int, int, int, int] = (320, 28, 1280, 1024)
RAW_FRAME_SIZE: tuple[int, int] = (1920, 1080)  # (width, height)
FRAME_PNG_LEVEL = 3  # zlib level for RGB frames: ~2x faster than 6 for ~8 % more bytes
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg")


@dataclass(frozen=True)
class FrameRecord:
    """One frame to convert.

    Attributes:
        sequence: sequence id (the ``instrument_dataset_N`` folder name, or the flat folder's name).
        frame: frame number parsed from the file name (its last digit run; the position in the sequence when
            the name has no digits).
        image: the frame file.
        masks: the per-instrument part masks of this frame, in merge order.
        name: output file stem.
    """

    sequence: str
    frame: int
    image: Path
    masks: tuple[Path, ...]
    name: str


def _frame_number(stem: str, fallback: int) -> int:
    digits = re.findall(r"\d+", stem)
    return int(digits[-1]) if digits else fallback


def _images_in(folder: Path) -> list[Path]:
    files = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.lower().endswith(IMAGE_SUFFIXES)
    ]
    return sorted(files, key=lambda p: natural_key(p.name))


def _is_other(folder: Path) -> bool:
    return "other" in folder.name.lower()


def _challenge_sequence(seq_dir: Path, include_other: bool) -> Iterator[FrameRecord]:
    frames_dir = seq_dir / "left_frames"
    gt_dir = seq_dir / "ground_truth"
    if not gt_dir.is_dir():
        raise ValueError(f"{seq_dir}: no ground_truth folder (test sequences have no masks to convert)")
    mask_dirs = sorted((d for d in gt_dir.iterdir() if d.is_dir()), key=lambda d: natural_key(d.name))
    skipped = [d.name for d in mask_dirs if _is_other(d)]
    if skipped and not include_other:
        logger.info("%s: leaving out %s (background in both tasks; include_other=True keeps them)", seq_dir, skipped)
        mask_dirs = [d for d in mask_dirs if not _is_other(d)]
    for position, image in enumerate(_images_in(frames_dir)):
        masks = tuple(d / image.name for d in mask_dirs)
        yield FrameRecord(seq_dir.name, _frame_number(image.stem, position), image, masks, image.stem)


def _flat_sequence(folder: Path, include_other: bool) -> Iterator[FrameRecord]:
    files = _images_in(folder)
    stems = {file_stem(p): p for p in files}
    mask_of: dict[str, list[Path]] = {}
    for p in files:
        stem = file_stem(p)
        for other in stems:
            if other != stem and stem.endswith(f"_{other}"):
                mask_of.setdefault(other, []).append(p)
                break
    masks_all = {p for ps in mask_of.values() for p in ps}
    frames = [p for p in files if p not in masks_all and file_stem(p) in mask_of]
    for position, image in enumerate(frames):
        masks = sorted(mask_of[file_stem(image)], key=lambda p: natural_key(p.name))
        if not include_other:
            masks = [m for m in masks if not _is_other(m)]
        stem = file_stem(image)
        yield FrameRecord(folder.name, _frame_number(stem, position), image, tuple(masks), stem)


def find_frames(src_dir: PathLike, *, include_other: bool = False) -> list[FrameRecord]:
    """List the frames of an EndoVis 2017 folder (challenge or flat layout, see the module docstring).

    Raises:
        NotADirectoryError: ``src_dir`` is not a folder.
        ValueError: no frame with masks found, or a challenge sequence without ``ground_truth``.
    """
    src = Path(src_dir)
    if not src.is_dir():
        raise NotADirectoryError(f"src_dir: {str(src)!r} is not an existing directory")
    if (src / "left_frames").is_dir():
        sequences = [src]
    else:
        sequences = sorted(
            (d for d in src.iterdir() if d.is_dir() and (d / "left_frames").is_dir()),
            key=lambda d: natural_key(d.name),
        )
    records: list[FrameRecord] = []
    if sequences:
        for seq in sequences:
            records.extend(_challenge_sequence(seq, include_other))
    else:
        records.extend(_flat_sequence(src, include_other))
    if not records:
        raise ValueError(
            f"{src}: no EndoVis frames with masks found (expected instrument_dataset_*/left_frames + "
            "ground_truth/*_labels, or frame.png with <instrument>_frame.png masks)"
        )
    return records


def merge_part_masks(masks: Sequence[np.ndarray], task: Task, *, names: Sequence[str] | None = None) -> np.ndarray:
    """Merge per-instrument part masks (values 0/10/20/30/40) into one uint8 label map.

    Args:
        masks: 2D arrays of equal shape, in merge order.
        task: ``"parts"`` (10/20/30/40 -> 1/2/3/4, later masks win on overlap) or ``"binary"`` (any part -> 1).
        names: file names for error messages (default: the mask positions).

    Returns:
        ``(H, W)`` uint8 labels.

    Raises:
        ValueError: no masks, unequal shapes, or values outside {0, 10, 20, 30, 40} (names the mask).

    Example:
        >>> a = np.array([[0, 10], [20, 0]], np.uint8); b = np.array([[30, 0], [0, 0]], np.uint8)
        >>> merge_part_masks([a, b], "parts").tolist()
        [[3, 1], [2, 0]]
        >>> merge_part_masks([a, b], "binary").tolist()
        [[1, 1], [1, 0]]
    """
    if task not in ("binary", "parts"):
        raise ValueError(f"task: got {task!r}; allowed: 'binary', 'parts'")
    if not masks:
        raise ValueError("masks: need at least one instrument mask to merge")
    labels = [str(n) for n in names] if names is not None else [f"mask #{i}" for i in range(len(masks))]
    shape = masks[0].shape
    out = np.zeros(shape, dtype=np.uint8)
    allowed = {0, *PART_VALUES}
    for name, mask in zip(labels, masks, strict=True):
        if mask.shape != shape:
            raise ValueError(f"{name}: mask shape {mask.shape} differs from {labels[0]} shape {shape}")
        values = set(np.unique(mask).tolist())
        bad = sorted(values - allowed)
        if bad:
            raise ValueError(f"{name}: part mask values {bad} are not EndoVis part codes (allowed: 0, 10, 20, 30, 40)")
        if task == "binary":
            out[mask > 0] = 1
        else:
            for raw, cls in PART_VALUES.items():
                if raw in values:
                    out[mask == raw] = cls
    return out


def crop_roi(array: np.ndarray, source: PathLike) -> np.ndarray:
    """Crop a 1920x1080 frame or mask to the 1280x1024 challenge ROI at (x=320, y=28).

    Raises:
        ValueError: the array is not 1080x1920 (names ``source``).
    """
    width, height = RAW_FRAME_SIZE
    if array.shape[:2] != (height, width):
        raise ValueError(
            f"{source}: ROI crop needs a {width}x{height} frame, got {array.shape[1]}x{array.shape[0]}; "
            "drop --crop-roi for frames that are already cropped"
        )
    x, y, w, h = ROI
    return np.ascontiguousarray(array[y : y + h, x : x + w])


def _read_part_mask(path: Path) -> np.ndarray:
    im = open_image(path)
    if im.mode in ("RGB", "RGBA"):
        rgb = np.asarray(im.convert("RGB"))
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise ValueError(f"{path}: colour part mask; expected grayscale values 0/10/20/30/40")
        return rgb[..., 0]
    if im.mode not in ("L", "P"):
        raise ValueError(f"{path}: unsupported part mask mode {im.mode!r} (expected 8-bit grayscale)")
    return np.asarray(im)


def convert_endovis(
    src_dir: PathLike,
    out_dir: PathLike,
    *,
    task: Task = "parts",
    crop: bool = False,
    include_other: bool = False,
    datalist_name: str = "datalist.json",
    progress: bool = False,
) -> ConversionReport:
    """Convert EndoVis 2017 frames and per-instrument part masks into merged label maps and a datalist.

    Args:
        src_dir: challenge or flat layout (module docstring).
        out_dir: output folder.
        task: ``"parts"`` (labels 0..4) or ``"binary"`` (0/1).
        crop: crop frames and labels to the 1280x1024 ROI at (x=320, y=28).
        include_other: also merge ``Other_labels``-style folders (background by default).
        datalist_name: datalist file name in ``out_dir``.
        progress: show a progress bar.

    Returns:
        A :class:`~medseg.data.datalist.ConversionReport`; failed frames (missing or unreadable mask, size
        mismatch, unknown values) are listed there and left out of the datalist.

    Raises:
        ValueError: bad ``task`` or no frames found. NotADirectoryError: ``src_dir`` missing.
    """
    from tqdm.auto import tqdm

    if task not in ("binary", "parts"):
        raise ValueError(f"task: got {task!r}; allowed: 'binary', 'parts'")
    out = Path(out_dir)
    records = find_frames(src_dir, include_other=include_other)
    failures: list[tuple[str, str]] = []
    entries: list[dict[str, Any]] = []
    for rec in tqdm(records, desc=f"endovis {task}", unit="frame", disable=not progress):
        try:
            if not rec.masks:
                raise ValueError(f"{rec.image}: no instrument masks for this frame")
            image = read_rgb(rec.image)
            masks = [_read_part_mask(m) for m in rec.masks]
            for m, arr in zip(rec.masks, masks, strict=True):
                if arr.shape != image.shape[:2]:
                    raise ValueError(
                        f"size mismatch: frame {rec.image} is {image.shape[1]}x{image.shape[0]} but mask {m} is "
                        f"{arr.shape[1]}x{arr.shape[0]}"
                    )
            label = merge_part_masks(masks, task, names=[str(m) for m in rec.masks])
            if crop:
                image = crop_roi(image, rec.image)
                label = crop_roi(label, rec.image)
            out_image = out / "images" / rec.sequence / f"{rec.name}.png"
            out_label = out / f"labels_{task}" / rec.sequence / f"{rec.name}.png"
            write_png(out_image, image, compress_level=FRAME_PNG_LEVEL)
            write_label_png(out_label, label)
        except (ValueError, FileNotFoundError) as err:
            msg = str(err)
            logger.debug("frame %s failed: %s", rec.image, msg)
            failures.append((str(rec.image), msg))
            continue
        entries.append({"image": str(out_image), "label": str(out_label), "sequence": rec.sequence, "frame": rec.frame})
    report = ConversionReport(datalist=None, converted=len(entries), failures=failures)
    if entries:
        classes = (
            {"0": "background", "1": "instrument"}
            if task == "binary"
            else {"0": "background", "1": "shaft", "2": "wrist", "3": "claspers", "4": "probe"}
        )
        meta = {
            "name": f"EndoVis 2017 {task}",
            "description": "converted by medseg-data endovis" + (" (1280x1024 ROI crop)" if crop else ""),
            "tensorImageSize": "2D",
            "labels": classes,
        }
        report.datalist = write_datalist(out / datalist_name, {"training": entries}, meta)
    return report


def _expected_frames(meta: dict[str, Any]) -> int | None:
    """Frame count promised by the container (duration x fps), or ``None`` when unknown."""
    try:
        duration, fps = float(meta["duration"]), float(meta["fps"])
    except (KeyError, TypeError, ValueError):
        return None
    if not (np.isfinite(duration) and np.isfinite(fps)) or duration <= 0 or fps <= 0:
        return None
    return round(duration * fps)


def extract_video_frames(
    video: PathLike,
    out_dir: PathLike,
    *,
    stride: int = 1,
    max_frames: int | None = None,
    start: int = 0,
    crop: bool = False,
    datalist_name: str = "datalist.json",
    progress: bool = False,
) -> ConversionReport:
    """Decode a video (the FFmpeg of imageio-ffmpeg) and write every ``stride``-th frame as an RGB PNG.

    Frames ``start, start + stride, ...`` are written, at most ``max_frames`` of them, as
    ``OUT_DIR/images/<video stem>/<video stem>_<index:06d>.png`` (``index`` = frame number in the video), plus a
    datalist whose ``test`` list holds them (no labels), ready for ``medseg predict``.

    Args:
        video: the video file (any container/codec the bundled FFmpeg decodes: mp4, avi, mov, mkv, ...).
        out_dir: output folder.
        stride: keep one frame in ``stride`` (>= 1).
        max_frames: stop after this many written frames (``None``: all).
        start: first frame number to keep (>= 0).
        crop: crop to the EndoVis 1280x1024 ROI (frames must be 1920x1080).
        datalist_name: datalist file name in ``out_dir``.
        progress: show a progress bar.

    Returns:
        A :class:`~medseg.data.datalist.ConversionReport` (``converted`` = frames written).

    Raises:
        ValueError: bad arguments, a file FFmpeg cannot decode, a truncated video (fewer frames than the
            container's duration x fps), or no frame selected. On any error the frames already written by this
            call are removed again, so no partial output is left.
        FileNotFoundError: ``video`` does not exist.
    """
    import imageio_ffmpeg
    from tqdm.auto import tqdm

    src = Path(video)
    if not src.is_file():
        raise FileNotFoundError(f"video: {str(src)!r} does not exist")
    if stride < 1:
        raise ValueError(f"stride: got {stride}; allowed: an integer >= 1")
    if start < 0:
        raise ValueError(f"start: got {start}; allowed: an integer >= 0")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames: got {max_frames}; allowed: an integer >= 1 or None for all")
    out = Path(out_dir)
    stem = file_stem(src)
    written: list[Path] = []
    entries: list[dict[str, Any]] = []
    bar = tqdm(desc=f"frames of {src.name}", unit="frame", disable=not progress, total=max_frames)
    # imageio-ffmpeg's generator pipes raw RGB frames from the bundled FFmpeg binary; its first item is the
    # stream metadata. FFmpeg stops quietly at the end of a truncated stream, so the count is checked below.
    reader = imageio_ffmpeg.read_frames(str(src), pix_fmt="rgb24")
    try:
        try:
            meta: dict[str, Any] = next(reader)
            width, height = (int(v) for v in meta["size"])
            decoded = 0
            stopped_early = False
            for index, raw in enumerate(reader):
                decoded = index + 1
                if index < start or (index - start) % stride:
                    continue
                arr = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
                if crop:
                    arr = crop_roi(arr, f"{src} frame {index}")
                target = out / "images" / stem / f"{stem}_{index:06d}.png"
                write_png(target, arr, compress_level=FRAME_PNG_LEVEL)
                written.append(target)
                entries.append({"image": str(target), "sequence": stem, "frame": index})
                bar.update(1)
                if max_frames is not None and len(written) >= max_frames:
                    stopped_early = True
                    break
        except ValueError:
            raise
        except Exception as err:  # imageio-ffmpeg raises OSError/RuntimeError with FFmpeg's log on bad input
            lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
            detail = lines[-1] if lines else type(err).__name__
            raise ValueError(f"{src}: cannot decode video ({detail})") from err
        expected = _expected_frames(meta)
        if not stopped_early and expected is not None and decoded < expected - 1:
            raise ValueError(
                f"{src}: truncated or damaged video: decoded {decoded} frames, the header promises {expected} "
                f"({meta.get('duration')} s at {meta.get('fps')} fps)"
            )
    except BaseException:
        for p in written:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        raise
    finally:
        reader.close()
        bar.close()
    if not entries:
        raise ValueError(f"{src}: no frame selected (start={start}, stride={stride}); the video is shorter")
    meta = {
        "name": f"frames of {src.name}",
        "description": f"medseg-data endovis frame extraction: start {start}, stride {stride}"
        + (", 1280x1024 ROI crop" if crop else ""),
        "tensorImageSize": "2D",
    }
    datalist = write_datalist(out / datalist_name, {"test": entries}, meta)
    return ConversionReport(datalist=datalist, converted=len(entries))
