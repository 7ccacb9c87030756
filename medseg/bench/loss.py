"""``medseg bench loss``: forward+backward time and peak memory of every registered loss against cross-entropy.

Every loss in :data:`medseg.registry.LOSSES` is built with its defaults (the margin-calibration family with class
counts taken from the synthetic target) and run on the same float32 logits and integer labels as PyTorch's
``F.cross_entropy``, the reference. Each measured call is ``loss(x, target).backward()`` on a fresh leaf copy of
the logits.

Timing: warm-up calls first (the first call of a compiled loss, e.g. MC's ``torch.compile``d kernel, compiles;
its wall time is reported as ``first_call_s``), then ``repeats`` calls of the loss each followed by one call of
the reference, so both see the same machine load; the ratio is the median of the per-pair ratios (robust to load
drift on a shared machine), and ``ratio_of_medians`` is reported too.

Peak memory: one extra call under ``torch.profiler`` with ``profile_memory=True``; every CPU allocator event
(allocation or free, with its size) is replayed in time order and the peak of the running total, relative to the
moment the call starts, is reported. That counts every tensor the call creates (the leaf copy, saved
activations, the gradient), including buffers allocated by compiled kernels, and nothing allocated before it.
Process RSS is not used: the allocator caches and the OS reports pages lazily, so it does not show a call's peak.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["REFERENCE", "add_arguments", "bench_losses", "format_table", "run"]

#: Key of the reference row (not a registered loss).
REFERENCE = "torch.cross_entropy"


def _synthetic_inputs(shape: Sequence[int], seed: int) -> tuple[Any, Any]:
    """Float32 logits and imbalanced integer labels (class k has weight 2^-k, so background dominates)."""
    import torch

    b, k, *spatial = (int(s) for s in shape)
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, *spatial, generator=g) * 2.0
    probs = torch.tensor([2.0**-i for i in range(k)])
    labels = torch.multinomial(probs, b * math.prod(spatial), replacement=True, generator=g).view(b, *spatial)
    return logits, labels


def _peak_bytes(fn: Callable[[], Any]) -> int:
    """Peak of the CPU allocator's running total during ``fn()``, relative to its start (see module docstring)."""
    from torch._C._profiler import _EventType
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        node = stack.pop()
        if node.tag == _EventType.Allocation:
            events.append(node)
        stack.extend(node.children)
    events.sort(key=lambda n: n.start_time_ns)
    total = peak = 0
    for event in events:
        if str(event.extra_fields.device).startswith("cpu"):
            total += int(event.extra_fields.alloc_size)
            peak = max(peak, total)
    return peak


def _build_loss(name: str, num_classes: int, counts: list[float]) -> Any:
    from medseg.registry import create_loss

    return create_loss(name, stats={"class_counts": counts}, num_classes=num_classes)


def bench_losses(
    shape: Sequence[int] = (8, 5, 256, 256),
    *,
    repeats: int = 10,
    warmup: int = 2,
    names: Sequence[str] | None = None,
    seed: int = 0,
    measure_memory: bool = True,
    progress: bool = False,
) -> dict[str, Any]:
    """Time forward+backward of registered losses against ``F.cross_entropy`` on the same tensors.

    Args:
        shape: logits shape ``(B, K, *spatial)`` with 2 or 3 spatial dims, K >= 2.
        repeats: timed calls per loss (median reported), >= 1.
        warmup: untimed calls per loss before timing, >= 1 (the first may compile).
        names: losses to run (default: every registered loss).
        seed: seed of the synthetic logits and labels.
        measure_memory: also measure peak memory (one profiled call per loss).
        progress: show a progress bar over the losses.

    Returns:
        ``{name: row}`` for :data:`REFERENCE` and each loss, plus ``"_meta"``. A row holds ``time_ms`` (median),
        ``time_ratio`` (median of per-pair ratios to the reference), ``ratio_of_medians``, ``peak_mib``,
        ``memory_ratio``, ``first_call_s`` (wall time of
        the first call, compile included), and ``error`` (``None``, or the message of a loss that could not run:
        a stub, missing arguments). MC-family rows also hold ``compile_s``: the part of the first call spent
        compiling the MC kernel (0 when an earlier row already compiled it; see
        :func:`medseg.losses._mc_kernel.compile_times`).

    Raises:
        ValueError: for a bad shape, repeats, warmup or an unknown loss name.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    import medseg.losses  # noqa: F401  (registers every loss)
    from medseg.losses import _mc_kernel
    from medseg.registry import CLASS_COUNTS, LOSSES

    shape = tuple(int(s) for s in shape)
    if len(shape) not in (4, 5) or any(s < 1 for s in shape) or shape[1] < 2:
        raise ValueError(
            f"shape must be (B, K, H, W) or (B, K, D, H, W) with positive sizes and K >= 2, got {shape}; "
            "e.g. --shape 8 5 256 256"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1 (the first call may compile), got {warmup}")
    selected = list(LOSSES.names() if names is None else names)
    for name in selected:
        LOSSES.get(name)  # KeyError with suggestions for an unknown name

    logits, labels = _synthetic_inputs(shape, seed)
    k = shape[1]
    counts = torch.bincount(labels.flatten(), minlength=k).double().tolist()
    counts = [max(c, 1.0) for c in counts]  # a class the draw missed still gets finite offsets

    def call(fn: Callable[[Any, Any], Any]) -> Callable[[], Any]:
        def once() -> Any:
            x = logits.detach().clone().requires_grad_(True)
            value = fn(x, labels)
            if value.ndim != 0:
                value = value.mean()
            value.backward()
            return x.grad

        return once

    def reference_fn(x: Any, y: Any) -> Any:
        return F.cross_entropy(x, y)

    reference = call(reference_fn)
    start = time.perf_counter()
    reference()
    ref_first = time.perf_counter() - start
    for _ in range(warmup):
        reference()
    ref_peak = _peak_bytes(reference) if measure_memory else None

    def timed(fn: Callable[[], Any]) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    ref_times: list[float] = []
    rows: dict[str, dict[str, Any]] = {}
    for name in tqdm(selected, desc="losses", disable=not progress, file=sys.stderr):
        row: dict[str, Any] = {
            "time_ms": None,
            "time_ratio": None,
            "peak_mib": None,
            "memory_ratio": None,
            "first_call_s": None,
            "error": None,
        }
        rows[name] = row
        try:
            loss = _build_loss(name, k, counts)
            run_once = call(loss)
            compiled_before = sum(_mc_kernel.compile_times().values())
            row["first_call_s"] = timed(run_once)
            if name in LOSSES.needing(CLASS_COUNTS):
                row["compile_s"] = sum(_mc_kernel.compile_times().values()) - compiled_before
            for _ in range(warmup - 1):
                run_once()
            own, paired = [], []
            for _ in range(repeats):
                own.append(timed(run_once))
                paired.append(timed(reference))
            ref_times.extend(paired)
            row["time_ms"] = 1e3 * statistics.median(own)
            row["time_ratio"] = statistics.median(a / b for a, b in zip(own, paired, strict=True))
            row["ratio_of_medians"] = statistics.median(own) / statistics.median(paired)
            if measure_memory and ref_peak:
                peak = _peak_bytes(run_once)
                row["peak_mib"] = peak / 2**20
                row["memory_ratio"] = peak / ref_peak
        except NotImplementedError as err:
            row["error"] = f"not implemented yet{': ' + str(err) if str(err) else ''}"
        except Exception as err:
            row["error"] = f"{type(err).__name__}: {err}"
            logger.debug("loss %s failed in the benchmark", name, exc_info=True)

    if not ref_times:  # every loss failed: time the reference on its own
        ref_times = [timed(reference) for _ in range(repeats)]
    result: dict[str, Any] = {
        REFERENCE: {
            "time_ms": 1e3 * statistics.median(ref_times),
            "time_ratio": 1.0,
            "peak_mib": None if ref_peak is None else ref_peak / 2**20,
            "memory_ratio": None if ref_peak is None else 1.0,
            "first_call_s": ref_first,
            "error": None,
        }
    }
    result.update(rows)
    result["_meta"] = {
        "shape": list(shape),
        "dtype": "float32",
        "device": "cpu",
        "repeats": repeats,
        "warmup": warmup,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "mc_compile_s": _mc_kernel.compile_times(),
        "memory_method": "torch.profiler profile_memory: peak of the replayed CPU allocation events of one call",
    }
    return result


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width text table of :func:`bench_losses`' result."""
    meta = result.get("_meta", {})
    lines = [
        f"loss forward+backward, logits {tuple(meta.get('shape', ()))} float32 on CPU "
        f"({meta.get('threads')} threads), median of {meta.get('repeats')}; reference {REFERENCE}",
        f"{'loss':<20} {'time ms':>9} {'x ref':>7} {'peak MiB':>9} {'mem x ref':>9}  note",
    ]
    for name, row in result.items():
        if name == "_meta":
            continue
        note = row.get("error") or ""
        if not note and row.get("compile_s"):
            note = f"first call {row['first_call_s']:.1f} s (compile {row['compile_s']:.1f} s)"
        lines.append(
            f"{name:<20} {_fmt(row['time_ms'], '9.1f')} {_fmt(row['time_ratio'], '7.2f')} "
            f"{_fmt(row['peak_mib'], '9.1f')} {_fmt(row['memory_ratio'], '9.2f')}  {note}"
        )
    compiles = meta.get("mc_compile_s") or {}
    if compiles:
        lines.append("MC kernel compile time (one-off per process and signature):")
        lines.extend(f"  {key}: {seconds:.1f} s" for key, seconds in compiles.items())
    return "\n".join(lines)


def _positive_int(value: str) -> int:
    try:
        out = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}") from None
    if out < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``medseg bench loss``."""
    parser.add_argument(
        "--shape",
        type=_positive_int,
        nargs="+",
        default=[8, 5, 256, 256],
        metavar="N",
        help="logits shape B K H W (or B K D H W)",
    )
    parser.add_argument("--repeats", type=_positive_int, default=10, help="timed calls per loss (median)")
    parser.add_argument("--warmup", type=_positive_int, default=2, help="untimed calls per loss first")
    parser.add_argument("--losses", nargs="+", default=None, metavar="NAME", help="only these losses (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic logits and labels")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--json", action="store_true", help="print one JSON object keyed by loss name")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table (or JSON with ``--json``); exit 0 even if some losses failed."""
    from medseg.console import progress_enabled

    if len(args.shape) not in (4, 5):
        raise ValueError(f"--shape takes 4 or 5 sizes (B K H W or B K D H W), got {args.shape}")
    result = bench_losses(
        args.shape,
        repeats=args.repeats,
        warmup=args.warmup,
        names=args.losses,
        seed=args.seed,
        measure_memory=not args.no_memory,
        progress=progress_enabled(args),
    )
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(format_table(result) + "\n")
    return 0
