"""Files that ship inside the package: the MONAI bundles, the loss overlays and the loss-study definitions.

They are package data (``medseg/bundles/<name>/``, ``medseg/configs/losses/<loss>.json``,
``medseg/configs/experiments/<study>.json``) found with :mod:`importlib.resources`, so a wheel install works the
same as a checkout. Every function here also accepts a path, so a user's own bundle or overlay works too.
"""

from __future__ import annotations

import difflib
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from medseg.typing import PathLike

__all__ = [
    "bundle_dir",
    "bundle_names",
    "copy_bundle",
    "experiment_config",
    "experiment_names",
    "loss_overlay",
    "loss_overlay_names",
    "package_root",
]


def package_root() -> Path:
    """The installed ``medseg`` package folder (a real directory: medseg is never imported from a zip)."""
    root = Path(str(resources.files("medseg")))
    if not root.is_dir():  # pragma: no cover - only for zip imports, which medseg does not support
        raise RuntimeError(f"medseg must be installed as files, not imported from an archive ({root})")
    return root


def _names(folder: Path, *, suffix: str | None) -> list[str]:
    if not folder.is_dir():
        return []
    if suffix is None:
        return sorted(p.name for p in folder.iterdir() if (p / "configs").is_dir())
    return sorted(p.stem for p in folder.glob(f"*{suffix}"))


def _unknown(what: str, name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    return f"unknown {what} {name!r}{hint} (shipped: {', '.join(choices) or 'none'}; or give a path)"


def bundle_names() -> list[str]:
    """Names of the bundles shipped with medseg."""
    return _names(package_root() / "bundles", suffix=None)


def bundle_dir(name_or_path: PathLike) -> Path:
    """A bundle folder from a shipped bundle's name (``"covid19_ct_lesion"``) or a path to a bundle folder.

    Raises:
        FileNotFoundError: neither an existing folder with ``configs/`` nor a shipped bundle's name; the message
            lists the shipped bundles and close matches.
    """
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / "configs").is_dir():
            raise FileNotFoundError(f"bundle {str(path)!r}: no configs/ folder inside; is this a MONAI bundle?")
        return path
    shipped = package_root() / "bundles" / str(name_or_path)
    if len(path.parts) == 1 and (shipped / "configs").is_dir():
        return shipped
    raise FileNotFoundError(_unknown("bundle", str(name_or_path), bundle_names()))


#: What a run inside a bundle folder leaves behind; a copy leaves it out.
_RUN_LEFTOVERS = ("__pycache__", "*.pyc", "runs", "eval", "sample_data", "*.pt", "*.ts")


def copy_bundle(name_or_path: PathLike, dest_dir: PathLike) -> Path:
    """Copy a bundle into ``dest_dir/<bundle name>`` for editing and training (like MONAI's ``bundle download``).

    The shipped bundles live inside the installed package, where a bundle run would write its ``runs/`` and
    ``models/``; a copy is the bundle to run with ``--bundle_root``. Weights, run outputs and sample data are not
    copied. The copy is made under a temporary name and renamed, so an interrupted copy leaves nothing behind.

    Args:
        name_or_path: a shipped bundle's name or a bundle folder (see :func:`bundle_dir`).
        dest_dir: the parent folder (created if needed).

    Returns:
        The new bundle folder.

    Raises:
        FileNotFoundError: unknown bundle.
        FileExistsError: ``dest_dir/<name>`` exists already (it is never replaced).
    """
    source = bundle_dir(name_or_path)
    parent = Path(dest_dir)
    target = parent / source.resolve().name
    if target.exists():
        raise FileExistsError(f"{str(target)!r} exists already; remove it or copy into another folder")
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=parent))
    try:
        shutil.copytree(source, staging / target.name, ignore=shutil.ignore_patterns(*_RUN_LEFTOVERS))
        (staging / target.name).rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def loss_overlay_names() -> list[str]:
    """Losses with a shipped overlay ``configs/losses/<loss>.json``."""
    return _names(package_root() / "configs" / "losses", suffix=".json")


def loss_overlay(name_or_path: PathLike) -> Path:
    """The overlay of a loss (``"mc"`` -> ``medseg/configs/losses/mc.json``), or an overlay ``.json`` path.

    Raises:
        FileNotFoundError: no such overlay; the message lists the shipped ones and close matches.
    """
    path = Path(name_or_path)
    if path.suffix == ".json":
        if not path.is_file():
            raise FileNotFoundError(f"loss overlay {str(path)!r} does not exist")
        return path
    shipped = package_root() / "configs" / "losses" / f"{name_or_path}.json"
    if shipped.is_file():
        return shipped
    raise FileNotFoundError(_unknown("loss overlay", str(name_or_path), loss_overlay_names()))


def experiment_names() -> list[str]:
    """Loss-study definitions shipped with medseg (``medseg study NAME``)."""
    return _names(package_root() / "configs" / "experiments", suffix=".json")


def experiment_config(name_or_path: PathLike) -> Path:
    """A study definition: a shipped study's name (``"covid19_binary"``) or a path to a ``.json`` file.

    Raises:
        FileNotFoundError: no such file or shipped study.
    """
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = package_root() / "configs" / "experiments" / f"{path.stem}.json"
    if len(path.parts) == 1 and shipped.is_file():
        return shipped
    raise FileNotFoundError(_unknown("study", str(name_or_path), experiment_names()))
