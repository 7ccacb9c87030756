"""The report of a study: per-run cross-validated scores with confidence intervals, and paired comparisons.

Every image is a test image in exactly one fold, so each run has one score per image (averaged over seeds when
a study has several). Per run: the mean per-image foreground Dice and IoU with 95 % bootstrap intervals, the
pooled ("dataset") foreground IoU over all test images and the pooled mIoU over classes (background included,
as the papers' tables), and the training cost. Per compared pair: the paired per-image differences
(:func:`medseg.study.stats.paired_comparison`).
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io import atomic_path, write_json
from medseg.study.config import StudyConfig
from medseg.study.stats import bootstrap_mean, bootstrap_pooled_iou, paired_comparison

__all__ = ["aggregate", "collect_results", "compare", "render_markdown", "write_report"]

logger = logging.getLogger(__name__)


def collect_results(cfg: StudyConfig, work: Path, *, seeds: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Every finished ``eval/result.json`` of the study's runs under ``work``."""
    out = []
    for seed in seeds or cfg.seeds:
        for k in range(cfg.cv.folds):
            for spec in cfg.runs:
                path = work / f"seed{seed}" / f"fold{k}" / spec.name / "eval" / "result.json"
                if path.is_file():
                    out.append(json.loads(path.read_text(encoding="utf-8")))
    return out


def _per_image(results: Sequence[Mapping[str, Any]], run: str) -> dict[str, list[dict[str, Any]]]:
    """Case id -> the case records of ``run`` (one per seed)."""
    cases: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for res in results:
        if res["run"] == run:
            for c in res["cases"]:
                cases[f"fold{res['fold']}/{c['case']}"].append(c)
    return cases


def _mean_of(records: Sequence[Mapping[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in records if r.get(key) is not None]
    return float(np.mean(vals)) if vals else None


def aggregate(cfg: StudyConfig, results: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per run: scores over all test images (see the module docstring), folds and seeds done, training cost."""
    table: dict[str, dict[str, Any]] = {}
    for spec in cfg.runs:
        mine = [r for r in results if r["run"] == spec.name]
        if not mine:
            continue
        cases = _per_image(results, spec.name)
        keys = sorted(cases)
        dice = [_mean_of(cases[k], "dice_fg") for k in keys]
        iou = [_mean_of(cases[k], "iou_fg") for k in keys]
        inter = [float(np.mean([c["inter_fg"] for c in cases[k]])) for k in keys]
        union = [float(np.mean([c["union_fg"] for c in cases[k]])) for k in keys]
        k_cls = cfg.data.num_classes
        ci = np.zeros(k_cls)
        cu = np.zeros(k_cls)
        for k in keys:
            ci += np.mean([c["inter"] for c in cases[k]], axis=0)
            cu += np.mean([c["union"] for c in cases[k]], axis=0)
        per_class = [float(a / b) if b > 0 else None for a, b in zip(ci, cu, strict=True)]
        valid = [x for x in per_class if x is not None]
        per_fold: dict[int, list[float]] = defaultdict(list)
        for r in mine:
            vals = [c["dice_fg"] for c in r["cases"] if c["dice_fg"] is not None]
            if vals:
                per_fold[int(r["fold"])].append(float(np.mean(vals)))
        cpu = [r["train_cpu_seconds"] for r in mine if r.get("train_cpu_seconds") is not None]
        table[spec.name] = {
            "cases": keys,
            "dice": dice,
            "iou": iou,
            "dice_mean": bootstrap_mean([d for d in dice if d is not None]),
            "iou_mean": bootstrap_mean([d for d in iou if d is not None]),
            "pooled_iou": bootstrap_pooled_iou(inter, union),
            "per_class_iou": per_class,
            "miou": float(np.mean(valid)) if valid else None,
            "folds_done": sorted({int(r["fold"]) for r in mine}),
            "seeds_done": sorted({int(r["seed"]) for r in mine}),
            "per_fold_dice": {k: float(np.mean(v)) for k, v in sorted(per_fold.items())},
            "num_epochs": sorted({int(r["num_epochs"]) for r in mine if r.get("num_epochs") is not None}),
            "train_cpu_seconds_mean": float(np.mean(cpu)) if cpu else None,
            "train_wall_seconds_mean": float(
                np.mean([r["train_wall_seconds"] for r in mine if r.get("train_wall_seconds")] or [math.nan])
            ),
            "tta": sorted({bool(r.get("tta")) for r in mine}),
        }
    return table


def compare(cfg: StudyConfig, table: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Paired per-image comparisons of the ``compare`` pairs present in ``table`` (same images only)."""
    out = []
    for run, ref in cfg.compare:
        if run not in table or ref not in table:
            continue
        a, b = table[run], table[ref]
        common = sorted(set(a["cases"]) & set(b["cases"]))
        ia = {c: i for i, c in enumerate(a["cases"])}
        ib = {c: i for i, c in enumerate(b["cases"])}
        row: dict[str, Any] = {"run": run, "reference": ref, "images": len(common)}
        for metric in ("dice", "iou"):
            row[metric] = paired_comparison([a[metric][ia[c]] for c in common], [b[metric][ib[c]] for c in common])
        out.append(row)
    return out


def _ci(stat: Mapping[str, Any] | None, key: str = "mean", digits: int = 3) -> str:
    if not stat or stat.get(key) is None:
        return "-"
    lo, hi = stat["ci"]
    return f"{stat[key]:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _num(x: float | None, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _offsets_table(cfg: StudyConfig, work: Path | None) -> str:
    """ρ_0k / ρ_k0 of fold 0's class counts for every τ used by an MC run (their size is what τ moves)."""
    if work is None:
        return ""
    stats_file = work / "folds" / "fold0" / "stats.json"
    if not stats_file.is_file():
        return ""
    from medseg.margins import margin_offsets

    counts = json.loads(stats_file.read_text(encoding="utf-8"))["class_counts"]
    taus = sorted({float(r.overrides.get("loss#tau", 10.0)) for r in cfg.runs if r.loss and "mc" in Path(r.loss).stem})
    if not taus:
        return ""
    names = cfg.data.names()
    lines = [
        "| τ | " + " | ".join(f"ρ_0k {n}" for n in names) + " | " + " | ".join(f"ρ_k0 {n}" for n in names) + " |",
        "|---" * (1 + 2 * len(names)) + "|",
    ]
    for tau in taus:
        neg, pos = margin_offsets(counts, tau=tau, v=1.0, empty="zero")
        lines.append(
            f"| {tau:g} | " + " | ".join(f"{x:.3g}" for x in neg) + " | " + " | ".join(f"{x:.3g}" for x in pos) + " |"
        )
    return "\n".join(lines)


def render_markdown(
    cfg: StudyConfig,
    table: Mapping[str, Mapping[str, Any]],
    comparisons: Sequence[Mapping[str, Any]],
    *,
    command: str,
    machine: Mapping[str, Any],
    work: Path | None = None,
    failures: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The report's README.md."""
    lines = [f"# {cfg.title}", ""]
    if cfg.description:
        lines += [cfg.description, ""]
    lines += [
        f"Produced by `{command}` (commit {machine.get('git_commit') or 'unknown'}; {machine.get('device')}, "
        f"{machine.get('cpu_count')} CPUs, torch {machine.get('torch')}, MONAI {machine.get('monai')}).",
        "",
        f"Cross-validation: {cfg.cv.folds} folds by {cfg.cv.by}"
        + (f" (`{cfg.cv.group_key}`)" if cfg.cv.by == "group" else "")
        + f", seed {cfg.cv.seed}; every image is a test image exactly once. Seeds: {cfg.seeds}. "
        "Scores are on the test images of each fold, in each image's own size; the foreground is "
        f"{', '.join(cfg.data.names()[c] for c in cfg.data.foreground())}.",
        "",
        "## Runs",
        "",
        "| run | per-image Dice [95% CI] | per-image IoU [95% CI] | pooled IoU [95% CI] | mIoU (pooled, with bg) | "
        "epochs | train CPU s / fold | folds | images |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for spec in cfg.runs:
        if spec.name not in table:
            lines.append(f"| {spec.name} | not run | | | | | | | |")
            continue
        t = table[spec.name]
        lines.append(
            f"| {spec.name} | {_ci(t['dice_mean'])} | {_ci(t['iou_mean'])} | {_ci(t['pooled_iou'], 'value')} | "
            f"{_num(t['miou'])} | {', '.join(map(str, t['num_epochs']))} | {_num(t['train_cpu_seconds_mean'], 0)} | "
            f"{len(t['folds_done'])}/{cfg.cv.folds} | {len(t['cases'])} |"
        )
    lines += ["", "Run definitions:", ""]
    for spec in cfg.runs:
        parts = []
        if spec.source:
            parts.append(f"from `{spec.source}`")
        if spec.loss:
            parts.append(f"loss overlay `{Path(spec.loss).stem}`")
        if spec.network:
            parts.append(f"network `{json.dumps(spec.network)}`")
        if spec.plan:
            parts.append(f"plan `{json.dumps(spec.plan)}`")
        if spec.overrides:
            parts.append(f"overrides `{json.dumps(spec.overrides)}`")
        if spec.tta is not None:
            parts.append(f"tta {spec.tta}")
        desc = f" — {spec.description}" if spec.description else ""
        lines.append(f"- `{spec.name}`: {'; '.join(parts) or 'the plan as computed'}{desc}")
    if comparisons:
        lines += [
            "",
            "## Paired comparisons (per image, same test images)",
            "",
            "Mean difference run − reference with a 95 % bootstrap interval, two-sided Wilcoxon signed-rank p, and "
            "images where the run is better / equal / worse. *better*/*worse* only when the interval excludes 0; "
            "otherwise the difference is not distinguishable from noise at this sample size (*tie*).",
            "",
            "| run | reference | images | Δ Dice [95% CI] | p (Dice) | W/T/L | verdict "
            "| Δ IoU [95% CI] | p (IoU) | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in comparisons:
            d, i = c["dice"], c["iou"]
            lines.append(
                f"| {c['run']} | {c['reference']} | {c['images']} | "
                f"{_ci(d, 'mean_diff', 4)} | {_num(d.get('p_wilcoxon'), 4)} | "
                f"{d.get('wins', '-')}/{d.get('ties', '-')}/{d.get('losses', '-')} | {d['verdict']} | "
                f"{_ci(i, 'mean_diff', 4)} | {_num(i.get('p_wilcoxon'), 4)} | {i['verdict']} |"
            )
    offsets = _offsets_table(cfg, work)
    if offsets:
        lines += [
            "",
            "## Margin offsets of the MC runs",
            "",
            "Algorithm 1's offsets from fold 0's training pixel counts (v = 1) for each τ an MC run used:",
            "",
            offsets,
        ]
    folds_rows = [n for n in table if table[n]["per_fold_dice"]]
    if folds_rows:
        lines += [
            "",
            "## Per fold (mean per-image Dice)",
            "",
            "| run | " + " | ".join(f"fold {k}" for k in range(cfg.cv.folds)) + " |",
        ]
        lines.append("|---" * (cfg.cv.folds + 1) + "|")
        for n in folds_rows:
            pf = table[n]["per_fold_dice"]
            lines.append(f"| {n} | " + " | ".join(_num(pf.get(k)) for k in range(cfg.cv.folds)) + " |")
    if len(cfg.data.names()) > 2:
        lines += ["", "## Pooled IoU per class", "", "| run | " + " | ".join(cfg.data.names()) + " |"]
        lines.append("|---" * (len(cfg.data.names()) + 1) + "|")
        for n, t in table.items():
            lines.append(f"| {n} | " + " | ".join(_num(x) for x in t["per_class_iou"]) + " |")
    if failures:
        lines += ["", "## Failed runs", ""]
        lines += [f"- {f['run']} (seed {f['seed']}, fold {f['fold']}): {f['error']}" for f in failures]
    return "\n".join(lines) + "\n"


def write_report(cfg: StudyConfig, result: Any, out: Path, *, command: str, machine: Mapping[str, Any]) -> Path:
    """Write ``out/README.md`` and ``out/results.json``; returns the README path."""
    table = aggregate(cfg, result.results)
    comparisons = compare(cfg, table)
    out.mkdir(parents=True, exist_ok=True)
    write_json(
        out / "results.json",
        {
            "study": cfg.to_dict(),
            "command": command,
            "machine": dict(machine),
            "runs": table,
            "comparisons": comparisons,
            "failures": list(result.failures),
        },
    )
    text = render_markdown(
        cfg, table, comparisons, command=command, machine=machine, work=result.work_dir, failures=result.failures
    )
    readme = out / "README.md"
    with atomic_path(readme) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    logger.info("report written to %s", readme)
    return readme
