"""`medseg study` end to end on tiny synthetic CT slices: two losses, one epoch, report, resume-skip, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

import medseg.training.protocol as protocol
from medseg.cli.main import main
from medseg.study import load_study_config, run_study
from medseg.study.config import StudyConfig
from medseg.study.report import verdict

REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_config(**changes: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "tiny",
        "title": "Tiny synthetic study",
        "bundle": "covid19_ct_lesion",
        "data": {
            "converter": "synthetic_ct",
            "options": {"num_cases": 5, "size": [32, 32], "seed": 0},
            "label_map": "binary",
            "num_classes": 2,
            "class_names": ["background", "lesion"],
        },
        "losses": ["ce", "mc"],
        "budget": {
            "pretrain_epochs": 1,
            "finetune_epochs": 1,
            "spatial_size": [32, 32],
            "features": [8, 16, 32, 64, 128],
            "batch_size": 2,
        },
        "seeds": [0],
        "sensitivity": {"taus": [5, 50], "vs": [1], "complexity": 1.0},
    }
    cfg.update(changes)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.write_text(json.dumps(cfg), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("study")
    config = write_config(root / "tiny.json", tiny_config())
    cfg = load_study_config(config)
    result = run_study(cfg, root / "work", results_dir=root / "results", command="medseg study tiny.json")
    return {"root": root, "config": config, "cfg": cfg, "result": result}


def test_runs_every_stage_and_writes_the_report(finished: dict[str, Any]) -> None:
    result, root = finished["result"], finished["root"]
    assert result.failures == []
    assert sorted(r["name"] for r in result.runs) == ["ce", "ce_pretrain", "mc"]
    work = root / "work"
    for name in ("ce_pretrain", "ce", "mc"):
        assert (work / "seed0" / name / "done.json").is_file()
        assert (work / "seed0" / name / "eval" / "result.json").is_file()
    # both fine-tunes start from the SAME pre-trained checkpoint
    pre = str(work / "seed0" / "ce_pretrain" / "models" / "model.pt")
    for name in ("ce", "mc"):
        done = json.loads((work / "seed0" / name / "done.json").read_text())
        assert done["pretrained_ckpt"] == pre
        assert done["overrides"]["num_epochs"] == 1
    stats = json.loads((work / "data" / "stats.json").read_text())
    assert stats["split"] == "training"
    assert len(stats["class_counts"]) == 2

    out = root / "results"
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "medseg study tiny.json" in readme
    assert "| **mc** |" in readme
    assert "| ce |" in readme
    assert "CE pre-train only" in readme
    assert "IoU background" in readme
    assert "IoU lesion" in readme
    assert "Theorem 1" in readme
    assert "| τ | v | ε |" in readme
    assert (out / "curves_ce_vs_mc.png").stat().st_size > 0
    assert (out / "study_config.json").is_file()
    res = json.loads((out / "results.json").read_text())
    # dataset-level numbers in the report equal the evaluation's own summary
    mc_eval = json.loads((work / "seed0" / "mc" / "eval" / "test_summary.json").read_text())
    assert res["table"]["mc"]["mean_iou"]["mean"] == pytest.approx(mc_eval["dataset"]["pooled_iou"])
    assert len(res["bound"]) == 2  # 2 taus x 1 v


def test_second_call_redoes_nothing(finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished run was trained again")

    def no_eval(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished evaluation was redone")

    monkeypatch.setattr(protocol, "run_bundle", no_training)
    monkeypatch.setattr("medseg.study.runner.evaluate_model", no_eval)
    root = finished["root"]
    result = run_study(finished["cfg"], root / "work", results_dir=root / "results2")
    assert result.failures == []
    assert len(result.runs) == 3
    assert (root / "results2" / "README.md").is_file()


def test_interrupted_run_is_the_only_one_redone(finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    root = finished["root"]
    mc_dir = root / "work" / "seed0" / "mc"
    (mc_dir / "done.json").unlink()  # as if killed after the checkpoint but before finishing
    shutil.rmtree(mc_dir / "eval")
    calls: list[list[str]] = []
    real = protocol.run_bundle

    def counting(config_files: Any, overrides: Any = None) -> None:
        calls.append([str(c) for c in config_files])
        real(config_files, overrides)

    monkeypatch.setattr(protocol, "run_bundle", counting)
    result = run_study(finished["cfg"], root / "work", results_dir=root / "results3")
    assert result.failures == []
    assert len(calls) == 1
    assert calls[0][-1].endswith("mc.json")
    assert (mc_dir / "done.json").is_file()
    assert (mc_dir / "eval" / "result.json").is_file()


def test_dry_run_cli_lists_done_runs(finished: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = finished["root"]
    code = main(["study", str(finished["config"]), "--work-dir", str(root / "work"), "--dry-run"])
    assert code == 0
    out = capsys.readouterr().out
    assert "3 run(s) planned, 0 to do" in out


def test_failing_loss_is_recorded_not_hidden(finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    root = finished["root"]
    real = protocol.run_bundle

    def broken_focal(config_files: Any, overrides: Any = None) -> None:
        if str(config_files[-1]).endswith("focal.json"):
            raise RuntimeError("simulated divergence")
        real(config_files, overrides)

    monkeypatch.setattr(protocol, "run_bundle", broken_focal)
    cfg = load_study_config(write_config(root / "tiny_focal.json", tiny_config(losses=["ce", "mc", "focal"])))
    result = run_study(cfg, root / "work", results_dir=root / "results4")
    assert [f["name"] for f in result.failures] == ["focal"]
    assert "simulated divergence" in result.failures[0]["error"]
    assert (root / "work" / "seed0" / "focal" / "failed.json").is_file()
    readme = (root / "results4" / "README.md").read_text(encoding="utf-8")
    assert "## Failures" in readme
    assert "simulated divergence" in readme
    assert "vs **focal**: no result" in readme


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["study", "--help"])
    assert exc.value.code == 0
    assert "--dry-run" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"losses": ["ce", "mcc"]}, "unknown loss 'mcc'"),
        ({"bugdet": {}}, "did you mean 'budget'"),
        ({"seeds": []}, "study.seeds"),
    ],
    ids=["unknown-loss", "typo-key", "no-seeds"],
)
def test_bad_configs_are_rejected(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StudyConfig.from_dict(tiny_config(**change), base=REPO_ROOT)


def test_bad_spatial_size_names_the_rule() -> None:
    cfg = tiny_config()
    cfg["budget"] = {**cfg["budget"], "spatial_size": [30, 30]}
    with pytest.raises(ValueError, match="multiples of 16"):
        StudyConfig.from_dict(cfg, base=REPO_ROOT)


def test_cli_bad_config_exits_2(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.json", tiny_config(losses=[]))
    assert main(["study", str(bad), "--dry-run"]) == 2


def test_verdict_words() -> None:
    # mc 0.60 vs ce 0.50 (+0.10 win), vs dice 0.605 (-0.005 tie), vs lmp 0.70 (-0.10 loss)
    table = {n: {"mean_iou": {"mean": m}} for n, m in (("mc", 0.6), ("ce", 0.5), ("dice", 0.605), ("lmp", 0.7))}
    lines = verdict(table, ["ce", "mc", "dice", "lmp", "focal"])
    assert lines[0].startswith("- MC wins over **ce**")
    assert lines[1].startswith("- MC ties with **dice**")
    assert lines[2].startswith("- MC loses to **lmp**")
    assert "no result" in lines[3]


def test_test_inputs_get_unique_case_ids(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from medseg.data.datalist import write_datalist
    from medseg.study.runner import _test_refs

    entries = []
    for clip in ("clipA", "clipB"):
        for kind in ("images", "labels"):
            (tmp_path / kind / clip).mkdir(parents=True)
            Image.fromarray(np.full((4, 4), 1 if kind == "labels" else 9, np.uint8)).save(
                tmp_path / kind / clip / "frame_0008.png"
            )
        entries.append(
            {
                "image": str(tmp_path / "images" / clip / "frame_0008.png"),
                "label": str(tmp_path / "labels" / clip / "frame_0008.png"),
            }
        )
    datalist = write_datalist(tmp_path / "datalist.json", {"training": entries[:1], "test": entries})
    images = _test_refs(datalist, tmp_path / "refs", tmp_path / "inputs")
    assert [p.name for p in images] == ["clipA_frame_0008.png", "clipB_frame_0008.png"]
    assert sorted(p.name for p in (tmp_path / "refs").iterdir()) == ["clipA_frame_0008.png", "clipB_frame_0008.png"]
