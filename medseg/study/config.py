"""Loss-study definitions (``configs/experiments/*.json``): schema, defaults and validation.

A study names a bundle (plus overlays), how its data is prepared, the losses to compare, the training budget,
the seeds and the τ/v grid of the sensitivity table. Example (``configs/experiments/covid19_binary.json``)::

    {
      "name": "covid19_binary",
      "title": "COVID-19 CT infection, binary",
      "bundle": "covid19_ct_lesion",
      "overlays": [],
      "data": {
        "converter": "slices2d",
        "source": "../shared/data/covid19_ct_infection_medseg_infnet",
        "options": {"images": "imgs", "masks": "gt_binary", "mask_type": "binary"},
        "label_map": "binary",
        "num_classes": 2,
        "class_names": ["background", "infection"],
        "split": {"by": "case", "counts": [30, 10, 10], "seed": 0},
        "infection_classes": [1]
      },
      "losses": ["ce", "mc", "dice"],
      "budget": {"pretrain_epochs": 20, "finetune_epochs": 10, "spatial_size": [128, 128],
                 "features": [16, 32, 64, 128, 256], "batch_size": 4,
                 "pretrain_learning_rate": 0.001, "finetune_learning_rate": 0.0001},
      "seeds": [0],
      "sensitivity": {"taus": [1, 5, 10, 20, 50], "vs": [0.1, 1, 10], "complexity": 1.0,
                      "finetune": [[5, 1], [20, 1]]}
    }

``bundle`` names a shipped bundle or a folder. Relative paths (``bundle``, ``overlays``, ``data.source``) are
resolved against the current folder, so ``../shared/data/...`` names the shared data folder beside a checkout
when the study runs from the checkout's root.
"""

from __future__ import annotations

import difflib
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from medseg.typing import PathLike

__all__ = ["CONVERTERS", "Budget", "DataSpec", "Sensitivity", "StudyConfig", "load_study_config"]

logger = logging.getLogger(__name__)


#: Data preparation routines known to :mod:`medseg.study.data`.
CONVERTERS = ("slices2d", "instruments", "synthetic_ct", "synthetic_frames", "datalist")

_TOP_KEYS = {"name", "title", "description", "bundle", "overlays", "data", "losses", "budget", "seeds", "sensitivity"}
_DATA_KEYS = {
    "converter",
    "source",
    "options",
    "label_map",
    "num_classes",
    "class_names",
    "split",
    "infection_classes",
}
_BUDGET_KEYS = {
    "pretrain_epochs",
    "finetune_epochs",
    "spatial_size",
    "features",
    "batch_size",
    "pretrain_learning_rate",
    "finetune_learning_rate",
    "lr_power",
    "overrides",
}
_SENS_KEYS = {"taus", "vs", "complexity", "finetune"}


def _unknown(section: str, given: Mapping[str, Any], allowed: set[str]) -> None:
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(key, sorted(allowed), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"{section}: unknown key {key!r}{hint} (allowed: {', '.join(sorted(allowed))})")


def _pos_int(section: str, name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{section}.{name} must be an integer >= {minimum}, got {type(value).__name__} {value!r}")
    return value


def _pos_float(section: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{section}.{name} must be a positive number, got {type(value).__name__} {value!r}")
    return float(value)


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
    split: dict[str, Any] | None = None
    infection_classes: list[int] | None = None

    def names(self) -> list[str]:
        """Class names (``"0" .. "K-1"`` when none were given)."""
        return list(self.class_names) if self.class_names else [str(i) for i in range(self.num_classes)]

    def foreground(self) -> list[int]:
        """Classes merged into the "infection"/"instrument" mask for the per-image Dice (default: all but 0)."""
        return list(self.infection_classes) if self.infection_classes else list(range(1, self.num_classes))


@dataclass
class Budget:
    """Training budget shared by every run of the study (the same for every loss)."""

    pretrain_epochs: int
    finetune_epochs: int
    spatial_size: list[int]
    features: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    batch_size: int = 4
    pretrain_learning_rate: float = 1e-3
    finetune_learning_rate: float = 1e-4
    lr_power: float = 0.0
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class Sensitivity:
    """τ/v grid: the bound/offset table always; MC fine-tunes for the ``finetune`` (τ, v) pairs."""

    taus: list[float] = field(default_factory=lambda: [1.0, 5.0, 10.0, 20.0, 50.0])
    vs: list[float] = field(default_factory=lambda: [0.1, 1.0, 10.0])
    complexity: float = 1.0
    finetune: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class StudyConfig:
    """A validated loss study."""

    name: str
    bundle: Path
    data: DataSpec
    losses: list[str]
    budget: Budget
    seeds: list[int] = field(default_factory=lambda: [0])
    overlays: list[Path] = field(default_factory=list)
    sensitivity: Sensitivity = field(default_factory=Sensitivity)
    title: str = ""
    description: str = ""
    config_path: Path | None = None

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

        ``bundle`` is a shipped bundle's name (``"covid19_ct_lesion"``) or a bundle folder.

        Raises:
            ValueError: unknown keys, missing keys, bad values; the message names the key and the fix.
        """
        from medseg.losses import LOSSES
        from medseg.resources import bundle_dir

        root = Path(base) if base is not None else Path.cwd()
        if not isinstance(raw, Mapping):
            raise ValueError(f"a study config must be a JSON object, got {type(raw).__name__}")
        _unknown("study", raw, _TOP_KEYS)
        for key in ("name", "bundle", "data", "losses", "budget"):
            if key not in raw:
                raise ValueError(f"study: missing key {key!r} (required: name, bundle, data, losses, budget)")
        name = raw["name"]
        if not isinstance(name, str) or not name or any(c in name for c in "/\\ "):
            raise ValueError(f"study.name must be a non-empty folder name without spaces or slashes, got {name!r}")
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
                alt = bundle / "configs" / str(o)
                if not alt.is_file():
                    raise ValueError(
                        f"study.overlays: {o!r} not found (relative to the repo root or the bundle's configs/)"
                    )
                p = alt
            overlays.append(p)

        d = raw["data"]
        if not isinstance(d, Mapping):
            raise ValueError(f"study.data must be an object, got {type(d).__name__}")
        _unknown("study.data", d, _DATA_KEYS)
        conv = d.get("converter")
        if conv not in CONVERTERS:
            raise ValueError(f"study.data.converter must be one of {', '.join(CONVERTERS)}, got {conv!r}")
        k = _pos_int("study.data", "num_classes", d.get("num_classes"), 2)
        names = d.get("class_names")
        if names is not None and (not isinstance(names, list) or len(names) != k):
            raise ValueError(f"study.data.class_names must list {k} names (num_classes={k}), got {names!r}")
        infection = d.get("infection_classes")
        if infection is not None and (
            not isinstance(infection, list)
            or not infection
            or not all(isinstance(c, int) and 0 < c < k for c in infection)
        ):
            raise ValueError(
                f"study.data.infection_classes must be foreground class indices in [1, {k}), got {infection!r}"
            )
        source = _resolve(d.get("source"), root)
        if conv not in ("synthetic_ct", "synthetic_frames") and source is None:
            raise ValueError(f"study.data.source is required for converter {conv!r}")
        data = DataSpec(
            converter=str(conv),
            source=source,
            num_classes=k,
            label_map=d.get("label_map", "binary"),
            options=dict(d.get("options", {}) or {}),
            class_names=names,
            split=dict(d["split"]) if d.get("split") else None,
            infection_classes=infection,
        )

        losses = raw["losses"]
        if not isinstance(losses, list) or not losses or not all(isinstance(x, str) for x in losses):
            raise ValueError(f"study.losses must be a non-empty list of loss names, got {losses!r}")
        known = LOSSES.names()
        for loss in losses:
            if loss not in known:
                close = difflib.get_close_matches(loss, known, n=3)
                raise ValueError(f"study.losses: unknown loss {loss!r} (closest: {close}; registered: {known})")
        if len(set(losses)) != len(losses):
            raise ValueError(f"study.losses lists a loss twice: {losses}")

        b = raw["budget"]
        if not isinstance(b, Mapping):
            raise ValueError(f"study.budget must be an object, got {type(b).__name__}")
        _unknown("study.budget", b, _BUDGET_KEYS)
        size = b.get("spatial_size")
        if (
            not isinstance(size, list)
            or not size
            or not all(isinstance(s, int) and s > 0 and s % 16 == 0 for s in size)
        ):
            raise ValueError(
                f"study.budget.spatial_size must be a list of positive multiples of 16 (COPLE-Net downsamples 4 "
                f"times), got {size!r}"
            )
        budget = Budget(
            pretrain_epochs=_pos_int("study.budget", "pretrain_epochs", b.get("pretrain_epochs")),
            finetune_epochs=_pos_int("study.budget", "finetune_epochs", b.get("finetune_epochs")),
            spatial_size=list(size),
            features=list(b.get("features", [16, 32, 64, 128, 256])),
            batch_size=_pos_int("study.budget", "batch_size", b.get("batch_size", 4)),
            pretrain_learning_rate=_pos_float(
                "study.budget", "pretrain_learning_rate", b.get("pretrain_learning_rate", 1e-3)
            ),
            finetune_learning_rate=_pos_float(
                "study.budget", "finetune_learning_rate", b.get("finetune_learning_rate", 1e-4)
            ),
            lr_power=float(b.get("lr_power", 0.0)),
            overrides=dict(b.get("overrides", {}) or {}),
        )
        seeds = raw.get("seeds", [0])
        if (
            not isinstance(seeds, list)
            or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
        ):
            raise ValueError(f"study.seeds must be a non-empty list of integers, got {seeds!r}")

        s = raw.get("sensitivity", {}) or {}
        _unknown("study.sensitivity", s, _SENS_KEYS)
        pairs = []
        for pair in s.get("finetune", []) or []:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise ValueError(f"study.sensitivity.finetune entries must be [tau, v] pairs, got {pair!r}")
            pairs.append(
                (
                    _pos_float("study.sensitivity", "finetune tau", pair[0]),
                    _pos_float("study.sensitivity", "finetune v", pair[1]),
                )
            )
        if pairs and "mc" not in losses:
            raise ValueError("study.sensitivity.finetune needs 'mc' in study.losses (it fine-tunes MC with other τ/v)")
        sens = Sensitivity(
            taus=[_pos_float("study.sensitivity", "taus", t) for t in s.get("taus", [1.0, 5.0, 10.0, 20.0, 50.0])],
            vs=[_pos_float("study.sensitivity", "vs", v) for v in s.get("vs", [0.1, 1.0, 10.0])],
            complexity=_pos_float("study.sensitivity", "complexity", s.get("complexity", 1.0)),
            finetune=pairs,
        )
        return cls(
            name=name,
            bundle=bundle,
            data=data,
            losses=list(losses),
            budget=budget,
            seeds=list(seeds),
            overlays=overlays,
            sensitivity=sens,
            title=str(raw.get("title", name)),
            description=str(raw.get("description", "")),
        )


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
