"""``medseg bench loss``: every registered loss against PyTorch's ``F.cross_entropy``, as ratios.

Every loss in :data:`medseg.registry.LOSSES` is built by :func:`medseg.registry.create_loss` (the losses that need
class counts get those of the synthetic target) and run on the same float32 logits and integer labels as
``F.cross_entropy``, the reference. One measured call is ``loss(x, target).backward()`` on a fresh leaf copy of the
logits. Three things are measured, each as a ratio to the reference measured in the same run:

* **Steady state**, at each thread count: after warm-up calls, ``repeats`` pairs (loss, reference), so both see
  the same machine load; the ratio is the median of the per-pair ratios (robust to load drift on a shared
  machine), with the smallest and largest pair ratio as its range. The margin-calibration losses are measured
  with their eager kernel (what a short run uses) and, with ``compiled``, with the ``torch.compile``d kernel too
  (rows ``<name>[compiled]``: what a long run switches to; their ``compile_s`` is the in-process compile).
* **First step in a fresh process**, at each thread count: the CPU time (user + system, of the process and the
  compilers it waits for) of a new Python process that imports ``medseg.losses``, builds the loss and runs one
  step, against the same process running one ``F.cross_entropy`` step, each with its own empty inductor cache
  (``cold``). For the margin-calibration losses also with a ``warm`` cache (one a compiled run filled before), and
  for ``mc`` the one-off compile itself (``compile_cold``/``compile_warm``: the first step with
  ``backend="compile"``); the warm runs at every thread count reuse the cache filled at the first.
* **Peak memory** of one call: every CPU allocator event under ``torch.profiler`` (``profile_memory=True``) is
  replayed in time order and the peak of the running total, relative to the moment the call starts, is taken.
  That counts every tensor the call creates (the leaf copy, saved activations, the gradient), including buffers
  allocated by compiled kernels, and nothing allocated before it; process RSS would not show a call's peak.

On a CUDA device (``device="cuda"``) the same pairs are timed with CUDA events around each call (the queue is
drained before the start event, and the end event is waited for), the peak memory is
``torch.cuda.max_memory_allocated`` during the call minus what was allocated before it, and the compiled rows run
the Triton kernel inductor generates; the first-step measurement (a CPU-time figure) is CPU only. ``dtype`` sets
the logits' type (``bfloat16`` or ``float16``: what a network under autocast hands to the loss); the
margin-calibration losses compute in float32 whatever their input.

The result is one JSON-ready dict (``--json`` prints it); :func:`format_table` renders it as text.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["DTYPES", "REFERENCE", "add_arguments", "bench_losses", "first_step_cpu", "format_table", "run"]

#: Key of the reference row (not a registered loss).
REFERENCE = "torch.cross_entropy"
#: Suffix of the rows that run the margin-calibration kernel compiled.
COMPILED = "[compiled]"
#: Logits dtypes the benchmark takes (``--dtype``).
DTYPES = ("float32", "bfloat16", "float16")

# The fresh process of a first-step measurement: argv = threads, name, backend, dtype, shape..., seed. It imports
# what every row imports (so only the loss differs), builds the loss and runs one step.
_FIRST_STEP_SCRIPT = """
import sys
threads, name, backend, dtype, seed = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[-1])
shape = tuple(int(s) for s in sys.argv[5:-1])
import torch
torch.set_num_threads(threads)
import torch.nn.functional as F
import medseg.losses
from medseg.bench.loss import REFERENCE, _build, _synthetic_inputs
logits, labels = _synthetic_inputs(shape, seed)
logits = logits.to(getattr(torch, dtype))
fn = F.cross_entropy if name == REFERENCE else _build(name, logits, labels, backend=backend or None)
x = logits.clone().requires_grad_(True)
fn(x, labels).backward()
"""


def _synthetic_inputs(shape: Sequence[int], seed: int) -> tuple[Any, Any]:
    """Float32 logits and imbalanced integer labels (class k has weight 2^-k, so background dominates), on the CPU."""
    import torch

    b, k, *spatial = (int(s) for s in shape)
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, k, *spatial, generator=g) * 2.0
    probs = torch.tensor([2.0**-i for i in range(k)])
    labels = torch.multinomial(probs, b * math.prod(spatial), replacement=True, generator=g).view(b, *spatial)
    return logits, labels


def _build(name: str, logits: Any, labels: Any, *, backend: str | None = None) -> Any:
    """The loss ``name`` through the one builder, with the class counts of ``labels`` as its statistics."""
    import torch

    from medseg.registry import create_loss

    k = int(logits.shape[1])
    drawn = torch.bincount(labels.flatten(), minlength=k).double()
    counts = [max(float(c), 1.0) for c in drawn]  # a class the draw missed still gets finite offsets
    kwargs = {} if backend is None else {"backend": backend}
    return create_loss(name, stats={"class_counts": counts}, num_classes=k, **kwargs)


def _is_mc_family(name: str) -> bool:
    from medseg.registry import CLASS_COUNTS, LOSSES

    return name in LOSSES.needing(CLASS_COUNTS)


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


def _peak_bytes_cuda(fn: Callable[[], Any], device: Any) -> int:
    """Peak CUDA memory allocated during ``fn()`` above what was allocated when it started."""
    import torch

    torch.cuda.synchronize(device)
    base = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return max(int(torch.cuda.max_memory_allocated(device)) - base, 0)


def _resolve(device: str, dtype: str) -> tuple[Any, Any]:
    """``(torch.device, torch.dtype)`` for the benchmark's ``device`` and ``dtype`` arguments, validated."""
    import torch

    from medseg.inference.devices import resolve_device

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}; e.g. --dtype bfloat16")
    dev = resolve_device(device, "device")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu, cuda or cuda:N for the loss benchmark, got {device!r}")
    return dev, getattr(torch, dtype)


def first_step_cpu(
    name: str,
    *,
    threads: int,
    shape: Sequence[int],
    seed: int,
    cache_dir: Path,
    backend: str = "",
    dtype: str = "float32",
) -> dict[str, float]:
    """CPU and wall seconds of a fresh process that builds ``name`` and runs one step (see module docstring).

    Args:
        name: a registered loss, or :data:`REFERENCE`.
        threads: ``torch.set_num_threads`` of the process.
        shape: logits shape.
        seed: seed of the synthetic inputs.
        cache_dir: the process's inductor cache (``TORCHINDUCTOR_CACHE_DIR``).
        backend: the margin-calibration ``backend`` ("" for the loss's default).
        dtype: the logits' dtype, one of :data:`DTYPES`.

    Returns:
        ``{"cpu_s": user + system seconds of the process and the children it waited for, "wall_s": ...}``.

    Raises:
        KeyError: for a name that is neither a registered loss nor :data:`REFERENCE`.
        RuntimeError: if the process fails (its stderr's last line is in the message).
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if name != REFERENCE:
        import medseg.losses  # noqa: F401  (registers every loss)
        from medseg.registry import LOSSES

        LOSSES.get(name)
    env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=str(cache_dir), OMP_NUM_THREADS=str(threads))
    argv = [sys.executable, "-c", _FIRST_STEP_SCRIPT, str(threads), name, backend, dtype, *map(str, shape), str(seed)]
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = proc.stderr.read() if proc.stderr is not None else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        last = err.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise RuntimeError(f"first-step process for {name!r} failed ({proc.returncode}): {last[0]}")
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": wall}


def _pair_stats(own: list[float], ref: list[float]) -> dict[str, float]:
    ratios = [a / b for a, b in zip(own, ref, strict=True)]
    return {
        "time_ms": 1e3 * statistics.median(own),
        "ref_ms": 1e3 * statistics.median(ref),
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_of_medians": statistics.median(own) / statistics.median(ref),
    }


def _machine(threads: Sequence[int], device: Any = None) -> dict[str, Any]:
    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": list(threads),
        "load_start": None if load is None else [round(v, 2) for v in load],
    }
    if device is not None and device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
        out["cuda"] = torch.version.cuda
    return out


def bench_losses(
    shape: Sequence[int] = (8, 5, 256, 256),
    *,
    repeats: int = 10,
    warmup: int = 2,
    names: Sequence[str] | None = None,
    seed: int = 0,
    threads: Sequence[int] = (1, 2),
    measure_memory: bool = True,
    compiled: bool = True,
    first_step: bool = True,
    progress: bool = False,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, Any]:
    """Time forward+backward, the first step of a fresh process and peak memory of losses against cross-entropy.

    Args:
        shape: logits shape ``(B, K, *spatial)`` with 2 or 3 spatial dims, K >= 2.
        repeats: (loss, reference) pairs per loss and thread count, >= 1.
        warmup: untimed calls per loss before timing, >= 1.
        names: losses to run (default: every registered loss).
        seed: seed of the synthetic logits and labels.
        threads: ``torch.set_num_threads`` values to measure at (each >= 1).
        measure_memory: also measure peak memory (one profiled call per loss).
        compiled: add ``<name>[compiled]`` rows for the margin-calibration losses (compiles once in-process).
        first_step: measure the first step in fresh processes (several seconds of CPU each; CPU only).
        progress: show a progress bar over the losses.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:N"``: where the logits, labels and every loss live.
        dtype: the logits' dtype, one of :data:`DTYPES`.

    Returns:
        ``{name: row}`` for :data:`REFERENCE` and each loss (and compiled rows), plus ``"_meta"``. A row holds
        ``steady`` (``{threads: {time_ms, ref_ms, ratio, ratio_min, ratio_max, ratio_of_medians}}``),
        ``first_step`` (``{threads: {"cold": {cpu_s, ref_cpu_s, ratio, wall_s}, "warm": ..., ...}}``), ``peak_mib``,
        ``memory_ratio``, ``compile_s`` (compiled rows) and ``error`` (``None``, or the message of a loss that could
        not run).

    Raises:
        ValueError: for a bad shape, repeats, warmup, thread count, device or dtype, or ``first_step`` on a GPU;
            KeyError for an unknown loss name.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    import medseg.losses  # noqa: F401  (registers every loss)
    from medseg.losses import _mc_kernel
    from medseg.registry import LOSSES

    shape = tuple(int(s) for s in shape)
    if len(shape) not in (4, 5) or any(s < 1 for s in shape) or shape[1] < 2:
        raise ValueError(
            f"shape must be (B, K, H, W) or (B, K, D, H, W) with positive sizes and K >= 2, got {shape}; "
            "e.g. --shape 8 5 256 256"
        )
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    if warmup < 1:
        raise ValueError(f"warmup must be >= 1, got {warmup}")
    threads = [int(t) for t in threads]
    if not threads or any(t < 1 for t in threads):
        raise ValueError(f"threads must be a non-empty list of positive ints, got {threads}; e.g. --threads 1 2")
    dev, torch_dtype = _resolve(device, dtype)
    on_cuda = dev.type == "cuda"
    if on_cuda and first_step:
        raise ValueError(
            "first_step measures the CPU time of fresh processes and runs on the CPU only; pass first_step=False "
            f"with device={device!r} (--no-first-step)"
        )
    selected = list(LOSSES.names() if names is None else names)
    for name in selected:
        LOSSES.get(name)  # KeyError with suggestions for an unknown name

    logits, labels = _synthetic_inputs(shape, seed)
    logits, labels = logits.to(dev, torch_dtype), labels.to(dev)
    previous_threads = torch.get_num_threads()
    meta = _machine(threads, dev)

    def call(fn: Callable[[Any, Any], Any]) -> Callable[[], Any]:
        def once() -> Any:
            x = logits.detach().clone().requires_grad_(True)
            value = fn(x, labels)
            if value.ndim != 0:
                value = value.mean()
            value.backward()
            return x.grad

        return once

    def timed(fn: Callable[[], Any]) -> float:
        if on_cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize(dev)
            start.record()
            fn()
            end.record()
            end.synchronize()
            return float(start.elapsed_time(end)) / 1e3
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    def peak_bytes(fn: Callable[[], Any]) -> int:
        return _peak_bytes_cuda(fn, dev) if on_cuda else _peak_bytes(fn)

    reference = call(F.cross_entropy)
    rows: dict[str, dict[str, Any]] = {REFERENCE: {"steady": {}, "first_step": {}, "error": None}}
    plan: list[tuple[str, str | None]] = []
    for name in selected:
        plan.append((name, "eager" if _is_mc_family(name) else None))
        if compiled and _is_mc_family(name):
            plan.append((name + COMPILED, "compile"))
    for key, _ in plan:
        rows[key] = {"steady": {}, "first_step": {}, "peak_mib": None, "memory_ratio": None, "error": None}

    try:
        reference()
        ref_peak = peak_bytes(reference) if measure_memory else None
        rows[REFERENCE]["peak_mib"] = None if ref_peak is None else ref_peak / 2**20
        rows[REFERENCE]["memory_ratio"] = None if ref_peak is None else 1.0
        for key, backend in tqdm(plan, desc="losses (steady state)", disable=not progress, file=sys.stderr):
            row = rows[key]
            name = key.removesuffix(COMPILED)
            try:
                loss = _build(name, logits, labels, backend=backend)
                run_once = call(loss)
                compile_before = sum(_mc_kernel.compile_times().values())
                for t in threads:
                    torch.set_num_threads(t)
                    for _ in range(warmup):
                        run_once()
                        reference()
                    own, ref = [], []
                    for _ in range(repeats):
                        own.append(timed(run_once))
                        ref.append(timed(reference))
                    row["steady"][str(t)] = _pair_stats(own, ref)
                    rows[REFERENCE]["steady"].setdefault(str(t), []).extend(ref)
                if backend == "compile":
                    row["compile_s"] = sum(_mc_kernel.compile_times().values()) - compile_before
                if measure_memory and ref_peak:
                    peak = peak_bytes(run_once)
                    row["peak_mib"] = peak / 2**20
                    row["memory_ratio"] = peak / ref_peak
            except NotImplementedError as err:
                row["error"] = f"not implemented yet{': ' + str(err) if str(err) else ''}"
            except Exception as err:
                row["error"] = f"{type(err).__name__}: {err}"
                logger.debug("loss %s failed in the benchmark", key, exc_info=True)
        for t in threads:
            times = rows[REFERENCE]["steady"].get(str(t)) or [timed(reference) for _ in range(repeats)]
            rows[REFERENCE]["steady"][str(t)] = {"time_ms": 1e3 * statistics.median(times), "ratio": 1.0}
        if first_step:
            _first_steps(rows, selected, threads, shape, seed, progress, dtype)
    finally:
        torch.set_num_threads(previous_threads)

    meta.update(
        {
            "shape": list(shape),
            "dtype": dtype,
            "device": str(dev),
            "repeats": repeats,
            "warmup": warmup,
            "seed": seed,
            "mc_compile_s": _mc_kernel.compile_times(),
            "timer": "CUDA events" if on_cuda else "time.perf_counter",
            "first_step": "measured" if first_step else "not measured",
            "memory_method": (
                "torch.cuda.max_memory_allocated during one call minus the memory allocated before it"
                if on_cuda
                else "torch.profiler profile_memory: peak of the replayed CPU allocation events of one call"
            ),
            "load_end": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        }
    )
    result: dict[str, Any] = dict(rows)
    result["_meta"] = meta
    return result


def _first_steps(
    rows: dict[str, dict[str, Any]],
    names: Sequence[str],
    threads: Sequence[int],
    shape: Sequence[int],
    seed: int,
    progress: bool,
    dtype: str = "float32",
) -> None:
    """Fill ``first_step`` of every row: fresh processes, each paired with a cross-entropy process."""
    from tqdm.auto import tqdm

    with tempfile.TemporaryDirectory(prefix="medseg-bench-inductor-") as tmp:
        root = Path(tmp)
        counter = iter(range(10**9))

        def fresh() -> Path:
            path = root / f"cold{next(counter)}"
            path.mkdir()
            return path

        warm = root / "warm"  # filled by the first compiled run, then reused at every thread count
        warm.mkdir()

        def pair(name: str, t: int, cache: Path, backend: str = "") -> dict[str, float]:
            ref = first_step_cpu(REFERENCE, threads=t, shape=shape, seed=seed, cache_dir=fresh(), dtype=dtype)
            own = first_step_cpu(name, threads=t, shape=shape, seed=seed, cache_dir=cache, backend=backend, dtype=dtype)
            rows[REFERENCE]["first_step"].setdefault(str(t), {}).setdefault("cpu_s", []).append(ref["cpu_s"])
            return {**own, "ref_cpu_s": ref["cpu_s"], "ratio": own["cpu_s"] / ref["cpu_s"]}

        for name in tqdm(names, desc="losses (first step)", disable=not progress, file=sys.stderr):
            row = rows[name]
            if row["error"] is not None:
                continue
            try:
                for t in threads:
                    entry: dict[str, Any] = {"cold": pair(name, t, fresh())}
                    if _is_mc_family(name):
                        if name == "mc":
                            entry["compile_cold"] = pair(name, t, fresh(), backend="compile")
                        if not any(warm.iterdir()):
                            first_step_cpu(
                                name, threads=t, shape=shape, seed=seed, cache_dir=warm, backend="compile", dtype=dtype
                            )
                        entry["warm"] = pair(name, t, warm)
                        if name == "mc":
                            entry["compile_warm"] = pair(name, t, warm, backend="compile")
                    row["first_step"][str(t)] = entry
            except Exception as err:
                row["first_step"]["error"] = f"{type(err).__name__}: {err}"
                logger.debug("first-step measurement of %s failed", name, exc_info=True)
        for per_thread in rows[REFERENCE]["first_step"].values():
            per_thread["cpu_s"] = statistics.median(per_thread["cpu_s"])


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width text table of :func:`bench_losses`' result."""
    meta = result.get("_meta", {})
    threads = [str(t) for t in meta.get("threads", [])]
    where = meta.get("gpu") or str(meta.get("device", "cpu")).upper()
    lines = [
        f"loss forward+backward, logits {tuple(meta.get('shape', ()))} {meta.get('dtype', 'float32')} on {where}, "
        f"{meta.get('repeats')} pairs "
        f"per loss; reference {REFERENCE}; ratio = median [min-max] of paired ratios; load {meta.get('load_start')}"
        f" -> {meta.get('load_end')}",
        f"{'loss':<22}"
        + "".join(f" {'x ref @' + t + 'T':>19}" for t in threads)
        + "".join(f" {'1st step @' + t + 'T':>11}" for t in threads)
        + f" {'mem x ref':>9}  note",
    ]
    for name, row in result.items():
        if name == "_meta":
            continue
        cells = []
        for t in threads:
            st = row.get("steady", {}).get(t)
            if st is None or "ratio_min" not in st:
                cells.append(f" {_fmt(st and st.get('ratio'), '19.2f')}")
            else:
                cells.append(f" {st['ratio']:>7.2f} [{st['ratio_min']:.2f}-{st['ratio_max']:.2f}]".rjust(20))
        for t in threads:
            fs = row.get("first_step", {}).get(t) or {}
            cold = fs.get("cold", {}).get("ratio") if isinstance(fs, dict) else None
            cells.append(f" {_fmt(cold, '11.2f')}")
        note = row.get("error") or ""
        if not note and row.get("compile_s"):
            note = f"compile {row['compile_s']:.1f} s in-process"
        lines.append(f"{name:<22}" + "".join(cells) + f" {_fmt(row.get('memory_ratio'), '9.2f')}  {note}")
    extra = []
    for name, row in result.items():
        for t, fs in (row.get("first_step") or {}).items() if name != "_meta" else ():
            if isinstance(fs, dict):
                for kind in ("warm", "compile_cold", "compile_warm"):
                    if kind in fs:
                        extra.append(
                            f"  {name} @{t}T first step {kind}: {fs[kind]['cpu_s']:.1f} s CPU = "
                            f"{fs[kind]['ratio']:.2f}x the cross-entropy process"
                        )
    if extra:
        lines.append("first step in a fresh process, more cache states:")
        lines.extend(extra)
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
    parser.add_argument("--repeats", type=_positive_int, default=10, help="(loss, reference) pairs per loss")
    parser.add_argument("--warmup", type=_positive_int, default=2, help="untimed calls per loss first")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        nargs="+",
        default=None,
        help="CPU thread counts to measure (default: 1 2 on the CPU; torch's current count with --device cuda)",
    )
    parser.add_argument("--losses", nargs="+", default=None, metavar="NAME", help="only these losses (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic logits and labels")
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory measurement")
    parser.add_argument("--no-compiled", action="store_true", help="skip the compiled margin-calibration rows")
    parser.add_argument(
        "--no-first-step", action="store_true", help="skip the fresh-process first-step runs (never run on a GPU)"
    )
    parser.add_argument("--device", default="cpu", help="where the losses run: cpu, cuda or cuda:N")
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float32", help="logits dtype (bfloat16/float16: what autocast hands over)"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object keyed by loss name")


def _command(args: argparse.Namespace) -> str:
    """The command line that reproduces ``args``."""
    parts = ["medseg bench loss", "--shape", *map(str, args.shape), "--repeats", str(args.repeats)]
    parts += ["--warmup", str(args.warmup)]
    if args.threads:
        parts += ["--threads", *map(str, args.threads)]
    parts += ["--seed", str(args.seed)]
    if args.device != "cpu" or args.dtype != "float32":
        parts += ["--device", args.device, "--dtype", args.dtype]
    if args.losses:
        parts += ["--losses", *args.losses]
    parts += [flag for flag in ("no_memory", "no_compiled", "no_first_step") if getattr(args, flag)]
    parts = [p if not p.startswith("no_") else "--" + p.replace("_", "-") for p in parts]
    return " ".join(parts + (["--json"] if args.json else []))


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table (or JSON with ``--json``); exit 0 even if some losses failed."""
    import torch

    from medseg.console import progress_enabled

    if len(args.shape) not in (4, 5):
        raise ValueError(f"--shape takes 4 or 5 sizes (B K H W or B K D H W), got {args.shape}")
    dev, _ = _resolve(args.device, args.dtype)
    on_cpu = dev.type == "cpu"
    threads = args.threads or ([1, 2] if on_cpu else [torch.get_num_threads()])
    result = bench_losses(
        args.shape,
        repeats=args.repeats,
        warmup=args.warmup,
        names=args.losses,
        seed=args.seed,
        threads=threads,
        measure_memory=not args.no_memory,
        compiled=not args.no_compiled,
        first_step=on_cpu and not args.no_first_step,
        progress=progress_enabled(args),
        device=args.device,
        dtype=args.dtype,
    )
    result["_meta"]["command"] = _command(args)
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(format_table(result) + "\n")
    return 0
