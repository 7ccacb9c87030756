"""``medseg bench train``: training throughput of a shipped bundle on synthetic data, its own recipe unchanged.

The bundle's ``train.json`` runs as written, with the CE loss overlay, on data made here (no external data): CT
slices with lesions for ``covid19_ct_lesion``, RGB instrument frames for ``robotic_instrument``
(:mod:`medseg.data.synthetic`), with their ``stats.json`` and the ``plan.json`` for the device (on CUDA the
published COPLE-Net widths, batch 16 and mixed precision, which the bundle turns on when CUDA is present; on the
CPU the half-width network and bfloat16 autocast where the CPU has it). Only the number of epochs is set.

Timing: a handler on the trainer records the time from the start of each epoch to its last completed iteration
(the GPU's queue drained), and the images the iterations took; validation, which runs after the last iteration,
is not counted. ``images_per_s`` is the last epoch's (the first one also pays cuDNN's algorithm search, the
allocator's growth and lazy initialisation: it is reported apart).

``--multi-gpu`` adds the bundle's ``multi_gpu_train.json`` (DistributedDataParallel, NCCL on GPUs, gloo on the CPU)
and must run under ``torchrun``; rank 0 writes the result, with throughput summed over ranks as rank 0's rate times
the world size (the ranks take equal shares of an evenly divided sampler).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = ["BUNDLES", "add_arguments", "bench_train", "make_data", "run"]

HELP = "training throughput (images/s) of a bundle's own recipe on synthetic data"
#: The bundles this benchmark can feed, and the synthetic data each gets.
BUNDLES = ("covid19_ct_lesion", "robotic_instrument")


def make_data(bundle: str, out: Path, *, cases: int, size: int, device: str, seed: int = 0) -> Path:
    """Write synthetic data for ``bundle`` into ``out`` with ``stats.json`` and ``plan.json``; return the datalist.

    Args:
        bundle: one of :data:`BUNDLES`.
        out: an empty or missing folder.
        cases: number of images (split 60/20/20 into training, validation and test).
        size: image side in pixels.
        device: ``"cpu"`` or ``"cuda"``: which plan (network width, batch size) the bundle reads.
        seed: seed of the synthetic data.
    """
    from medseg.data.plan import plan_datalist
    from medseg.data.statistics import compute_stats, write_stats
    from medseg.data.synthetic import make_ct_slices, make_instrument_frames

    if bundle == "covid19_ct_lesion":
        datalist = make_ct_slices(out, num_cases=cases, size=(size, size), seed=seed)
    elif bundle == "robotic_instrument":
        datalist = make_instrument_frames(out, num_frames=cases, size=(size, size), seed=seed, task="binary")
    else:
        raise ValueError(f"bundle must be one of {', '.join(BUNDLES)}, got {bundle!r}")
    write_stats(out / "stats.json", compute_stats(datalist, num_classes=2, label_map="binary"))
    plan_datalist(datalist, 2, out / "plan.json", label_map="binary", device="cuda" if device == "cuda" else "cpu")
    return datalist


def _check(bundle: str, work: Path, epochs: int, cases: int, size: int) -> None:
    if bundle not in BUNDLES:
        raise ValueError(f"--bundle must be one of {', '.join(BUNDLES)}, got {bundle!r}")
    if epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {epochs}")
    if cases < 5:
        raise ValueError(f"--cases must be >= 5 (60/20/20 split with a batch to train on), got {cases}")
    if size < 32 or size % 16:
        raise ValueError(f"--size must be a multiple of 16 and >= 32 (COPLE-Net downsamples 4 times), got {size}")
    if work.exists() and any(work.iterdir()):
        raise FileExistsError(f"--work {work} is not empty; give a new folder (nothing there is replaced)")


class _EpochTimer:
    """Seconds from each epoch's start to its last completed iteration, and the images those iterations took."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.epochs: list[dict[str, float]] = []
        self._start = 0.0

    def _sync(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def attach(self, trainer: Any) -> None:
        from ignite.engine import Events

        trainer.add_event_handler(Events.EPOCH_STARTED, self._started)
        trainer.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)

    def _started(self, engine: Any) -> None:
        self._sync()
        self._start = time.perf_counter()
        self.epochs.append({"epoch": int(engine.state.epoch), "images": 0, "seconds": 0.0})

    def _iteration(self, engine: Any) -> None:
        self._sync()
        batch = engine.state.batch
        image = batch.get("image") if isinstance(batch, dict) else None
        n = int(image.shape[0]) if image is not None and hasattr(image, "shape") else len(batch)
        row = self.epochs[-1]
        row["images"] += n
        row["seconds"] = time.perf_counter() - self._start


def bench_train(
    bundle: str,
    work: Path,
    *,
    device: str = "auto",
    epochs: int = 2,
    cases: int = 160,
    size: int = 256,
    multi_gpu: bool = False,
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``bundle`` for ``epochs`` on synthetic data in ``work`` and return the throughput (see module doc).

    Args:
        bundle: one of :data:`BUNDLES`.
        work: a new folder: ``data/`` and ``run/`` (the bundle's checkpoints, history and logs) go there.
        device: ``auto``, ``cpu`` or ``cuda``: must match where the bundle trains (it takes CUDA when present).
        epochs: training epochs.
        cases: synthetic images (60 % train).
        size: their side in pixels.
        multi_gpu: add ``multi_gpu_train.json`` (run under ``torchrun``).
        seed: seed of the data and of the bundle.

    Raises:
        ValueError: bad arguments, a device that is not available or not where the bundle trains, or
            ``multi_gpu`` outside ``torchrun``.
        FileExistsError: ``work`` is not empty.
    """
    import torch
    from monai.bundle.workflows import ConfigWorkflow

    from medseg.inference.devices import resolve_device
    from medseg.resources import bundle_dir, loss_overlay

    work = Path(work)
    rank = int(os.environ.get("RANK", "0"))
    if rank == 0:
        _check(bundle, work, epochs, cases, size)
    dev = resolve_device(device, "--device")
    bundle_device = "cuda" if torch.cuda.is_available() else "cpu"
    if dev.type != bundle_device:
        raise ValueError(
            f"--device {device}: the bundle trains on {bundle_device} here (it takes CUDA whenever present); "
            f"use --device {bundle_device} (or hide the GPUs with CUDA_VISIBLE_DEVICES= for a CPU run)"
        )
    if multi_gpu and "WORLD_SIZE" not in os.environ:
        raise ValueError(
            "--multi-gpu runs under torchrun: torchrun --standalone --nproc_per_node=N -m medseg bench train "
            "--multi-gpu ..."
        )
    data = work / "data"
    ready = work / "data.ready"
    if rank == 0:
        make_data(bundle, data, cases=cases, size=size, device=dev.type, seed=seed)
        ready.write_text("ok\n", encoding="utf-8")
    else:  # the other ranks wait for rank 0's data
        deadline = time.monotonic() + 600
        while not ready.is_file():
            if time.monotonic() > deadline:
                raise TimeoutError(f"rank {rank}: no data from rank 0 in {data} after 600 s")
            time.sleep(0.5)
    root = bundle_dir(bundle)
    configs = [str(root / "configs" / "train.json")]
    if multi_gpu:
        configs.append(str(root / "configs" / "multi_gpu_train.json"))
    configs.append(str(loss_overlay("ce")))
    run_dir = work / "run"
    workflow = ConfigWorkflow(
        config_file=configs,
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=str(root / "configs" / "logging.conf"),
        workflow_type="train",
        bundle_root=str(root),
        ckpt_dir=str(run_dir / "models"),
        output_dir=str(run_dir),
        dataset_dir=str(data),
        num_epochs=epochs,
        seed=seed,
    )
    start = time.perf_counter()
    workflow.initialize()
    parser = workflow.parser
    trainer = parser.get_parsed_content("train#trainer")
    dev_run = torch.device(parser.get_parsed_content("device"))
    timer = _EpochTimer(dev_run)
    timer.attach(trainer)
    setup_s = time.perf_counter() - start
    workflow.run()
    # the multi-GPU overlay's finalize destroys the process group: read its backend first
    backend = torch.distributed.get_backend() if multi_gpu and torch.distributed.is_initialized() else None
    workflow.finalize()
    wall_s = time.perf_counter() - start
    world = int(os.environ.get("WORLD_SIZE", "1"))
    plan = parser.get_parsed_content("plan")
    epochs_out = [{**e, "images_per_s": e["images"] / e["seconds"] if e["seconds"] else None} for e in timer.epochs]
    last = epochs_out[-1]["images_per_s"] if epochs_out else None
    amp = bool(parser.get_parsed_content("amp"))
    amp_dtype = str(getattr(trainer, "amp_kwargs", None) or {}).replace("torch.", "") if amp else None
    return {
        "bundle": bundle,
        "device": str(dev_run),
        "device_name": (
            torch.cuda.get_device_name(dev_run)
            if dev_run.type == "cuda"
            else platform.processor() or platform.machine()
        ),
        "amp": amp,
        "amp_kwargs": amp_dtype,  # MONAI's autocast arguments; empty: torch.autocast("cuda")'s float16
        "cpu_precision": parser.get_parsed_content("cpu_precision") if dev_run.type == "cpu" else None,
        "multi_gpu": multi_gpu,
        "world_size": world,
        "backend": backend,
        "epochs": epochs_out,
        "images_per_s": None if last is None else last * world,
        "first_epoch_images_per_s": None if not epochs_out else epochs_out[0]["images_per_s"],
        "setup_s": setup_s,
        "wall_s": wall_s,
        "data": {"cases": cases, "size": [size, size], "training_images": len(trainer.data_loader.dataset)},
        "plan": {
            "spatial_size": plan["spatial_size"],
            "batch_size": plan["batch_size"],
            "features": plan["network"]["features"],
            "device": plan["device"],
        },
        "torch": torch.__version__,
        "python": platform.python_version(),
        "command": " ".join(["medseg bench train", *sys.argv[3:]]) if sys.argv[1:3] == ["bench", "train"] else None,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", choices=BUNDLES, required=True, help="the bundle to train")
    parser.add_argument("--work", type=Path, required=True, help="a new folder for the data and the run")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (must be where the bundle trains)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs")
    parser.add_argument("--cases", type=int, default=160, help="synthetic images (60%% for training)")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels (multiple of 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the bundle")
    parser.add_argument("--multi-gpu", action="store_true", help="add multi_gpu_train.json (run under torchrun)")
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON result to this new file")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    from medseg.io import write_json

    if args.output is not None and args.output.exists():
        raise FileExistsError(f"--output {args.output} exists; give a new file name (nothing is replaced)")
    result = bench_train(
        args.bundle,
        args.work,
        device=args.device,
        epochs=args.epochs,
        cases=args.cases,
        size=args.size,
        multi_gpu=args.multi_gpu,
        seed=args.seed,
    )
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.output is not None:
        write_json(args.output, result)
    if args.json:
        sys.stdout.write(json.dumps(result) + "\n")
    else:
        rate = result["images_per_s"]
        sys.stdout.write(
            f"{result['bundle']} on {result['device_name'] or result['device']}: "
            f"{'-' if rate is None else format(rate, '.1f')} images/s (last of {len(result['epochs'])} epochs, "
            f"amp {result['amp']}, world size {result['world_size']}), wall {result['wall_s']:.1f} s\n"
        )
    return 0
