"""NaN/inf voxels: refused in one line (exit 2), or filled with a warning when asked; never a silent empty mask."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from _predict_helpers import phantom, threshold_conv, tiny_bundle, write_nifti

from medseg.cli.main import main
from medseg.inference import Predictor, predict_files


def _with_nans(tmp_path):
    vol = phantom()
    vol[0, :4, 0] = np.nan  # 4 NaN voxels in the air
    vol[1, 0, 0] = np.inf
    return write_nifti(tmp_path / "nan_ct.nii.gz", vol), vol


def test_nan_volume_is_refused_with_one_line(tmp_path):
    src, _ = _with_nans(tmp_path)
    report = predict_files([src], tmp_path / "out", Predictor(threshold_conv(), device="cpu"))
    (result,) = report.results
    assert result.status == "failed"
    assert report.exit_code == 2
    assert "5 of" in result.error
    assert "NaN or infinite" in result.error
    assert "--nonfinite fill" in result.error
    assert "\n" not in result.error
    assert not (tmp_path / "out" / "nan_ct_seg.nii.gz").exists()


def test_fill_predicts_the_rest_and_warns(tmp_path):
    src, vol = _with_nans(tmp_path)
    report = predict_files([src], tmp_path / "out", Predictor(threshold_conv(), device="cpu"), nonfinite="fill")
    assert report.exit_code == 0, report.results
    assert any("5 NaN/infinite voxels replaced" in w for w in report.warnings)
    mask = np.asarray(nib.load(str(tmp_path / "out" / "nan_ct_seg.nii.gz")).dataobj)
    # NaN -> the minimum (-1000 HU, air: background); +inf -> the maximum (+40 HU: foreground).
    expected = np.nan_to_num(vol, nan=-1000.0, posinf=40.0) > -650
    np.testing.assert_array_equal(mask, expected.astype(np.uint8))


def test_in_memory_array_is_checked_too(tmp_path):
    from medseg.inference import segment

    vol = phantom()
    vol[2, 2, 2] = np.nan
    with pytest.raises(ValueError, match="1 of 1440 voxels are NaN"):
        segment(vol, Predictor(threshold_conv(), device="cpu"), affine=np.eye(4))


def test_cli_exit_2_and_one_line(tmp_path, capsys):
    src, _ = _with_nans(tmp_path)
    bundle = tiny_bundle(tmp_path / "bundle")
    code = main(["predict", "--bundle", str(bundle), "--trust-bundle", "-i", str(src), "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1
    assert "NaN" in err
