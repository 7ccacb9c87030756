"""``multi_gpu_train.json`` under ``torchrun --nproc_per_node=2`` on the CPU (gloo backend, DistributedSampler).

The run's validation mIoU is computed by two ranks on one validation item each and all-reduced; it must equal a
single-process evaluation (``evaluate.json``) of the saved model on the same validation split.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _bundle_helpers import BUNDLES, FEATURES, LOSS_OVERLAYS, REPO_ROOT, SIZE, run_workflow

pytestmark = pytest.mark.bundle

COVID = "covid19_ct_lesion"


def _as_arg(value: object) -> str:
    return str(value).replace(" ", "")


def test_multi_gpu_config_trains_with_two_gloo_processes(tmp_path: Path) -> None:
    from medseg.data.plan import plan_datalist
    from medseg.data.statistics import compute_stats, write_stats
    from medseg.data.synthetic import make_ct_slices

    data = tmp_path / "data"
    datalist = make_ct_slices(data, num_cases=10, size=(SIZE, SIZE), seed=2)  # 6 / 2 / 2
    write_stats(data / "stats.json", compute_stats(datalist, num_classes=2, label_map="binary"))
    plan_datalist(datalist, 2, label_map="binary")
    run_dir = tmp_path / "run"
    configs = [
        str(BUNDLES / COVID / "configs" / "train.json"),
        str(BUNDLES / COVID / "configs" / "multi_gpu_train.json"),
        str(LOSS_OVERLAYS / "mc.json"),
    ]
    overrides = {
        "bundle_root": str(run_dir),
        "dataset_dir": str(data),
        "num_epochs": 1,
        "batch_size": 2,
        "spatial_size": [SIZE, SIZE],
        "network_def#features": FEATURES,
    }
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        _as_arg(configs),
        "--logging_file",
        str(BUNDLES / COVID / "configs" / "logging.conf"),
    ]
    for key, value in overrides.items():
        command += [f"--{key}", _as_arg(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    assert "gloo" in log or "Engine run finished" in log

    last = torch.load(run_dir / "runs" / "models" / "last.pt", map_location="cpu", weights_only=True)
    assert last["tag"] == "mc"
    # 6 training items over 2 ranks with batch 2: 2 iterations per rank and epoch, 1 epoch
    assert last["trainer"]["epoch_length"] == 2
    assert last["trainer"]["iteration"] == 2
    assert not any(k.startswith("module.") for k in last["network"])  # saved without the DDP wrapper
    with (run_dir / "runs" / "history.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["epoch"] for r in rows] == ["1"]
    ddp_miou = float(rows[0]["val_miou"])

    # the same model evaluated on the whole validation split in one process
    evaluation = tmp_path / "eval"
    run_workflow(
        COVID,
        [str(BUNDLES / COVID / "configs" / "train.json"), str(BUNDLES / COVID / "configs" / "evaluate.json")],
        {
            **overrides,
            "ckpt_dir": str(run_dir / "runs" / "models"),  # training's default: output_dir/models
            "output_dir": str(evaluation),
            "eval_split": "validation",
        },
    )
    with (evaluation / "eval" / "metrics.csv").open(encoding="utf-8") as fh:
        single = dict(line.strip().split(",", 1) for line in fh if line.strip())
    assert float(single["val_miou"]) == pytest.approx(ddp_miou, rel=1e-5)
