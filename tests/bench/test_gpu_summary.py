"""``medseg bench gpu-summary`` on a fixture folder shaped like scripts/gpu_check.sh's results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medseg.bench import gpu_summary
from medseg.cli.main import main

ENV = {"device": "cuda:0", "device_type": "cuda", "device_name": "NVIDIA H100 80GB HBM3", "torch": "2.11.0"}


def _loss(dtype: str, mc_ratio: float) -> dict:
    steady = {"1": {"time_ms": 2.0 * mc_ratio, "ref_ms": 2.0, "ratio": mc_ratio, "ratio_min": 1.0, "ratio_max": 3.0}}
    return {
        "torch.cross_entropy": {"steady": {"1": {"time_ms": 2.0, "ratio": 1.0}}, "peak_mib": 10.0, "error": None},
        "mc": {"steady": steady, "peak_mib": 25.0, "memory_ratio": 2.5, "error": None},
        "mc[compiled]": {"steady": steady, "peak_mib": 12.0, "memory_ratio": 1.2, "compile_s": 31.5, "error": None},
        "_meta": {"threads": [1], "dtype": dtype, "shape": [8, 5, 256, 256], "device": "cuda:0"},
    }


def _row(seconds: float, fraction: float | None) -> dict:
    return {
        "seconds": seconds,
        "ratio_vs_monai_plain": [seconds / 4.0, seconds / 4.5, seconds / 3.5],
        "ratio_vs_monai_best": [seconds / 2.0, seconds / 2.2, seconds / 1.8],
        "agreement": 1.0,
        "tflops": 100.0 / seconds,
        "precision": "tf32",
        "peak_fraction": fraction,
        "peak_bytes": 3 * 2**30,
    }


@pytest.fixture
def results(tmp_path: Path) -> Path:
    steps = [
        {"step": "pytest_gpu", "status": "ok", "rc": 0, "wall_s": 40.2, "limit_s": 75, "note": "4 files"},
        {"step": "loss_float32", "status": "ok", "rc": 0, "wall_s": 50.0, "limit_s": 75, "note": ""},
        {"step": "loss_bfloat16", "status": "timeout", "rc": 124, "wall_s": 75.0, "limit_s": 75, "note": "cut"},
        {"step": "study", "status": "skipped", "rc": None, "wall_s": 0, "limit_s": 0, "note": "needs --data"},
    ]
    (tmp_path / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps), encoding="utf-8")
    (tmp_path / "pytest_gpu.xml").write_text(
        '<testsuites><testsuite tests="8" failures="1" errors="0" skipped="2"/></testsuites>', encoding="utf-8"
    )
    (tmp_path / "loss_float32.json").write_text(json.dumps(_loss("float32", 2.0)), encoding="utf-8")
    infer = {
        "rows": {"monai_plain": _row(4.0, 0.05), "monai_best": _row(2.0, 0.10), "medseg": _row(1.0, 0.20)},
        "network": "coplenet",
        "shape": [512, 512, 200],
        "roi": [256, 256],
        "sw_batch_size": 16,
        "flops_per_voxel": 300000.0,
        "network_tflop_per_run": 100.0,
        "flop_bound_note": None,
    }
    (tmp_path / "infer.json").write_text(json.dumps(infer), encoding="utf-8")
    train = {"bundle": "covid19_ct_lesion", "images_per_s": 512.5, "first_epoch_images_per_s": 100.0, "amp": True}
    train |= {"world_size": 1, "backend": None, "plan": {"spatial_size": [256, 256], "batch_size": 16}}
    (tmp_path / "train_covid19_ct_lesion.json").write_text(json.dumps(train), encoding="utf-8")
    (tmp_path / "train_robotic_instrument.json").write_text("{not json", encoding="utf-8")
    return tmp_path


def test_summary_of_the_fixture_folder(results: Path):
    summary = gpu_summary.summarize(results, env=ENV)
    assert summary["dry_run"] is False
    assert summary["device_name"] == "NVIDIA H100 80GB HBM3"
    assert [s["status"] for s in summary["steps"]] == ["ok", "ok", "timeout", "skipped"]
    assert summary["total_wall_s"] == pytest.approx(40.2 + 50.0 + 75.0)
    assert summary["pytest_gpu"] == {"tests": 8, "failures": 1, "errors": 0, "skipped": 2}
    mc = summary["loss"]["float32"]["rows"]
    assert mc["mc"]["time_ratio"] == 2.0
    assert mc["mc[compiled]"]["compile_s"] == 31.5
    assert summary["loss"]["bfloat16"] is None  # the step timed out: no file, no figure
    infer = summary["inference"]
    assert infer["rows"]["medseg"]["vs_monai_plain"] == [0.25, 1.0 / 4.5, 1.0 / 3.5]
    assert infer["rows"]["medseg"]["peak_gib"] == 3.0
    assert infer["best_peak_fraction"] == 0.20
    assert summary["training"]["covid19_ct_lesion"]["images_per_s"] == 512.5
    assert "robotic_instrument" not in summary["training"]
    assert any("train_robotic_instrument.json: unreadable" in n for n in summary["notes"])

    md = gpu_summary.markdown(summary)
    assert md.startswith("# GPU check on NVIDIA H100 80GB HBM3")
    assert "dry run" not in md
    assert "| loss_bfloat16 | timeout | 75 | 75 | cut |" in md
    assert "| medseg | 1.000 | 0.250 (0.222-0.286) | 0.500 (0.455-0.556) |" in md
    assert "20.0%" in md
    assert "| bfloat16 | - | no result (see the steps) |" in md
    assert "| covid19_ct_lesion | 512.5 | 100.0 | True |" in md


def test_a_cpu_folder_is_labelled_a_dry_run(results: Path):
    summary = gpu_summary.summarize(results, env={"device": "cpu", "device_type": "cpu", "device_name": "x86_64"})
    assert summary["dry_run"] is True
    assert summary["notes"][0].startswith("CPU dry run")
    md = gpu_summary.markdown(summary)
    assert md.startswith("# CPU dry run of scripts/gpu_check.sh")
    assert "no figure below is a GPU figure" in md


def test_an_empty_folder_says_what_is_missing(tmp_path: Path):
    summary = gpu_summary.summarize(tmp_path, env=ENV)
    assert summary["steps"] == []
    assert summary["inference"] is None
    assert "steps.jsonl missing: no step was recorded" in summary["notes"]
    assert "no inference result" in gpu_summary.markdown(summary)


def test_cli_writes_both_files_and_never_replaces_them(results: Path, capsys):
    assert main(["bench", "gpu-summary", str(results), "--device", "cpu", "--invocation", "gpu_check.sh"]) == 0
    assert "steps not ok: loss_bfloat16" in capsys.readouterr().out
    written = json.loads((results / "gpu.json").read_text(encoding="utf-8"))
    assert written["environment"]["command"] == "gpu_check.sh"
    assert (results / "gpu.md").read_text(encoding="utf-8").startswith("# CPU dry run")
    assert main(["bench", "gpu-summary", str(results), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "pass --force" in err[0]
    assert main(["bench", "gpu-summary", str(results), "--device", "cpu", "--force"]) == 0


def test_cli_refuses_a_missing_folder(tmp_path: Path, capsys):
    assert main(["bench", "gpu-summary", str(tmp_path / "nope"), "--device", "cpu"]) == 2
    assert "is not a folder" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is absent")
def test_cuda_summary_where_there_is_none(results: Path, capsys):
    assert main(["bench", "gpu-summary", str(results)]) == 2  # --device cuda is the default
    assert "CUDA is not available here" in capsys.readouterr().err
