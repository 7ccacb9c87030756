"""Tests of data_tools.lidc and ``medseg-data lidc`` on a synthetic XML and on the shared LIDC-IDRI slabs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_factory import SeriesSpec, write_ct_series, write_lidc_xml

from data_tools.cli import main
from data_tools.dicom import dicom_to_nifti, sidecar_path_for
from data_tools.lidc import lidc_to_nifti, parse_lidc_xml


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default UID key goes to a temporary user config dir, never the real one."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path_factory.mktemp("config")))


# Synthetic reads on a 6-slice, 20 x 20 series (x = column, y = row; outline pixels are part of the nodule):
#   reader 1: square outline x 5..9, y 5..9 on slice 2 (5 x 5 = 25 px) with an exclusion outline x 6..8, y 6..8
#             whose interior is the single pixel (7, 7): 24 px; plus an ROI on a slice outside the volume.
#   reader 2: square x 6..10, y 5..9 on slice 2: 25 px. Overlap with reader 1: x 6..9, y 5..9 = 20 px minus
#             reader 1's hole (7, 7) = 19 px.
#   reader 3: a < 3 mm nodule, the single point (15, 15) on slice 4: 1 px.
#   reader 4: no nodule.
# Consensus at 2 of 4 = 19 px; at 1 of 4 (union) = 24 + 25 - 19 + 1 = 31 px; at 3 of 4 = 0 px.
R1 = [
    [(2, [(5, 5), (9, 5), (9, 9), (5, 9)], True), (2, [(6, 6), (8, 6), (8, 8), (6, 8)], False)],
    [(None, [(1, 1), (3, 1), (3, 3)], True)],
]
R2 = [[(2, [(6, 5), (10, 5), (10, 9), (6, 9)], True)]]
R3 = [[(4, [(15, 15)], True)]]
READERS = [R1, R2, R3, []]


def _case(tmp_path: Path, **xml_kwargs: object) -> tuple[SeriesSpec, Path, Path]:
    spec = write_ct_series(tmp_path / "ct", n_slices=6, rows=20, cols=20, seed=11)
    report = dicom_to_nifti(tmp_path / "ct", tmp_path / "nifti")
    assert report.ok
    xml = write_lidc_xml(tmp_path / "read.xml", spec, READERS, **xml_kwargs)  # type: ignore[arg-type]
    return spec, xml, report.converted[0].nifti


def _expected_r1(shape: tuple[int, ...]) -> np.ndarray:
    m = np.zeros(shape, dtype=np.uint8)
    m[5:10, 5:10, 2] = 1
    m[7, 7, 2] = 0
    return m


@pytest.mark.parametrize("variant", ["sop", "z-only", "no-sidecar"])
def test_reader_masks_and_consensus(tmp_path: Path, variant: str, caplog: pytest.LogCaptureFixture) -> None:
    _, xml, nifti = _case(tmp_path, with_sop=variant != "z-only")
    if variant == "no-sidecar":
        sidecar_path_for(nifti).unlink()
    caplog.set_level(logging.INFO, logger="data_tools.lidc")
    summary = lidc_to_nifti(xml, nifti, tmp_path / "out")
    # The private sidecar holds keyed SOP digests; the XML's imageSOP_UIDs still match them (not the z fallback).
    assert ("matching slices by z" in caplog.text) == (variant != "sop")
    ct = nib.load(nifti)
    masks = {p.name: nib.load(p) for p in (tmp_path / "out").glob("*.nii.gz")}
    assert sorted(masks) == [
        "consensus.nii.gz",
        "reader_1.nii.gz",
        "reader_2.nii.gz",
        "reader_3.nii.gz",
        "reader_4.nii.gz",
        "reader_count.nii.gz",
    ]
    for img in masks.values():
        assert img.shape == ct.shape
        assert img.get_data_dtype() == np.uint8
        np.testing.assert_array_equal(img.affine, ct.affine)
    np.testing.assert_array_equal(np.asarray(masks["reader_1.nii.gz"].dataobj), _expected_r1(ct.shape))
    assert [r["voxels"] for r in summary["readers"]] == [24, 25, 1, 0]
    assert np.asarray(masks["reader_3.nii.gz"].dataobj)[15, 15, 4] == 1
    assert summary["agreement"] == 2
    assert summary["consensus_voxels"] == 19
    assert int(np.asarray(masks["reader_count.nii.gz"].dataobj).max()) == 2
    nodules = summary["readers"][0]["nodules"]
    assert [n["rois_in_volume"] for n in nodules] == [2, 0]  # the off-volume ROI is skipped
    assert summary["readers"][2]["nodules"][0]["small"] is True


@pytest.mark.parametrize(("k", "voxels"), [(1, 31), (2, 19), (3, 0)])
def test_agreement_levels(tmp_path: Path, k: int, voxels: int) -> None:
    _, xml, nifti = _case(tmp_path)
    assert lidc_to_nifti(xml, nifti, tmp_path / "out", agreement=k)["consensus_voxels"] == voxels


def test_bad_inputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec, xml, nifti = _case(tmp_path)
    out = str(tmp_path / "out")
    assert main(["lidc", str(xml), str(nifti), out, "--agreement", "5"]) == 2
    assert "agreement must be an integer number of readers in 1..4" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["lidc", str(xml), str(nifti), out, "--agreement", "0"])
    assert exc.value.code == 2
    other = write_lidc_xml(tmp_path / "other.xml", spec, READERS, series_uid="1.2.826.0.1.3680043.99.3")
    assert main(["lidc", str(other), str(nifti), out]) == 2
    assert "1.2.826.0.1.3680043.99.3" in capsys.readouterr().err
    (tmp_path / "bad.xml").write_text("<a><b></a>")
    assert main(["lidc", str(tmp_path / "bad.xml"), str(nifti), out]) == 2
    assert "not well-formed" in capsys.readouterr().err
    (tmp_path / "wrong.xml").write_text("<Something/>")
    assert main(["lidc", str(tmp_path / "wrong.xml"), str(nifti), out]) == 2
    assert "LidcReadMessage" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["lidc", str(xml), str(nifti), out, "--no-progress"]) == 0
    assert "consensus (>= 2 of 4 readers): 19 voxels" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["lidc", "--help"])
    assert exc.value.code == 0


def test_parse_reads_all_sessions(tmp_path: Path) -> None:
    _, xml, _ = _case(tmp_path)
    read = parse_lidc_xml(xml)
    assert [len(r.nodules) for r in read.readers] == [2, 1, 1, 0]
    assert read.readers[0].nodules[0].rois[1].inclusion is False
    assert read.readers[2].nodules[0].is_small


# ---------------------------------------------------------------------------------------------------------------------
# Shared real data: README of lidc_idri_ct_nodule_slabs gives per-reader voxel counts and mean HU inside the nodule.
# ---------------------------------------------------------------------------------------------------------------------


def test_shared_lidc_readers(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "lidc_idri_ct_nodule_slabs"
    if not root.is_dir():
        pytest.skip("lidc_idri_ct_nodule_slabs not in shared data")
    results = {}
    for case in ("LIDC-IDRI-0001", "LIDC-IDRI-0002"):
        series_dir = next((root / case).glob("*/*"))
        report = dicom_to_nifti(series_dir, tmp_path / case / "ct")
        assert report.ok
        nifti = report.converted[0].nifti
        xml = next(series_dir.glob("*.xml"))
        summary = lidc_to_nifti(xml, nifti, tmp_path / case / "masks")
        hu = np.asarray(nib.load(nifti).dataobj)
        means = []
        for r in summary["readers"]:
            mask = np.asarray(nib.load(tmp_path / case / "masks" / f"reader_{r['reader']}.nii.gz").dataobj) > 0
            big = [n for n in r["nodules"] if not n["small"] and n["rois_in_volume"]]
            means.append((float(hu[mask].mean()) if big else None, [n["voxels"] for n in big]))
        results[case] = (summary, means)
    summary, means = results["LIDC-IDRI-0001"]
    # README: 1 nodule, 4 readers, 5348-6844 voxels, mean HU -65..-192.
    counts = [v[0] for _, v in means]
    assert min(counts) == 5348
    assert max(counts) == 6844
    assert all(-193 <= m <= -64 for m, _ in means)
    assert 0 < summary["consensus_voxels"] <= max(counts)
    summary, means = results["LIDC-IDRI-0002"]
    # README: the large nodule is outlined by 2 readers in the slab, 1429 and 1552 voxels.
    assert sorted(v for _, vs in means for v in vs) == [1429, 1552]
    assert json.loads((tmp_path / "LIDC-IDRI-0002" / "masks" / "lidc.json").read_text())["num_readers"] == 4
