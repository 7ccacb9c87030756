"""Tests of data_tools.dicom.writer: bytes equal to nibabel's, never replacing, nothing left behind on failure."""

from __future__ import annotations

import errno
import gzip
import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from data_tools.dicom import writer
from data_tools.dicom.writer import write_series_files

AFFINE = np.array([[-0.7, 0, 0, 10], [0, -0.8, 0, 20], [0, 0, 2.5, -30], [0, 0, 0, 1]], dtype=np.float64)
SHEARED = AFFINE.copy()
SHEARED[1, 2] = 0.9  # gantry tilt: the slice axis is not orthogonal to the rows


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float32])
@pytest.mark.parametrize("affine", [AFFINE, SHEARED], ids=["orthogonal", "sheared"])
@pytest.mark.parametrize("threads", [1, 3])
def test_file_equals_what_nibabel_writes(tmp_path: Path, dtype: type, affine: np.ndarray, threads: int) -> None:
    volume = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 50).astype(dtype)  # (slices, rows, columns)
    write_series_files(tmp_path / "a.nii.gz", tmp_path / "a.json", volume, affine, {"k": 1}, threads=threads)
    # Reference: nibabel's own writer on the same image (the (column, row, slice) transpose).
    reference = writer._nifti_image(volume.T, affine)
    nib.save(reference, tmp_path / "ref.nii")
    assert gzip.decompress((tmp_path / "a.nii.gz").read_bytes()) == (tmp_path / "ref.nii").read_bytes()
    img = nib.load(tmp_path / "a.nii.gz")
    np.testing.assert_array_equal(np.asarray(img.dataobj), volume.T)
    assert img.header.get_qform(coded=True)[1] == (1 if affine is AFFINE else 0)
    assert json.loads((tmp_path / "a.json").read_text()) == {"k": 1}


def test_without_isal_the_standard_gzip_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "isal", None)  # import isal -> ImportError
    volume = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    write_series_files(tmp_path / "a.nii.gz", tmp_path / "a.json", volume, AFFINE, {})
    np.testing.assert_array_equal(np.asarray(nib.load(tmp_path / "a.nii.gz").dataobj), volume.T)


def test_existing_outputs_are_never_replaced(tmp_path: Path) -> None:
    volume = np.zeros((2, 3, 4), dtype=np.int16)
    (tmp_path / "a.json").write_text("mine")
    with pytest.raises(FileExistsError, match="--overwrite"):
        write_series_files(tmp_path / "a.nii.gz", tmp_path / "a.json", volume, AFFINE, {})
    assert (tmp_path / "a.json").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]  # no NIfTI, no temporary file
    write_series_files(tmp_path / "a.nii.gz", tmp_path / "a.json", volume, AFFINE, {"new": 1}, overwrite=True)
    assert json.loads((tmp_path / "a.json").read_text()) == {"new": 1}


def test_failure_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = writer._publish

    def publish(tmp: Path, final: Path, *, overwrite: bool) -> None:
        if final.name.endswith(".nii.gz"):
            raise OSError(errno.ENOSPC, "No space left on device", str(final))
        real(tmp, final, overwrite=overwrite)

    monkeypatch.setattr(writer, "_publish", publish)
    with pytest.raises(OSError, match="No space"):
        write_series_files(tmp_path / "a.nii.gz", tmp_path / "a.json", np.zeros((2, 3, 4), np.int16), AFFINE, {})
    assert list(tmp_path.iterdir()) == []  # the published sidecar is removed with the temporary files
