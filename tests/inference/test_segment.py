"""The in-memory entry point: arrays with an affine, nibabel images and RGB frames in, masks out, no files."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from medseg.inference import Predictor, Preprocessing, predict_files, segment
from medseg.transforms import frame_transforms


def _volume():
    vol = np.full((14, 12, 5), -1000.0, np.float32)
    vol[3:9, 2:7, 1:4] = 40.0
    vol[10:13, 8:11, 2] = -300.0  # above -650 HU: foreground too
    return vol


AFFINE = np.array([[-0.7, 0.0, 0.0, 10.0], [0.0, -0.8, 0.0, 5.0], [0.0, 0.0, 2.5, -3.0], [0.0, 0.0, 0.0, 1.0]])


def test_array_with_affine_equals_the_file_route(tmp_path, threshold_net):
    vol = _volume()
    seg = segment(vol, Predictor(threshold_net()), affine=AFFINE)
    assert seg.labels.shape == vol.shape
    np.testing.assert_array_equal(seg.labels, (vol > -650).astype(np.uint8))  # LPS-like affine: reoriented and back
    np.testing.assert_allclose(seg.affine, AFFINE)
    nib.save(nib.Nifti1Image(vol, AFFINE), str(tmp_path / "v.nii.gz"))
    predict_files([tmp_path / "v.nii.gz"], tmp_path / "out", Predictor(threshold_net()))
    from_file = np.asarray(nib.load(str(tmp_path / "out" / "v_seg.nii.gz")).dataobj)
    np.testing.assert_array_equal(seg.labels, from_file)


def test_nibabel_image_gives_a_mask_with_its_header(threshold_net):
    image = nib.Nifti1Image(_volume(), AFFINE)
    seg = segment(image, Predictor(threshold_net()))
    mask = seg.to_nifti()
    assert mask.shape == image.shape
    np.testing.assert_array_equal(mask.affine, image.affine)
    np.testing.assert_array_equal(np.asarray(mask.dataobj), (_volume() > -650).astype(np.uint8))


def test_rgb_frame_in_memory(threshold_net):
    frame = np.zeros((20, 26, 3), np.uint8)
    frame[5:12, 4:20] = 240
    pre = Preprocessing(
        volume=None, image=frame_transforms(["image"], train=False, resize_mode="none", normalize="unit")
    )
    seg = segment(frame, Predictor(threshold_net(3)), pre)
    np.testing.assert_array_equal(seg.labels, (frame.mean(-1) > 127.5).astype(np.uint8))
    assert seg.display is not None
    assert seg.display.shape == frame.shape


@pytest.mark.parametrize(
    ("shape", "kwargs", "match"),
    [((4, 5, 6, 7), {}, "volume or an image"), ((4, 5), {"kind": "series"}, "kind must be")],
)
def test_bad_arrays_are_refused(threshold_net, shape, kwargs, match):
    with pytest.raises(ValueError, match=match):
        segment(np.zeros(shape, np.float32), Predictor(threshold_net()), **kwargs)


def test_video_frames_never_touch_the_disk(tmp_path, threshold_net, monkeypatch):
    import imageio.v2 as imageio

    frames = [np.full((16, 22, 3), 40 + 50 * i, np.uint8) for i in range(4)]
    imageio.mimwrite(tmp_path / "clip.mp4", frames, fps=4, codec="libx264", macro_block_size=1, quality=9)

    def no_file_reads(self, path, kind, **kwargs):
        raise AssertionError(f"a video frame went through a file: {path}")

    monkeypatch.setattr(Preprocessing, "read", no_file_reads)
    pre = Preprocessing(
        volume=None, image=frame_transforms(["image"], train=False, resize_mode="none", normalize="unit")
    )
    report = predict_files([tmp_path / "clip.mp4"], tmp_path / "out", Predictor(threshold_net(3)), preprocessing=pre)
    assert report.exit_code == 0, report.results
    assert len(list((tmp_path / "out" / "clip").glob("frame_*_seg.png"))) == 4
