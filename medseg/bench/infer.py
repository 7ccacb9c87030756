"""``medseg bench infer``: the medseg Predictor against MONAI's ``sliding_window_inference``, plain and tuned.

Rows, all in one process on copies of the same network weights, the same synthetic CT-like volume and the same
window settings (window size, overlap, Gaussian blending with σ = 0.125·roi, window batch size):

``monai_plain``
    MONAI as it is usually called: for a 2D network on a volume, windows ``(rh, rw, 1)`` with the depth axis
    squeezed for the network (one slice per window), a contiguous network, the importance map rebuilt per call.
``monai_best``
    MONAI configured as well as it can be: the slices as a batch of 2D images, channels-last memory for a 2D
    network, the cached Gaussian passed as ``roi_weight_map``, ``torch.inference_mode``.
``medseg``
    :class:`medseg.inference.Predictor` (which calls MONAI's function with those same settings).
``medseg_<engine>``
    with ``--engines``: the Predictor running the network on another engine (``compile``, ``onnxruntime``,
    ``openvino``; see :mod:`medseg.inference.engines`), where installed.
``monai_best_amp_<p>``, ``medseg_amp_<p>``
    with ``--amp bf16|fp16`` (CUDA only): the same two under CUDA autocast; blending stays in float32.
``monai_best_stitch_cpu``, ``medseg_stitch_cpu``
    with ``--stitch-cpu`` (CUDA only): the network on the GPU, the blended output accumulated in host memory
    (MONAI's ``sw_device``/``device`` arguments; the Predictor's ``stitch_device="cpu"``), what a volume too large
    for the GPU's memory needs.

The network's forward FLOPs per voxel are counted once on one window (:mod:`medseg.bench.flops`); with the number of
windows a run evaluates (counted by a hook on the reference network) each row gets its achieved TFLOP/s, and on a
GPU of :data:`medseg.bench.flops.PEAK_TFLOPS` the fraction of the dense peak for its precision.

After one warm-up run each, every repeat times all rows back to back, in alternating order. Each ratio is the
median of the per-repeat ratios (which cancels most of the drift of a shared machine's load between repeats) with
their range. ``agreement`` is the smallest per-class Dice between a row's label map and ``monai_plain``'s (argmax
over classes; the minority class of a randomly initialised network counts as much as the majority).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

HELP = "sliding-window inference speed and agreement: medseg vs MONAI plain and MONAI best-configured"
REFERENCES = ("monai_plain", "monai_best")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--network", default="coplenet_small", help="network registry name")
    parser.add_argument(
        "--spatial-dims", type=int, choices=(2, 3), default=2, help="network dims (2: slice-wise on the volume)"
    )
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(256, 256, 16), metavar=("H", "W", "D"), help="volume size"
    )
    parser.add_argument(
        "--roi", type=int, nargs="+", default=(128, 128), help="window size (2 values for a 2D network, 3 for 3D)"
    )
    parser.add_argument("--overlap", type=float, default=0.5, help="window overlap in [0, 1)")
    parser.add_argument("--sw-batch-size", type=int, default=8, help="windows per network call")
    parser.add_argument("--classes", type=int, default=2, help="network output channels")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each row (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="where every row runs: cpu, cuda or cuda:N")
    parser.add_argument(
        "--engines",
        nargs="*",
        default=(),
        metavar="ENGINE",
        help="also time the Predictor on these engines (compile, onnxruntime, openvino)",
    )
    parser.add_argument(
        "--amp",
        choices=("none", "bf16", "fp16"),
        default="none",
        help="also time MONAI best and medseg with CUDA mixed precision (separate rows; the others stay fp32)",
    )
    parser.add_argument(
        "--stitch-cpu",
        action="store_true",
        help="also time MONAI best and medseg with the network on CUDA and the output stitched in host memory",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the volume")


def synthetic_ct(shape: Sequence[int], seed: int = 0) -> Any:
    """A CT-like volume in [0, 1] (lung-window scale): body ellipse, two lungs, blob lesions, mild noise."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    h, w, d = shape
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    body = ((yy / 0.85) ** 2 + (xx / 0.95) ** 2) <= 1
    lungs = (((yy / 0.55) ** 2 + ((xx - 0.42) / 0.3) ** 2) <= 1) | (((yy / 0.55) ** 2 + ((xx + 0.42) / 0.3) ** 2) <= 1)
    base = torch.where(body, torch.tensor(0.7), torch.tensor(0.1))
    base = torch.where(lungs, torch.tensor(0.25), base)
    vol = base[..., None].repeat(1, 1, d)
    zz = torch.linspace(-1, 1, d)
    for _ in range(6):
        cy, cx, cz = (torch.rand(3, generator=gen) * 1.2 - 0.6).tolist()
        r = float(torch.rand(1, generator=gen)) * 0.15 + 0.05
        blob = ((yy[..., None] - cy) ** 2 + (xx[..., None] - cx) ** 2 + (zz - cz) ** 2) <= r**2
        vol = torch.where(blob & lungs[..., None], torch.tensor(0.6), vol)
    vol = vol + 0.02 * torch.randn(vol.shape, generator=gen)
    return vol.clamp(0, 1)[None, None].float()


def _timed(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, Any]:
    sync()
    start = time.perf_counter()
    out = fn()
    sync()
    return time.perf_counter() - start, out


def _min_class_dice(a: Any, b: Any) -> float:
    """The smallest per-class Dice over the labels present in either mask (1.0 if they are identical)."""
    import torch

    scores = []
    for label in torch.unique(torch.cat([a.flatten(), b.flatten()])).tolist():
        fa, fb = a == label, b == label
        scores.append(2.0 * int((fa & fb).sum()) / (int(fa.sum()) + int(fb.sum())))
    return min(scores) if scores else 1.0


def _paired(times: dict[str, list[float]], row: str, reference: str) -> list[float]:
    """[median, min, max] of the per-repeat ratios row / reference."""
    ratios = [a / b for a, b in zip(times[row], times[reference], strict=True)]
    return [statistics.median(ratios), min(ratios), max(ratios)]


def _check(args: argparse.Namespace) -> None:
    import torch

    from medseg.inference.devices import resolve_device

    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if len(args.roi) != args.spatial_dims:
        raise ValueError(f"--roi needs {args.spatial_dims} values for a {args.spatial_dims}D network, got {args.roi}")
    from medseg.inference.engines import ENGINES

    bad = [e for e in args.engines if e not in ENGINES or e == "eager"]
    if bad:
        raise ValueError(f"--engines takes {', '.join(e for e in ENGINES if e != 'eager')}, got {bad}")
    device = resolve_device(args.device, "--device")
    if args.amp != "none" and device.type != "cuda":
        raise ValueError(f"--amp {args.amp} needs --device cuda (got --device {args.device}); drop --amp on a CPU")
    if getattr(args, "stitch_cpu", False) and device.type != "cuda":
        raise ValueError(
            f"--stitch-cpu needs --device cuda (got --device {args.device}); stitching is on the CPU there"
        )
    if args.threads is not None:
        torch.set_num_threads(args.threads)


def _rows(
    args: argparse.Namespace, net: Any, volume: Any, device: Any, windows: list[int]
) -> dict[str, Callable[[], Any]]:
    """The functions to time, each returning logits ``(1, K, H, W, D)``; ``windows`` counts monai_plain's."""
    import torch
    from monai.inferers.utils import sliding_window_inference

    from medseg.inference import Predictor, gaussian_weights

    roi = tuple(int(r) for r in args.roi)
    common = {"overlap": args.overlap, "mode": "gaussian"}
    plain_net = copy.deepcopy(net).to(device).eval()
    plain_net.register_forward_pre_hook(lambda module, inputs: windows.append(int(inputs[0].shape[0])))
    fmt = torch.channels_last if args.spatial_dims == 2 else torch.contiguous_format
    best_net = copy.deepcopy(net).to(device).eval().to(memory_format=fmt)
    weights = gaussian_weights(roi, "gaussian", 0.125, device)

    def monai_plain() -> torch.Tensor:
        with torch.no_grad():
            if args.spatial_dims == 2:
                return sliding_window_inference(  # type: ignore[return-value]
                    volume, (*roi, 1), args.sw_batch_size, lambda w: plain_net(w[..., 0])[..., None], **common
                )
            return sliding_window_inference(volume, roi, args.sw_batch_size, plain_net, **common)  # type: ignore[return-value]

    def monai_best(amp: str = "none", stitch: Any = None) -> Callable[[], torch.Tensor]:
        # MONAI runs the network on sw_device and accumulates on device; under autocast the network returns
        # bf16/fp16 windows, which MONAI blends into a float32 output
        where = {"sw_device": device, "device": stitch} if stitch is not None else {}
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)

        def call() -> torch.Tensor:
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                if args.spatial_dims == 3:
                    out = sliding_window_inference(
                        volume, roi, args.sw_batch_size, best_net, roi_weight_map=weights, **common, **where
                    )
                    return out  # type: ignore[return-value]
                b, c, h, w, d = volume.shape
                slices = volume.movedim(-1, 1).reshape(b * d, c, h, w)
                out = sliding_window_inference(
                    slices,
                    roi,
                    args.sw_batch_size,
                    lambda t: best_net(t.contiguous(memory_format=fmt)),
                    roi_weight_map=weights,
                    **common,
                    **where,
                )
                assert isinstance(out, torch.Tensor)
                return out.reshape(b, d, -1, h, w).movedim(1, -1)

        return call

    def predictor(engine: Any = "eager", amp: str | None = None, stitch: Any = None) -> Callable[[], torch.Tensor]:
        p = Predictor(
            copy.deepcopy(net),
            roi_size=roi,
            overlap=args.overlap,
            sw_batch_size=args.sw_batch_size,
            device=device,
            stitch_device=stitch,
            amp=amp,
            engine=engine,
        )
        return lambda: p.predict_logits(volume)

    # on CUDA the Predictor picks where to stitch by free memory: pin it to the GPU so the row is what it says
    here = device if device.type == "cuda" else None
    rows: dict[str, Callable[[], Any]] = {
        "monai_plain": monai_plain,
        "monai_best": monai_best(),
        "medseg": predictor(stitch=here),
    }
    for engine in args.engines:
        rows[f"medseg_{engine}"] = predictor(engine, stitch=here)
    if args.amp != "none":
        rows[f"monai_best_amp_{args.amp}"] = monai_best(amp=args.amp)
        rows[f"medseg_amp_{args.amp}"] = predictor(amp=args.amp, stitch=here)
    if getattr(args, "stitch_cpu", False):
        rows["monai_best_stitch_cpu"] = monai_best(stitch=torch.device("cpu"))
        rows["medseg_stitch_cpu"] = predictor(stitch="cpu")
    return rows


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Time every row and return the figures (see the module docstring)."""
    import monai
    import torch

    from medseg.inference.devices import resolve_device
    from medseg.networks import create_network

    _check(args)
    device = resolve_device(args.device, "--device")
    shape = tuple(int(s) for s in args.shape)
    torch.manual_seed(args.seed)
    net = create_network(args.network, spatial_dims=args.spatial_dims, in_channels=1, out_channels=args.classes)
    net = net.eval()
    volume = synthetic_ct(shape, args.seed).to(device)
    voxels = math.prod(shape)
    load_before = os.getloadavg()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    from medseg.bench.flops import flops_per_voxel, fp32_peak_key, peak_tflops

    roi = [int(r) for r in args.roi]
    window_flops = flops_per_voxel(net, roi) * math.prod(roi)
    setup: dict[str, float] = {}
    windows: list[int] = []
    start = time.perf_counter()
    rows = _rows(args, net, volume, device, windows)
    outputs: dict[str, Any] = {}
    peak: dict[str, int] = {}
    for name, fn in rows.items():  # warm-up (allocator, oneDNN primitives, compilation, sessions) + peak memory
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        setup[name], outputs[name] = _timed(fn, sync)
        if device.type == "cuda":
            peak[name] = int(torch.cuda.max_memory_allocated(device))
    setup["build"] = time.perf_counter() - start - sum(setup.values())
    windows_per_run = sum(windows)  # monai_plain's warm-up: the windows every row evaluates
    run_flops = window_flops * windows_per_run
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    times: dict[str, list[float]] = {name: [] for name in rows}
    names = list(rows)
    for i in range(args.repeats):
        for name in names if i % 2 == 0 else names[::-1]:
            times[name].append(_timed(rows[name], sync)[0])
    reference_labels = outputs["monai_plain"].argmax(1)
    table: dict[str, dict[str, Any]] = {}
    for name in names:
        median = statistics.median(times[name])
        labels = outputs[name].argmax(1).to(reference_labels.device)
        table[name] = {
            "seconds": median,
            "voxels_per_s": voxels / median,
            "first_run_seconds": setup[name],
            "ratio_vs_monai_plain": _paired(times, name, "monai_plain"),
            "ratio_vs_monai_best": _paired(times, name, "monai_best"),
            "agreement": _min_class_dice(reference_labels, labels),
            "voxel_agreement": float((reference_labels == labels).float().mean()),
            "max_abs_logit_diff": float(
                (outputs[name].float().to(reference_labels.device) - outputs["monai_plain"].float()).abs().max()
            ),
            "times": times[name],
        }
        if name in peak:
            table[name]["peak_bytes"] = peak[name]
        precision = name.rsplit("amp_", 1)[1] if "amp_" in name else fp32_peak_key()
        bound = peak_tflops(device_name, precision) if device.type == "cuda" else None
        tflops = run_flops / median / 1e12
        table[name]["tflops"] = tflops
        table[name]["precision"] = precision if device.type == "cuda" else "fp32"
        table[name]["peak_tflops"] = bound
        table[name]["peak_fraction"] = None if bound is None else tflops / bound
    return {
        "rows": table,
        "network": args.network,
        "spatial_dims": args.spatial_dims,
        "parameters": sum(p.numel() for p in net.parameters()),
        "shape": list(shape),
        "roi": list(args.roi),
        "overlap": args.overlap,
        "sw_batch_size": args.sw_batch_size,
        "repeats": args.repeats,
        "device": str(device),
        "device_name": device_name,
        "flops_per_voxel": window_flops / math.prod(roi),
        "windows_per_run": windows_per_run,
        "network_tflop_per_run": run_flops / 1e12,
        "flop_bound_note": (
            None
            if device.type != "cuda" or peak_tflops(device_name, "bf16") is not None
            else f"no peak figure for {device_name!r} in medseg.bench.flops.PEAK_TFLOPS: fraction omitted"
        ),
        "threads": torch.get_num_threads(),
        "load_average": [list(load_before), list(os.getloadavg())],
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
    }


def _text(r: dict[str, Any]) -> str:
    lines = [
        f"sliding-window inference: {r['network']} ({r['parameters']:,} parameters, {r['spatial_dims']}D) on a "
        f"{'x'.join(map(str, r['shape']))} volume, roi {r['roi']}, overlap {r['overlap']}, gaussian, "
        f"sw_batch_size {r['sw_batch_size']}, {r['device']}, {r['threads']} threads, {r['repeats']} paired repeats, "
        f"load average {r['load_average'][0][0]:.1f} -> {r['load_average'][1][0]:.1f}",
        f"  {'row':<22} {'median s':>9} {'voxels/s':>12}  {'vs monai_plain (range)':>24}  "
        f"{'vs monai_best (range)':>24}  agreement  TFLOP/s  of peak",
    ]
    unstable = False
    for name, row in r["rows"].items():
        plain, best = row["ratio_vs_monai_plain"], row["ratio_vs_monai_best"]
        unstable |= plain[2] > 1.5 * plain[1]
        lines.append(
            f"  {name:<22} {row['seconds']:>9.3f} {row['voxels_per_s']:>12,.0f}  "
            f"{plain[0]:>6.3f} ({plain[1]:.2f}-{plain[2]:.2f}){'':>9}  {best[0]:>6.3f} ({best[1]:.2f}-{best[2]:.2f})"
            f"{'':>9}  {row['agreement']:.6f}  {row['tflops']:>7.3f}  "
            f"{'-' if row['peak_fraction'] is None else format(row['peak_fraction'], '.1%'):>7}"
        )
    lines.append("  ratios are medians of per-repeat time ratios (below 1: faster than the reference)")
    lines.append(
        f"  network forward: {r['flops_per_voxel']:,.0f} FLOPs per voxel, {r['windows_per_run']} windows, "
        f"{r['network_tflop_per_run']:.3f} TFLOP per run (FlopCounterMode; peak: dense datasheet figure)"
    )
    if r.get("flop_bound_note"):
        lines.append(f"  {r['flop_bound_note']}")
    if unstable:
        lines.append(
            "  warning: timings are unstable (paired ratios spread by more than 1.5x): the machine is busy; "
            "compare with --threads 1 and more --repeats"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = benchmark(args)
    sys.stdout.write((json.dumps(result) if args.json else _text(result)) + "\n")
    return 0
