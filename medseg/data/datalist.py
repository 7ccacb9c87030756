"""Read and write decathlon-style datalists (the JSON every converter writes and every bundle reads).

A datalist is a JSON object with up to three lists, ``training``, ``validation`` and ``test``, of entries
``{"image": ..., "label": ..., <other keys>}`` (MONAI's ``load_decathlon_datalist`` format; ``test`` entries may
be bare image paths). Paths in the file are **relative to the datalist file**, so a converted dataset folder can
be moved or mounted elsewhere. Other top-level keys (``name``, ``labels``, ``split``, ...) are metadata, kept on
rewrite; other keys of an entry (``sequence``, ``frame``, ``case``) are kept as they are.

In memory, :func:`read_datalist` resolves the path keys (``image``, ``label``) to absolute paths and
:func:`write_datalist` makes them relative again to wherever the file is written. Only those keys are treated as
paths: MONAI's loader also joins any other value that happens to name an existing file, which would corrupt a
``sequence`` id equal to a folder name. :func:`load_datalist` is the bundle-facing form: the entries of one or
more splits, ready for a MONAI dataset.

This module imports nothing beyond the standard library, so the light ``medseg-data`` commands stay light.

Example:
    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> entry = {"image": str(root / "images" / "a.png"), "label": str(root / "labels" / "a.png")}
    >>> path = write_datalist(root / "datalist.json", {"training": [entry]})
    >>> read_datalist(path).splits["training"][0]["image"] == entry["image"]
    True
    >>> import json; json.loads(path.read_text())["training"][0]["image"]
    'images/a.png'
    >>> load_datalist(path, "training", check_files=False)[0]["label"] == entry["label"]
    True
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.io import write_json
from medseg.typing import PathLike

__all__ = ["PATH_KEYS", "SPLITS", "ConversionReport", "Datalist", "load_datalist", "read_datalist", "write_datalist"]

logger = logging.getLogger(__name__)

#: The split lists a datalist holds, in the order they are written.
SPLITS: tuple[str, ...] = ("training", "validation", "test")
#: Entry keys whose values are file paths (a string or a list of strings for multi-file channels).
PATH_KEYS: tuple[str, ...] = ("image", "label")
_MAX_LISTED = 5

Entry = dict[str, Any]


@dataclass
class Datalist:
    """A datalist in memory: its splits (absolute paths) and its metadata keys.

    Attributes:
        path: the file it was read from (absolute), or ``None`` when built in memory.
        splits: ``{"training": [...], ...}``; only the splits present in the file.
        metadata: every other top-level key of the file, kept for rewriting (other lists included).
        base: the folder relative paths were resolved against.
        path_keys: the entry keys treated as paths.
    """

    path: Path | None
    splits: dict[str, list[Entry]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    base: Path | None = None
    path_keys: tuple[str, ...] = PATH_KEYS

    def entries(self, splits: Iterable[str] | None = None) -> Iterator[tuple[str, int, Entry]]:
        """Yield ``(split, index, entry)`` over ``splits`` (default: every split present, in order)."""
        names = [s for s in SPLITS if s in self.splits] if splits is None else list(splits)
        for name in names:
            for index, entry in enumerate(self.splits.get(name, [])):
                yield name, index, entry

    def split(self, name: str) -> list[Entry]:
        """The entries of one list: a split, or another list of the file (e.g. a ``fold0`` key).

        Raises:
            ValueError: no list of that name (the message lists those present and the closest name).
        """
        if name in self.splits:
            return self.splits[name]
        other = self.metadata.get(name)
        if isinstance(other, list) and self.base is not None:
            return _parse_entries(other, self.base, self.path_keys, f"{self.path}: {name}")
        available = [*self.splits, *(k for k, v in self.metadata.items() if isinstance(v, list))]
        close = difflib.get_close_matches(str(name), available, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{self.path}: split {name!r} not found; the datalist has {available}{hint}")

    def __len__(self) -> int:
        return sum(len(v) for v in self.splits.values())


def _resolve(base: Path, value: Any, where: str) -> Any:
    if isinstance(value, str):
        return os.path.normpath(base / value)  # an absolute value stays as it is
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [os.path.normpath(base / v) for v in value]
    raise ValueError(f"{where}: expected a path string or a list of path strings, got {value!r}")


def _parse_entries(items: list[Any], base: Path, path_keys: Sequence[str], where: str) -> list[Entry]:
    entries: list[Entry] = []
    for index, item in enumerate(items):
        at = f"{where}[{index}]"
        entry = {"image": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or "image" not in entry:
            raise ValueError(f"{at}: each entry must be an object with an 'image' path, got {item!r}")
        entry = dict(entry)
        for key in path_keys:
            if key in entry:
                entry[key] = _resolve(base, entry[key], f"{at}.{key}")
        entries.append(entry)
    return entries


def _relative(base: Path, value: Any) -> Any:
    def rel(p: str) -> str:
        return Path(os.path.relpath(os.path.abspath(p), base)).as_posix()

    if isinstance(value, str):
        return rel(value)
    if isinstance(value, list):
        return [rel(v) for v in value]
    return value


def read_datalist(
    path: PathLike, *, base_dir: PathLike | None = None, path_keys: Sequence[str] = PATH_KEYS
) -> Datalist:
    """Read a datalist JSON, resolving the path keys against the file's folder (or ``base_dir``).

    Args:
        path: the datalist JSON file.
        base_dir: folder relative paths are resolved against (default: the datalist's folder).
        path_keys: entry keys holding paths.

    Returns:
        The :class:`Datalist`; every entry is a new dict (bare ``test`` strings become ``{"image": path}``).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not valid JSON, not an object, a split that is not a list, an entry without ``image``, or a
            path value that is not a string; each message names the file and the entry.
    """
    file = Path(path).expanduser().absolute()
    if not file.is_file():
        raise FileNotFoundError(f"datalist {str(path)!r} does not exist; give the JSON written by medseg-data")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{file}: not a valid JSON datalist ({err})") from err
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: a datalist must be a JSON object with 'training'/'validation'/'test' lists")
    base = Path(base_dir).expanduser().absolute() if base_dir is not None else file.parent
    out = Datalist(path=file, base=base, path_keys=tuple(path_keys))
    for key, value in raw.items():
        if key not in SPLITS:
            out.metadata[key] = value
            continue
        if not isinstance(value, list):
            raise ValueError(f"{file}: {key!r} must be a list of entries, got {type(value).__name__}")
        out.splits[key] = _parse_entries(value, base, path_keys, f"{file}: {key}")
    if not out.splits and not any(isinstance(v, list) for v in out.metadata.values()):
        raise ValueError(f"{file}: no 'training', 'validation' or 'test' list found (keys: {sorted(raw)})")
    return out


def load_datalist(
    path: PathLike,
    split: str | Sequence[str] = "training",
    *,
    base_dir: PathLike | None = None,
    path_keys: Sequence[str] = PATH_KEYS,
    check_files: bool = True,
) -> list[Entry]:
    """Entries of ``split`` with their paths resolved against the datalist's folder (what a bundle reads).

    Args:
        path: the datalist JSON file.
        split: ``"training"``, ``"validation"``, ``"test"``, any other list key of the file, or several of
            them (entries concatenated in the order given).
        base_dir: folder relative paths are resolved against (default: the datalist's folder).
        path_keys: entry keys holding paths (a string, or a list of strings for multi-file channels).
        check_files: raise if any referenced file or folder is missing (all of them are counted).

    Returns:
        A new list of new dicts; path values are absolute, normalised strings.

    Raises:
        FileNotFoundError: the datalist is missing, or (``check_files``) referenced files are; the message
            names the datalist, the first missing paths and how many there are.
        ValueError: invalid JSON, unknown split (the message lists the splits present), or malformed entries.
    """
    dl = read_datalist(path, base_dir=base_dir, path_keys=path_keys)
    names = [split] if isinstance(split, str) else list(split)
    if not names:
        raise ValueError(f"split must name at least one list of {dl.path}, got {split!r}")
    out = [dict(e) for name in names for e in dl.split(name)]
    if check_files:
        missing = [
            p
            for entry in out
            for key in path_keys
            for p in ([entry[key]] if isinstance(entry.get(key), str) else entry.get(key) or [])
            if not os.path.exists(p)
        ]
        if missing:
            shown = ", ".join(missing[:_MAX_LISTED])
            more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
            raise FileNotFoundError(
                f"{dl.path}: {len(missing)} file(s) of split {split!r} are missing: {shown}{more}; paths are "
                f"resolved against {dl.base} (move the datalist with its data or pass base_dir)"
            )
    logger.debug("%s: %d entries from %s", dl.path, len(out), names)
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
        metadata: extra top-level keys written first (e.g. ``name``, ``labels``, ``split``).

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
