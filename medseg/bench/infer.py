"""``medseg bench infer``: our sliding-window predictor against MONAI's ``sliding_window_inference``.

Both run in one process on the same network weights (two copies of one randomly initialised network, so a
memory-format change of ours cannot affect the reference), the same synthetic CT-like volume and the same
settings: window size, overlap, Gaussian blending with σ = 0.125·roi, window batch size. For a 2D network on a
volume the reference is MONAI's usual slice-wise set-up: windows ``(rh, rw, 1)`` with the depth axis squeezed for
the network. After one warm-up run each, the two are timed back to back ``--repeats`` times (order alternating:
MONAI then ours, ours then MONAI, ...). ``ratio`` = ours / MONAI (below 1: ours is faster) is the median of the
per-pair ratios, which cancels most of the drift of a shared machine's load between pairs; ``ratio_of_medians``
and ``ratio_best`` (fastest run of each) are reported too, and the throughputs use the median times.

``agreement`` is the smallest per-class Dice between the two label maps (argmax over classes; the minority class
of a randomly initialised network counts as much as the majority), ``foreground_dice`` the Dice of label > 0,
``voxel_agreement`` the fraction of equal labels.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

logger = logging.getLogger(__name__)

HELP = "sliding-window inference speed and agreement against MONAI"


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
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each method (after one warm-up)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where both methods run")
    parser.add_argument(
        "--amp",
        choices=("none", "bf16", "fp16"),
        default="none",
        help="also time ours with CUDA mixed precision (reported separately; the ratio stays fp32 vs fp32)",
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


def _dice_fg(a: Any, b: Any) -> float:
    fa, fb = a > 0, b > 0
    denom = int(fa.sum()) + int(fb.sum())
    return 1.0 if denom == 0 else 2.0 * int((fa & fb).sum()) / denom


def _min_class_dice(a: Any, b: Any) -> float:
    """The smallest per-class Dice over the labels present in either mask (1.0 if they are identical)."""
    import torch

    scores = []
    for label in torch.unique(torch.cat([a.flatten(), b.flatten()])).tolist():
        fa, fb = a == label, b == label
        scores.append(2.0 * int((fa & fb).sum()) / (int(fa.sum()) + int(fb.sum())))
    return min(scores) if scores else 1.0


def benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Run both methods and return the figures (see the module docstring)."""
    import monai
    import torch
    from monai.inferers.utils import sliding_window_inference

    from medseg.inference import Predictor
    from medseg.networks import create_network

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    if args.repeats < 1:
        raise ValueError(f"--repeats must be >= 1, got {args.repeats}")
    if len(args.roi) != args.spatial_dims:
        raise ValueError(f"--roi needs {args.spatial_dims} values for a {args.spatial_dims}D network, got {args.roi}")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: CUDA is not available here; use --device cpu")
    device = torch.device(args.device)
    shape = tuple(int(s) for s in args.shape)
    roi = tuple(int(r) for r in args.roi)

    torch.manual_seed(args.seed)
    net = create_network(args.network, spatial_dims=args.spatial_dims, in_channels=1, out_channels=args.classes)
    net = net.eval()
    reference_net = copy.deepcopy(net).to(device).eval()
    params = sum(p.numel() for p in net.parameters())
    volume = synthetic_ct(shape, args.seed).to(device)
    voxels = math.prod(shape)

    if args.spatial_dims == 2:
        monai_roi: tuple[int, ...] = (*roi, 1)

        def reference_predictor(window: torch.Tensor) -> torch.Tensor:
            return reference_net(window[..., 0])[..., None]

    else:
        monai_roi = roi
        reference_predictor = reference_net

    def run_monai() -> torch.Tensor:
        with torch.no_grad():
            out = sliding_window_inference(
                volume, monai_roi, args.sw_batch_size, reference_predictor, overlap=args.overlap, mode="gaussian"
            )
        assert isinstance(out, torch.Tensor)
        return out

    predictor = Predictor(
        net, roi_size=roi, overlap=args.overlap, sw_batch_size=args.sw_batch_size, device=device, mode="gaussian"
    )

    def run_ours() -> torch.Tensor:
        return predictor.predict_logits(volume)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    methods = {"monai": run_monai, "ours": run_ours}
    peak: dict[str, int] = {}
    outputs: dict[str, torch.Tensor] = {}
    for name, fn in methods.items():  # warm-up (allocator, oneDNN primitives, caches) + peak memory
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _, outputs[name] = _timed(fn, sync)
        if device.type == "cuda":
            peak[name] = int(torch.cuda.max_memory_allocated(device))
    times: dict[str, list[float]] = {"monai": [], "ours": []}
    for i in range(args.repeats):
        order = ("monai", "ours") if i % 2 == 0 else ("ours", "monai")
        for name in order:
            seconds, _ = _timed(methods[name], sync)
            times[name].append(seconds)
    a = outputs["monai"].argmax(1)
    b = outputs["ours"].argmax(1)
    median = {k: statistics.median(v) for k, v in times.items()}
    paired = [o / m for o, m in zip(times["ours"], times["monai"], strict=True)]
    result: dict[str, Any] = {
        "ratio": statistics.median(paired),
        "ratio_range": [min(paired), max(paired)],
        "ratio_of_medians": median["ours"] / median["monai"],
        "ratio_best": min(times["ours"]) / min(times["monai"]),
        "agreement": _min_class_dice(a, b),
        "foreground_dice": _dice_fg(a, b),
        "voxel_agreement": float((a == b).float().mean()),
        "max_abs_logit_diff": float((outputs["monai"].float() - outputs["ours"].float().to(device)).abs().max()),
        "foreground_fraction": float((a > 0).float().mean()),
        "monai_seconds": median["monai"],
        "ours_seconds": median["ours"],
        "monai_voxels_per_s": voxels / median["monai"],
        "ours_voxels_per_s": voxels / median["ours"],
        "times": times,
        "network": args.network,
        "spatial_dims": args.spatial_dims,
        "parameters": params,
        "shape": list(shape),
        "roi": list(roi),
        "overlap": args.overlap,
        "sw_batch_size": args.sw_batch_size,
        "repeats": args.repeats,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
    }
    if peak:
        result["monai_peak_bytes"] = peak["monai"]
        result["ours_peak_bytes"] = peak["ours"]
    if args.amp != "none":
        if device.type != "cuda":
            raise ValueError("--amp needs --device cuda")
        amp_predictor = Predictor(
            copy.deepcopy(reference_net),
            roi_size=roi,
            overlap=args.overlap,
            sw_batch_size=args.sw_batch_size,
            device=device,
            amp=args.amp,
        )
        torch.cuda.reset_peak_memory_stats(device)
        _, amp_out = _timed(lambda: amp_predictor.predict_logits(volume), sync)
        amp_peak = int(torch.cuda.max_memory_allocated(device))
        amp_times = [_timed(lambda: amp_predictor.predict_logits(volume), sync)[0] for _ in range(args.repeats)]
        result["amp"] = {
            "dtype": args.amp,
            "seconds": statistics.median(amp_times),
            "voxels_per_s": voxels / statistics.median(amp_times),
            "peak_bytes": amp_peak,
            "agreement_vs_monai_fp32": _min_class_dice(a, amp_out.argmax(1).to(a.device)),
        }
    return result


def _text(r: dict[str, Any]) -> str:
    lines = [
        f"sliding-window inference: {r['network']} ({r['parameters']:,} parameters, {r['spatial_dims']}D) on a "
        f"{'x'.join(map(str, r['shape']))} volume, roi {r['roi']}, overlap {r['overlap']}, gaussian, "
        f"sw_batch_size {r['sw_batch_size']}, {r['device']}, {r['threads']} threads, median of {r['repeats']}",
        f"  MONAI sliding_window_inference: {r['monai_seconds']:.3f} s  ({r['monai_voxels_per_s']:,.0f} voxels/s)",
        f"  medseg Predictor:              {r['ours_seconds']:.3f} s  ({r['ours_voxels_per_s']:,.0f} voxels/s)",
        f"  ratio (ours / MONAI, median of paired runs): {r['ratio']:.3f}   (of medians: {r['ratio_of_medians']:.3f}, "
        f"best-of: {r['ratio_best']:.3f})",
        f"  agreement (min per-class Dice): {r['agreement']:.6f}   voxel agreement: {r['voxel_agreement']:.6f}   "
        f"max |logit diff|: {r['max_abs_logit_diff']:.2e}",
    ]
    low, high = r["ratio_range"]
    if high > 1.5 * low:
        lines.append(
            f"  warning: timings are unstable (paired ratios {low:.2f}..{high:.2f}): the machine is busy; "
            "compare with --threads 1 and more --repeats"
        )
    if "monai_peak_bytes" in r:
        lines.append(
            f"  peak GPU memory: MONAI {r['monai_peak_bytes'] / 2**20:.1f} MiB, "
            f"ours {r['ours_peak_bytes'] / 2**20:.1f} MiB"
        )
    if "amp" in r:
        amp = r["amp"]
        lines.append(
            f"  ours with {amp['dtype']} autocast: {amp['seconds']:.3f} s ({amp['voxels_per_s']:,.0f} voxels/s), "
            f"peak {amp['peak_bytes'] / 2**20:.1f} MiB, agreement vs MONAI fp32 {amp['agreement_vs_monai_fp32']:.6f}"
        )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    result = benchmark(args)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        sys.stdout.write(_text(result) + "\n")
    return 0
