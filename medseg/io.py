"""Atomic file output: write to a temporary name in the same folder, then rename.

An interrupted run therefore never leaves a half-written mask, table or checkpoint behind under the final name.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_json(d / "a.json", {"x": 1})
    >>> import json
    >>> json.loads((d / "a.json").read_text())
    {'x': 1}
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = ["atomic_path", "is_temp_file", "remove_stale_temp_files", "write_json", "write_text"]

#: ``.FINAL.XXXXXXXX.tmpSUFFIXES``: what :func:`atomic_path` names its temporary files (``tempfile.mkstemp``
#: draws the 8 characters from ``[a-z0-9_]``).
_TEMP_NAME = re.compile(r"^\.(?P<final>.+)\.[a-z0-9_]{8}\.tmp(?P<suffix>(\.[^.]+)*)$")
#: Temporary files younger than this may belong to a run still writing them.
STALE_AFTER_S = 3600.0


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it is renamed onto ``path``, on error removed.

    The temporary name keeps ``path``'s suffixes (``.nii.gz``, ``.png``) so writers that infer the format from
    the name still work.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=f".tmp{suffix}", dir=final.parent)
    os.close(fd)
    # mkstemp creates 0600; give the final file the usual permissions (0666 minus the umask), as open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_name, 0o666 & ~umask)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def is_temp_file(path: PathLike) -> bool:
    """Whether ``path`` is named like a temporary file of :func:`atomic_path` (``.NAME.XXXXXXXX.tmp.SUFFIX``).

    Example:
        >>> is_temp_file(".ct_seg.nii.gz.k2j4_x9a.tmp.nii.gz"), is_temp_file(".notes.tmp")
        (True, False)
    """
    match = _TEMP_NAME.match(Path(path).name)
    return match is not None and "".join(Path(match["final"]).suffixes) == match["suffix"]


def remove_stale_temp_files(folder: PathLike, *, older_than_s: float = STALE_AFTER_S, max_depth: int = 0) -> list[Path]:
    """Delete temporary files of :func:`atomic_path` that a killed process left in ``folder``.

    Only regular files named exactly as :func:`atomic_path` names them and not modified for ``older_than_s``
    seconds are removed (a younger one may belong to a run still writing it); nothing else is touched.

    Args:
        folder: the folder to clean (missing: nothing to do).
        older_than_s: minimum age in seconds (default one hour).
        max_depth: also clean sub-folders this many levels down.

    Returns:
        The removed files.
    """
    root = Path(folder)
    removed: list[Path] = []
    if not root.is_dir():
        return removed
    cutoff = time.time() - older_than_s
    for entry in root.iterdir():
        try:
            if entry.is_dir() and not entry.is_symlink():
                if max_depth > 0:
                    removed += remove_stale_temp_files(entry, older_than_s=older_than_s, max_depth=max_depth - 1)
            elif entry.is_file() and is_temp_file(entry) and entry.stat().st_mtime < cutoff:
                entry.unlink()
                removed.append(entry)
        except OSError as err:  # a file another process removed meanwhile, or no permission: leave it
            logger.debug("cannot clean %s: %s", entry, err)
    return removed


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(obj, indent=2) + "\n")
