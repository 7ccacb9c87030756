"""Helpers for the bundle tests: paths, small overrides, an in-process bundle runner, exception chains.

Every run uses 32 x 32 images, COPLE-Net with widths 8..128 and 1-2 epochs, so a training run takes a few
seconds on a quiet 2-core machine.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
BUNDLES = REPO_ROOT / "medseg" / "bundles"
LOSS_OVERLAYS = REPO_ROOT / "medseg" / "configs" / "losses"
SCHEMA = REPO_ROOT.parent / "shared" / "monai" / "meta_schema_20240725.json"
SIZE = 32
FEATURES = [8, 16, 32, 64, 128]


@dataclass(frozen=True)
class Dataset:
    """A generated dataset: its folder, datalist and ``stats.json`` for a label mapping."""

    root: Path
    datalist: Path
    stats_file: Path
    num_classes: int
    label_map: str


def small_overrides(data: Dataset, run_dir: Path, *, classes: bool = True, **extra: Any) -> dict[str, Any]:
    """The overrides every test run uses: tiny images and network, its own output folders.

    ``classes=False`` leaves ``num_classes`` and ``label_map`` to the configs (to test an overlay that sets them).
    """
    out = {
        "bundle_root": str(run_dir),
        "dataset_dir": str(data.root),
        "datalist": str(data.datalist),
        "stats_file": str(data.stats_file),
        "ckpt_dir": str(run_dir / "models"),
        "output_dir": str(run_dir / "runs"),
        "spatial_size": [SIZE, SIZE],
        "network_def#features": FEATURES,
        "num_classes": data.num_classes,
        "label_map": data.label_map,
        "batch_size": 2,
        "num_epochs": 1,
        "learning_rate": 1e-3,
        "schedule": "constant",
    }
    if not classes:
        del out["num_classes"], out["label_map"]
    return {**out, **extra}


def bundle_configs(bundle: str, *overlays: str | Path, base: str = "train.json") -> list[str]:
    """``[bundles/<bundle>/configs/<base>, overlays...]``: a bare name means ``configs/losses/<name>.json``
    when such an overlay exists, else ``bundles/<bundle>/configs/<name>.json``."""
    files = [BUNDLES / bundle / "configs" / base]
    for overlay in overlays:
        path = Path(overlay)
        if path.suffix != ".json":
            loss = LOSS_OVERLAYS / f"{overlay}.json"
            path = loss if loss.is_file() else BUNDLES / bundle / "configs" / f"{overlay}.json"
        files.append(path)
    return [str(f) for f in files]


def make_workflow(bundle: str, configs: Sequence[str], overrides: Mapping[str, Any]) -> Any:
    """A ``monai.bundle.ConfigWorkflow`` over ``configs`` with ``overrides`` (not yet initialised)."""
    from monai.bundle import ConfigWorkflow

    return ConfigWorkflow(
        config_file=list(configs),
        meta_file=str(BUNDLES / bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=None,
        **dict(overrides),
    )


def run_workflow(bundle: str, configs: Sequence[str], overrides: Mapping[str, Any]) -> Any:
    """Initialise, run and finalise a bundle workflow in this process; return the workflow."""
    workflow = make_workflow(bundle, configs, overrides)
    workflow.initialize()
    try:
        workflow.run()
    finally:
        workflow.finalize()
    return workflow


def root_cause(err: BaseException) -> BaseException:
    """The innermost exception of a ``__cause__``/``__context__`` chain (MONAI wraps instantiation errors)."""
    seen = set()
    while (err.__cause__ or err.__context__) is not None and id(err) not in seen:
        seen.add(id(err))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    return err


def chain_text(err: BaseException) -> str:
    """Every message of an exception chain, joined (for ``match`` on wrapped errors)."""
    parts, seen = [], set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts.append(f"{type(current).__name__}: {current}")
        current = current.__cause__ or current.__context__
    return "\n".join(parts)


@contextmanager
def raises_in_chain(exc_type: type[BaseException], text: str) -> Iterator[None]:
    """Expect an exception whose chain holds an ``exc_type`` and the message fragment ``text``.

    MONAI wraps errors raised while a config component is built (``RuntimeError: Failed to instantiate``), so the
    error a user reads is somewhere in the chain rather than at its top.
    """
    try:
        yield
    except Exception as err:
        chain = chain_text(err)
        if f"{exc_type.__name__}:" not in chain or text not in chain:
            raise AssertionError(f"expected {exc_type.__name__} with {text!r} in the chain, got:\n{chain}") from err
    else:
        raise AssertionError(f"expected {exc_type.__name__} with {text!r}, nothing was raised")


def history_rows(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
