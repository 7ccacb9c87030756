"""A full disk while writing outputs is our failure, not the input's: exit 1, and the batch stops."""

from __future__ import annotations

import errno
import os

from _predict_helpers import gray_png, threshold_conv, tiny_bundle

from medseg.cli.main import main
from medseg.inference import Predictor, predict_files


def _full_disk(monkeypatch):
    def no_space(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("medseg.io.os.replace", no_space)  # the rename that completes every atomic write


def _images(tmp_path, n=3):
    paths = []
    for i in range(n):
        paths.append(tmp_path / f"img{i}.png")
        gray_png(paths[-1])
    return paths


def test_full_disk_stops_the_batch_with_exit_1(tmp_path, monkeypatch):
    images = _images(tmp_path)
    _full_disk(monkeypatch)
    report = predict_files(images, tmp_path / "out", Predictor(threshold_conv(), device="cpu"))
    assert [r.status for r in report.results] == ["failed", "not run", "not run"]
    assert report.exit_code == 1
    assert "No space left on device" in report.results[0].error
    assert "\n" not in report.results[0].error
    assert not list((tmp_path / "out").glob("*.png"))
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left behind


def test_cli_exit_1_one_line(tmp_path, monkeypatch, capsys):
    images = _images(tmp_path, 2)
    bundle = tiny_bundle(tmp_path / "bundle")
    _full_disk(monkeypatch)
    code = main(
        ["predict", "--bundle", str(bundle), "--trust-bundle", "-i", *map(str, images), "-o", str(tmp_path / "o")]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert len(captured.err.strip().splitlines()) == 1
    assert "No space left" in captured.err
    assert "1 not run" in captured.out


def test_unreadable_input_is_still_exit_2_and_the_batch_goes_on(tmp_path):
    images = _images(tmp_path, 1)
    (tmp_path / "bad.png").write_bytes(b"\x89PNG truncated")
    report = predict_files([tmp_path / "bad.png", *images], tmp_path / "out", Predictor(threshold_conv(), device="cpu"))
    assert [r.status for r in report.results] == ["failed", "written"]
    assert report.exit_code == 2
