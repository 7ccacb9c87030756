"""Stale masks: an output is reused only when its provenance sidecar matches the input, model and settings."""

from __future__ import annotations

import json

import numpy as np
from _predict_helpers import gray_png, threshold_conv
from PIL import Image

from medseg.inference import MaskWriter, Predictor, predict_files


def _mask(path):
    return np.asarray(Image.open(path))


def test_another_input_with_the_same_name_is_recomputed(tmp_path, caplog):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = gray_png(tmp_path / "a" / "x.png", box=True)
    second = gray_png(tmp_path / "b" / "x.png", box=False)  # same stem, no bright box
    out = tmp_path / "out"
    predictor = Predictor(threshold_conv(), device="cpu")
    assert predict_files([tmp_path / "a" / "x.png"], out, predictor).results[0].status == "written"
    np.testing.assert_array_equal(_mask(out / "x_seg.png"), (first > 127).astype(np.uint8))
    with caplog.at_level("WARNING"):
        report = predict_files([tmp_path / "b" / "x.png"], out, predictor)
    assert report.results[0].status == "written"
    np.testing.assert_array_equal(_mask(out / "x_seg.png"), (second > 127).astype(np.uint8))
    assert any("recomputing" in r.getMessage() and "input" in r.getMessage() for r in caplog.records)


def test_new_weights_are_recomputed_and_same_ones_skipped(tmp_path):
    img = gray_png(tmp_path / "x.png", value=160)
    out = tmp_path / "out"
    assert predict_files([tmp_path / "x.png"], out, Predictor(threshold_conv(0.5), device="cpu")).exit_code == 0
    np.testing.assert_array_equal(_mask(out / "x_seg.png"), (img > 127).astype(np.uint8))
    again = predict_files([tmp_path / "x.png"], out, Predictor(threshold_conv(0.5), device="cpu"))
    assert again.results[0].status == "skipped"
    # A new checkpoint: threshold 0.7 (178.5 in 8-bit) puts the 160 box in the background.
    report = predict_files([tmp_path / "x.png"], out, Predictor(threshold_conv(0.7), device="cpu"))
    assert report.results[0].status == "written"
    assert not _mask(out / "x_seg.png").any()


def test_sidecar_records_digests_and_no_paths(tmp_path):
    gray_png(tmp_path / "x.png")
    predict_files([tmp_path / "x.png"], tmp_path / "out", Predictor(threshold_conv(), device="cpu"))
    record = json.loads((tmp_path / "out" / "x_prediction.json").read_text())
    assert record["state"] == "complete"
    assert len(record["input_sha256"]) == len(record["model_sha256"]) == 64
    assert str(tmp_path) not in json.dumps(record)  # no paths (patient data stays private)


def test_mask_without_sidecar_counts_as_unfinished(tmp_path):
    img = gray_png(tmp_path / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    Image.fromarray(np.zeros_like(img)).save(out / "x_seg.png")  # e.g. killed before its sidecar was written
    writer = MaskWriter(save_overlays=False)  # the mask is the only output: nothing else is missing
    report = predict_files([tmp_path / "x.png"], out, Predictor(threshold_conv(), device="cpu"), writer=writer)
    assert report.results[0].status == "written"
    np.testing.assert_array_equal(_mask(out / "x_seg.png"), (img > 127).astype(np.uint8))
