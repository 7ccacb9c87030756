"""``medseg bench gpu-summary OUT``: one JSON and one Markdown summary of a ``scripts/gpu_check.sh`` folder.

The script runs each step with its own time limit and appends one line per step to ``OUT/steps.jsonl``
(``step``, ``status``: ``ok``/``failed``/``timeout``/``skipped``, ``rc``, ``wall_s``, ``limit_s``, ``note``); the
steps write their results beside it:

- ``pytest_gpu.xml``: JUnit XML of ``pytest -m gpu``;
- ``loss_float32.json``, ``loss_bfloat16.json``: ``medseg bench loss --json`` (MC eager and compiled vs
  ``F.cross_entropy``);
- ``infer.json``: ``medseg bench infer --json`` (medseg vs MONAI plain and best, AMP rows, CPU-stitching rows,
  TFLOP/s);
- ``train_<bundle>.json``, ``train_<bundle>_ddp.json``: ``medseg bench train --output`` (images/s).

This module reads whatever is there (a missing or unreadable file is named in the summary, never invented) and
writes ``OUT/gpu.json`` and ``OUT/gpu.md``: the device, the inference ratios vs MONAI plain and best, the MC vs CE
ratios in float32 and bfloat16, training images/s with AMP, the fraction of the FLOP bound, and every step's status
and wall time. A folder made on a CPU (``--device cpu``) is labelled a dry run.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["add_arguments", "environment", "markdown", "run", "summarize", "write_summary"]

HELP = "summarize a scripts/gpu_check.sh output folder into gpu.json and gpu.md"
#: The loss rows compared with cross-entropy.
MC_ROWS = ("mc", "mc[compiled]")


def _read_json(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        notes.append(f"{path.name}: unreadable ({err})")
        return None


def _steps(out: Path, notes: list[str]) -> list[dict[str, Any]]:
    path = out / "steps.jsonl"
    steps: list[dict[str, Any]] = []
    if not path.is_file():
        notes.append("steps.jsonl missing: no step was recorded")
        return steps
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            steps.append(json.loads(line))
        except json.JSONDecodeError as err:
            notes.append(f"steps.jsonl line {n}: not JSON ({err})")
    return steps


def _pytest(out: Path, notes: list[str]) -> dict[str, int] | None:
    path = out / "pytest_gpu.xml"
    if not path.is_file():
        return None
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        notes.append(f"pytest_gpu.xml: unreadable ({err})")
        return None
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    keys = ("tests", "failures", "errors", "skipped")
    return {k: sum(int(s.get(k, 0)) for s in suites) for k in keys}


def _loss(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, dict) or "_meta" not in result:
        return None
    meta = result["_meta"]
    threads = str((meta.get("threads") or [1])[0])
    rows: dict[str, Any] = {}
    for name in MC_ROWS:
        row = result.get(name)
        if not isinstance(row, dict):
            continue
        steady = row.get("steady", {}).get(threads, {})
        rows[name] = {
            "time_ratio": steady.get("ratio"),
            "time_ratio_range": [steady.get("ratio_min"), steady.get("ratio_max")],
            "time_ms": steady.get("time_ms"),
            "ce_ms": steady.get("ref_ms"),
            "memory_ratio": row.get("memory_ratio"),
            "peak_mib": row.get("peak_mib"),
            "compile_s": row.get("compile_s"),
            "error": row.get("error"),
        }
    return {"dtype": meta.get("dtype"), "shape": meta.get("shape"), "device": meta.get("device"), "rows": rows}


def _infer(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, dict) or "rows" not in result:
        return None
    rows = {
        name: {
            "seconds": row.get("seconds"),
            "vs_monai_plain": row.get("ratio_vs_monai_plain"),
            "vs_monai_best": row.get("ratio_vs_monai_best"),
            "agreement": row.get("agreement"),
            "tflops": row.get("tflops"),
            "precision": row.get("precision"),
            "peak_fraction": row.get("peak_fraction"),
            "peak_gib": None if row.get("peak_bytes") is None else row["peak_bytes"] / 2**30,
        }
        for name, row in result["rows"].items()
    }
    best = max(
        (r for r in rows.values() if r["peak_fraction"] is not None), key=lambda r: r["peak_fraction"], default=None
    )
    return {
        "network": result.get("network"),
        "shape": result.get("shape"),
        "roi": result.get("roi"),
        "sw_batch_size": result.get("sw_batch_size"),
        "flops_per_voxel": result.get("flops_per_voxel"),
        "network_tflop_per_run": result.get("network_tflop_per_run"),
        "flop_bound_note": result.get("flop_bound_note"),
        "best_peak_fraction": None if best is None else best["peak_fraction"],
        "rows": rows,
    }


def environment(device: str, command: str | None = None) -> dict[str, Any]:
    """Versions and the device of this process (the summary runs last, on the machine that ran the steps)."""
    import platform

    import monai
    import torch

    from medseg.inference.devices import resolve_device

    dev = resolve_device(device, "--device")
    return {
        "device": str(dev),
        "device_type": dev.type,
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "device_count": torch.cuda.device_count() if dev.type == "cuda" else 0,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev.type == "cuda" else None,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "command": command,
    }


def summarize(out: Path, *, env: dict[str, Any]) -> dict[str, Any]:
    """The summary of the folder ``out`` (see the module docstring) as a JSON-ready dict.

    Args:
        out: the folder the script wrote.
        env: :func:`environment`'s dict (device, versions, command).
    """
    out = Path(out)
    if not out.is_dir():
        raise FileNotFoundError(f"{out} is not a folder; give the OUT folder that scripts/gpu_check.sh wrote")
    notes: list[str] = []
    steps = _steps(out, notes)
    loss = {dtype: _loss(_read_json(out / f"loss_{dtype}.json", notes)) for dtype in ("float32", "bfloat16")}
    infer = _infer(_read_json(out / "infer.json", notes))
    training: dict[str, Any] = {}
    for path in sorted(out.glob("train_*.json")):
        result = _read_json(path, notes)
        if isinstance(result, dict):
            training[path.stem.removeprefix("train_")] = {
                k: result.get(k)
                for k in (
                    "bundle",
                    "images_per_s",
                    "first_epoch_images_per_s",
                    "amp",
                    "cpu_precision",
                    "world_size",
                    "backend",
                )
            } | {"plan": result.get("plan"), "wall_s": result.get("wall_s")}
    device, device_name = env.get("device"), env.get("device_name")
    dry_run = env.get("device_type") != "cuda"
    if dry_run:
        notes.insert(0, "CPU dry run: the figures check the script end to end; they are not GPU figures")
    return {
        "dry_run": dry_run,
        "device": device,
        "device_name": device_name,
        "environment": env,
        "steps": steps,
        "total_wall_s": sum(float(s.get("wall_s") or 0) for s in steps),
        "pytest_gpu": _pytest(out, notes),
        "loss": loss,
        "inference": infer,
        "training": training,
        "notes": notes,
    }


def _fmt(value: Any, spec: str = ".3f") -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        if len(value) == 3 and all(v is not None for v in value):
            return f"{value[0]:{spec}} ({value[1]:{spec}}-{value[2]:{spec}})"
        return "-"
    return format(value, spec) if isinstance(value, int | float) else str(value)


def markdown(summary: dict[str, Any]) -> str:
    """The Markdown report of :func:`summarize`'s result."""
    where = summary.get("device_name") or summary.get("device") or "unknown device"
    title = "CPU dry run of scripts/gpu_check.sh" if summary["dry_run"] else f"GPU check on {where}"
    env = summary.get("environment", {})
    lines = [f"# {title}", ""]
    if summary["dry_run"]:
        lines += ["**CPU dry run: no figure below is a GPU figure.**", ""]
    lines += [
        f"- device: {where} ({summary.get('device')})",
        f"- torch {env.get('torch', '?')}, CUDA {env.get('cuda') or '-'}, MONAI {env.get('monai', '?')}, "
        f"command: `{env.get('command', '?')}`",
        f"- total wall time of the steps: {summary['total_wall_s']:.0f} s",
        "",
        "## Steps",
        "",
        "| step | status | wall s | limit s | note |",
        "|---|---|---:|---:|---|",
    ]
    for s in summary["steps"]:
        lines.append(
            f"| {s.get('step')} | {s.get('status')} | {_fmt(s.get('wall_s'), '.0f')} | {_fmt(s.get('limit_s'), 'd')} "
            f"| {s.get('note') or ''} |"
        )
    tests = summary.get("pytest_gpu")
    if tests:
        lines += [
            "",
            f"`pytest -m gpu`: {tests['tests']} tests, {tests['failures']} failures, {tests['errors']} errors, "
            f"{tests['skipped']} skipped",
        ]
    infer = summary.get("inference")
    lines += ["", "## Inference: medseg vs MONAI", ""]
    if infer is None:
        lines.append("no inference result (see the steps)")
    else:
        lines += [
            f"{infer['network']} on a {'x'.join(map(str, infer['shape'] or []))} volume, roi {infer['roi']}, "
            f"sw_batch_size {infer['sw_batch_size']}; {_fmt(infer['flops_per_voxel'], ',.0f')} forward FLOPs per "
            f"voxel, {_fmt(infer['network_tflop_per_run'])} TFLOP per run. Ratios: time / reference, median "
            "(range) of paired repeats, below 1 is faster.",
            "",
            "| row | s | vs MONAI plain | vs MONAI best | agreement | TFLOP/s | precision | of peak | peak GiB |",
            "|---|---:|---|---|---:|---:|---|---:|---:|",
        ]
        for name, r in infer["rows"].items():
            frac = r["peak_fraction"]
            lines.append(
                f"| {name} | {_fmt(r['seconds'])} | {_fmt(r['vs_monai_plain'])} | {_fmt(r['vs_monai_best'])} | "
                f"{_fmt(r['agreement'], '.4f')} | {_fmt(r['tflops'])} | {r['precision'] or '-'} | "
                f"{'-' if frac is None else format(frac, '.1%')} | {_fmt(r['peak_gib'], '.2f')} |"
            )
        if infer.get("flop_bound_note"):
            lines.append(f"\n{infer['flop_bound_note']}")
    lines += ["", "## MC vs cross-entropy (forward+backward)", ""]
    lines += ["| dtype | row | time ratio (range) | MC ms | CE ms | memory ratio | compile s | error |"]
    lines += ["|---|---|---|---:|---:|---:|---:|---|"]
    for dtype, loss in summary["loss"].items():
        if loss is None:
            lines.append(f"| {dtype} | - | no result (see the steps) | | | | | |")
            continue
        for name, r in loss["rows"].items():
            ratio, (low, high) = r["time_ratio"], r["time_ratio_range"]
            lines.append(
                f"| {dtype} | {name} | {_fmt([ratio, low, high])} | {_fmt(r['time_ms'])} | {_fmt(r['ce_ms'])} | "
                f"{_fmt(r['memory_ratio'], '.2f')} | {_fmt(r['compile_s'], '.1f')} | {r['error'] or ''} |"
            )
    lines += ["", "## Training throughput (the bundles' own recipe, synthetic data)", ""]
    lines += ["| run | images/s (last epoch) | first epoch | AMP | world size | backend | size | batch |"]
    lines += ["|---|---:|---:|---|---:|---|---|---:|"]
    for name, t in summary["training"].items():
        plan = t.get("plan") or {}
        lines.append(
            f"| {name} | {_fmt(t['images_per_s'], '.1f')} | {_fmt(t['first_epoch_images_per_s'], '.1f')} | "
            f"{t['amp']}{' (CPU ' + t['cpu_precision'] + ' autocast)' if t.get('cpu_precision') else ''} | "
            f"{t['world_size']} | {t['backend'] or '-'} | {plan.get('spatial_size')} | "
            f"{plan.get('batch_size')} |"
        )
    if not summary["training"]:
        lines.append("| - | no result (see the steps) | | | | | | |")
    if summary["notes"]:
        lines += ["", "## Notes", "", *(f"- {n}" for n in summary["notes"])]
    return "\n".join(lines) + "\n"


def write_summary(out: Path, *, env: dict[str, Any], force: bool = False) -> dict[str, Any]:
    """Write ``out/gpu.json`` and ``out/gpu.md``; refuses to replace them unless ``force``."""
    from medseg.io import write_json, write_text

    out = Path(out)
    targets = (out / "gpu.json", out / "gpu.md")
    existing = [str(t) for t in targets if t.exists()]
    if existing and not force:
        raise FileExistsError(f"{', '.join(existing)} exist; pass --force to write the summary again")
    summary = summarize(out, env=env)
    write_json(targets[0], summary)
    write_text(targets[1], markdown(summary))
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", type=Path, help="the folder scripts/gpu_check.sh wrote ($OUT)")
    parser.add_argument("--device", default="cuda", help="the device the steps ran on: cuda, cuda:N or cpu (dry run)")
    parser.add_argument("--invocation", default=None, help="the command line that made the folder (recorded)")
    parser.add_argument("--force", action="store_true", help="replace an existing gpu.json/gpu.md")


def run(args: argparse.Namespace) -> int:
    summary = write_summary(args.out, env=environment(args.device, args.invocation), force=args.force)
    failed = [s["step"] for s in summary["steps"] if s.get("status") not in ("ok", "skipped")]
    sys.stdout.write(
        f"wrote {args.out / 'gpu.json'} and {args.out / 'gpu.md'}"
        f"{'; steps not ok: ' + ', '.join(failed) if failed else ''}\n"
    )
    return 0
