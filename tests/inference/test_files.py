"""The 2D paths (images, frame folders, a generated video), skip-existing/overwrite, and bad inputs."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from medseg.inference import MaskWriter, Predictor, Preprocessing, discover_input, predict_files
from medseg.transforms import frame_transforms


def _rgb_pre(**kwargs):
    options = {"resize_mode": "none", "normalize": "unit", **kwargs}
    return Preprocessing(volume=None, image=frame_transforms(["image"], train=False, **options))


def _gray_image(path, h=37, w=50):
    img = np.full((h, w), 30, np.uint8)
    img[5:20, 10:41] = 220  # a bright rectangle off-centre in a non-square, odd-sized image
    Image.fromarray(img).save(path)
    return img


def _frame(i, h=24, w=34):
    f = np.zeros((h, w, 3), np.uint8)
    f[3 + i : 13 + i, 4 + 2 * i : 20 + 2 * i] = (250, 240, 230)
    return f


def test_gray_image_mask_and_overlay(tmp_path, threshold_net):
    img = _gray_image(tmp_path / "slice.png")
    writer = MaskWriter(label_colors=[[0, 0, 0], [255, 0, 0]], alpha=0.5, save_probabilities=True)
    report = predict_files([tmp_path / "slice.png"], tmp_path / "out", Predictor(threshold_net()), writer=writer)
    assert report.exit_code == 0, report.results
    mask = np.asarray(Image.open(tmp_path / "out" / "slice_seg.png"))
    assert mask.shape == img.shape  # (H, W): no transpose
    np.testing.assert_array_equal(mask, (img > 127).astype(np.uint8))
    over = np.asarray(Image.open(tmp_path / "out" / "slice_overlay.png"))
    assert over.shape == (*img.shape, 3)
    assert over[10, 20].tolist() == [238, 110, 110]  # 0.5 * 220 + 0.5 * (255, 0, 0), rounded
    assert over[0, 0].tolist() == [30, 30, 30]  # background untouched
    prob = np.load(tmp_path / "out" / "slice_prob.npy")
    assert prob.shape == (2, *img.shape)


def test_frame_folder_rgb(tmp_path, threshold_net):
    frames = tmp_path / "clip01"
    frames.mkdir()
    for i in (0, 1, 2, 10):
        Image.fromarray(_frame(i)).save(frames / f"f{i}.png")
    report = predict_files([frames], tmp_path / "out", Predictor(threshold_net(3)), preprocessing=_rgb_pre())
    assert report.exit_code == 0, report.results
    assert discover_input(frames)[0].files[-1].name == "f10.png"  # natural order
    for i in (0, 1, 2, 10):
        mask = np.asarray(Image.open(tmp_path / "out" / "clip01" / f"f{i}_seg.png"))
        np.testing.assert_array_equal(mask, (_frame(i).mean(-1) > 127.5).astype(np.uint8))
        assert (tmp_path / "out" / "clip01" / f"f{i}_overlay.png").is_file()


def test_resized_frames_come_back_at_full_size(tmp_path, threshold_net):
    img = np.zeros((40, 60, 3), np.uint8)
    img[8:30, 12:44] = 255
    Image.fromarray(img).save(tmp_path / "big.png")
    pre = _rgb_pre(resize_mode="resize", spatial_size=[20, 30])
    predict_files([tmp_path / "big.png"], tmp_path / "out", Predictor(threshold_net(3)), preprocessing=pre)
    mask = np.asarray(Image.open(tmp_path / "out" / "big_seg.png")).astype(bool)
    truth = img.mean(-1) > 127.5
    assert mask.shape == truth.shape
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.95
    assert mask[12:26, 16:40].all()
    assert not mask[:5].any()


def _write_video(path, n=5):
    frames = [_frame(i) for i in range(n)]
    imageio.mimwrite(path, frames, fps=5, codec="libx264", macro_block_size=1, quality=9)
    with imageio.get_reader(path, format="FFMPEG") as reader:
        return [np.asarray(f) for f in reader]  # what a reader decodes (the codec is lossy)


def test_video_gives_frame_masks_and_overlay_video(tmp_path, threshold_net):
    decoded = _write_video(tmp_path / "clip.mp4")
    report = predict_files(
        [tmp_path / "clip.mp4"], tmp_path / "out", Predictor(threshold_net(3)), preprocessing=_rgb_pre()
    )
    assert report.exit_code == 0, report.results
    masks = sorted((tmp_path / "out" / "clip").glob("frame_*_seg.png"))
    assert len(masks) == len(decoded) == 5
    for frame, mask_path in zip(decoded, masks, strict=True):
        mask = np.asarray(Image.open(mask_path))
        mean = frame.mean(-1)
        clear = np.abs(mean - 127.5) > 2  # pixels well away from the threshold
        np.testing.assert_array_equal(mask[clear], (mean[clear] > 127.5).astype(np.uint8))
    with imageio.get_reader(tmp_path / "out" / "clip_overlay.mp4", format="FFMPEG") as reader:
        overlay = [np.asarray(f) for f in reader]
    assert len(overlay) == 5
    assert overlay[0].shape == decoded[0].shape


def test_skip_existing_resume_and_overwrite(tmp_path, threshold_net):
    frames = tmp_path / "seq"
    frames.mkdir()
    for i in range(3):
        Image.fromarray(_frame(i)).save(frames / f"{i}.png")
    _write_video(tmp_path / "v.mp4", n=3)
    inputs = [frames, tmp_path / "v.mp4"]
    out = tmp_path / "out"
    predictor, pre = Predictor(threshold_net(3)), _rgb_pre()
    assert predict_files(inputs, out, predictor, preprocessing=pre).exit_code == 0
    second = predict_files(inputs, out, predictor, preprocessing=pre)
    assert [r.status for r in second.results] == ["skipped", "skipped"]

    # An interrupted run: one frame's outputs missing, the video's overlay missing but its masks there.
    blank = np.zeros((24, 34), np.uint8)
    (out / "seq" / "1_seg.png").unlink()
    Image.fromarray(blank).save(out / "seq" / "0_seg.png")  # a kept output must not be recomputed
    (out / "v_overlay.mp4").unlink()
    Image.fromarray(blank).save(out / "v" / "frame_000002_seg.png")
    third = predict_files(inputs, out, predictor, preprocessing=pre)
    assert [r.status for r in third.results] == ["written", "written"]
    assert (out / "seq" / "1_seg.png").is_file()
    assert not np.asarray(Image.open(out / "seq" / "0_seg.png")).any()
    assert not np.asarray(Image.open(out / "v" / "frame_000002_seg.png")).any()
    assert (out / "v_overlay.mp4").is_file()

    forced = predict_files(inputs, out, predictor, preprocessing=pre, overwrite=True)
    assert [r.status for r in forced.results] == ["written", "written"]
    assert np.asarray(Image.open(out / "seq" / "0_seg.png")).any()
    assert np.asarray(Image.open(out / "v" / "frame_000002_seg.png")).any()
    assert not list(out.rglob(".*tmp*"))  # no temporary files left behind


def test_bad_inputs_fail_alone_with_one_line(tmp_path, threshold_net):
    good = tmp_path / "good.png"
    _gray_image(good)
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    inputs = [tmp_path / "junk.png", tmp_path / "notes.txt", tmp_path / "missing.nii.gz", tmp_path / "empty", good]
    report = predict_files(inputs, tmp_path / "out", Predictor(threshold_net()))
    assert [r.status for r in report.results] == ["failed"] * 4 + ["written"]
    for result, path in zip(report.results[:4], inputs, strict=False):
        assert str(path) in result.error
        assert "\n" not in result.error
        assert not result.unexpected
    assert report.exit_code == 2
    assert (tmp_path / "out" / "good_seg.png").is_file()


def test_wrong_channel_count_is_an_input_error(tmp_path, threshold_net):
    _gray_image(tmp_path / "gray.png")
    report = predict_files([tmp_path / "gray.png"], tmp_path / "out", Predictor(threshold_net(in_channels=2)))
    assert report.results[0].status == "failed"
    assert "1 channel(s), the network expects 2" in report.results[0].error
    assert report.exit_code == 2


def test_duplicate_output_names_are_refused(tmp_path, threshold_net):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _gray_image(tmp_path / sub / "x.png")
    report = predict_files(
        [tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"], tmp_path / "o", Predictor(threshold_net())
    )
    assert [r.status for r in report.results] == ["written", "failed"]
    assert "rename" in report.results[1].error


@pytest.mark.parametrize(
    ("name", "source"),
    [("a.nii.gz", "nifti"), ("b.nii", "nifti"), ("c.JPG", "image"), ("d.mp4", "video"), ("e.dcm", "volume_file")],
)
def test_discover_input_by_suffix(tmp_path, name, source):
    (tmp_path / name).write_bytes(b"")
    (case,) = discover_input(tmp_path / name)
    assert case.source == source
    assert case.name == name.split(".")[0]


def test_run_inference_raises_after_trying_every_input(tmp_path, threshold_net):
    from medseg.inference import run_inference

    _gray_image(tmp_path / "ok.png")
    with pytest.raises(RuntimeError, match=r"1 of 2 input\(s\) failed: .*missing\.png"):
        run_inference([tmp_path / "missing.png", tmp_path / "ok.png"], tmp_path / "o", Predictor(threshold_net()))
    assert (tmp_path / "o" / "ok_seg.png").is_file()


def test_video_progress_bar_has_the_frame_count(tmp_path, threshold_net, monkeypatch):
    import tqdm.auto

    _write_video(tmp_path / "clip.mp4", n=6)
    totals: dict[str, object] = {}

    class Recorder:
        def __init__(self, iterable=None, total=None, desc=None, **kwargs):
            totals[desc] = total
            self.iterable = iterable

        def __iter__(self):
            return iter(self.iterable)

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    report = predict_files(
        [tmp_path / "clip.mp4"], tmp_path / "out", Predictor(threshold_net(3)), preprocessing=_rgb_pre(), progress=True
    )
    assert report.exit_code == 0, report.results
    assert totals["clip"] == 6
