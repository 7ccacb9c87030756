"""`medseg study` end to end on tiny synthetic CT slices: 2 folds, 3 runs (one fine-tuned), report, resume, failures."""

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

REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_config(**changes: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "tiny",
        "title": "Tiny synthetic study",
        "bundle": "covid19_ct_lesion",
        "data": {
            "converter": "synthetic_ct",
            "options": {"num_cases": 6, "size": [32, 32], "seed": 0},
            "label_map": "binary",
            "num_classes": 2,
            "class_names": ["background", "lesion"],
        },
        "cv": {"folds": 2, "by": "case", "seed": 0, "validation": 1},
        "plan": {
            "device": "cpu",
            "overrides": {"num_epochs": 1, "batch_size": 2, "network": {"features": [8, 16, 32, 64, 128]}},
        },
        "runs": [
            {"name": "recipe"},
            {
                "name": "floor",
                "network": {"name": "basic_unet", "features": [8, 8, 16, 32, 64, 8]},
                "plan": {"normalization": None, "augmentation": "flips", "schedule": "constant"},
                "tta": False,
            },
            {"name": "ft_mc", "from": "recipe", "loss": "mc", "plan": {"optimizer": {"lr": 1e-4}}},
        ],
        "compare": [["recipe", "floor"], ["ft_mc", "recipe"]],
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


def test_runs_every_fold_and_writes_the_report(finished: dict[str, Any]) -> None:
    result, root = finished["result"], finished["root"]
    assert result.failures == []
    work = root / "work"
    assert sorted((r["run"], r["fold"]) for r in result.results) == [
        (run, k) for run in ("floor", "ft_mc", "recipe") for k in (0, 1)
    ]
    tested: list[str] = []
    for k in (0, 1):
        fold = json.loads((work / "folds" / f"fold{k}" / "datalist.json").read_text())
        tested += [e["image"] for e in fold["test"]]
        assert not {e["image"] for e in fold["test"]} & {e["image"] for e in fold["training"]}
        assert {e["image"] for e in fold["validation"]} <= {e["image"] for e in fold["training"]}
        # stats and plan come from the fold's training cases only
        assert json.loads((work / "folds" / f"fold{k}" / "stats.json").read_text())["num_cases"] == 3
        assert json.loads((work / "folds" / f"fold{k}" / "plan.json").read_text())["num_cases"] == 3
        # the fine-tuning run starts from the recipe model of the SAME fold
        done = json.loads((work / "seed0" / f"fold{k}" / "ft_mc" / "done.json").read_text())
        assert done["pretrained_ckpt"] == str(work / "seed0" / f"fold{k}" / "recipe" / "models" / "model.pt")
        assert done["cpu_seconds"] > 0
    assert len(tested) == len(set(tested)) == 6  # every case is a test case exactly once
    floor_plan = json.loads((work / "seed0" / "fold0" / "floor" / "plan.json").read_text())
    assert floor_plan["normalization"] is None
    assert floor_plan["augmentation"] == "flips"
    readme = (root / "results" / "README.md").read_text(encoding="utf-8")
    assert "| recipe |" in readme
    assert "| floor |" in readme
    assert "## Paired comparisons" in readme
    assert "Margin offsets of the MC runs" in readme
    res = json.loads((root / "results" / "results.json").read_text())
    assert res["runs"]["recipe"]["dice_mean"]["n"] <= 6
    assert {(c["run"], c["reference"]) for c in res["comparisons"]} == {("recipe", "floor"), ("ft_mc", "recipe")}


def test_second_call_redoes_nothing(finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished run was trained again")

    def no_eval(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a finished evaluation was redone")

    monkeypatch.setattr(protocol, "run_bundle", no_training)
    monkeypatch.setattr("medseg.study.runner._evaluate", no_eval)
    root = finished["root"]
    result = run_study(finished["cfg"], root / "work", results_dir=root / "results2")
    assert result.failures == []
    assert len(result.results) == 6
    assert (root / "results2" / "README.md").is_file()


def test_interrupted_run_is_the_only_one_redone(finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    root = finished["root"]
    run_dir = root / "work" / "seed0" / "fold1" / "ft_mc"
    (run_dir / "done.json").unlink()  # as if killed after the checkpoint but before finishing
    shutil.rmtree(run_dir / "eval")
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
    assert (run_dir / "eval" / "result.json").is_file()


def test_report_only_trains_nothing(finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--report-only trained")

    monkeypatch.setattr(protocol, "run_bundle", no_training)
    root = finished["root"]
    code = main(
        [
            "study",
            str(finished["config"]),
            "--work-dir",
            str(root / "work"),
            "--report-only",
            "--results-dir",
            str(root / "results5"),
        ]
    )
    assert code == 0
    assert "| recipe |" in (root / "results5" / "README.md").read_text(encoding="utf-8")


def test_dry_run_cli_lists_done_runs(finished: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root = finished["root"]
    code = main(["study", str(finished["config"]), "--work-dir", str(root / "work"), "--dry-run"])
    assert code == 0
    assert "6 run(s) planned, 0 to do" in capsys.readouterr().out


def test_failing_run_is_recorded_not_hidden(finished: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    root = finished["root"]
    real = protocol.run_bundle

    def broken_focal(config_files: Any, overrides: Any = None) -> None:
        if str(config_files[-1]).endswith("focal.json"):
            raise RuntimeError("simulated divergence")
        real(config_files, overrides)

    monkeypatch.setattr(protocol, "run_bundle", broken_focal)
    runs = [*tiny_config()["runs"], {"name": "ft_focal", "from": "recipe", "loss": "focal"}]
    cfg = load_study_config(write_config(root / "tiny_focal.json", tiny_config(runs=runs)))
    result = run_study(cfg, root / "work", results_dir=root / "results4", folds=[0])
    assert [(f["run"], f["fold"]) for f in result.failures] == [("ft_focal", 0)]
    assert "simulated divergence" in result.failures[0]["error"]
    assert (root / "work" / "seed0" / "fold0" / "ft_focal" / "failed.json").is_file()
    readme = (root / "results4" / "README.md").read_text(encoding="utf-8")
    assert "## Failed runs" in readme
    assert "simulated divergence" in readme
    assert "| ft_focal | not run |" in readme


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["study", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--dry-run" in out
    assert "--folds" in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"runs": [{"name": "a", "loss": "mcc"}]}, "unknown loss overlay 'mcc'"),
        ({"runz": []}, "did you mean 'runs'"),
        ({"seeds": []}, "study.seeds"),
        ({"runs": [{"name": "a", "from": "b"}]}, "must name an earlier run"),
        ({"runs": [{"name": "a"}, {"name": "a"}]}, "used twice"),
        ({"runs": [{"name": "a", "network": {"name": "unet9"}}]}, "unet9"),
        ({"compare": [["recipe", "nope"]]}, "study.compare"),
        ({"cv": {"folds": 1}}, "study.cv.folds"),
    ],
    ids=["unknown-loss", "typo-key", "no-seeds", "bad-from", "duplicate", "bad-network", "bad-compare", "one-fold"],
)
def test_bad_configs_are_rejected(change: dict[str, Any], message: str) -> None:
    with pytest.raises((ValueError, KeyError), match=message):
        StudyConfig.from_dict(tiny_config(**change), base=REPO_ROOT)


def test_cli_bad_config_exits_2(tmp_path: Path) -> None:
    bad = write_config(tmp_path / "bad.json", tiny_config(runs=[]))
    assert main(["study", str(bad), "--dry-run"]) == 2


@pytest.mark.parametrize("name", ["covid19_binary", "covid19_multiclass", "instruments_binary"])
def test_shipped_studies_validate(name: str) -> None:
    cfg = load_study_config(name)
    assert cfg.runs[0].name == "recipe"
    assert ("recipe", "floor") in cfg.compare


def test_test_inputs_get_unique_case_ids(tmp_path: Path) -> None:
    import numpy as np
    from PIL import Image

    from medseg.study.runner import _test_copies

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
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": entries[:1], "test": entries}), encoding="utf-8")
    images = _test_copies(datalist, tmp_path / "refs", tmp_path / "inputs")
    assert [p.name for p in images] == ["clipA_frame_0008.png", "clipB_frame_0008.png"]
    assert sorted(p.name for p in (tmp_path / "refs").iterdir()) == ["clipA_frame_0008.png", "clipB_frame_0008.png"]


def test_all_data_fold_trains_on_every_case_without_evaluation(finished: dict[str, Any]) -> None:
    root = finished["root"]
    result = run_study(finished["cfg"], root / "work", runs=["recipe"], folds=[-1], report=False)
    assert result.failures == []
    run_dir = root / "work" / "seed0" / "all" / "recipe"
    assert (run_dir / "models" / "model.pt").is_file()
    assert not (run_dir / "eval").exists()
    doc = json.loads((root / "work" / "folds" / "all" / "datalist.json").read_text())
    assert len(doc["training"]) == 6
    assert doc["test"] == []
    assert json.loads((root / "work" / "folds" / "all" / "plan.json").read_text())["num_cases"] == 6
    assert (
        main(["study", str(finished["config"]), "--work-dir", str(root / "work"), "--folds", "all", "--dry-run"]) == 0
    )
