"""endovis: part-mask merging, both layouts, ROI crop, failures; video frame extraction; the EndoVis sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _convert_factory import gray_image, make_endovis_challenge, part_mask, run_cli, save_gray, write_video
from PIL import Image

from data_tools.endovis import convert_endovis, crop_roi, extract_video_frames, find_frames, merge_part_masks


def _expected_parts(masks: list[np.ndarray]) -> np.ndarray:
    """Independent reference: later masks overwrite earlier ones where they are non-zero; value // 10 = class."""
    out = np.zeros_like(masks[0])
    for m in masks:
        out = np.where(m > 0, m // 10, out)
    return out


def test_merge_hand_example_and_overlap_order() -> None:
    left = np.array([[10, 20, 0], [30, 40, 0]], np.uint8)
    right = np.array([[0, 30, 10], [0, 0, 0]], np.uint8)
    # parts: 10->1, 20->2, 30->3, 40->4; at (0, 1) both are set and the later (right) mask wins: 3
    assert merge_part_masks([left, right], "parts").tolist() == [[1, 3, 1], [3, 4, 0]]
    assert merge_part_masks([left, right], "binary").tolist() == [[1, 1, 1], [1, 1, 0]]
    with pytest.raises(ValueError, match=r"right\.png: part mask values \[15\]"):
        merge_part_masks([left, np.full_like(left, 15)], "parts", names=["left.png", "right.png"])
    with pytest.raises(ValueError, match="differs from"):
        merge_part_masks([left, left[:1]], "binary")
    with pytest.raises(ValueError, match="task"):
        merge_part_masks([left], "type")  # type: ignore[arg-type]


@pytest.mark.parametrize("task", ["parts", "binary"])
def test_challenge_layout(tmp_path: Path, task: str) -> None:
    truth = make_endovis_challenge(tmp_path / "src")
    out = tmp_path / "out"
    report = convert_endovis(tmp_path / "src", out, task=task)  # type: ignore[arg-type]
    assert report.ok
    assert report.converted == 6
    doc = json.loads((out / "datalist.json").read_text())
    assert [(e["sequence"], e["frame"]) for e in doc["training"]] == [
        (f"instrument_dataset_{s}", f) for s in (1, 2) for f in range(3)
    ]
    for e in doc["training"]:
        masks = truth[(e["sequence"], Path(e["image"]).stem)][:2]  # Other_labels left out by default
        expected = _expected_parts(masks) if task == "parts" else (_expected_parts(masks) > 0).astype(np.uint8)
        np.testing.assert_array_equal(np.asarray(Image.open(out / e["label"])), expected)
        assert e["label"].startswith(f"labels_{task}/")
        src = tmp_path / "src" / e["sequence"] / "left_frames" / Path(e["image"]).name
        np.testing.assert_array_equal(np.asarray(Image.open(out / e["image"])), np.asarray(Image.open(src)))


def test_include_other_and_single_sequence_folder(tmp_path: Path) -> None:
    truth = make_endovis_challenge(tmp_path / "src", sequences=1, frames=1)
    seq = tmp_path / "src" / "instrument_dataset_1"
    assert len(find_frames(seq)) == 1
    report = convert_endovis(seq, tmp_path / "out", task="parts", include_other=True)
    masks = truth[("instrument_dataset_1", "frame000")]
    # sorted folder order: Left..., Other_labels, Right...: the reference applies them in that order
    ordered = [masks[0], masks[2], masks[1]]
    label = np.asarray(Image.open(tmp_path / "out" / "labels_parts" / "instrument_dataset_1" / "frame000.png"))
    np.testing.assert_array_equal(label, _expected_parts(ordered))
    assert report.ok


def test_failures_are_reported_per_frame(tmp_path: Path) -> None:
    make_endovis_challenge(tmp_path / "src", sequences=1, frames=4, other=False)
    gt = tmp_path / "src" / "instrument_dataset_1" / "ground_truth"
    (gt / "Left_Prograsp_Forceps_labels" / "frame001.png").unlink()
    save_gray(gt / "Right_Large_Needle_Driver_labels" / "frame002.png", np.full((24, 32), 15, np.uint8))
    save_gray(gt / "Right_Large_Needle_Driver_labels" / "frame003.png", np.zeros((20, 32), np.uint8))
    report = convert_endovis(tmp_path / "src", tmp_path / "out")
    assert report.converted == 1
    text = "\n".join(report.failure_lines())
    assert f"{gt / 'Left_Prograsp_Forceps_labels' / 'frame001.png'}: file not found" in text
    assert f"{gt / 'Right_Large_Needle_Driver_labels' / 'frame002.png'}: part mask values [15]" in text
    assert "frame003.png is 32x20" in text
    assert sorted(p.name for p in (tmp_path / "out" / "labels_parts" / "instrument_dataset_1").iterdir()) == [
        "frame000.png"
    ]


def test_no_frames_and_test_sequences_without_ground_truth(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no EndoVis frames with masks found"):
        convert_endovis(tmp_path / "empty", tmp_path / "out")
    save_gray(tmp_path / "t" / "instrument_dataset_9" / "left_frames" / "frame000.png", np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="no ground_truth folder"):
        convert_endovis(tmp_path / "t", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_roi_crop_offsets(tmp_path: Path) -> None:
    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[28, 320] = (255, 1, 2)  # first pixel of the ROI
    frame[1051, 1599] = (3, 4, 5)  # last pixel of the ROI
    frame[27, 320] = frame[28, 319] = frame[1052, 1599] = (9, 9, 9)  # just outside
    cropped = crop_roi(frame, "f.png")
    assert cropped.shape == (1024, 1280, 3)
    assert cropped[0, 0].tolist() == [255, 1, 2]
    assert cropped[-1, -1].tolist() == [3, 4, 5]
    assert int((cropped == 9).sum()) == 0
    with pytest.raises(ValueError, match=r"f\.png: ROI crop needs a 1920x1080 frame, got 1280x1024"):
        crop_roi(cropped, "f.png")


def test_flat_layout_with_crop(tmp_path: Path) -> None:
    left = np.zeros((1080, 1920), np.uint8)
    left[100:200, 400:500] = 10
    right = np.zeros((1080, 1920), np.uint8)
    right[150:160, 450:1700] = 30
    save_gray(tmp_path / "src" / "frame.png", np.zeros((1080, 1920, 3), np.uint8))
    save_gray(tmp_path / "src" / "left_frame.png", left)
    save_gray(tmp_path / "src" / "right_frame.png", right)
    (records,) = find_frames(tmp_path / "src")
    assert [m.name for m in records.masks] == ["left_frame.png", "right_frame.png"]
    assert convert_endovis(tmp_path / "src", tmp_path / "out", task="parts", crop=True).ok
    label = np.asarray(Image.open(tmp_path / "out" / "labels_parts" / "src" / "frame.png"))
    assert label.shape == (1024, 1280)
    expected = _expected_parts([left, right])[28:1052, 320:1600]
    np.testing.assert_array_equal(label, expected)


def _ramp_video(path: Path, n: int = 12, faststart: bool = False) -> Path:
    """Frame i is a flat grey of level 12*i, so the frame number can be read back from the pixels."""
    return write_video(path, [np.full((48, 64, 3), 12 * i, np.uint8) for i in range(n)], faststart=faststart)


def test_video_frames_stride_start_and_max(tmp_path: Path) -> None:
    video = _ramp_video(tmp_path / "clip.mp4")
    report = extract_video_frames(video, tmp_path / "out", stride=3, start=1, max_frames=3)
    assert report.converted == 3
    doc = json.loads((tmp_path / "out" / "datalist.json").read_text())
    assert [e["frame"] for e in doc["test"]] == [1, 4, 7]
    for e in doc["test"]:
        assert "label" not in e
        arr = np.asarray(Image.open(tmp_path / "out" / e["image"]))
        assert arr.shape == (48, 64, 3)
        assert abs(float(arr.mean()) - 12 * e["frame"]) < 3  # lossy codec: within a few grey levels
    assert extract_video_frames(video, tmp_path / "all").converted == 12


def test_video_bad_input_leaves_nothing(tmp_path: Path) -> None:
    full = _ramp_video(tmp_path / "fs.mp4", n=20, faststart=True)
    data = full.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(ValueError, match=r"cut\.mp4: truncated or damaged video: decoded \d+ frames, the header"):
        extract_video_frames(tmp_path / "cut.mp4", tmp_path / "o1")
    (tmp_path / "text.mp4").write_text("not a video")
    with pytest.raises(ValueError, match=r"text\.mp4: cannot decode video"):
        extract_video_frames(tmp_path / "text.mp4", tmp_path / "o2")
    with pytest.raises(ValueError, match=r"ROI crop needs a 1920x1080 frame"):
        extract_video_frames(full, tmp_path / "o3", crop=True)
    with pytest.raises(ValueError, match="no frame selected"):
        extract_video_frames(full, tmp_path / "o4", start=50)
    with pytest.raises(ValueError, match="stride"):
        extract_video_frames(full, tmp_path / "o5", stride=0)
    for name in ("o1", "o2", "o3", "o4", "o5"):
        assert not (tmp_path / name).exists() or not list((tmp_path / name).rglob("*.png"))


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_endovis_challenge(tmp_path / "src", sequences=1, frames=2, other=False)
    assert run_cli(["endovis", str(tmp_path / "src"), str(tmp_path / "out"), "--task", "binary"]) == 0
    assert "converted 2 frames" in capsys.readouterr().out
    video = _ramp_video(tmp_path / "clip.mp4", n=4)
    assert run_cli(["endovis", str(video), str(tmp_path / "v"), "--stride", "2"]) == 0
    assert "extracted 2 frames" in capsys.readouterr().out
    assert run_cli(["endovis", str(video), str(tmp_path / "v"), "--task", "parts"]) == 2
    assert "--task apply to EndoVis folders" in capsys.readouterr().err
    assert run_cli(["endovis", str(tmp_path / "src"), str(tmp_path / "o"), "--max-frames", "2"]) == 2
    assert run_cli(["endovis", str(tmp_path / "nope"), str(tmp_path / "o")]) == 2
    (tmp_path / "notes.txt").write_text("x")
    assert run_cli(["endovis", str(tmp_path / "notes.txt"), str(tmp_path / "o")]) == 2
    assert "without a video suffix" in capsys.readouterr().err
    assert run_cli(["endovis", "--help"]) == 0


def test_endovis_sample(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "endovis2017_robotic_instrument_intel_sample"
    if not src.is_dir():
        pytest.skip("EndoVis sample not present")
    report = convert_endovis(src, tmp_path / "out", task="parts", crop=True)
    assert report.ok
    (entry,) = json.loads((tmp_path / "out" / "datalist.json").read_text())["training"]
    label = np.asarray(Image.open(tmp_path / "out" / entry["label"]))
    image = np.asarray(Image.open(tmp_path / "out" / entry["image"]))
    assert label.shape == (1024, 1280)
    assert image.shape == (1024, 1280, 3)
    left = np.asarray(Image.open(src / "left_frame.png"))
    right = np.asarray(Image.open(src / "right_frame.png"))
    full = _expected_parts([left, right])
    # all instrument pixels lie inside the ROI, so cropping loses none of them
    np.testing.assert_array_equal(label, full[28:1052, 320:1600])
    assert int((full > 0).sum()) == int((label > 0).sum())
    # README: combined foreground ~0.134 of the 1920x1080 frame
    assert (full > 0).mean() == pytest.approx(0.134, abs=0.003)
    # frames of the mp4: two frames, cropped
    video = extract_video_frames(src / "short_source.mp4", tmp_path / "v", stride=10, max_frames=2, crop=True)
    frames = json.loads((tmp_path / "v" / "datalist.json").read_text())["test"]
    assert video.converted == 2
    assert [f["frame"] for f in frames] == [0, 10]
    assert np.asarray(Image.open(tmp_path / "v" / frames[0]["image"])).shape == (1024, 1280, 3)


def test_factory_masks_have_parts() -> None:
    assert set(np.unique(part_mask(24, 32, 0)).tolist()) <= {0, 10, 20, 30}
    assert gray_image(3, 3, 1).dtype == np.uint8
