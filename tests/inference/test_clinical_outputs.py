"""``medseg predict --output-type nifti,dicom-seg,rtstruct --volumes`` on DICOM series: every output, read back.

The series is generated (tests/data_tools/dicom_factory.py) and filled with a phantom in HU (air with a box of
soft tissue); the bundle's "network" is a 1x1 convolution that marks HU > -650 after the lung window, so the
expected mask is the box, known without running any model. The RTSTRUCT is read back with
``data_tools.rtstruct.rtstruct_to_nifti`` (our ``medseg-data rtstruct2nifti``) and must give the NIfTI mask.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_tools"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "hostile"))
from _predict_helpers import threshold_conv
from dicom_factory import SeriesSpec, write_ct_series

from data_tools.rtstruct import rtstruct_to_nifti
from medseg.cli.main import main

CLASSES = ["background", "lesion"]
BOX = (slice(5, 15), slice(4, 12), slice(1, 4))  # rows, columns, slices of the tissue box


def _series(folder: Path, **kwargs: Any) -> SeriesSpec:
    """5 slices of 20 x 16 pixels (0.8 x 0.6 mm, 2.5 mm apart): air (-1000 HU) and a box of tissue (+40 HU)."""
    spec = write_ct_series(folder, n_slices=5, rows=20, cols=16, **kwargs)
    for path, s in zip(spec.files, spec.slice_indices, strict=True):
        ds = pydicom.dcmread(path)
        hu = np.full((spec.rows, spec.cols), -1000.0)
        if BOX[2].start <= s < BOX[2].stop:
            hu[BOX[0], BOX[1]] = 40.0
        ds.PixelData = np.rint((hu - spec.intercept) / spec.slope).astype("<u2").tobytes()
        ds.save_as(path)
    return spec


def _bundle(root: Path) -> Path:
    """A bundle (outside medseg: run with --trust-bundle) whose model is the threshold convolution."""
    from medseg.checkpoint import save_checkpoint
    from medseg.inference import inference_config

    network = {"_target_": "torch.nn.Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 1}
    config = inference_config(network, predictor={"roi_size": [16, 16], "amp": None}, device="cpu")
    (root / "configs").mkdir(parents=True)
    (root / "models").mkdir()
    (root / "configs" / "inference.json").write_text(json.dumps(config, indent=2))
    save_checkpoint(root / "models" / "model.pt", threshold_conv().state_dict(), {"classes": CLASSES})
    return root


def _predict(bundle: Path, inputs: list[Path], out: Path, *options: str) -> int:
    args = ["predict", "--bundle", str(bundle), "--trust-bundle", "-i", *map(str, inputs), "-o", str(out)]
    return main([*args, "--no-progress", *options])


ALL = ("--output-type", "nifti,dicom-seg,rtstruct")


def test_all_three_outputs_of_a_dicom_series(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import highdicom as hd

    from medseg.inference.dicom_outputs import mask_on_series, read_source_series

    spec = _series(tmp_path / "ct")
    bundle = _bundle(tmp_path / "bundle")
    out = tmp_path / "out"
    assert _predict(bundle, [spec.folder], out, *ALL, "--volumes") == 0, capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "ct_prediction.json",
        "ct_rtstruct.dcm",
        "ct_seg.dcm",
        "ct_seg.nii.gz",
        "ct_seg_labels.json",
        "volumes.csv",
    ]
    nifti = nib.load(str(out / "ct_seg.nii.gz"))
    mask = np.asarray(nifti.dataobj)
    # the mask is the box: 10 rows x 8 columns x 3 slices = 240 voxels, in the series' own grid
    assert int(mask.sum()) == 240
    series = read_source_series(spec.folder)
    on_series = mask_on_series(mask, nifti.affine, series)  # (slice, row, column) in the series' order
    expected = np.zeros_like(on_series)
    expected[BOX[2], BOX[0], BOX[1]] = 1
    np.testing.assert_array_equal(on_series, expected)

    # RTSTRUCT, read back by our own rtstruct2nifti onto the NIfTI's grid: the same mask
    rt = pydicom.dcmread(out / "ct_rtstruct.dcm")
    assert [r.ROIName for r in rt.StructureSetROISequence] == ["lesion"]
    back = rtstruct_to_nifti(out / "ct_rtstruct.dcm", out / "ct_seg.nii.gz", tmp_path / "back")
    assert [w.roi for w in back] == ["lesion"]
    np.testing.assert_array_equal(np.asarray(nib.load(back[0].path).dataobj), mask)

    # DICOM-SEG: readable by highdicom, labelled by the class name, on the source instances
    seg = hd.seg.segread(out / "ct_seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lesion"]
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == spec.series_uid
    assert seg.FrameOfReferenceUID == spec.frame_uid
    pixels = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=series.sop_instance_uids, combine_segments=True, relabel=False
    )
    np.testing.assert_array_equal(pixels, expected)

    # label names beside the NIfTI mask, and the volume: 240 voxels of 0.8 x 0.6 x 2.5 mm = 1.2 mm^3 -> 0.288 mL
    labels = json.loads((out / "ct_seg_labels.json").read_text(encoding="utf-8"))
    assert labels["labels"] == {"0": "background", "1": "lesion"}
    assert labels["provenance"]["input"] == "ct"
    assert labels["provenance"]["model_file"] == "model.pt"
    model = (tmp_path / "bundle" / "models" / "model.pt").read_bytes()
    assert labels["provenance"]["model_sha256"] == hashlib.sha256(model).hexdigest()  # as sha256sum prints it
    with (out / "volumes.csv").open(newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["case"] == "ct"
    assert float(row["lesion_ml"]) == pytest.approx(0.288, abs=1e-4)
    assert float(row["voxel_ml"]) == pytest.approx(0.0012)


def test_the_provenance_covers_the_new_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = _series(tmp_path / "ct")
    bundle = _bundle(tmp_path / "bundle")
    out = tmp_path / "out"
    assert _predict(bundle, [spec.folder], out, *ALL, "--volumes") == 0
    capsys.readouterr()
    assert _predict(bundle, [spec.folder], out, *ALL, "--volumes") == 0
    assert "1 skipped" in capsys.readouterr().out
    assert (out / "volumes.csv").is_file()  # the volumes of a skipped case come from its record
    (out / "ct_rtstruct.dcm").unlink()  # an output missing: the case is recomputed
    assert _predict(bundle, [spec.folder], out, *ALL) == 0
    assert "1 written" in capsys.readouterr().out
    assert (out / "ct_rtstruct.dcm").is_file()
    # other output options: recomputed, and no DICOM file of the earlier settings is left behind
    assert _predict(bundle, [spec.folder], out, "--output-type", "nifti") == 0
    assert "1 written" in capsys.readouterr().out
    assert not list(out.glob("*.dcm"))


def test_dicom_outputs_are_refused_for_nifti_inputs_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    volume = np.full((12, 10, 3), -1000.0, np.float32)
    volume[2:8, 2:6, 1] = 40.0
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.5, 1.0])), str(tmp_path / "scan.nii.gz"))
    bundle = _bundle(tmp_path / "bundle")
    code = _predict(bundle, [tmp_path / "scan.nii.gz"], tmp_path / "out", "--output-type", "nifti,rtstruct")
    captured = capsys.readouterr()
    assert code == 2
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1
    assert "rtstruct cannot be written for a nifti input (they need a DICOM series input)" in errors[0]
    assert not (tmp_path / "out" / "scan_seg.nii.gz").exists()  # refused before any work
    with pytest.raises(SystemExit) as info:
        _predict(bundle, [tmp_path / "scan.nii.gz"], tmp_path / "out", "--output-type", "nifti,dicom-sr")
    assert info.value.code == 2


def test_a_nifti_mask_always_gets_its_label_names(tmp_path: Path) -> None:
    volume = np.full((12, 10, 3), -1000.0, np.float32)
    volume[2:8, 2:6, 1] = 40.0
    nib.save(nib.Nifti1Image(volume, np.diag([0.8, 0.8, 2.5, 1.0])), str(tmp_path / "scan.nii.gz"))
    assert _predict(_bundle(tmp_path / "bundle"), [tmp_path / "scan.nii.gz"], tmp_path / "out", "--volumes") == 0
    labels = json.loads((tmp_path / "out" / "scan_seg_labels.json").read_text(encoding="utf-8"))
    assert labels["labels"] == {"0": "background", "1": "lesion"}
    assert labels["mask"] == "scan_seg.nii.gz"
    with (tmp_path / "out" / "volumes.csv").open(newline="", encoding="utf-8") as fh:
        (row,) = list(csv.DictReader(fh))
    assert float(row["lesion_ml"]) == pytest.approx(24 * 0.8 * 0.8 * 2.5 / 1000)  # 6 x 4 x 1 voxels of 1.6 mm^3


@pytest.mark.slow  # 20 s: 20 slices of 512 x 512 pixels, a body outline with every lung vessel as a hole
def test_the_shared_dicom_series_gets_all_three_outputs(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real TotalSegmentator example series (512 x 512 x 20, JPEG 2000): body = HU > -650."""
    import highdicom as hd

    series_dir = shared_data / "totalsegmentator_example_ct_dicom" / "dicom"
    out = tmp_path / "out"
    whole_slices = ("--override", "predictor#roi_size=[512,512]")
    assert _predict(_bundle(tmp_path / "bundle"), [series_dir], out, *ALL, *whole_slices) == 0, capsys.readouterr().err
    mask = np.asarray(nib.load(str(out / "dicom_seg.nii.gz")).dataobj)
    assert mask.shape == (512, 512, 20)
    assert 0.05 < mask.mean() < 0.9  # a body, not an empty or full mask
    back = rtstruct_to_nifti(out / "dicom_rtstruct.dcm", out / "dicom_seg.nii.gz", tmp_path / "back")
    np.testing.assert_array_equal(np.asarray(nib.load(back[0].path).dataobj), mask)
    seg = hd.seg.segread(out / "dicom_seg.dcm")
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["lesion"]
    assert int(seg.NumberOfFrames) == 20  # every slice holds body
