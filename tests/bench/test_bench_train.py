"""``medseg bench train``: argument checks, the synthetic data it feeds the bundles, and runs (slow, gpu)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from medseg.bench import train
from medseg.cli.main import main
from medseg.training.curves import read_history


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bundle": "nope"}, "--bundle must be one of covid19_ct_lesion, robotic_instrument, got 'nope'"),
        ({"epochs": 0}, "--epochs must be >= 1, got 0"),
        ({"cases": 4}, "--cases must be >= 5"),
        ({"size": 40}, "--size must be a multiple of 16 and >= 32"),
        ({"device": "tpu"}, "is not a device"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs, match):
    args = {"bundle": "covid19_ct_lesion", "work": tmp_path / "work", **kwargs}
    with pytest.raises(ValueError, match=match):
        train.bench_train(**args)
    assert not (tmp_path / "work").exists()  # refused before anything is written


def test_a_used_work_folder_is_refused(tmp_path: Path):
    (tmp_path / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(FileExistsError, match="is not empty"):
        train.bench_train("covid19_ct_lesion", tmp_path)


def test_multi_gpu_outside_torchrun_is_refused(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(ValueError, match="--multi-gpu runs under torchrun"):
        train.bench_train("covid19_ct_lesion", tmp_path / "w", device="cpu", multi_gpu=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_cuda_asked_for_where_there_is_none(tmp_path: Path, capsys):
    argv = ["bench", "train", "--bundle", "covid19_ct_lesion", "--work", str(tmp_path / "w"), "--device", "cuda"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "CUDA is not available here" in err[0]


@pytest.mark.parametrize("bundle", train.BUNDLES)
def test_synthetic_data_with_the_files_the_bundle_reads(tmp_path: Path, bundle: str):
    datalist = train.make_data(bundle, tmp_path, cases=5, size=32, device="cuda")
    splits = json.loads(datalist.read_text(encoding="utf-8"))
    assert len(splits["training"]) == 3
    plan = json.loads((tmp_path / "plan.json").read_text(encoding="utf-8"))
    assert plan["device"] == "cuda"  # the GPU recipe: published widths, batch 16
    assert plan["network"]["features"][0] == 32
    assert plan["spatial_size"] == [32, 32]
    stats = json.loads((tmp_path / "stats.json").read_text(encoding="utf-8"))
    assert len(stats["class_counts"]) == 2
    assert stats["class_counts"][1] > 0


def _check_result(result: dict, work: Path, device: str) -> None:
    assert result["device"].startswith(device)
    assert [e["epoch"] for e in result["epochs"]] == [1, 2]
    assert all(e["images"] == result["data"]["training_images"] for e in result["epochs"])
    assert result["images_per_s"] > 0
    history = read_history(work / "run" / "history.csv")
    assert history["epoch"] == [1.0, 2.0]
    assert all(math.isfinite(v) for v in history["train_loss"])


@pytest.mark.slow
def test_two_epochs_on_the_cpu(tmp_path: Path):
    result = train.bench_train("robotic_instrument", tmp_path / "w", device="cpu", cases=5, size=32)
    _check_result(result, tmp_path / "w", "cpu")
    assert result["amp"] is False


@pytest.mark.gpu
def test_two_epochs_with_amp_on_cuda(tmp_path: Path):
    # the CE loss under MONAI's AMP (float16 autocast and a gradient scaler) on the GPU recipe's network
    result = train.bench_train("covid19_ct_lesion", tmp_path / "w", device="cuda", cases=20, size=64)
    _check_result(result, tmp_path / "w", "cuda")
    assert result["amp"] is True  # the bundle turns MONAI's AMP on where CUDA is
    assert result["plan"]["device"] == "cuda"
