"""Run a loss study: data -> stats -> CE pre-training (once per seed) -> fine-tune each loss -> test evaluation.

The protocol is that of 002_1f3568bddcc5ea2b.txt (Settings): a COPLE-Net is pre-trained with cross-entropy, then
every loss fine-tunes from the SAME checkpoint with the same budget and seed; each fine-tuned model is scored on
the held-back test split with :func:`medseg.inference.predict_with_bundle` (masks in each input's own geometry)
and :func:`medseg.evaluation.evaluate.evaluate_folders` (one accumulated confusion matrix, 000 Eq. 1-3).

Layout of ``work_dir`` (nothing here is committed)::

    data/                       converted images/labels, datalist.json, stats.json, test_refs/
    overlays/                   generated loss overlays for losses without configs/losses/<loss>.json
    seed<S>/ce_pretrain/        CE pre-training (done.json when finished)
    seed<S>/<run>/              one fine-tuning run: models/, history.csv, done.json, eval/result.json

Resuming: a finished stage (``done.json``) and a finished evaluation (``eval/result.json``) are never redone;
an interrupted stage resumes from its ``last.pt``. A run that raised is recorded in ``failed.json`` and retried
the next time the study runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io import write_json
from medseg.resources import package_root
from medseg.study.config import StudyConfig
from medseg.typing import PathLike

__all__ = ["PlannedRun", "StudyResult", "evaluate_model", "plan_runs", "run_study"]

logger = logging.getLogger(__name__)


@dataclass
class PlannedRun:
    """One training stage of the study."""

    seed: int
    name: str  # "ce_pretrain", a loss name, or "mc_tau<t>_v<v>"
    loss: str
    kind: str  # "pretrain" | "finetune" | "sensitivity"
    run_dir: Path
    tau: float | None = None
    v: float | None = None

    @property
    def done(self) -> bool:
        """Training finished and the test evaluation written."""
        return (self.run_dir / "done.json").is_file() and (self.run_dir / "eval" / "result.json").is_file()


@dataclass
class StudyResult:
    """What :func:`run_study` did."""

    work_dir: Path
    results_dir: Path | None
    runs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    plan: list[PlannedRun] = field(default_factory=list)
    wall_seconds: float = 0.0


def _fmt_num(x: float) -> str:
    return f"{x:g}".replace(".", "p")


def plan_runs(cfg: StudyConfig, work_dir: Path, seeds: list[int]) -> list[PlannedRun]:
    """Every stage of the study in execution order (pre-training first within each seed)."""
    plan: list[PlannedRun] = []
    for seed in seeds:
        base = work_dir / f"seed{seed}"
        plan.append(PlannedRun(seed, "ce_pretrain", "ce", "pretrain", base / "ce_pretrain"))
        for loss in cfg.losses:
            plan.append(PlannedRun(seed, loss, loss, "finetune", base / loss))
        for tau, v in cfg.sensitivity.finetune:
            if (tau, v) == (10.0, 1.0):  # the overlay's default: the plain "mc" run is this point
                continue
            name = f"mc_tau{_fmt_num(tau)}_v{_fmt_num(v)}"
            plan.append(PlannedRun(seed, name, "mc", "sensitivity", base / name, tau=tau, v=v))
    return plan


def _overlay_for(loss: str, work_dir: Path) -> str:
    """``configs/losses/<loss>.json`` if it exists, else an overlay generated for :func:`medseg.registry.create_loss`.

    The builder fills in what the loss needs from the run (the class counts from ``stats_file`` for the
    margin-calibration losses), as the shipped overlays do.
    """
    from medseg.training.protocol import loss_overlay

    try:
        return str(loss_overlay(loss))
    except FileNotFoundError:
        pass
    spec: dict[str, Any] = {
        "_target_": "medseg.registry.create_loss",
        "name": loss,
        "stats": "@stats_file",
        "num_classes": "@num_classes",
    }
    path = work_dir / "overlays" / f"{loss}.json"
    write_json(path, {"loss_name": loss, "loss": spec})
    logger.warning(
        "no overlay configs/losses/%s.json; using a generated one with the registry defaults: %s", loss, path
    )
    return str(path)


def _base_overrides(cfg: StudyConfig, datalist: Path, stats: Path) -> dict[str, Any]:
    b = cfg.budget
    ov: dict[str, Any] = {
        "dataset_dir": str(datalist.parent),
        "datalist": str(datalist),
        "stats_file": str(stats),
        "spatial_size": list(b.spatial_size),
        "network_def#features": list(b.features),
        "num_classes": cfg.data.num_classes,
        "batch_size": b.batch_size,
        "lr_power": b.lr_power,
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
    }
    if cfg.data.label_map is not None:
        ov["label_map"] = cfg.data.label_map
    ov.update(b.overrides)
    return ov


def _test_refs(datalist: Path, refs: Path, inputs: Path) -> list[Path]:
    """Copy the test images to ``inputs`` and their labels to ``refs`` under one unique case id per pair.

    The copies make the case ids unique (``<folder>_<stem>`` when two test images share a stem, e.g. frame
    numbers of different clips), since predictions are named after their input's stem.
    """
    from medseg.data import load_datalist
    from medseg.evaluation.evaluate import case_id

    items = load_datalist(datalist, "test")
    if not items:
        raise ValueError(f"{datalist}: the test split is empty; the study needs held-back test cases")
    stems = [case_id(Path(item["image"])) for item in items]
    refs.mkdir(parents=True, exist_ok=True)
    inputs.mkdir(parents=True, exist_ok=True)
    images = []
    for item, stem in zip(items, stems, strict=True):
        image, label = Path(item["image"]), Path(item["label"])
        case = stem if stems.count(stem) == 1 else f"{image.parent.name}_{stem}"
        img_suffix = ".nii.gz" if image.name.lower().endswith(".nii.gz") else image.suffix
        lab_suffix = ".nii.gz" if label.name.lower().endswith(".nii.gz") else label.suffix
        for src, dst in ((label, refs / f"{case}{lab_suffix}"), (image, inputs / f"{case}{img_suffix}")):
            if not dst.exists():
                shutil.copyfile(src, dst)
        images.append(inputs / f"{case}{img_suffix}")
    return images


def _foreground_dice(pred_dir: Path, ref_dir: Path, foreground: list[int]) -> dict[str, Any]:
    """Per-image Dice of the merged foreground ("infection") mask; images empty in both are skipped (NaN)."""
    from medseg.evaluation.evaluate import match_cases, read_segmentation

    pairs, _, _ = match_cases(pred_dir, ref_dir, pred_suffix="_seg")
    per_case: dict[str, float | None] = {}
    for case, p, t in pairs:
        pred = np.isin(read_segmentation(p).array, foreground)
        ref = np.isin(read_segmentation(t).array, foreground)
        denom = int(pred.sum()) + int(ref.sum())
        per_case[case] = None if denom == 0 else 2.0 * int((pred & ref).sum()) / denom
    vals = [v for v in per_case.values() if v is not None]
    return {
        "mean": float(np.mean(vals)) if vals else None,
        "std": float(np.std(vals)) if vals else None,
        "n": len(vals),
        "n_empty_both": len(per_case) - len(vals),
        "per_case": per_case,
    }


def evaluate_model(cfg: StudyConfig, model: Path, images: list[Path], refs: Path, out_dir: Path) -> dict[str, Any]:
    """Predict the test images with ``model`` through the bundle's ``inference.json`` and score them."""
    from medseg.evaluation.evaluate import evaluate_folders
    from medseg.inference import predict_with_bundle

    b = cfg.budget
    pred_dir = out_dir / "pred"
    report = predict_with_bundle(
        cfg.bundle,
        [str(p) for p in images],
        pred_dir,
        ckpt=model,
        device="cpu",
        overwrite=True,
        overrides={
            "network_def#features": list(b.features),
            "spatial_size": list(b.spatial_size),
            "predictor#roi_size": list(b.spatial_size),
            "num_classes": cfg.data.num_classes,
        },
    )
    if report.failed:
        raise RuntimeError(f"prediction failed for {len(report.failed)} case(s): {report.failed[0].error}")
    lmap = {int(k): int(v) for k, v in cfg.data.label_map.items()} if isinstance(cfg.data.label_map, dict) else None
    summary = evaluate_folders(
        pred_dir,
        refs,
        cfg.data.num_classes,
        out=out_dir / "test_summary.json",
        label_map=lmap,
        class_names=cfg.data.names(),
        pred_suffix="_seg",
        check_affine=False,
        distances=False,  # HD95/ASD are not in the papers' tables and dominate the evaluation time on CPU
    )
    return {
        "dataset": summary["dataset"],
        "per_case": summary["per_case"],
        "foreground_dice": _foreground_dice(pred_dir, refs, cfg.data.foreground()),
        "num_cases": summary["num_cases"],
    }


def _history_summary(run_dir: Path) -> dict[str, Any]:
    from medseg.training.curves import read_history

    path = run_dir / "history.csv"
    if not path.is_file():
        return {}
    h = read_history(path)
    out: dict[str, Any] = {"epochs": len(next(iter(h.values())))}
    if "val_miou" in h:
        vals = [x for x in h["val_miou"] if not math.isnan(x)]
        if vals:
            out["best_val_miou"] = max(vals)
            out["last_val_miou"] = vals[-1]
    for key in ("train_loss", "val_loss"):
        if h.get(key):
            out[f"last_{key}"] = h[key][-1]
    return out


def machine_info() -> dict[str, Any]:
    """Machine description for the report."""
    import torch

    info = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "python": platform.python_version(),
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:  # pragma: no cover
        pass
    try:
        import subprocess

        info["git_commit"] = subprocess.run(
            ["git", "-C", str(package_root()), "rev-parse", "--short", "HEAD"],  # git from PATH
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


def run_study(
    cfg: StudyConfig,
    work_dir: PathLike | None = None,
    *,
    results_dir: PathLike | None = None,
    seeds: list[int] | None = None,
    dry_run: bool = False,
    command: str | None = None,
    num_threads: int | None = 1,
    progress: bool = False,
) -> StudyResult:
    """Run (or resume) a study and write its report.

    Args:
        cfg: the validated study (:func:`medseg.study.config.load_study_config`).
        work_dir: runs, converted data and predictions (default ``./runs/study/<name>``).
        results_dir: where the report goes (default ``<work_dir>/report``); ``None`` with
            ``dry_run`` writes nothing.
        seeds: overrides ``cfg.seeds``.
        dry_run: only plan: log which stages are finished and which would run; nothing is trained or written.
        command: the command line recorded in the report (default: the equivalent ``medseg study`` call).
        num_threads: ``torch.set_num_threads`` for the study (restored afterwards); ``None`` keeps torch's
            default. Default 1: on a shared CPU, OpenMP's spin-waiting threads made a small COPLE-Net step 15-25x
            slower with 2 threads than with 1 (measured: 4.7-8.4 s vs 0.3-0.4 s per batch of 4 at 64x64).
        progress: a progress bar over the stages.

    Returns:
        A :class:`StudyResult`; ``failures`` lists runs that raised (their error is in ``<run>/failed.json``
        and in the report).
    """
    work = Path(work_dir) if work_dir is not None else Path.cwd() / "runs" / "study" / cfg.name
    work = work.resolve()
    out = Path(results_dir) if results_dir is not None else work / "report"
    use_seeds = list(seeds) if seeds else list(cfg.seeds)
    plan = plan_runs(cfg, work, use_seeds)
    result = StudyResult(work, None if dry_run else out, plan=plan)
    if dry_run:
        for r in plan:
            logger.info("%-6s seed %d %-24s %s", "done" if r.done else "todo", r.seed, r.name, r.run_dir)
        return result

    import torch

    old_threads = torch.get_num_threads()
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads!r}")
        torch.set_num_threads(num_threads)
    try:
        _execute(cfg, work, out, plan, result, command, progress)
    finally:
        torch.set_num_threads(old_threads)
    return result


def _execute(
    cfg: StudyConfig,
    work: Path,
    out: Path,
    plan: list[PlannedRun],
    result: StudyResult,
    command: str | None,
    progress: bool,
) -> None:
    from tqdm.auto import tqdm

    from medseg.study.data import prepare_data, prepare_stats
    from medseg.study.report import write_report
    from medseg.training.protocol import run_stage

    start = time.perf_counter()
    data_dir = work / "data"
    datalist = prepare_data(cfg.data, data_dir)
    stats = prepare_stats(cfg.data, datalist)
    images = _test_refs(datalist, data_dir / "test_refs", data_dir / "test_inputs")
    base = _base_overrides(cfg, datalist, stats)
    b = cfg.budget
    pretrained: dict[int, Path] = {}

    for r in tqdm(plan, desc=f"study {cfg.name}", unit="run", disable=not progress):
        failed_marker = r.run_dir / "failed.json"
        try:
            ov = dict(base)
            ov["seed"] = r.seed
            if r.kind == "pretrain":
                ov.update({"num_epochs": b.pretrain_epochs, "learning_rate": b.pretrain_learning_rate})
                done = run_stage(
                    cfg.bundle, r.run_dir, loss=_overlay_for("ce", work), extra_configs=cfg.overlays, overrides=ov
                )
                pretrained[r.seed] = Path(done["model"])
            else:
                if r.seed not in pretrained:
                    raise RuntimeError(f"no CE pre-trained model for seed {r.seed} (its pre-training failed)")
                ov.update({"num_epochs": b.finetune_epochs, "learning_rate": b.finetune_learning_rate})
                if r.tau is not None:
                    ov.update({"loss#tau": r.tau, "loss#v": r.v})
                done = run_stage(
                    cfg.bundle,
                    r.run_dir,
                    loss=_overlay_for(r.loss, work),
                    extra_configs=cfg.overlays,
                    overrides=ov,
                    pretrained_ckpt=pretrained[r.seed],
                )
            res_path = r.run_dir / "eval" / "result.json"
            if not res_path.is_file():
                t0 = time.perf_counter()
                ev = evaluate_model(cfg, Path(done["model"]), images, data_dir / "test_refs", r.run_dir / "eval")
                ev.update(
                    {
                        "name": r.name,
                        "loss": r.loss,
                        "kind": r.kind,
                        "seed": r.seed,
                        "tau": r.tau,
                        "v": r.v,
                        "train_wall_seconds": done.get("wall_seconds"),
                        "eval_wall_seconds": round(time.perf_counter() - t0, 1),
                        "history": _history_summary(r.run_dir),
                    }
                )
                write_json(res_path, ev)
            if failed_marker.is_file():
                failed_marker.unlink()
            result.runs.append(json.loads(res_path.read_text(encoding="utf-8")))
        except Exception as err:  # a failing loss is a result: record it and go on with the others
            if isinstance(err, KeyboardInterrupt):  # pragma: no cover - not an Exception subclass anyway
                raise
            msg = f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
            logger.error("run %s (seed %d) failed: %s", r.name, r.seed, msg)
            fail = {"name": r.name, "loss": r.loss, "kind": r.kind, "seed": r.seed, "error": msg}
            write_json(failed_marker, {**fail, "traceback": traceback.format_exc()[-4000:]})
            result.failures.append(fail)
    result.wall_seconds = round(time.perf_counter() - start, 1)
    cmd = command or f"medseg study {cfg.config_path or cfg.name}"
    write_report(cfg, result, out, stats_file=stats, datalist=datalist, command=cmd, machine=machine_info())
