"""Temporary files that a killed run leaves are removed on the next run: only ours, only old ones."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from _predict_helpers import gray_png, threshold_conv

from medseg.inference import Predictor, predict_files

HOURS_AGO = time.time() - 2 * 3600


def _killed_writer(target):
    """A process killed with SIGKILL in the middle of an atomic write: its temporary file stays."""
    code = (
        "import os, signal, sys\n"
        "from medseg.io import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'half a mask')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(target)], check=False)
    assert proc.returncode == -signal.SIGKILL
    (leftover,) = [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]
    return leftover


def test_stale_temp_files_are_removed_and_others_kept(tmp_path):
    out = tmp_path / "out"
    (out / "clip").mkdir(parents=True)
    stale = _killed_writer(out / "x_seg.nii.gz")
    nested = out / "clip" / ".f1_seg.png.ab12cd34.tmp.png"
    nested.write_bytes(b"x")
    fresh = out / ".y_seg.nii.gz.zz99yy88.tmp.nii.gz"  # young: a run may still be writing it
    fresh.write_bytes(b"x")
    users = [out / ".notes.tmp", out / ".x_seg.nii.gz.backup", out / "keep.tmp.png"]
    for path in users:
        path.write_bytes(b"mine")
    for path in (stale, nested, *users):
        os.utime(path, (HOURS_AGO, HOURS_AGO))
    gray_png(tmp_path / "img.png")
    report = predict_files([tmp_path / "img.png"], out, Predictor(threshold_conv(), device="cpu"))
    assert report.exit_code == 0
    assert not stale.exists()
    assert not nested.exists()
    assert fresh.exists()
    assert all(p.exists() for p in users)


def test_temp_name_pattern():
    from medseg.io import is_temp_file

    assert is_temp_file(".ct_seg.nii.gz.k2j4_x9a.tmp.nii.gz")
    assert is_temp_file(".model.pt.abcdefgh.tmp.pt")
    assert not is_temp_file(".ct_seg.nii.gz.k2j4_x9a.tmp.png")  # suffix of another file
    assert not is_temp_file(".notes.tmp")
    assert not is_temp_file("ct_seg.nii.gz.k2j4_x9a.tmp.nii.gz")  # not hidden
