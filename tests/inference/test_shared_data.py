"""Real data from ../shared/data: a JPEG 2000 DICOM series and an EndoVis frame (skipped where absent).

The thresholding "network" (class 1 iff HU > -650 after the lung window) makes the expected mask known, so these
check geometry on real headers, not segmentation quality.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
from PIL import Image

from medseg.inference import Predictor, Preprocessing, predict_files
from medseg.transforms import frame_transforms


def test_dicom_series_mask_lands_on_the_reference_grid(shared_data, tmp_path, threshold_net):
    base = shared_data / "totalsegmentator_example_ct_dicom"
    report = predict_files([base / "dicom"], tmp_path, Predictor(threshold_net()))
    assert report.exit_code == 0, report.results
    mask = nib.load(str(tmp_path / "dicom_seg.nii.gz"))
    assert mask.shape == (512, 512, 20)
    # The reference segmentation (LAS) describes the same world grid: compare after reorientation.
    ref = nib.as_closest_canonical(nib.load(str(base / "example_seg_dicom.nii.gz")))
    ours = nib.as_closest_canonical(mask)
    np.testing.assert_allclose(ours.affine, ref.affine, atol=1e-3)
    body = np.asarray(ours.dataobj) > 0
    labels = np.asarray(ref.dataobj)
    for organ in (1, 5, 52):  # spleen, liver, aorta: soft tissue, well above -650 HU
        inside = labels == organ
        assert inside.any()
        assert body[inside].mean() > 0.99, organ
    assert body.mean() < 0.9  # the air around the patient stays background


def test_endovis_frame_mask_has_the_frame_size(shared_data, tmp_path, threshold_net):
    frame = shared_data / "endovis2017_robotic_instrument_intel_sample" / "frame.png"
    pre = Preprocessing(
        volume=None, image=frame_transforms(["image"], train=False, resize_mode="none", normalize="unit")
    )
    report = predict_files([frame], tmp_path, Predictor(threshold_net(3)), preprocessing=pre)
    assert report.exit_code == 0, report.results
    mask = np.asarray(Image.open(tmp_path / "frame_seg.png"))
    rgb = np.asarray(Image.open(frame).convert("RGB")).astype(np.float64)
    assert mask.shape == (1080, 1920)
    mean = rgb.mean(-1)
    clear = np.abs(mean - 127.5) > 1
    np.testing.assert_array_equal(mask[clear], (mean[clear] > 127.5).astype(np.uint8))
