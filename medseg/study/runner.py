"""Run a study: data -> cross-validation folds -> per fold: stats and plan -> every run trained and evaluated.

Each run of the study definition (:mod:`medseg.study.config`) is trained on every fold through the bundle's
``train.json`` (:func:`medseg.training.protocol.run_stage`, in this process) with the fold's ``plan.json``
(:mod:`medseg.data.plan`, computed on the fold's training cases only) merged with the run's own plan values, and
scored on the fold's test cases: the masks come from the bundle's ``inference.json`` in each input's own
geometry and are compared with the reference labels image by image (:func:`score_case`). Runs ``from`` another
run start from that run's model of the same fold and seed (the papers' CE pre-training then fine-tuning).

Layout of ``work_dir`` (nothing here is committed)::

    data/                          converted images/labels, datalist.json (every case)
    folds/fold<k>/                 datalist.json (training/validation/test), stats.json, plan.json,
                                   test_inputs/, test_refs/ (test cases under unique ids)
    seed<S>/fold<k>/<run>/         models/, history.csv, plan.json, done.json, eval/result.json

Finished runs (``done.json`` and ``eval/result.json``) are never redone; an interrupted run resumes from its
``last.pt``; a run that raised is recorded in ``failed.json`` and retried the next time. Several processes may
work on one study at once when each is given other runs or folds (``runs=``/``folds=``).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import platform
import resource
import shutil
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io import write_json
from medseg.resources import package_root
from medseg.study.config import RunSpec, StudyConfig
from medseg.typing import PathLike

__all__ = ["ALL_DATA", "PlannedRun", "StudyResult", "merge", "plan_runs", "run_study", "score_case"]

#: The "fold" that trains on every case (the model to ship): no test cases, no evaluation.
ALL_DATA = -1

logger = logging.getLogger(__name__)


@dataclass
class PlannedRun:
    """One training run of the study on one fold."""

    seed: int
    fold: int
    spec: RunSpec
    run_dir: Path

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def fold_name(self) -> str:
        """``fold<k>``, or ``all`` for the run on every case."""
        return fold_name(self.fold)

    @property
    def done(self) -> bool:
        """Training finished and (for a cross-validation fold) the test evaluation written."""
        trained = (self.run_dir / "done.json").is_file()
        return trained and (self.fold == ALL_DATA or (self.run_dir / "eval" / "result.json").is_file())


def fold_name(fold: int) -> str:
    """The folder name of a fold: ``fold<k>``, or ``all`` for :data:`ALL_DATA`."""
    return "all" if fold == ALL_DATA else f"fold{fold}"


@dataclass
class StudyResult:
    """What :func:`run_study` did."""

    work_dir: Path
    results_dir: Path | None
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    plan: list[PlannedRun] = field(default_factory=list)
    wall_seconds: float = 0.0


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``update`` merged in (nested mappings merge, anything else replaces).

    Example:
        >>> merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}, "b": None})
        {'a': {'x': 1, 'y': 3}, 'b': None}
    """
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def plan_runs(
    cfg: StudyConfig,
    work_dir: Path,
    *,
    seeds: Sequence[int] | None = None,
    folds: Sequence[int] | None = None,
    runs: Sequence[str] | None = None,
) -> list[PlannedRun]:
    """Every (seed, fold, run) in execution order: seed, then fold, then the runs in the config's order.

    ``runs`` keeps only those runs (a run's ``from`` source must be finished or also selected); ``folds`` may
    hold :data:`ALL_DATA` for the runs on every case (the models to ship).
    """
    names = [r.name for r in cfg.runs]
    for name in runs or []:
        if name not in names:
            raise ValueError(f"unknown run {name!r}; the study's runs are {names}")
    for k in folds or []:
        if k != ALL_DATA and not 0 <= k < cfg.cv.folds:
            raise ValueError(f"fold {k} does not exist; the study has folds 0..{cfg.cv.folds - 1}")
    out = []
    for seed in seeds or cfg.seeds:
        for k in folds if folds is not None else range(cfg.cv.folds):
            for spec in cfg.runs:
                if runs and spec.name not in runs:
                    continue
                out.append(PlannedRun(seed, k, spec, work_dir / f"seed{seed}" / fold_name(k) / spec.name))
    return out


def _in_channels(bundle: Path) -> int:
    train = json.loads((bundle / "configs" / "train.json").read_text(encoding="utf-8"))
    return int(train.get("network_def", {}).get("in_channels", 1))


def _network_component(spec: Mapping[str, Any], in_channels: int) -> dict[str, Any]:
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return {
        "_target_": "medseg.registry.create_network",
        "name": spec["name"],
        "spatial_dims": 2,
        "in_channels": in_channels,
        "out_channels": "@num_classes",
        **kwargs,
    }


def _prepare_fold(cfg: StudyConfig, datalist: Path, progress: bool) -> dict[str, Any]:
    """``stats.json``, ``plan.json`` and the unique-id test copies of one fold (each once)."""
    from medseg.data.plan import plan_datalist
    from medseg.data.statistics import compute_stats, write_stats

    fold_dir = datalist.parent
    stats = fold_dir / "stats.json"
    if not stats.is_file():
        write_stats(
            stats,
            compute_stats(datalist, num_classes=cfg.data.num_classes, label_map=cfg.data.label_map, empty="zero"),
        )
    plan_file = fold_dir / "plan.json"
    if not plan_file.is_file():
        plan_datalist(
            datalist,
            cfg.data.num_classes,
            plan_file,
            label_map=cfg.data.label_map,
            intensity_range=cfg.plan.get("intensity_range", (0.0, 255.0)),
            window=cfg.plan.get("window"),
            device=cfg.plan.get("device", "cpu"),
            progress=progress,
        )
    plan = json.loads(plan_file.read_text(encoding="utf-8"))
    if cfg.plan.get("overrides"):
        plan = merge(plan, cfg.plan["overrides"])
    has_test = bool(json.loads(datalist.read_text(encoding="utf-8")).get("test"))
    images = _test_copies(datalist, fold_dir / "test_refs", fold_dir / "test_inputs") if has_test else []
    return {"dir": fold_dir, "datalist": datalist, "stats": stats, "plan": plan, "images": images}


def _test_copies(datalist: Path, refs: Path, inputs: Path) -> list[Path]:
    """Copy the test images to ``inputs`` and their labels to ``refs`` under one unique case id per pair.

    Predictions are named after their input's stem, so the copies make the ids unique (``<folder>_<stem>``
    when two test images share a stem, e.g. frame numbers of different clips).
    """
    from medseg.data import load_datalist
    from medseg.evaluation.cases import case_id

    items = load_datalist(datalist, "test")
    if not items:
        raise ValueError(f"{datalist}: the test split is empty")
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


def score_case(pred: np.ndarray, ref: np.ndarray, num_classes: int, foreground: Sequence[int]) -> dict[str, Any]:
    """Per-image scores: foreground Dice/IoU with their counts, and per-class intersection/union.

    ``foreground`` classes are merged into one mask (the lesion or instrument). A case empty in both prediction
    and reference has Dice and IoU ``None`` (left out of per-image means) and adds nothing to pooled sums.

    Example:
        >>> r = score_case(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]), 2, [1])
        >>> round(r["dice_fg"], 4), r["inter_fg"], r["union_fg"]  # 2·2 / (3 + 2)
        (0.8, 2, 3)
    """
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from the reference's {ref.shape}")
    p = np.isin(pred, foreground)
    r = np.isin(ref, foreground)
    inter = int((p & r).sum())
    union = int((p | r).sum())
    total = int(p.sum()) + int(r.sum())
    out: dict[str, Any] = {
        "dice_fg": None if total == 0 else 2.0 * inter / total,
        "iou_fg": None if union == 0 else inter / union,
        "inter_fg": inter,
        "union_fg": union,
        "pred_fg": int(p.sum()),
        "ref_fg": int(r.sum()),
        "inter": [],
        "union": [],
    }
    for c in range(num_classes):
        pc, rc = pred == c, ref == c
        out["inter"].append(int((pc & rc).sum()))
        out["union"].append(int((pc | rc).sum()))
    return out


def _read_mask(path: Path) -> np.ndarray:
    from medseg.imageio import read_label

    return np.asarray(read_label(path).array)


def _evaluate(
    cfg: StudyConfig, r: PlannedRun, fold: Mapping[str, Any], plan: Mapping[str, Any], model: Path
) -> dict[str, Any]:
    """Predict the fold's test images with ``model`` through ``inference.json`` and score every case."""
    from medseg.inference import predict_with_bundle
    from medseg.transforms.labels import MapLabels

    overrides: dict[str, Any] = {
        "num_classes": cfg.data.num_classes,
        "spatial_size": list(plan["spatial_size"]),
        "predictor#roi_size": list(plan["spatial_size"]),
        "normalization": plan["normalization"],
        "network_def#features": list(plan["network"]["features"]),
    }
    if r.spec.network is not None:
        overrides["network_def"] = _network_component(r.spec.network, _in_channels(cfg.bundle))
    tta = r.spec.tta if r.spec.tta is not None else bool(plan.get("tta", False))
    pred_dir = r.run_dir / "eval" / "pred"
    report = predict_with_bundle(
        cfg.bundle,
        [str(p) for p in fold["images"]],
        pred_dir,
        ckpt=model,
        device="cpu",
        tta=tta,
        overwrite=True,
        overrides=overrides,
    )
    if report.failed:
        raise RuntimeError(f"prediction failed for {len(report.failed)} case(s): {report.failed[0].error}")
    mapper = MapLabels(cfg.data.label_map)
    cases = []
    for image in fold["images"]:
        case = image.name[: -len(".nii.gz")] if image.name.endswith(".nii.gz") else image.stem
        preds = sorted(pred_dir.glob(f"{case}_seg.*"))
        refs = sorted((fold["dir"] / "test_refs").glob(f"{case}.*"))
        if len(preds) != 1 or len(refs) != 1:
            raise RuntimeError(f"case {case}: expected one prediction and one reference, got {preds} and {refs}")
        ref = np.asarray(mapper(_read_mask(refs[0])))
        pred = _read_mask(preds[0])
        if pred.shape != ref.shape and pred.squeeze().shape == ref.squeeze().shape:
            pred, ref = pred.squeeze(), ref.squeeze()
        cases.append({"case": case, **score_case(pred, ref, cfg.data.num_classes, cfg.data.foreground())})
    return {"tta": tta, "cases": cases}


def machine_info() -> dict[str, Any]:
    """Machine description for the report."""
    import torch

    info: dict[str, Any] = {
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


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return float(usage.ru_utime + usage.ru_stime)


def _train(
    cfg: StudyConfig, r: PlannedRun, fold: Mapping[str, Any], device: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train one run on one fold (skipped when finished); returns ``done.json`` and the run's plan."""
    from medseg.data.plan import write_plan
    from medseg.training.protocol import run_stage

    plan = merge(fold["plan"], r.spec.plan)
    if "images_per_run" in r.spec.plan and "num_epochs" not in r.spec.plan:
        from medseg.data.plan import Budget

        plan["num_epochs"] = Budget(int(plan["images_per_run"])).epochs(int(plan["num_cases"]))
    plan_file = r.run_dir / "plan.json"
    if not plan_file.is_file():
        write_plan(plan_file, plan)
    ov: dict[str, Any] = {
        "dataset_dir": str(fold["dir"]),
        "datalist": str(fold["datalist"]),
        "stats_file": str(fold["stats"]),
        "plan_file": str(plan_file),
        "num_classes": cfg.data.num_classes,
        "seed": r.seed,
        "val_interval": int(plan["num_epochs"]),  # one validation, at the end: a sanity check, no selection
        "device": f"$torch.device('{device}')",
        # on a GPU the CPU-side augmentation must keep up: load batches in worker processes
        "num_workers": 0 if device == "cpu" else min(8, os.cpu_count() or 1),
    }
    if cfg.data.label_map is not None:
        ov["label_map"] = cfg.data.label_map
    if r.spec.network is not None:
        ov["network_def"] = _network_component(r.spec.network, _in_channels(cfg.bundle))
    ov.update(r.spec.overrides)
    pretrained = None
    if r.spec.source is not None:
        pretrained = r.run_dir.parent / r.spec.source / "models" / "model.pt"
        if not pretrained.is_file():
            raise RuntimeError(f"run {r.name} starts from {r.spec.source}, whose model {pretrained} does not exist yet")
    cpu0 = _cpu_seconds()
    done = run_stage(
        cfg.bundle, r.run_dir, loss=r.spec.loss, extra_configs=cfg.overlays, overrides=ov, pretrained_ckpt=pretrained
    )
    if "cpu_seconds" not in done:
        done["cpu_seconds"] = round(_cpu_seconds() - cpu0, 1)
        write_json(r.run_dir / "done.json", done)
    return done, plan


def run_study(
    cfg: StudyConfig,
    work_dir: PathLike | None = None,
    *,
    results_dir: PathLike | None = None,
    seeds: Sequence[int] | None = None,
    folds: Sequence[int] | None = None,
    runs: Sequence[str] | None = None,
    dry_run: bool = False,
    report: bool = True,
    report_only: bool = False,
    command: str | None = None,
    num_threads: int | None = 1,
    device: str = "cpu",
    progress: bool = False,
) -> StudyResult:
    """Run (or resume) a study and write its report.

    Args:
        cfg: the validated study (:func:`medseg.study.config.load_study_config`).
        work_dir: data, folds, runs and predictions (default ``./runs/study/<name>``).
        results_dir: where the report goes (default ``<work_dir>/report``).
        seeds: overrides ``cfg.seeds``.
        folds: only these folds (default: all).
        runs: only these runs (default: all).
        dry_run: only plan: log which runs are finished and which would run; nothing is trained or written.
        report: write the report from every finished run at the end (also from runs of other processes).
        report_only: train nothing; write the report from the runs finished so far.
        command: the command line recorded in the report.
        num_threads: ``torch.set_num_threads`` for the study (restored afterwards); ``None`` keeps torch's
            default. On a shared 2-core machine, two study processes with one thread each finish more runs per
            hour than one process with two threads.
        device: ``"cpu"`` or a CUDA device (``"cuda"``, ``"cuda:1"``) for training and prediction.
        progress: a progress bar over the runs.

    Returns:
        A :class:`StudyResult`; ``failures`` lists runs that raised (their error is in ``<run>/failed.json``).
    """
    work = (Path(work_dir) if work_dir is not None else Path.cwd() / "runs" / "study" / cfg.name).resolve()
    out = Path(results_dir) if results_dir is not None else work / "report"
    plan = plan_runs(cfg, work, seeds=seeds, folds=folds, runs=runs)
    result = StudyResult(work, None if dry_run else out, plan=plan)
    if dry_run:
        for r in plan:
            logger.info(
                "%-4s seed %d %-5s %-20s %s", "done" if r.done else "todo", r.seed, r.fold_name, r.name, r.run_dir
            )
        return result
    import torch

    old_threads = torch.get_num_threads()
    if num_threads is not None:
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1 or None, got {num_threads!r}")
        torch.set_num_threads(num_threads)
    start = time.perf_counter()
    try:
        if not report_only:
            _execute(cfg, work, plan, result, device, progress)
    finally:
        torch.set_num_threads(old_threads)
    result.wall_seconds = round(time.perf_counter() - start, 1)
    if report:
        from medseg.study.report import collect_results, write_report

        result.results = collect_results(cfg, work, seeds=seeds)
        cmd = command or f"medseg study {cfg.config_path or cfg.name}"
        write_report(cfg, result, out, command=cmd, machine=machine_info())
    return result


def _execute(
    cfg: StudyConfig, work: Path, plan: list[PlannedRun], result: StudyResult, device: str, progress: bool
) -> None:
    from tqdm.auto import tqdm

    from medseg.study.data import prepare_data
    from medseg.study.folds import all_data_datalist, fold_datalists

    datalist = prepare_data(cfg.data, work / "data")
    fold_files = dict(enumerate(fold_datalists(datalist, cfg.cv, work / "folds")))
    if any(r.fold == ALL_DATA for r in plan):
        fold_files[ALL_DATA] = all_data_datalist(datalist, cfg.cv, work / "folds")
    prepared: dict[int, dict[str, Any]] = {}
    for r in tqdm(plan, desc=f"study {cfg.name}", unit="run", disable=not progress):
        failed_marker = r.run_dir / "failed.json"
        res_path = r.run_dir / "eval" / "result.json"
        if r.done:
            continue
        try:
            if r.fold not in prepared:
                prepared[r.fold] = _prepare_fold(cfg, fold_files[r.fold], progress)
            fold = prepared[r.fold]
            done, run_plan = _train(cfg, r, fold, device)
            if r.fold == ALL_DATA:  # the model to ship: nothing held back to evaluate on
                continue
            t0 = time.perf_counter()
            ev = _evaluate(cfg, r, fold, run_plan, Path(done["model"]))
            ev.update(
                {
                    "run": r.name,
                    "seed": r.seed,
                    "fold": r.fold,
                    "train_wall_seconds": done.get("wall_seconds"),
                    "train_cpu_seconds": done.get("cpu_seconds"),
                    "num_epochs": run_plan["num_epochs"],
                    "eval_wall_seconds": round(time.perf_counter() - t0, 1),
                }
            )
            write_json(res_path, ev)
            if failed_marker.is_file():
                failed_marker.unlink()
        except Exception as err:  # a failing run is a result: record it and go on with the others
            msg = f"{type(err).__name__}: {' '.join(str(err).split())[:500]}"
            logger.error("run %s (seed %d, %s) failed: %s", r.name, r.seed, r.fold_name, msg)
            fail = {"run": r.name, "seed": r.seed, "fold": r.fold, "error": msg}
            write_json(failed_marker, {**fail, "traceback": traceback.format_exc()[-4000:]})
            result.failures.append(fail)
