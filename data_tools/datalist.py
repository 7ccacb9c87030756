"""Read and write decathlon-style datalists (the JSON every ``medseg-data`` converter produces).

A datalist is a JSON object with up to three lists, ``training``, ``validation`` and ``test``, of
entries ``{"image": ..., "label": ...}`` (MONAI's ``load_decathlon_datalist`` format; ``test`` entries may
be bare image paths). Paths in the file are **relative to the datalist file**, so a converted dataset
folder can be moved or mounted elsewhere. Other top-level keys (``name``, ``labels``, ...) are metadata and
are kept on rewrite; other keys in an entry (``sequence``, ``frame``, ``case``) are kept as they are.

In memory, :func:`read_datalist` resolves ``image`` and ``label`` to absolute paths and :func:`write_datalist`
makes them relative again to wherever the file is written; only those two keys are treated as paths (MONAI's
loader also joins any other value that happens to name an existing file, which would corrupt a ``sequence`` id
equal to a folder name).

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> entry = {"image": str(root / "images" / "a.png"), "label": str(root / "labels" / "a.png")}
    >>> path = write_datalist(root / "datalist.json", {"training": [entry]})
    >>> read_datalist(path).splits["training"][0]["image"] == entry["image"]
    True
    >>> import json; json.loads(path.read_text())["training"][0]["image"]
    'images/a.png'
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.io import write_json
from medseg.typing import PathLike

__all__ = ["PATH_KEYS", "SPLITS", "ConversionReport", "Datalist", "read_datalist", "write_datalist"]

logger = logging.getLogger(__name__)

#: The split lists a datalist may hold, in the order they are written.
SPLITS: tuple[str, ...] = ("training", "validation", "test")
#: Entry keys whose values are file paths (a string or a list of strings for multi-file channels).
PATH_KEYS: tuple[str, ...] = ("image", "label")

Entry = dict[str, Any]


@dataclass
class Datalist:
    """A datalist in memory: its splits (absolute paths) and its metadata keys.

    Attributes:
        path: the file it was read from (absolute), or ``None`` when built in memory.
        splits: ``{"training": [...], ...}``; only the splits present in the file.
        metadata: every other top-level key of the file, kept for rewriting.
    """

    path: Path | None
    splits: dict[str, list[Entry]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def entries(self, splits: Iterable[str] | None = None) -> Iterator[tuple[str, int, Entry]]:
        """Yield ``(split, index, entry)`` over ``splits`` (default: every split present, in order)."""
        names = [s for s in SPLITS if s in self.splits] if splits is None else list(splits)
        for name in names:
            for index, entry in enumerate(self.splits.get(name, [])):
                yield name, index, entry

    def __len__(self) -> int:
        return sum(len(v) for v in self.splits.values())


def _resolve(base: Path, value: Any, where: str) -> Any:
    if isinstance(value, str):
        return os.path.normpath(base / value)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [os.path.normpath(base / v) for v in value]
    raise ValueError(f"{where}: expected a path string or a list of path strings, got {type(value).__name__}")


def _relative(base: Path, value: Any) -> Any:
    def rel(p: str) -> str:
        return Path(os.path.relpath(os.path.abspath(p), base)).as_posix()

    if isinstance(value, str):
        return rel(value)
    if isinstance(value, list):
        return [rel(v) for v in value]
    return value


def read_datalist(path: PathLike) -> Datalist:
    """Read a datalist JSON, resolving ``image``/``label`` paths against the file's folder.

    Args:
        path: the datalist JSON file.

    Returns:
        The :class:`Datalist`; every entry is a dict (bare ``test`` strings become ``{"image": path}``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not valid JSON, not an object, a split that is not a list, an entry without
            ``image``, or a path value that is not a string; each message names the file and the entry.
    """
    file = Path(path).absolute()
    if not file.is_file():
        raise FileNotFoundError(f"datalist {str(path)!r} does not exist (give the JSON written by a converter)")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file}: not a valid JSON datalist ({err})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: a datalist must be a JSON object with 'training'/'validation'/'test' lists")
    base = file.parent
    out = Datalist(path=file)
    for key, value in raw.items():
        if key not in SPLITS:
            out.metadata[key] = value
            continue
        if not isinstance(value, list):
            raise ValueError(f"{file}: {key!r} must be a list of entries, got {type(value).__name__}")
        entries: list[Entry] = []
        for index, item in enumerate(value):
            where = f"{file}: {key}[{index}]"
            if isinstance(item, str):
                item = {"image": item}
            if not isinstance(item, dict) or "image" not in item:
                raise ValueError(f"{where}: each entry must be an object with an 'image' path (got {item!r})")
            entry = dict(item)
            for k in PATH_KEYS:
                if k in entry:
                    entry[k] = _resolve(base, entry[k], f"{where}.{k}")
            entries.append(entry)
        out.splits[key] = entries
    if not out.splits:
        raise ValueError(f"{file}: no 'training', 'validation' or 'test' list found (keys: {sorted(raw)})")
    return out


def write_datalist(
    path: PathLike,
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    metadata: Mapping[str, Any] | None = None,
) -> Path:
    """Write a datalist atomically, with ``image``/``label`` paths relative to the file's folder.

    Args:
        path: where to write the JSON (parent folders are created).
        splits: split name (one of :data:`SPLITS`) -> entries with absolute (or cwd-relative) paths.
        metadata: extra top-level keys written first (e.g. ``name``, ``labels``, ``split_info``).

    Returns:
        The written path.

    Raises:
        ValueError: an unknown split name or a metadata key that collides with a split name.
    """
    file = Path(path).absolute()
    base = file.parent
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"splits: unknown split name(s) {unknown}; allowed: {list(SPLITS)}")
    doc: dict[str, Any] = {}
    for key, value in (metadata or {}).items():
        if key in SPLITS:
            raise ValueError(f"metadata: key {key!r} is a split name; pass it in splits instead")
        doc[key] = value
    for name in SPLITS:
        if name not in splits:
            continue
        entries = []
        for entry in splits[name]:
            item = dict(entry)
            for k in PATH_KEYS:
                if k in item:
                    item[k] = _relative(base, item[k])
            entries.append(item)
        doc[name] = entries
    write_json(file, doc)
    logger.info("wrote datalist %s (%s)", file, ", ".join(f"{k}: {len(v)}" for k, v in splits.items()))
    return file


@dataclass
class ConversionReport:
    """What a batch conversion did.

    Attributes:
        datalist: the datalist written (``None`` when nothing converted).
        converted: number of pairs (or frames) written.
        failures: ``(file, message)`` for every item that failed; the batch went on without it.
    """

    datalist: Path | None
    converted: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and self.converted > 0

    def failure_lines(self) -> list[str]:
        """One line per failure, each starting with the file it concerns."""
        return [msg if file in msg else f"{file}: {msg}" for file, msg in self.failures]
