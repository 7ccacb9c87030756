"""Cross-validation folds of a study's dataset: one datalist per fold (training, validation, test).

Every case of the prepared datalist (all its lists pooled) is a test case in exactly one fold. Cases are
assigned by a seeded permutation, either one by one (``by="case"``) or with every case of a group together
(``by="group"``: the frames of one video clip, the slices of one patient). Groups are dealt largest first to
the fold with the fewest cases so far, so folds stay balanced when groups differ in size. The ``validation``
list of a fold holds a few of its training cases: the bundle runs its validation there at the end of training
as a sanity check; no model is selected on it, so nothing is tuned on test cases.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io import write_json
from medseg.study.config import CVSpec

__all__ = ["all_data_datalist", "assign_folds", "fold_datalists"]

logger = logging.getLogger(__name__)


def assign_folds(groups: Sequence[str], folds: int, seed: int = 0) -> list[int]:
    """Fold index of every case; cases with the same group share a fold.

    Raises:
        ValueError: fewer groups than folds.

    Example:
        >>> assign_folds(["a", "b", "c", "d"], 2, seed=0).count(0)
        2
    """
    order: dict[str, list[int]] = defaultdict(list)
    for i, g in enumerate(groups):
        order[g].append(i)
    names = sorted(order)
    if len(names) < folds:
        raise ValueError(f"cv: {folds} folds need at least {folds} groups, the data has {len(names)}")
    rng = np.random.default_rng(seed)
    shuffled = [names[i] for i in rng.permutation(len(names))]
    shuffled.sort(key=lambda g: -len(order[g]))  # stable: largest groups first, ties in shuffled order
    sizes = [0] * folds
    out = [0] * len(groups)
    for g in shuffled:
        k = min(range(folds), key=lambda f: (sizes[f], f))
        for i in order[g]:
            out[i] = k
        sizes[k] += len(order[g])
    return out


def _entries(datalist: Path) -> list[dict[str, Any]]:
    doc = json.loads(datalist.read_text(encoding="utf-8"))
    base = datalist.parent
    out = []
    for key, items in doc.items():
        if not isinstance(items, list):
            continue
        for item in items:
            if not isinstance(item, dict) or "image" not in item:
                continue
            entry = dict(item)
            for k in ("image", "label"):
                if isinstance(entry.get(k), str):
                    entry[k] = str((base / entry[k]).resolve())
            entry.setdefault("_list", key)
            out.append(entry)
    if not out:
        raise ValueError(f"{datalist}: no cases to cross-validate")
    return out


def fold_datalists(datalist: Path, cv: CVSpec, out_dir: Path) -> list[Path]:
    """Write ``out_dir/fold<k>/datalist.json`` for every fold (once; existing files are kept) and return them."""
    entries = _entries(datalist)
    if cv.by == "group":
        missing = [e["image"] for e in entries if cv.group_key not in e]
        if missing:
            raise ValueError(f"cv.by='group' but {len(missing)} case(s) lack {cv.group_key!r}, e.g. {missing[0]}")
        groups = [str(e[cv.group_key]) for e in entries]
    else:
        groups = [str(i) for i in range(len(entries))]
    folds = assign_folds(groups, cv.folds, cv.seed)
    paths = []
    for k in range(cv.folds):
        path = out_dir / f"fold{k}" / "datalist.json"
        paths.append(path)
        if path.is_file():
            continue
        test = [e for e, f in zip(entries, folds, strict=True) if f == k]
        train = [e for e, f in zip(entries, folds, strict=True) if f != k]
        rng = np.random.default_rng(cv.seed + 1000 + k)
        val_idx = sorted(rng.choice(len(train), size=min(cv.validation, len(train)), replace=False).tolist())
        clean = [{key: v for key, v in e.items() if key != "_list"} for e in entries]
        by_id = {id(e): c for e, c in zip(entries, clean, strict=True)}
        doc = {
            "training": [by_id[id(e)] for e in train],
            "validation": [by_id[id(train[i])] for i in val_idx],
            "test": [by_id[id(e)] for e in test],
            "fold": k,
            "folds": cv.folds,
        }
        write_json(path, doc)
        logger.info("fold %d: %d training, %d test cases -> %s", k, len(train), len(test), path)
    return paths


def all_data_datalist(datalist: Path, cv: CVSpec, out_dir: Path) -> Path:
    """``out_dir/all/datalist.json``: every case for training (the model to ship), no test cases (written once).

    ``validation`` cases are drawn from the training cases for the end-of-training check.
    """
    path = out_dir / "all" / "datalist.json"
    if path.is_file():
        return path
    entries = [{k: v for k, v in e.items() if k != "_list"} for e in _entries(datalist)]
    rng = np.random.default_rng(cv.seed + 999)
    val_idx = sorted(rng.choice(len(entries), size=min(cv.validation, len(entries)), replace=False).tolist())
    write_json(path, {"training": entries, "validation": [entries[i] for i in val_idx], "test": [], "fold": "all"})
    logger.info("all data: %d training cases -> %s", len(entries), path)
    return path
