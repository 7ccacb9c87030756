"""Load decathlon-style datalists (the JSON every ``medseg-data`` converter and generator writes).

A datalist is a JSON object with ``training``, ``validation`` and ``test`` lists of entries
``{"image": ..., "label": ..., <other keys>}`` (bare strings in ``test`` mean ``{"image": ...}``). Paths are
relative to the datalist file (or absolute). :func:`load_datalist` returns the entries of one or more splits
with paths made absolute, ready for a MONAI dataset.

Only the ``path_keys`` (``image``, ``label``) are treated as paths; other keys (``sequence``, ``frame``,
``case``) pass through unchanged. (MONAI's ``load_decathlon_datalist`` also joins any value that happens to
name an existing file, which would corrupt e.g. a ``sequence`` id equal to a folder name.)

Example:
    >>> import json, tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "a.png").write_bytes(b"")
    >>> _ = (root / "dl.json").write_text(json.dumps({"training": [{"image": "a.png", "case": 3}]}))
    >>> entry = load_datalist(root / "dl.json", "training")[0]
    >>> entry["image"] == str(root / "a.png"), entry["case"]
    (True, 3)
"""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = ["PATH_KEYS", "SPLITS", "load_datalist"]

SPLITS: tuple[str, ...] = ("training", "validation", "test")
PATH_KEYS: tuple[str, ...] = ("image", "label")
_MAX_LISTED = 5


def _resolve(base: Path, value: Any, where: str) -> Any:
    if isinstance(value, str):
        return os.path.normpath(base / value)  # an absolute value stays as it is
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [os.path.normpath(base / v) for v in value]
    raise ValueError(f"{where}: expected a path string or a list of path strings, got {value!r}")


def load_datalist(
    path: PathLike,
    split: str | Sequence[str] = "training",
    *,
    base_dir: PathLike | None = None,
    path_keys: Sequence[str] = PATH_KEYS,
    check_files: bool = True,
) -> list[dict[str, Any]]:
    """Entries of ``split`` with their paths resolved against the datalist's folder.

    Args:
        path: the datalist JSON file.
        split: ``"training"``, ``"validation"``, ``"test"``, any other list key of the file, or several of
            them (entries concatenated in the order given).
        base_dir: folder relative paths are resolved against (default: the datalist's folder).
        path_keys: entry keys holding paths (a string, or a list of strings for multi-file channels).
        check_files: raise if any referenced file or folder is missing (all of them are listed).

    Returns:
        A new list of new dicts; path values are absolute, normalised strings.

    Raises:
        FileNotFoundError: the datalist is missing, or (``check_files``) referenced files are; the message
            names the datalist, the first missing paths and how many there are.
        ValueError: invalid JSON, unknown split (the message lists the splits present), or malformed entries.
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
    available = [k for k, v in raw.items() if isinstance(v, list)]
    splits = [split] if isinstance(split, str) else list(split)
    if not splits:
        raise ValueError(f"split must name at least one of {available}, got {split!r}")
    base = Path(base_dir).expanduser().absolute() if base_dir is not None else file.parent
    out: list[dict[str, Any]] = []
    for name in splits:
        if name not in available:
            close = difflib.get_close_matches(str(name), available, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{file}: split {name!r} not found; the datalist has {available}{hint}")
        for index, item in enumerate(raw[name]):
            where = f"{file}: {name}[{index}]"
            entry = {"image": item} if isinstance(item, str) else item
            if not isinstance(entry, dict) or "image" not in entry:
                raise ValueError(f"{where}: each entry must be an object with an 'image' path, got {item!r}")
            entry = dict(entry)
            for key in path_keys:
                if key in entry:
                    entry[key] = _resolve(base, entry[key], f"{where}.{key}")
            out.append(entry)
    if check_files:
        missing: list[str] = []
        for entry in out:
            for key in path_keys:
                values = entry.get(key)
                for p in [values] if isinstance(values, str) else values or []:
                    if not os.path.exists(p):
                        missing.append(p)
        if missing:
            shown = ", ".join(missing[:_MAX_LISTED])
            more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
            raise FileNotFoundError(
                f"{file}: {len(missing)} file(s) of split {split!r} are missing: {shown}{more}; paths are "
                f"resolved against {base} (move the datalist with its data or pass base_dir)"
            )
    logger.debug("%s: %d entries from %s", file, len(out), splits)
    return out
