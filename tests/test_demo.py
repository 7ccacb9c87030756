"""``medseg demo``: stages keyed on their options, overlays, the volume score and its explanation."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from medseg.demo import StageEvent, VolumeScore, _Stages, run_demo, score_volume, write_slice_overlays


# ------------------------------------------------------------------------------------------------------ stages
class _Counter:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls = 0

    def __call__(self) -> tuple[str, dict[str, Any]]:
        self.calls += 1
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"run{self.calls}").write_text("x", encoding="utf-8")
        return f"result {self.calls}", {"calls": self.calls}


def _stage(out: Path, options: dict[str, Any], compute: _Counter, **kw: Any) -> tuple[list[StageEvent], Any]:
    events: list[StageEvent] = []
    stages = _Stages(out, total=1, on_stage=events.append)
    fingerprint, values = stages.run("s", "stage", options, [compute.folder], compute, **kw)
    return events, (fingerprint, values)


def test_stage_is_reused_with_the_same_options_and_recomputed_when_they_change(tmp_path: Path) -> None:
    compute = _Counter(tmp_path / "s")
    events, (fp1, values) = _stage(tmp_path, {"size": 64}, compute)
    assert [e.state for e in events] == ["running", "done"]
    assert events[-1].detail == "result 1"
    assert values == {"calls": 1}

    events, (fp2, values) = _stage(tmp_path, {"size": 64}, compute)
    assert [e.state for e in events] == ["reused"]
    assert events[0].detail == "result 1"  # the recorded numbers, not recomputed ones
    assert (fp2, values, compute.calls) == (fp1, {"calls": 1}, 1)

    events, (fp3, values) = _stage(tmp_path, {"size": 128}, compute)
    assert [e.state for e in events] == ["running", "done"]
    assert fp3 != fp1
    assert compute.calls == 2
    # the stale outputs were cleared before recomputing
    assert sorted(p.name for p in compute.folder.iterdir()) == ["run2"]
    record = json.loads((tmp_path / "demo.json").read_text(encoding="utf-8"))
    assert record["stages"]["s"]["options"] == {"size": 128}


def test_interrupted_stage_is_redone_and_resumable_stage_keeps_its_files(tmp_path: Path) -> None:
    def fail() -> tuple[str, dict[str, Any]]:
        (tmp_path / "s").mkdir(exist_ok=True)
        (tmp_path / "s" / "last.pt").write_text("checkpoint", encoding="utf-8")
        raise KeyboardInterrupt

    stages = _Stages(tmp_path, total=1, on_stage=None)
    with pytest.raises(KeyboardInterrupt):
        stages.run("s", "stage", {"a": 1}, [tmp_path / "s"], fail, resumable=True)
    compute = _Counter(tmp_path / "s")
    events, _ = _stage(tmp_path, {"a": 1}, compute, resumable=True)
    assert events[-1].state == "done"
    assert (tmp_path / "s" / "last.pt").is_file()  # resumed, not cleared

    with pytest.raises(KeyboardInterrupt):
        _Stages(tmp_path, total=1, on_stage=None).run("t", "stage", {"a": 1}, [tmp_path / "s"], fail)
    _stage_t = _Stages(tmp_path, total=1, on_stage=None)
    _stage_t.run("t", "stage", {"a": 1}, [tmp_path / "s"], _Counter(tmp_path / "s"))
    assert not (tmp_path / "s" / "last.pt").exists()  # not resumable: cleared and redone


def test_refuses_an_output_folder_with_other_files(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        run_demo(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("size", [0, 40, -16])
def test_bad_size(tmp_path: Path, size: int) -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        run_demo(tmp_path / "out", size=size)


# ---------------------------------------------------------------------------------------- volume and overlays
def test_volume_score_separates_the_end_slices_without_lungs(tmp_path: Path) -> None:
    from medseg.data.synthetic import make_ct_volume

    vol = make_ct_volume(tmp_path / "ct.nii.gz", shape=(32, 32, 16), seed=1, label_path=tmp_path / "ref.nii.gz")
    image = np.asarray(nib.load(str(vol.image)).dataobj)
    ref = np.asarray(nib.load(str(vol.label)).dataobj).astype(np.uint8)
    # a prediction that is the reference plus 50 false-positive voxels on the first slice (no lungs there)
    pred = ref.copy()
    pred[10:15, 10:20, 0] = 1
    mask = tmp_path / "ct_seg.nii.gz"
    nib.save(nib.Nifti1Image(pred, vol.affine), str(mask))
    score = score_volume(vol.image, mask, vol.label)
    assert score.slices == 16
    # make_ct_volume leaves lungs out of the slices where |linspace(-1, 1, 16)| > 0.92: the first and the last
    assert score.lung_slices == 14
    assert score.false_positives_outside == 50
    assert score.iou_lung_slices == pytest.approx(1.0)
    assert score.iou == pytest.approx(ref.sum() / (ref.sum() + 50))
    assert image.shape == pred.shape


def test_slice_overlays_show_prediction_and_reference(tmp_path: Path) -> None:
    from PIL import Image

    gray = np.full((20, 30), 100, dtype=np.uint8)
    pred = np.zeros((20, 30), dtype=np.uint8)
    pred[2:6, 2:6] = 1
    ref = np.zeros((20, 30), dtype=np.uint8)
    ref[10:16, 10:16] = 1
    paths = []
    for name, arr in (("img.nii.gz", gray), ("img_seg.nii.gz", pred), ("ref.nii.gz", ref)):
        nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / name))
        paths.append(tmp_path / name)
    (png,) = write_slice_overlays([(paths[0], paths[1], paths[2])])
    assert png == tmp_path / "img_overlay.png"
    big = np.asarray(Image.open(png).convert("RGB")).astype(int)
    # enlarged by the smallest integer factor that makes the short side >= 256: ceil(256 / 20) = 13
    assert big.shape == (260, 390, 3)
    rgb = big[::13, ::13]
    assert (np.repeat(np.repeat(rgb, 13, axis=0), 13, axis=1) == big).all()
    # red at half opacity over gray 100: (100 + 255) / 2 = 177.5 -> 178; green and blue 100 / 2 = 50
    assert rgb[3, 3].tolist() == [178, 50, 50]
    assert rgb[10, 12].tolist() == [0, 255, 0]  # reference outline
    assert rgb[12, 12].tolist() == [100, 100, 100]  # inside the reference: left visible
    assert rgb[0, 29].tolist() == [100, 100, 100]


# -------------------------------------------------------------------------------------------------------- CLI
def test_stage_printer_one_line_per_stage() -> None:
    from medseg.cli.demo import StagePrinter

    stream = io.StringIO()
    printer = StagePrinter(stream)
    printer(StageEvent(1, 2, "data", "running"))
    printer(StageEvent(1, 2, "data", "done", "8 slices -> data/", 1.2))
    printer(StageEvent(2, 2, "training", "reused", "mIoU 0.9 -> runs/", 95.0))
    assert stream.getvalue().splitlines() == [
        "[1/2] data: 8 slices -> data/ (1 s)",
        "[2/2] training: mIoU 0.9 -> runs/ (reused from the earlier run)",
    ]


def test_cli_rejects_a_bad_size_in_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from medseg.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["demo", "--output", str(tmp_path / "out"), "--size", "40"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert "--size" in err[0]
    assert "multiple of 16" in err[0]
    assert not (tmp_path / "out").exists()


# -------------------------------------------------------------------------------------------------- end to end
@pytest.mark.slow
def test_demo_reuses_and_recomputes_by_options(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    kw: dict[str, Any] = {"size": 32, "num_cases": 5, "pretrain_epochs": 1, "finetune_epochs": 1}
    first = run_demo(out, **kw)
    assert [e.state for e in first.stages] == ["done"] * 4
    assert sorted(p.name for p in first.prediction_dir.glob("*_overlay.png")) == ["case_004_overlay.png"]
    assert (out / "volume" / "prediction" / "ct_volume_overlay.png").is_file()
    assert isinstance(first.volume_score, VolumeScore)
    ce_model = out / "runs" / "ce_pretrain" / "models" / "model.pt"
    ce_time = ce_model.stat().st_mtime_ns

    again = run_demo(out, **kw)
    assert [e.state for e in again.stages] == ["reused"] * 4
    assert again.evaluation == first.evaluation
    assert [e.detail for e in again.stages] == [e.detail for e in first.stages]

    # only the fine-tuning changed: the data and the CE model are kept
    longer = run_demo(out, **{**kw, "finetune_epochs": 2})
    assert [e.state for e in longer.stages] == ["reused", "done", "done", "done"]
    assert ce_model.stat().st_mtime_ns == ce_time
    assert longer.runs["finetune"]["last_epoch"]["epoch"] == 2

    # another size: everything is recomputed at that size (this failed when inputs were overwritten in place)
    bigger = run_demo(out, **{**kw, "size": 48})
    assert [e.state for e in bigger.stages] == ["done"] * 4
    assert nib.load(str(out / "data" / "images" / "case_004.nii.gz")).shape[:2] == (48, 48)
    assert nib.load(str(out / "volume" / "input" / "ct_volume.nii.gz")).shape == (48, 48, 16)
