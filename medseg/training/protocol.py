"""The papers' two-stage protocol driven through MONAI bundles: CE pre-training, then fine-tuning with a loss.

Li, Yu and Zhang ("Distribution-aware Margin Calibration for Medical Image Segmentation", arXiv:2011.01462,
Settings): every loss fine-tunes from the same CE-pre-trained COPLE-Net with AdamW at
1e-4. Each stage is one ``monai.bundle run`` of a bundle's ``train.json`` plus the loss overlay
``configs/losses/<loss>.json``, with its own ``ckpt_dir``/``output_dir``; a stage that finished (``done.json``
present) is skipped, and an interrupted one resumes from its ``last.pt`` (the bundle's resume handler).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medseg.io import write_json
from medseg.resources import loss_overlay
from medseg.typing import PathLike

__all__ = ["loss_overlay", "run_bundle", "run_stage", "two_stage"]

logger = logging.getLogger(__name__)


def run_bundle(config_files: Sequence[PathLike], overrides: Mapping[str, Any] | None = None) -> None:
    """Run ``python -m monai.bundle run`` in this process with ``config_files`` merged in order.

    Args:
        config_files: ``train.json`` first, then overlays.
        overrides: config id -> value (``{"num_epochs": 2, "network_def#features": [16, 32, 64, 128, 256]}``).
    """
    from monai.bundle.scripts import run

    files = [str(Path(f)) for f in config_files]
    for f in files:
        if not Path(f).is_file():
            raise FileNotFoundError(f"bundle config {f!r} not found")
    run(config_file=files, **dict(overrides or {}))


def run_stage(
    bundle_dir: PathLike,
    run_dir: PathLike,
    *,
    loss: str | None = None,
    extra_configs: Sequence[PathLike] = (),
    overrides: Mapping[str, Any] | None = None,
    pretrained_ckpt: PathLike | None = None,
) -> dict[str, Any]:
    """Train one stage of a bundle into ``run_dir`` (``models/``, ``history.csv``, curves, ``done.json``).

    Skips the run when ``run_dir/done.json`` exists; resumes it when ``run_dir/models/last.pt`` exists.

    Args:
        bundle_dir: the bundle (``configs/train.json`` is the base config).
        run_dir: this stage's folder.
        loss: a loss name (overlay ``configs/losses/<loss>.json``), or the path of an overlay ``.json`` file
            (the recorded loss name is then the file's stem); ``None``: the bundle's own loss.
        extra_configs: overlays merged after ``train.json`` and before the loss overlay.
        overrides: config id -> value.
        pretrained_ckpt: weights loaded before training (fine-tuning).

    Returns:
        The content of ``done.json``: loss, paths, the last history row and the wall time.
    """
    bundle = Path(bundle_dir)
    run_path = Path(run_dir)
    done = run_path / "done.json"
    if done.is_file():
        logger.info("skipping finished run %s", run_path)
        return dict(json.loads(done.read_text(encoding="utf-8")))
    configs: list[PathLike] = [bundle / "configs" / "train.json", *extra_configs]
    if loss is not None:
        as_path = Path(loss)
        if as_path.suffix == ".json" and as_path.is_file():
            configs.append(as_path)
            loss = as_path.stem
        else:
            configs.append(loss_overlay(loss))
    ov: dict[str, Any] = {
        "bundle_root": str(bundle),
        "ckpt_dir": str(run_path / "models"),
        "output_dir": str(run_path),
        **dict(overrides or {}),
    }
    if pretrained_ckpt is not None:
        ov["pretrained_ckpt"] = str(pretrained_ckpt)
    start = time.perf_counter()
    run_bundle(configs, ov)
    from medseg.training.curves import read_history

    history = read_history(run_path / "history.csv")
    last = {k: v[-1] for k, v in history.items()}
    result = {
        "loss": loss,
        "run_dir": str(run_path),
        "model": str(run_path / "models" / "model.pt"),
        "pretrained_ckpt": None if pretrained_ckpt is None else str(pretrained_ckpt),
        "last_epoch": last,
        "wall_seconds": round(time.perf_counter() - start, 1),
        "overrides": {k: v for k, v in ov.items() if k not in ("bundle_root",)},
    }
    write_json(done, result)
    return result


def two_stage(
    bundle_dir: PathLike,
    work_dir: PathLike,
    loss: str,
    *,
    pretrain_epochs: int,
    finetune_epochs: int,
    overrides: Mapping[str, Any] | None = None,
    extra_configs: Sequence[PathLike] = (),
) -> dict[str, Any]:
    """CE pre-training into ``work_dir/ce_pretrain`` (once), then fine-tuning with ``loss`` into ``work_dir/<loss>``.

    Returns:
        ``{"pretrain": ..., "finetune": ...}``, the two stages' ``done.json`` contents.
    """
    work = Path(work_dir)
    pre = run_stage(
        bundle_dir,
        work / "ce_pretrain",
        loss="ce",
        extra_configs=extra_configs,
        overrides={**dict(overrides or {}), "num_epochs": pretrain_epochs},
    )
    fine = run_stage(
        bundle_dir,
        work / loss,
        loss=loss,
        extra_configs=extra_configs,
        overrides={**dict(overrides or {}), "num_epochs": finetune_epochs},
        pretrained_ckpt=pre["model"],
    )
    return {"pretrain": pre, "finetune": fine}
