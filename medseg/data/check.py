"""Integrity report for a datalist: every problem that would break or silently spoil training, per file.

:func:`check_datalist` reads each entry's image and label once (one case in memory at a time) and reports:

========================= ====================================================================================
kind                      meaning
========================= ====================================================================================
``missing``               the file does not exist
``unreadable``            not an image/NIfTI, truncated or corrupt
``too-large``             the header claims more voxels than the limit (checked before reading any data)
``geometry``              image and label spatial shapes differ, or (both NIfTI/volumes) their affines differ
                          (spacing, origin or direction beyond 1e-3 mm / 1e-4 relative)
``label-values``          label values outside ``0..num_classes-1`` (the ignore index excepted), negative
                          values, or values the label map does not know
``label-not-integer``     non-integer or non-finite label values (an interpolated or JPEG-compressed label)
``label-channels``        a multi-channel (colour) label whose channels differ
``nan``                   NaN or infinite image values
``empty``                 an image with no pixels
``constant``              an image whose pixels all have one value (blank slice, failed export)
``duplicate``             the same image listed twice (in one split, or in two: a leak between splits)
========================= ====================================================================================

Files are read with :func:`medseg.imageio.read_image` (NIfTI with nibabel, PNG/JPEG/BMP/TIFF with Pillow, MHA/NRRD
with SimpleITK), which checks each header's claimed size before reading its data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.data.datalist import read_datalist
from medseg.data.label_map import LabelMap
from medseg.imageio import ImageSizeError, LoadedImage, read_image
from medseg.typing import PathLike

__all__ = ["CheckReport", "Problem", "check_datalist"]

logger = logging.getLogger(__name__)

_AFFINE_ATOL_MM = 1e-3
_AFFINE_RTOL = 1e-4
_MAX_VALUES = 8


@dataclass(frozen=True)
class Problem:
    """One finding: the file it concerns, its kind (module table) and a readable message."""

    file: str
    kind: str
    message: str

    def line(self) -> str:
        return f"{self.file}: {self.kind}: {self.message}"


@dataclass
class CheckReport:
    """Result of :func:`check_datalist`.

    Attributes:
        datalist: the checked file.
        entries: entries per split.
        files: number of distinct files read.
        problems: every finding, in datalist order.
        label_values: the set of (mapped) label values seen, over all labels.
    """

    datalist: Path
    entries: dict[str, int] = field(default_factory=dict)
    files: int = 0
    problems: list[Problem] = field(default_factory=list)
    label_values: set[int] = field(default_factory=set)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        n = sum(self.entries.values())
        splits = ", ".join(f"{k} {v}" for k, v in self.entries.items())
        if self.ok:
            values = sorted(self.label_values)
            shown = ", ".join(str(v) for v in values[:16]) + (", ..." if len(values) > 16 else "")
            return f"OK: {n} entries ({splits}), {self.files} files checked, label values {{{shown}}}"
        bad_files = len({p.file for p in self.problems})
        return f"{len(self.problems)} problem(s) in {bad_files} file(s) of {self.datalist} ({n} entries: {splits})"


def _first_path(value: Any) -> str:
    return value if isinstance(value, str) else str(value[0])


def _values_text(values: Iterable[Any]) -> str:
    vals = list(values)
    shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals[:_MAX_VALUES])
    return shown + (f", ... ({len(vals)} in all)" if len(vals) > _MAX_VALUES else "")


def _load(path: str, problems: list[Problem], max_voxels: int | None) -> LoadedImage | None:
    try:
        return read_image(path, max_voxels=max_voxels)
    except FileNotFoundError:
        problems.append(Problem(path, "missing", "file not found"))
    except ValueError as err:
        msg = str(err)
        kind = "too-large" if isinstance(err, ImageSizeError) else "unreadable"
        problems.append(Problem(path, kind, msg[len(path) + 2 :] if msg.startswith(path) else msg))
    return None


def _check_image(path: str, img: LoadedImage, problems: list[Problem]) -> None:
    a = img.array
    if a.size == 0:
        problems.append(Problem(path, "empty", f"no pixels (shape {a.shape})"))
        return
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        finite = np.isfinite(a)
        if not finite.all():
            n_nan = int(np.isnan(a).sum())
            n_inf = int(a.size - finite.sum()) - n_nan
            problems.append(Problem(path, "nan", f"{n_nan} NaN and {n_inf} infinite values"))
            return
    lo, hi = a.min(), a.max()
    if lo == hi:
        problems.append(Problem(path, "constant", f"every pixel is {lo.item()!r} (shape {a.shape})"))


def _label_array(path: str, lbl: LoadedImage, problems: list[Problem]) -> np.ndarray | None:
    a = lbl.array
    if lbl.channel_last:
        chans = a.reshape(-1, a.shape[-1])
        if not (chans == chans[:, :1]).all():
            problems.append(
                Problem(
                    path,
                    "label-channels",
                    f"{a.shape[-1]}-channel label with differing channels; labels must be single-channel class indices",
                )
            )
            return None
        a = a[..., 0]
    while a.ndim > 2 and a.shape[-1] == 1:
        a = a[..., 0]
    return a


def _spatial(img: LoadedImage, label_ndim: int) -> tuple[int, ...]:
    shape = img.spatial_shape
    if img.affine is not None and len(shape) == label_ndim + 1:  # channel-last volume (x, y, z, c)
        shape = shape[:label_ndim]
    while len(shape) > label_ndim and shape[-1] == 1:
        shape = shape[:-1]
    return tuple(shape)


def _check_label_values(
    path: str,
    a: np.ndarray,
    mapper: Any,
    num_classes: int | None,
    ignore_index: int | None,
    problems: list[Problem],
    seen: set[int],
) -> None:
    if np.issubdtype(a.dtype, np.floating):
        bad = ~np.isfinite(a) | (a != np.round(a))
        if bad.any():
            examples = np.unique(a[bad])[:_MAX_VALUES].tolist()
            problems.append(
                Problem(
                    path, "label-not-integer", f"{int(bad.sum())} non-integer values (e.g. {_values_text(examples)})"
                )
            )
            return
    elif not (np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_):
        problems.append(Problem(path, "label-not-integer", f"label dtype {a.dtype} is not numeric"))
        return
    if mapper is not None:
        try:
            a = np.asarray(mapper(a))
        except ValueError as err:
            problems.append(Problem(path, "label-values", str(err)))
            return
    values = np.unique(a)
    ints = [int(v) for v in values.tolist()]
    seen.update(ints)
    valid = [v for v in ints if v != ignore_index]
    negative = [v for v in valid if v < 0]
    if negative:
        problems.append(Problem(path, "label-values", f"negative label values {{{_values_text(negative)}}}"))
    if num_classes is not None:
        outside = [v for v in valid if v >= num_classes]
        if outside:
            ign = f" (ignore index {ignore_index} allowed)" if ignore_index is not None else ""
            problems.append(
                Problem(
                    path,
                    "label-values",
                    f"values {{{_values_text(outside)}}} outside the declared classes 0..{num_classes - 1}{ign}; "
                    "map them (--label-map) or raise --num-classes",
                )
            )


def _check_geometry(
    image_path: str, img: LoadedImage, label_path: str, lbl: LoadedImage, a: np.ndarray, problems: list[Problem]
) -> None:
    spatial = _spatial(img, a.ndim)
    if spatial != tuple(a.shape):
        problems.append(
            Problem(
                label_path,
                "geometry",
                f"label shape {tuple(a.shape)} differs from image {image_path} spatial shape {spatial}",
            )
        )
        return
    if (
        img.affine is not None
        and lbl.affine is not None
        and not np.allclose(img.affine, lbl.affine, rtol=_AFFINE_RTOL, atol=_AFFINE_ATOL_MM)
    ):
        sp_i = np.linalg.norm(img.affine[:3, :3], axis=0)
        sp_l = np.linalg.norm(lbl.affine[:3, :3], axis=0)
        what = []
        if not np.allclose(sp_i, sp_l, rtol=_AFFINE_RTOL, atol=_AFFINE_ATOL_MM):
            what.append(f"spacing {np.round(sp_l, 4).tolist()} vs {np.round(sp_i, 4).tolist()}")
        if not np.allclose(img.affine[:3, 3], lbl.affine[:3, 3], rtol=_AFFINE_RTOL, atol=_AFFINE_ATOL_MM):
            what.append(
                f"origin {np.round(lbl.affine[:3, 3], 3).tolist()} vs {np.round(img.affine[:3, 3], 3).tolist()}"
            )
        if not what:
            what.append("direction cosines differ")
        problems.append(Problem(label_path, "geometry", f"affine differs from image {image_path}: {'; '.join(what)}"))


def check_datalist(
    datalist: PathLike,
    *,
    num_classes: int | None = None,
    label_map: str | Mapping[Any, Any] | None = None,
    ignore_index: int | None = None,
    splits: Iterable[str] | None = None,
    max_voxels: int | None = None,
    progress: bool = False,
) -> CheckReport:
    """Check every image/label of a datalist and report the problems found (module docstring table).

    Args:
        datalist: the datalist JSON.
        num_classes: declared number of classes ``K``; label values must lie in ``0..K-1`` (after
            ``label_map``). ``None``: only integrality and non-negativity are checked.
        label_map: the training's label mapping (a :mod:`medseg.data.label_map` preset, table or inline string),
            applied before the value check; values it does not know are reported.
        ignore_index: a label value allowed besides the classes (e.g. 255 for unlabelled pixels).
        splits: which splits to check (default: all present).
        max_voxels: largest voxel count a header may claim before its file is read (default
            :data:`medseg.imageio.DEFAULT_MAX_VOXELS`); larger files are reported as ``too-large``.
        progress: show a progress bar over entries.

    Returns:
        A :class:`CheckReport`; ``report.ok`` is ``True`` when nothing was found.

    Raises:
        FileNotFoundError: the datalist itself is missing. ValueError: it is malformed, an unknown split is
            asked for, or ``num_classes`` < 1.
    """
    from tqdm.auto import tqdm

    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes: got {num_classes}; give the number of classes K >= 1")
    dl = read_datalist(datalist)
    names = list(splits) if splits is not None else [s for s in dl.splits]
    missing = [s for s in names if s not in dl.splits]
    if missing:
        raise ValueError(f"splits: {missing} not in {dl.path} (it has {sorted(dl.splits)})")
    mapper = None if label_map is None else LabelMap(label_map, ignore_index=ignore_index)
    report = CheckReport(datalist=dl.path or Path(datalist).absolute(), entries={s: len(dl.splits[s]) for s in names})
    if not len(dl):
        report.problems.append(Problem(str(dl.path), "empty", "the datalist has no entries"))
        return report
    first_seen: dict[str, str] = {}
    files: set[str] = set()
    entries = list(dl.entries(names))
    for split, index, entry in tqdm(entries, desc="check", unit="case", disable=not progress):
        image_path = _first_path(entry["image"])
        where = f"{split}[{index}]"
        if image_path in first_seen:  # reported, then checked like any entry (its label may differ)
            report.problems.append(
                Problem(image_path, "duplicate", f"listed in {first_seen[image_path]} and again in {where}")
            )
        first_seen.setdefault(image_path, where)
        images = entry["image"] if isinstance(entry["image"], list) else [entry["image"]]
        loaded_images: list[tuple[str, LoadedImage]] = []
        for p in images:
            files.add(p)
            img = _load(p, report.problems, max_voxels)
            if img is not None:
                _check_image(p, img, report.problems)
                loaded_images.append((p, img))
        if "label" not in entry:
            continue
        label_path = _first_path(entry["label"])
        files.add(label_path)
        lbl = _load(label_path, report.problems, max_voxels)
        if lbl is None:
            continue
        arr = _label_array(label_path, lbl, report.problems)
        if arr is None:
            continue
        _check_label_values(label_path, arr, mapper, num_classes, ignore_index, report.problems, report.label_values)
        for p, img in loaded_images:
            _check_geometry(p, img, label_path, lbl, arr, report.problems)
        del lbl, arr, loaded_images
    report.files = len(files)
    report.problems = list(dict.fromkeys(report.problems))  # a file listed twice reports its problems once
    logger.info("%s", report.summary())
    return report
