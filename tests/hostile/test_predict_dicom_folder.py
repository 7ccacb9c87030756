"""Files of a DICOM folder that belong to no readable series are reported in one line, not silently dropped."""

from __future__ import annotations

import numpy as np
import pytest
from _predict_helpers import threshold_conv

from medseg.inference import Predictor, predict_files


def test_unreadable_files_are_reported(tmp_path):
    synthetic = pytest.importorskip("medseg.data.synthetic")
    vol = np.full((16, 14, 4), -1000.0)
    vol[4:10, 3:9, 1:3] = 40.0
    folder = tmp_path / "series"
    synthetic.write_dicom_series(folder, vol, np.diag([0.8, 0.8, 2.5, 1.0]))
    (folder / "junk.dcm").write_bytes(b"\x00" * 64 + b"not dicom")
    (folder / "notes.txt").write_text("scanner log")
    report = predict_files([folder], tmp_path / "out", Predictor(threshold_conv(), device="cpu"))
    assert report.exit_code == 0, report.results
    (line,) = report.warnings
    assert "2 of 6 files" in line
    assert "junk.dcm" in line
    assert "ignored" in line
    assert (tmp_path / "out" / "series_seg.nii.gz").is_file()
