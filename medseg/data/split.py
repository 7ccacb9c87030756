"""Deterministic training/validation/test splits of a datalist: by case, by video sequence, or by frame order.

All entries of the input datalist (its ``training``, ``validation`` and ``test`` lists pooled; entries without a
``label`` are kept too) are redistributed:

* ``by="case"``: entries are grouped by patient/case and whole groups are shuffled with ``seed`` and assigned,
  so no case straddles two splits. The group id is the entry's ``group_key`` value (default: ``case``, else
  ``patient`` when every entry has it), or the first capture group (else the whole match) of ``group_pattern``
  searched in the image path, or else the image file stem (every file its own case).
* ``by="sequence"``: the same with video sequences; default group: the ``sequence`` key, else the image's parent
  folder name.
* ``by="frame-order"``: no shuffling; entries are ordered and cut into consecutive blocks. ``order="frame"``
  (default) sorts by (frame number, sequence), so with 8 sequences of 225 frames and counts 1200/200/400 every
  sequence gives frames 0-149 to training, 150-174 to validation and 175-224 to test; this is how "sequentially
  split into 1,200, 200 and 400 images according to the frame index" (Li, Yu and Zhang, *Distribution-aware
  Margin Calibration for Medical Image Segmentation*, robotic-instrument experiments) reads when applied to
  EndoVis 2017's 8x225 frames. ``order="sequence"`` sorts by (sequence, frame) (whole sequences first),
  ``order="datalist"`` keeps the pooled file order.

Sizes are ``fractions`` (default 0.7/0.15/0.15; rounded by largest remainder so they sum to the number of
groups) or ``counts``; both count groups for case/sequence splits and entries for frame-order splits. Counts
that sum to fewer than available leave the rest out (with a warning); more than available is an error.

Determinism: entries are pooled and sorted by image path before grouping, so the result depends only on the set
of entries, ``by``, the sizes and ``seed`` (``random.Random(seed)``), not on how the input was split before.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from medseg.data.datalist import SPLITS, read_datalist, write_datalist
from medseg.imageio import file_stem, natural_key
from medseg.typing import PathLike

__all__ = ["SplitSummary", "assign_sizes", "split_datalist", "split_entries"]

logger = logging.getLogger(__name__)

SplitBy = Literal["case", "sequence", "frame-order"]
FrameOrder = Literal["frame", "sequence", "datalist"]
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


@dataclass
class SplitSummary:
    """Sizes of a split: entries and groups per split, entries left out, and the file written."""

    entries: dict[str, int]
    groups: dict[str, int]
    unused: int
    path: Path | None = None

    def line(self) -> str:
        parts = [f"{k} {self.entries[k]} ({self.groups[k]} groups)" for k in SPLITS]
        tail = f", {self.unused} left out" if self.unused else ""
        return "split: " + ", ".join(parts) + tail


def assign_sizes(
    n: int, fractions: Sequence[float] | None = None, counts: Sequence[int] | None = None
) -> tuple[int, int, int]:
    """How many items (groups or entries) go to training, validation, test.

    Args:
        n: number of items available.
        fractions: three non-negative fractions summing to 1 (largest-remainder rounding; a non-zero fraction
            gets at least one item when ``n`` allows).
        counts: three non-negative integers summing to at most ``n``.

    Raises:
        ValueError: both or malformed sizes; counts larger than ``n``.

    Example:
        >>> assign_sizes(10, fractions=(0.7, 0.15, 0.15))
        (7, 2, 1)
        >>> assign_sizes(1800, counts=(1200, 200, 400))
        (1200, 200, 400)
    """
    if fractions is not None and counts is not None:
        raise ValueError("give either fractions or counts, not both")
    if counts is not None:
        c = [int(x) for x in counts]
        if len(c) != 3 or any(x < 0 for x in c):
            raise ValueError(f"counts: got {list(counts)}; give three non-negative integers (train val test)")
        if sum(c) > n:
            raise ValueError(f"counts: {c} sum to {sum(c)} but only {n} are available; lower them")
        return c[0], c[1], c[2]
    f = list(DEFAULT_FRACTIONS if fractions is None else fractions)
    if len(f) != 3 or any(not (x >= 0) for x in f) or abs(sum(f) - 1.0) > 1e-6:
        raise ValueError(f"fractions: got {f}; give three non-negative numbers summing to 1 (e.g. 0.7 0.15 0.15)")
    exact = [x * n for x in f]
    sizes = [int(e) for e in exact]
    # largest remainder; ties go to the earlier split
    for i in sorted(range(3), key=lambda i: (-(exact[i] - sizes[i]), i))[: n - sum(sizes)]:
        sizes[i] += 1
    # a requested split should not come out empty when there is something to give it
    for i in range(3):
        if f[i] > 0 and sizes[i] == 0:
            donor = max(range(3), key=lambda j: sizes[j])
            if sizes[donor] > 1:
                sizes[donor] -= 1
                sizes[i] += 1
    return sizes[0], sizes[1], sizes[2]


def _group_of(
    entry: dict[str, Any], by: SplitBy, group_key: str | None, pattern: re.Pattern[str] | None, key_default: str
) -> str:
    image = entry["image"] if isinstance(entry["image"], str) else entry["image"][0]
    if group_key is not None:
        if group_key not in entry:
            raise ValueError(f"{image}: entry has no {group_key!r} key (--group-key); keys: {sorted(entry)}")
        return str(entry[group_key])
    if pattern is not None:
        match = pattern.search(Path(image).as_posix())
        if match is None:
            raise ValueError(f"{image}: --group-pattern {pattern.pattern!r} does not match this path")
        return match.group(1) if pattern.groups else match.group(0)
    if key_default and key_default in entry:
        return str(entry[key_default])
    return Path(image).parent.name if by == "sequence" else file_stem(image)


def _frame_of(entry: dict[str, Any], position: int) -> int:
    if "frame" in entry:
        try:
            return int(entry["frame"])
        except (TypeError, ValueError) as err:
            raise ValueError(f"{entry['image']}: 'frame' value {entry['frame']!r} is not an integer") from err
    digits = re.findall(r"\d+", file_stem(entry["image"] if isinstance(entry["image"], str) else entry["image"][0]))
    return int(digits[-1]) if digits else position


def split_entries(
    entries: Sequence[dict[str, Any]],
    *,
    by: SplitBy = "case",
    seed: int = 0,
    fractions: Sequence[float] | None = None,
    counts: Sequence[int] | None = None,
    group_key: str | None = None,
    group_pattern: str | None = None,
    order: FrameOrder = "frame",
) -> tuple[dict[str, list[dict[str, Any]]], SplitSummary]:
    """Split datalist entries (see the module docstring for the rules).

    Args:
        entries: datalist entries (dicts with at least ``image``).
        by: ``"case"``, ``"sequence"`` (whole groups, shuffled) or ``"frame-order"`` (consecutive blocks).
        seed: shuffle seed for case/sequence splits.
        fractions: three split fractions summing to 1 (default 0.7/0.15/0.15).
        counts: three split sizes instead of fractions.
        group_key: entry key holding the group id.
        group_pattern: regular expression searched in the image path; group 1 (else the match) is the id.
        order: frame-order sort: ``"frame"``, ``"sequence"`` or ``"datalist"``.

    Returns:
        ``({"training": [...], "validation": [...], "test": [...]}, summary)``.

    Raises:
        ValueError: unknown ``by``/``order``, bad sizes, fewer groups than non-empty splits need, a missing
            group key or a pattern that does not match.
    """
    if by not in ("case", "sequence", "frame-order"):
        raise ValueError(f"by: got {by!r}; allowed: 'case', 'sequence', 'frame-order'")
    if order not in ("frame", "sequence", "datalist"):
        raise ValueError(f"order: got {order!r}; allowed: 'frame', 'sequence', 'datalist'")
    if not entries:
        raise ValueError("the datalist has no entries to split")
    try:
        pattern = re.compile(group_pattern) if group_pattern is not None else None
    except re.error as err:
        raise ValueError(f"group_pattern: {group_pattern!r} is not a valid regular expression ({err})") from err
    if by == "case":
        key_default = next((k for k in ("case", "patient") if all(k in e for e in entries)), "")
    else:  # sequences, also the sequence part of the frame-order sort
        key_default = "sequence" if all("sequence" in e for e in entries) else ""

    def image_key(e: dict[str, Any]) -> tuple[Any, ...]:
        img = e["image"] if isinstance(e["image"], str) else e["image"][0]
        return natural_key(Path(img).as_posix())

    out: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    if by == "frame-order":
        indexed = list(enumerate(entries))
        seq_of = {i: _group_of(e, "sequence", group_key, pattern, key_default) for i, e in indexed}
        if order != "datalist":
            # position within its sequence (in path order) is the fallback frame number
            positions: dict[int, int] = {}
            seen: dict[str, int] = {}
            for i, _ in sorted(indexed, key=lambda t: image_key(t[1])):
                positions[i] = seen.get(seq_of[i], 0)
                seen[seq_of[i]] = positions[i] + 1
            frame_of = {i: _frame_of(e, positions[i]) for i, e in indexed}
            if order == "frame":
                indexed.sort(key=lambda t: (frame_of[t[0]], natural_key(seq_of[t[0]]), image_key(t[1])))
            else:
                indexed.sort(key=lambda t: (natural_key(seq_of[t[0]]), frame_of[t[0]], image_key(t[1])))
        sizes = assign_sizes(len(indexed), fractions, counts)
        start = 0
        groups: dict[str, int] = {}
        for name, size in zip(SPLITS, sizes, strict=True):
            block = indexed[start : start + size]
            out[name] = [dict(e) for _, e in block]
            groups[name] = len({seq_of[i] for i, _ in block})
            start += size
        unused = len(indexed) - start
    else:
        ordered = sorted(entries, key=image_key)
        members: dict[str, list[dict[str, Any]]] = {}
        for e in ordered:
            members.setdefault(_group_of(e, by, group_key, pattern, key_default), []).append(e)
        names = sorted(members, key=natural_key)
        random.Random(seed).shuffle(names)
        sizes = assign_sizes(len(names), fractions, counts)
        requested = counts if counts is not None else (fractions or DEFAULT_FRACTIONS)
        for split_name, size, want in zip(SPLITS, sizes, requested, strict=True):
            if want > 0 and size == 0:
                logger.warning(
                    "%s split is empty: only %d %s group(s) to share out; give --counts or more data",
                    split_name,
                    len(names),
                    by,
                )
        start = 0
        groups = {}
        for name, size in zip(SPLITS, sizes, strict=True):
            chosen = names[start : start + size]
            out[name] = [dict(e) for g in sorted(chosen, key=natural_key) for e in members[g]]
            groups[name] = len(chosen)
            start += size
        unused = sum(len(members[g]) for g in names[start:])
    if unused:
        logger.warning("%d entries are in no split (the requested counts sum to less than available)", unused)
    summary = SplitSummary({k: len(v) for k, v in out.items()}, groups, unused)
    return out, summary


def split_datalist(
    datalist: PathLike,
    out: PathLike | None = None,
    *,
    by: SplitBy = "case",
    seed: int = 0,
    fractions: Sequence[float] | None = None,
    counts: Sequence[int] | None = None,
    group_key: str | None = None,
    group_pattern: str | None = None,
    order: FrameOrder = "frame",
) -> SplitSummary:
    """Pool the entries of ``datalist``, split them (:func:`split_entries`) and write the result atomically.

    Args:
        datalist: the input datalist JSON.
        out: where to write (default: overwrite ``datalist``); paths are rewritten relative to ``out``.
        by: see :func:`split_entries`.
        seed: see :func:`split_entries`.
        fractions: see :func:`split_entries`.
        counts: see :func:`split_entries`.
        group_key: see :func:`split_entries`.
        group_pattern: see :func:`split_entries`.
        order: see :func:`split_entries`.

    Returns:
        The :class:`SplitSummary`, with ``path`` set. The written file's metadata gains a ``split`` object
        recording the parameters.
    """
    dl = read_datalist(datalist)
    pooled = [dict(e) for _, _, e in dl.entries()]
    splits, summary = split_entries(
        pooled,
        by=by,
        seed=seed,
        fractions=fractions,
        counts=counts,
        group_key=group_key,
        group_pattern=group_pattern,
        order=order,
    )
    meta = dict(dl.metadata)
    info: dict[str, Any] = {"by": by}
    if by == "frame-order":
        info["order"] = order
    else:
        info["seed"] = seed
    info["counts" if counts is not None else "fractions"] = list(
        counts if counts is not None else fractions or DEFAULT_FRACTIONS
    )
    if group_key is not None:
        info["group_key"] = group_key
    if group_pattern is not None:
        info["group_pattern"] = group_pattern
    meta["split"] = info
    meta["numTraining"] = summary.entries["training"]
    meta["numTest"] = summary.entries["test"]
    summary.path = write_datalist(out if out is not None else dl.path or datalist, splits, meta)
    return summary
