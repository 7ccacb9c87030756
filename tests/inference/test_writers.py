"""Writers: palette PNG masks, one class per output kind, and adding a kind through the registry."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medseg.inference import WRITERS, MaskWriter, OutputWriter, Predictor, predict_files, register_writer


def test_png_masks_are_palette_images_with_label_values(tmp_path, threshold_net):
    img = np.full((18, 25), 20, np.uint8)
    img[3:9, 4:15] = 230
    Image.fromarray(img).save(tmp_path / "s.png")
    writer = MaskWriter(label_colors=[[0, 0, 0], [255, 0, 0]])
    predict_files([tmp_path / "s.png"], tmp_path / "out", Predictor(threshold_net()), writer=writer)
    with Image.open(tmp_path / "out" / "s_seg.png") as im:
        assert im.mode == "P"  # viewable: label 1 shows red
        labels = np.asarray(im)
        rgb = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(labels, (img > 127).astype(np.uint8))  # the values are still the labels
    assert rgb[5, 6].tolist() == [255, 0, 0]
    assert rgb[0, 0].tolist() == [0, 0, 0]


def test_writers_by_case(tmp_path):
    from medseg.inference.discovery import InputCase

    writer = MaskWriter(save_probabilities=True)
    volume = InputCase(tmp_path / "ct.nii.gz", "nifti", "ct")
    image = InputCase(tmp_path / "x.png", "image", "x")
    video = InputCase(tmp_path / "v.mp4", "video", "v")
    assert [w.kind for w in writer.writers_for(volume)] == ["nifti", "probabilities"]
    assert [w.kind for w in writer.writers_for(image)] == ["png", "overlay", "probabilities"]
    assert [w.kind for w in writer.writers_for(video)] == ["png"]


def test_a_new_output_kind_is_one_class(tmp_path, threshold_net):
    class CountsWriter(OutputWriter):
        """A CSV of voxel counts per label, standing in for a DICOM-SEG or RTSTRUCT writer."""

        kind = "counts-test"

        def accepts(self, case):
            return case.source in ("nifti", "dicom")

        def paths(self, case, folder, stem):
            return [folder / f"{stem}_counts.csv"]

        def write(self, case, seg, folder, stem):
            (path,) = self.paths(case, folder, stem)
            values, counts = np.unique(seg.labels, return_counts=True)
            path.write_text("".join(f"{v},{c}\n" for v, c in zip(values, counts, strict=True)))
            return [path]

    import nibabel as nib

    vol = np.full((10, 8, 3), -1000, np.int16)
    vol[2:5, 2:4, 1] = 40  # 6 foreground voxels
    nib.save(nib.Nifti1Image(vol, np.eye(4)), str(tmp_path / "ct.nii.gz"))
    register_writer(CountsWriter)
    try:
        with pytest.raises(ValueError, match="registered already"):
            register_writer(CountsWriter)
        writer = MaskWriter(output_types=["nifti", "counts-test"])
        report = predict_files([tmp_path / "ct.nii.gz"], tmp_path / "out", Predictor(threshold_net()), writer=writer)
        assert report.exit_code == 0, report.results
        assert (tmp_path / "out" / "ct_seg.nii.gz").is_file()
        assert (tmp_path / "out" / "ct_counts.csv").read_text() == "0,234\n1,6\n"
    finally:
        WRITERS.pop("counts-test")


@pytest.mark.parametrize("types", [["dicom-seg-unknown"], [], "png", ["nifti", "bogus"]])
def test_unknown_output_types_are_refused(types):
    with pytest.raises(ValueError, match="output_types must name"):
        MaskWriter(output_types=types)
