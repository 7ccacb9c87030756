"""Per-class pixel counts over a datalist split, and the ``stats.json`` that margin calibration reads.

The margin-calibration loss needs the class frequencies of the training labels (Yu et al., IJCV 2021,
Algorithm 1: ρ_0k = τ·√(N−N_k)/N_k, ρ_k0 = μ_k·ρ_0k, computed by :func:`medseg.losses.margin_offsets`).
:func:`count_classes` streams the labels of one split one case at a time, applies the same label mapping as the
training transforms (:class:`medseg.data.label_map.LabelMap`), drops the ignore index and adds
``np.bincount`` histograms into an int64 vector, so memory stays at one label file plus a fixed-size chunk
buffer however many cases there are, and counts stay exact beyond 2**31 pixels. :func:`compute_stats` adds the
offsets and returns the ``stats.json`` document of DESIGN.md::

    {"num_classes", "class_counts", "num_pixels", "tau", "v", "rho_neg", "rho_pos", "num_cases", "split",
     "datalist"}

``class_counts`` are the pixels of each class after mapping (ignore-index pixels excluded), ``num_pixels`` their
sum, ``rho_neg``/``rho_pos`` the float64 offsets ρ_0k/ρ_k0 per class.

Example:
    >>> import json, tempfile, pathlib
    >>> import numpy as np
    >>> from PIL import Image
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> Image.fromarray(np.array([[0, 0, 1], [0, 2, 1]], np.uint8)).save(d / "a.png")
    >>> _ = (d / "dl.json").write_text(json.dumps({"training": [{"image": "a.png", "label": "a.png"}]}))
    >>> count_classes(d / "dl.json", 3).counts.tolist()
    [3, 2, 1]
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.data.datalist import read_datalist
from medseg.data.label_map import LabelMap
from medseg.imageio import read_label
from medseg.io import write_json
from medseg.typing import PathLike

__all__ = ["ClassCounts", "compute_stats", "count_classes", "count_label_array", "write_stats"]

logger = logging.getLogger(__name__)

#: Elements histogrammed at a time: bounds the int64 temporaries to 32 MiB whatever the volume size.
CHUNK_ELEMENTS = 1 << 22
_MAX_LISTED = 8


@dataclass
class ClassCounts:
    """Result of :func:`count_classes`.

    Attributes:
        counts: int64 ``(K,)`` pixels per class (ignore index excluded).
        num_cases: label files read.
        num_ignored: pixels equal to the ignore index (not in ``counts``).
    """

    counts: np.ndarray
    num_cases: int
    num_ignored: int = 0

    @property
    def num_pixels(self) -> int:
        return int(self.counts.sum())


def count_label_array(
    label: np.ndarray,
    num_classes: int,
    *,
    mapper: LabelMap | None = None,
    ignore_index: int | None = None,
    source: str = "label",
) -> tuple[np.ndarray, int]:
    """Histogram one label array into ``num_classes`` bins, in fixed-size chunks.

    Args:
        label: integer-valued label array (any shape; float arrays must hold integers).
        num_classes: ``K``; every value (after ``mapper``) other than ``ignore_index`` must lie in ``0..K-1``.
        mapper: optional elementwise label mapping (a :class:`~medseg.data.label_map.LabelMap`), applied chunk by
            chunk.
        ignore_index: value excluded from the counts.
        source: name for error messages (the file).

    Returns:
        ``(counts, ignored)``: int64 ``(K,)`` and the number of ignored pixels.

    Raises:
        ValueError: non-integer or non-finite values, or values outside ``0..K-1`` (names ``source`` and them).
    """
    counts = np.zeros(num_classes, dtype=np.int64)
    ignored = 0
    flat = label.reshape(-1)
    for start in range(0, flat.size, CHUNK_ELEMENTS):
        chunk = flat[start : start + CHUNK_ELEMENTS]
        if np.issubdtype(chunk.dtype, np.floating):
            bad = ~np.isfinite(chunk) | (chunk != np.round(chunk))
            if bad.any():
                shown = ", ".join(f"{v:g}" for v in np.unique(chunk[bad])[:_MAX_LISTED].tolist())
                raise ValueError(
                    f"{source}: label has non-integer or non-finite values ({shown}); labels must be integer "
                    "class codes (resample with nearest neighbour, save losslessly)"
                )
            chunk = chunk.astype(np.int64)
        elif chunk.dtype == np.bool_:
            chunk = chunk.astype(np.uint8)
        elif not np.issubdtype(chunk.dtype, np.integer):
            raise ValueError(f"{source}: label dtype {chunk.dtype} is not numeric")
        if mapper is not None:
            try:
                chunk = np.asarray(mapper(chunk))
            except ValueError as err:
                raise ValueError(f"{source}: {err}") from err
        if ignore_index is not None:
            keep = chunk != ignore_index
            n_keep = int(keep.sum())
            if n_keep != chunk.size:
                ignored += chunk.size - n_keep
                chunk = chunk[keep]
        if chunk.size == 0:
            continue
        lo, hi = int(chunk.min()), int(chunk.max())
        if lo < 0 or hi >= num_classes:
            outside = np.unique(chunk[(chunk < 0) | (chunk >= num_classes)])[:_MAX_LISTED].tolist()
            ign = f" (ignore index {ignore_index} excluded)" if ignore_index is not None else ""
            raise ValueError(
                f"{source}: label values {outside} are outside the classes 0..{num_classes - 1}{ign}; "
                "give the training's --label-map, the right --num-classes, or --ignore-index"
            )
        counts += np.bincount(chunk, minlength=num_classes).astype(np.int64, copy=False)
    return counts, ignored


def _label_paths(datalist_path: Path, split: str) -> list[str]:
    """The label files of one split, resolved against the datalist's folder."""
    try:
        entries = read_datalist(datalist_path).split(split)
    except ValueError as err:
        if "not found" not in str(err):
            raise
        raise ValueError(f"split: {err}; choose one (--split)") from err
    paths: list[str] = []
    for index, item in enumerate(entries):
        label = item.get("label")
        if isinstance(label, list) and label:
            label = label[0]
        if not isinstance(label, str):
            raise ValueError(f"{datalist_path}: {split}[{index}] has no 'label' path; statistics need labelled cases")
        paths.append(label)
    if not paths:
        raise ValueError(f"{datalist_path}: split {split!r} is empty; nothing to count")
    return paths


def count_classes(
    datalist_path: PathLike,
    num_classes: int,
    split: str = "training",
    *,
    label_map: str | Mapping[Any, Any] | None = None,
    ignore_index: int | None = None,
    max_voxels: int | None = None,
    progress: bool = False,
) -> ClassCounts:
    """Count pixels per class over the labels of one datalist split, one case at a time.

    Args:
        datalist_path: decathlon-style datalist (paths relative to it).
        num_classes: ``K`` (>= 2).
        split: the list to count (``"training"`` for margin calibration).
        label_map: the training's label mapping (``MapLabels`` preset, table or inline string); ``None`` counts
            the stored values.
        ignore_index: label value (after mapping) to leave out, e.g. 255.
        max_voxels: largest voxel count a label header may claim (default
            :data:`medseg.imageio.DEFAULT_MAX_VOXELS`).
        progress: show a progress bar over cases.

    Returns:
        :class:`ClassCounts` with int64 counts.

    Raises:
        ValueError: bad arguments, an empty split, an unreadable label or out-of-range values (names the file).
        FileNotFoundError: the datalist or a label file is missing.
    """
    from tqdm.auto import tqdm

    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise ValueError(f"num_classes: got {num_classes!r}; give the number of classes K >= 2 (background counts)")
    mapper = None if label_map is None else LabelMap(label_map, ignore_index=ignore_index)
    paths = _label_paths(Path(datalist_path), split)
    total = np.zeros(int(num_classes), dtype=np.int64)
    ignored = 0
    for path in tqdm(paths, desc=f"counting {split}", unit="case", disable=not progress):
        label = read_label(path, max_voxels=max_voxels).array
        counts, n_ign = count_label_array(
            label, int(num_classes), mapper=mapper, ignore_index=ignore_index, source=path
        )
        total += counts
        ignored += n_ign
        del label
    logger.info("counted %d cases of %s: %s (%d ignored)", len(paths), split, total.tolist(), ignored)
    return ClassCounts(total, len(paths), ignored)


def compute_stats(
    datalist_path: PathLike,
    num_classes: int,
    *,
    split: str = "training",
    tau: float = 10.0,
    v: float = 1.0,
    label_map: str | Mapping[Any, Any] | None = None,
    ignore_index: int | None = None,
    empty: Literal["error", "zero"] = "error",
    max_voxels: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Class counts of a split plus the margin-calibration offsets: the ``stats.json`` document.

    Args:
        datalist_path: decathlon-style datalist.
        num_classes: ``K``.
        split: the split to count.
        tau: τ of Algorithm 1 (Yu et al., IJCV 2021; default 10).
        v: ν of Algorithm 1 (default 1).
        label_map: the training's label mapping (see :func:`count_classes`).
        ignore_index: label value excluded from the counts.
        empty: what :func:`medseg.losses.margin_offsets` does for a class without pixels: ``"error"`` (default)
            raises, naming the class; ``"zero"`` gives it zero offsets (plain margin log-loss for that class).
        max_voxels: see :func:`count_classes`.
        progress: show a progress bar.

    Returns:
        ``{"num_classes", "class_counts", "num_pixels", "tau", "v", "rho_neg", "rho_pos", "num_cases", "split",
        "datalist"}`` with JSON-ready values.

    Raises:
        ValueError: as :func:`count_classes`; a class with no pixels (names the class) unless
            ``empty="zero"``; invalid ``tau``/``v``/``empty``.
    """
    if not (np.isfinite(tau) and tau > 0):
        raise ValueError(f"tau: got {tau!r}; give a positive finite margin scale (the paper uses 10)")
    if not (np.isfinite(v) and v > 0):
        raise ValueError(f"v: got {v!r}; give a positive finite ν (the paper uses 1)")
    if empty not in ("error", "zero"):
        raise ValueError(f"empty: got {empty!r}; allowed: 'error' (default) or 'zero'")
    result = count_classes(
        datalist_path,
        num_classes,
        split,
        label_map=label_map,
        ignore_index=ignore_index,
        max_voxels=max_voxels,
        progress=progress,
    )
    counts = result.counts
    absent = [k for k in range(len(counts)) if counts[k] == 0]
    if absent and empty == "error":
        raise ValueError(
            f"class(es) {absent} have no pixels in split {split!r} of {datalist_path} (counts "
            f"{counts.tolist()}): margin offsets are undefined for them (ρ_0k = τ√(N−N_k)/N_k divides by N_k). "
            "Check --num-classes and --label-map; if the class is truly absent from this split, pass "
            "--empty zero (zero offsets for it)"
        )
    from medseg.margins import margin_offsets

    rho_neg, rho_pos = margin_offsets(counts, tau=float(tau), v=float(v), empty=empty)
    return {
        "num_classes": int(num_classes),
        "class_counts": [int(c) for c in counts],
        "num_pixels": result.num_pixels,
        "tau": float(tau),
        "v": float(v),
        "rho_neg": [float(x) for x in np.asarray(rho_neg.tolist(), dtype=np.float64).reshape(-1)],
        "rho_pos": [float(x) for x in np.asarray(rho_pos.tolist(), dtype=np.float64).reshape(-1)],
        "num_cases": result.num_cases,
        "split": split,
        "datalist": str(datalist_path),
    }


def write_stats(path: PathLike, stats: Mapping[str, Any]) -> Path:
    """Write a ``stats.json`` document atomically and return its path."""
    out = Path(path)
    write_json(out, dict(stats))
    return out
