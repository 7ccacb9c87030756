"""Intensities far outside the model's range (a 16-bit PNG, a CT rescaled to [0, 1]) are refused or warned about."""

from __future__ import annotations

import numpy as np
import pytest
from _predict_helpers import gray_png, phantom, threshold_conv, tiny_bundle, write_nifti
from PIL import Image

from medseg.cli.main import main
from medseg.inference import Predictor, Preprocessing, predict_files


def _png16(path):
    # A 12-bit CT slice stored as 16-bit PNG (HU + 1024): air 0, soft tissue ~1060, bone ~2000.
    img = np.zeros((32, 32), np.uint16)
    img[4:28, 4:28] = 1060
    img[10:14, 10:20] = 2000
    Image.fromarray(img).save(path)
    return path


def _rescaled_ct(path):
    vol = phantom()
    return write_nifti(path, ((vol + 1024.0) / 4096.0).astype(np.float32))  # HU mapped onto [0, 1]


@pytest.mark.parametrize("make", [_png16, _rescaled_ct], ids=["png16", "rescaled-nifti"])
def test_far_outside_is_refused_in_one_line(tmp_path, make):
    src = make(tmp_path / ("x.png" if make is _png16 else "x.nii.gz"))
    report = predict_files([src], tmp_path / "out", Predictor(threshold_conv(), device="cpu"))
    (result,) = report.results
    assert result.status == "failed", result
    assert report.exit_code == 2
    assert "expected" in result.error
    assert "--intensity-check warn" in result.error
    assert "\n" not in result.error


@pytest.mark.parametrize("make", [_png16, _rescaled_ct], ids=["png16", "rescaled-nifti"])
def test_warn_predicts_and_says_so(tmp_path, make):
    src = make(tmp_path / ("x.png" if make is _png16 else "x.nii.gz"))
    report = predict_files([src], tmp_path / "out", Predictor(threshold_conv(), device="cpu"), intensity_check="warn")
    assert report.exit_code == 0, report.results
    assert len(report.warnings) == 1
    assert "expected" in report.warnings[0]


def test_in_range_inputs_pass_without_a_word(tmp_path):
    png = tmp_path / "ok.png"
    gray_png(png)
    nii = write_nifti(tmp_path / "vol.nii.gz", phantom())
    report = predict_files([png, nii], tmp_path / "out", Predictor(threshold_conv(), device="cpu"))
    assert report.exit_code == 0, report.results
    assert report.warnings == []


def test_the_reference_is_a_parameter(tmp_path):
    from medseg.inference import IntensityReference

    # A model trained on [0, 1]-scaled CT (e.g. with statistics from a plan) accepts the rescaled volume.
    src = _rescaled_ct(tmp_path / "x.nii.gz")
    pre = Preprocessing(intensity_reference={"volume": {"percentile_00_5": 0.0, "percentile_99_5": 1.0}})
    assert pre.intensity_reference("volume") == IntensityReference(0.0, 1.0, "training data")
    report = predict_files([src], tmp_path / "out", Predictor(threshold_conv(), device="cpu"), preprocessing=pre)
    assert report.results[0].status == "written", report.results
    assert pre.intensity_reference("image") == IntensityReference(0.0, 255.0, "the model's intensity scaling")


@pytest.mark.parametrize(
    ("values", "flagged"),
    [
        (np.linspace(-1024, 1500, 10_000), False),  # a CT in HU against the lung window [-1400, 100]
        (np.r_[np.full(3000, -3024.0), np.linspace(-1024, 1500, 7000)], False),  # with padding outside the FOV
        (np.linspace(0, 1, 10_000), True),  # rescaled to [0, 1]: 1/1500 of the window
        (np.linspace(0, 4095, 10_000), True),  # raw stored values, not HU: 97% beyond the window's top
        (np.linspace(3000, 6000, 10_000), True),  # entirely beyond the window
    ],
    ids=["hu", "hu-padding", "unit", "raw-12bit", "beyond"],
)
def test_rule_on_the_lung_window(values, flagged):
    from medseg.inference import IntensityReference
    from medseg.inference.checks import check_intensities

    reference = IntensityReference(-1400.0, 100.0, "window")
    assert (check_intensities(values, reference) is not None) is flagged


def test_cli_exit_2_and_option(tmp_path, capsys):
    src = _png16(tmp_path / "x.png")
    bundle = tiny_bundle(tmp_path / "bundle")
    args = ["predict", "--bundle", str(bundle), "--trust-bundle", "-i", str(src)]
    assert main([*args, "-o", str(tmp_path / "o")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert main([*args, "-o", str(tmp_path / "o2"), "--intensity-check", "warn"]) == 0
    assert "warning:" in capsys.readouterr().err
