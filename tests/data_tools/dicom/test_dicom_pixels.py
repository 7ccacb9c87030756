"""Tests of data_tools.dicom.pixels: the direct read of raw pixel data equals pydicom's decoding, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_ct_series
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, RLELossless

from data_tools.dicom.discovery import discover_series
from data_tools.dicom.geometry import series_geometry
from data_tools.dicom.pixels import load_volume

ROWS, COLS = 6, 7


def _rewrite(folder: Path, *, bits: int, stored: int, signed: bool, syntax: str, seed: int) -> None:
    """Give every file of the series random values in BitsStored range, with junk in the unused high bits."""
    rng = np.random.default_rng(seed)
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        lo, hi = (-(1 << (stored - 1)), (1 << (stored - 1)) - 1) if signed else (0, (1 << stored) - 1)
        values = rng.integers(lo, hi + 1, size=(ROWS, COLS))
        raw = values & ((1 << stored) - 1)
        junk = rng.integers(0, 1 << (bits - stored), size=raw.shape) << stored if bits > stored else 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, stored, stored - 1
        ds.PixelRepresentation = int(signed)
        ds.PixelData = (raw | junk).astype(f"<u{bits // 8}").tobytes()
        ds.file_meta.TransferSyntaxUID = syntax
        ds.save_as(path, implicit_vr=syntax == ImplicitVRLittleEndian, little_endian=True)


@pytest.mark.parametrize(
    ("bits", "stored", "signed", "syntax"),
    [
        (16, 12, True, ExplicitVRLittleEndian),
        (16, 12, False, ExplicitVRLittleEndian),
        (16, 16, True, ImplicitVRLittleEndian),
        (8, 8, False, ExplicitVRLittleEndian),
        (8, 6, True, ImplicitVRLittleEndian),
        (32, 20, True, ExplicitVRLittleEndian),
    ],
    ids=["s12-in-16", "u12-in-16", "s16-implicit", "u8", "s6-in-8-implicit", "s20-in-32"],
)
def test_direct_read_equals_pydicom(tmp_path: Path, bits: int, stored: int, signed: bool, syntax: str) -> None:
    write_ct_series(tmp_path / "in", n_slices=4, rows=ROWS, cols=COLS, slope=3.0, intercept=-100.0)
    _rewrite(tmp_path / "in", bits=bits, stored=stored, signed=signed, syntax=syntax, seed=bits + stored)
    series = discover_series(tmp_path / "in").series[0]
    assert all(s.pixel_offset is not None for s in series.slices)  # the direct read is what is tested
    geometry = series_geometry(series.slices)
    volume = load_volume(geometry)
    # Reference: pydicom decodes each file (masking or sign-extending the unused bits), then slope 3, intercept -100.
    expected = np.stack([pydicom.dcmread(s.path).pixel_array.astype(np.float64) * 3 - 100 for s in geometry.slices])
    assert volume.shape == (4, ROWS, COLS)
    assert volume.flags.c_contiguous
    np.testing.assert_array_equal(volume, expected)
    assert volume.dtype == (np.int16 if np.abs(expected).max() < 32768 else np.int32)


def test_compressed_slices_are_decoded_not_read(tmp_path: Path) -> None:
    spec = write_ct_series(tmp_path / "in", n_slices=3, rows=ROWS, cols=COLS, transfer_syntax=RLELossless)
    series = discover_series(tmp_path / "in").series[0]
    assert all(s.pixel_offset is None for s in series.slices)
    volume = load_volume(series_geometry(series.slices))
    expected = np.stack([pydicom.dcmread(p).pixel_array.astype(np.int64) for p in spec.files]) + spec.intercept
    np.testing.assert_array_equal(np.sort(volume.ravel()), np.sort(expected.ravel()))


def test_fractional_rescale_gives_float32(tmp_path: Path) -> None:
    write_ct_series(tmp_path / "in", n_slices=2, slope=0.5, intercept=0.5)
    volume = load_volume(series_geometry(discover_series(tmp_path / "in").series[0].slices))
    assert volume.dtype == np.float32
    assert volume[0, 0, 1] == 1.0  # stored code 1 (slice 0, row 0, column 1): 1 * 0.5 + 0.5
    assert volume[0, 0, 0] == 0.5
