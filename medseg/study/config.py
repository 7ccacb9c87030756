"""Study definitions (``medseg/configs/experiments/*.json``): schema, defaults and validation.

A study trains several *runs* of a bundle on the same cross-validation folds and compares them per image.
Example (abridged from ``covid19_binary.json``)::

    {
      "name": "covid19_binary",
      "bundle": "covid19_ct_lesion",
      "data": {"converter": "slices2d", "source": "../shared/data/covid19_ct_infection_medseg_infnet",
               "options": {"images": "imgs", "masks": "gt_binary", "mask_type": "binary"},
               "label_map": "binary", "num_classes": 2, "class_names": ["background", "infection"]},
      "cv": {"folds": 5, "by": "case", "seed": 0},
      "plan": {"device": "cpu"},
      "runs": [
        {"name": "recipe"},
        {"name": "floor", "network": {"name": "basic_unet", "features": [16, 32, 64, 128, 256, 16]},
         "plan": {"normalization": null, "augmentation": "flips", "schedule": "constant", "num_epochs": 36},
         "tta": false},
        {"name": "ce", "loss": "ce"},
        {"name": "ft_mc", "from": "ce", "loss": "mc", "plan": {"num_epochs": 15, "optimizer": {"lr": 1e-4}}}
      ],
      "compare": [["recipe", "floor"], ["ft_mc", "ft_ce"]]
    }

Runs:

- ``name``: a folder name; ``from``: another run whose model of the same fold (and seed) initialises this one
  (fine-tuning, the papers' protocol); ``loss``: a loss overlay name (``medseg/configs/losses/<loss>.json``) or
  path, default the plan's loss; ``plan``: values merged into the fold's ``plan.json`` for this run (nested
  mappings merge); ``overrides``: bundle config ids (``{"loss#tau": 1000}``); ``network``: a registered network
  (``{"name": "basic_unet", ...kwargs}``) used for training and inference instead of the bundle's COPLE-Net;
  ``tta``: flip test-time augmentation at evaluation (default: the plan's ``tta``).

Cross-validation (``cv``): ``folds`` >= 2 folds ``by`` ``"case"`` (each entry is a case) or ``"group"`` (entries
sharing ``group_key``, e.g. the clip of a video frame, stay together; the number of folds is at most the number
of groups); ``seed`` shuffles the assignment; ``validation`` training cases of each fold are also run through the
bundle's validation at the end of training (a sanity check: no model is selected on them).

Relative paths (``data.source``, ``overlays``, run ``loss`` paths) resolve against the current folder, so
``../shared/data/...`` names the shared data beside a checkout when the study runs from its root.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medseg.typing import PathLike

__all__ = ["CONVERTERS", "CVSpec", "DataSpec", "RunSpec", "StudyConfig", "load_study_config"]

logger = logging.getLogger(__name__)

#: Data preparation routines known to :mod:`medseg.study.data`.
CONVERTERS = ("slices2d", "instruments", "synthetic_ct", "synthetic_frames", "datalist")

_TOP_KEYS = {"name", "title", "description", "bundle", "overlays", "data", "cv", "plan", "runs", "compare", "seeds"}
_DATA_KEYS = {"converter", "source", "options", "label_map", "num_classes", "class_names", "foreground_classes"}
_CV_KEYS = {"folds", "by", "group_key", "seed", "validation"}
_PLAN_KEYS = {"device", "overrides", "intensity_range", "window"}
_RUN_KEYS = {"name", "from", "loss", "plan", "overrides", "network", "tta", "description"}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _unknown(section: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{section}: unknown key {key!r}{hint} (allowed: {', '.join(sorted(allowed))})")


def _int(section: str, name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{section}.{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}")
    return value


def _resolve(path: str | None, base: Path) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    return p if p.is_absolute() else (base / p).resolve()


@dataclass
class DataSpec:
    """How the study's dataset is prepared (see :mod:`medseg.study.data`)."""

    converter: str
    source: Path | None
    num_classes: int
    label_map: str | dict[str, int] | None = "binary"
    options: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] | None = None
    foreground_classes: list[int] | None = None

    def names(self) -> list[str]:
        """Class names (``"0" .. "K-1"`` when none were given)."""
        return list(self.class_names) if self.class_names else [str(i) for i in range(self.num_classes)]

    def foreground(self) -> list[int]:
        """Classes merged into the foreground mask of the per-image Dice (default: every class but 0)."""
        return list(self.foreground_classes) if self.foreground_classes else list(range(1, self.num_classes))


@dataclass
class CVSpec:
    """Cross-validation folds (see the module docstring)."""

    folds: int = 5
    by: str = "case"
    group_key: str = "group"
    seed: int = 0
    validation: int = 2


@dataclass
class RunSpec:
    """One arm of the study, trained on every fold (see the module docstring)."""

    name: str
    source: str | None = None  # "from"
    loss: str | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    network: dict[str, Any] | None = None
    tta: bool | None = None
    description: str = ""


@dataclass
class StudyConfig:
    """A validated study."""

    name: str
    bundle: Path
    data: DataSpec
    runs: list[RunSpec]
    cv: CVSpec = field(default_factory=CVSpec)
    plan: dict[str, Any] = field(default_factory=dict)
    compare: list[tuple[str, str]] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    overlays: list[Path] = field(default_factory=list)
    title: str = ""
    description: str = ""
    config_path: Path | None = None

    def run(self, name: str) -> RunSpec:
        """The run called ``name``."""
        for r in self.runs:
            if r.name == name:
                return r
        raise KeyError(f"no run {name!r} in study {self.name} (runs: {[r.name for r in self.runs]})")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (paths as strings)."""

        def conv(x: Any) -> Any:
            if isinstance(x, Path):
                return str(x)
            if isinstance(x, dict):
                return {k: conv(v) for k, v in x.items()}
            if isinstance(x, list | tuple):
                return [conv(v) for v in x]
            return x

        return dict(conv(asdict(self)))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], base: PathLike | None = None) -> StudyConfig:
        """Validate a study definition; relative paths resolve against ``base`` (default: the current folder).

        Raises:
            ValueError: unknown keys, missing keys, bad values; the message names the key and the fix.
        """
        from medseg.resources import bundle_dir

        root = Path(base) if base is not None else Path.cwd()
        if not isinstance(raw, Mapping):
            raise ValueError(f"a study config must be a JSON object, got {type(raw).__name__}")
        _unknown("study", raw, _TOP_KEYS)
        for key in ("name", "bundle", "data", "runs"):
            if key not in raw:
                raise ValueError(f"study: missing key {key!r} (required: name, bundle, data, runs)")
        name = raw["name"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"study.name must be a folder name (letters, digits, _ . -), got {name!r}")
        local = _resolve(str(raw["bundle"]), root)
        try:
            bundle = bundle_dir(local if local is not None and local.is_dir() else str(raw["bundle"]))
        except FileNotFoundError as err:
            raise ValueError(f"study.bundle: {err}") from err
        if not (bundle / "configs" / "train.json").is_file():
            raise ValueError(f"study.bundle {raw['bundle']!r}: no configs/train.json under {bundle}")
        overlays = []
        for o in raw.get("overlays", []) or []:
            p = _resolve(str(o), root)
            if p is None or not p.is_file():
                alt = bundle / "configs" / (str(o) if str(o).endswith(".json") else f"{o}.json")
                if not alt.is_file():
                    raise ValueError(f"study.overlays: {o!r} is neither a file nor a config of the bundle")
                p = alt
            overlays.append(p)
        data = _data_spec(raw["data"], root)
        cv = _cv_spec(raw.get("cv", {}) or {})
        plan = dict(raw.get("plan", {}) or {})
        _unknown("study.plan", plan, _PLAN_KEYS)
        if plan.get("device", "cpu") not in ("cpu", "cuda"):
            raise ValueError(f"study.plan.device must be 'cpu' or 'cuda', got {plan.get('device')!r}")
        runs = _runs(raw["runs"], root)
        names = [r.name for r in runs]
        compare = []
        for pair in raw.get("compare", []) or []:
            if not isinstance(pair, list | tuple) or len(pair) != 2 or not all(p in names for p in pair):
                raise ValueError(
                    f"study.compare: each entry must be [run, reference] of known runs {names}, got {pair!r}"
                )
            compare.append((str(pair[0]), str(pair[1])))
        seeds = raw.get("seeds", [0])
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and s >= 0 for s in seeds):
            raise ValueError(f"study.seeds must be a non-empty list of integers >= 0, got {seeds!r}")
        return cls(
            name=name,
            bundle=bundle,
            data=data,
            runs=runs,
            cv=cv,
            plan=plan,
            compare=compare,
            seeds=list(seeds),
            overlays=overlays,
            title=str(raw.get("title", name)),
            description=str(raw.get("description", "")),
        )


def _data_spec(d: Any, root: Path) -> DataSpec:
    if not isinstance(d, Mapping):
        raise ValueError(f"study.data must be an object, got {type(d).__name__}")
    _unknown("study.data", d, _DATA_KEYS)
    conv = d.get("converter")
    if conv not in CONVERTERS:
        raise ValueError(f"study.data.converter must be one of {', '.join(CONVERTERS)}, got {conv!r}")
    k = _int("study.data", "num_classes", d.get("num_classes"), 2)
    names = d.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != k):
        raise ValueError(f"study.data.class_names must list {k} names (num_classes={k}), got {names!r}")
    fg = d.get("foreground_classes")
    if fg is not None and (not isinstance(fg, list) or not fg or not all(isinstance(c, int) and 0 < c < k for c in fg)):
        raise ValueError(f"study.data.foreground_classes must be class indices in [1, {k}), got {fg!r}")
    source = _resolve(d.get("source"), root)
    if conv not in ("synthetic_ct", "synthetic_frames") and source is None:
        raise ValueError(f"study.data.source is required for converter {conv!r}")
    return DataSpec(
        converter=str(conv),
        source=source,
        num_classes=k,
        label_map=d.get("label_map", "binary"),
        options=dict(d.get("options", {}) or {}),
        class_names=names,
        foreground_classes=fg,
    )


def _cv_spec(c: Any) -> CVSpec:
    if not isinstance(c, Mapping):
        raise ValueError(f"study.cv must be an object, got {type(c).__name__}")
    _unknown("study.cv", c, _CV_KEYS)
    by = c.get("by", "case")
    if by not in ("case", "group"):
        raise ValueError(f"study.cv.by must be 'case' or 'group', got {by!r}")
    return CVSpec(
        folds=_int("study.cv", "folds", c.get("folds", 5), 2),
        by=by,
        group_key=str(c.get("group_key", "group")),
        seed=_int("study.cv", "seed", c.get("seed", 0), 0),
        validation=_int("study.cv", "validation", c.get("validation", 2), 1),
    )


def _runs(raw: Any, root: Path) -> list[RunSpec]:
    from medseg.networks import NETWORKS

    if not isinstance(raw, list) or not raw:
        raise ValueError(f"study.runs must be a non-empty list of run objects, got {raw!r}")
    runs: list[RunSpec] = []
    for i, r in enumerate(raw):
        where = f"study.runs[{i}]"
        if not isinstance(r, Mapping) or "name" not in r:
            raise ValueError(f"{where} must be an object with a 'name', got {r!r}")
        _unknown(where, r, _RUN_KEYS)
        name = r["name"]
        if not isinstance(name, str) or not _NAME.match(name):
            raise ValueError(f"{where}.name must be a folder name (letters, digits, _ . -), got {name!r}")
        if any(x.name == name for x in runs):
            raise ValueError(f"{where}: run name {name!r} is used twice")
        source = r.get("from")
        if source is not None and not any(x.name == source for x in runs):
            raise ValueError(f"{where}.from: {source!r} must name an earlier run ({[x.name for x in runs]})")
        loss = r.get("loss")
        if loss is not None:
            from medseg.resources import loss_overlay

            path = _resolve(str(loss), root) if str(loss).endswith(".json") else None
            try:
                loss = str(loss_overlay(path if path is not None else str(loss)))
            except FileNotFoundError as err:
                raise ValueError(f"{where}.loss: {err}") from err
        network = r.get("network")
        if network is not None:
            if not isinstance(network, Mapping) or "name" not in network:
                raise ValueError(f"{where}.network must be {{'name': <registered network>, ...}}, got {network!r}")
            NETWORKS.get(str(network["name"]))  # raises with close matches
            network = dict(network)
        for key in ("plan", "overrides"):
            if not isinstance(r.get(key, {}) or {}, Mapping):
                raise ValueError(f"{where}.{key} must be an object, got {r.get(key)!r}")
        tta = r.get("tta")
        if tta is not None and not isinstance(tta, bool):
            raise ValueError(f"{where}.tta must be true or false, got {tta!r}")
        runs.append(
            RunSpec(
                name=name,
                source=source,
                loss=loss,
                plan=dict(r.get("plan", {}) or {}),
                overrides=dict(r.get("overrides", {}) or {}),
                network=network,
                tta=tta,
                description=str(r.get("description", "")),
            )
        )
    return runs


def load_study_config(path: PathLike, base: PathLike | None = None) -> StudyConfig:
    """Read and validate a study JSON file (see the module docstring).

    ``path`` may also be the name of a study shipped with medseg (``"covid19_binary"``).

    Raises:
        FileNotFoundError: no such file or shipped study.
        ValueError: invalid JSON or an invalid definition (the message names the file).
    """
    from medseg.resources import experiment_config

    p = experiment_config(path)
    try:
        raw = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"study config {str(p)!r} is not valid JSON: {err}") from err
    try:
        cfg = StudyConfig.from_dict(raw, base=base)
    except ValueError as err:
        raise ValueError(f"{p}: {err}") from err
    cfg.config_path = p.resolve()
    return cfg
