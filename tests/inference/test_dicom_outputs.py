"""DICOM-SEG and RTSTRUCT from a label mask: round trips through highdicom and our own rtstruct2nifti.

The reference geometry is independent of the code under test: masks are made in the grid of the NIfTI that
``data_tools.dicom.dicom_to_nifti`` writes for a synthetic series (tests/data_tools/dicom_factory.py), and the
RTSTRUCT is read back by ``data_tools.rtstruct.rtstruct_to_nifti`` (pixel-centre rasterisation, even-odd rule).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
from matplotlib.path import Path as MplPath
from pydicom.uid import UID, RTStructureSetStorage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data_tools"))
from dicom_factory import SeriesSpec, rotation_orientation, write_ct_series

from data_tools.dicom import dicom_to_nifti
from data_tools.rtstruct import rtstruct_to_nifti
from medseg.inference.dicom_outputs import (
    COPIED_ATTRIBUTES,
    mask_on_series,
    read_source_series,
    segment_code,
    trace_pixel_edges,
    write_dicom_seg,
    write_rtstruct,
)

CLASSES = ["background", "infection", "consolidation", "nodule"]


def _mask(shape: tuple[int, int, int]) -> np.ndarray:
    """Classes 1 and 2 with holes, islands in holes, diagonal contacts and several components; class 3 empty."""
    m = np.zeros(shape, dtype=np.uint8)
    m[2:14, 3:15, 1] = 1  # a square ...
    m[5:11, 6:12, 1] = 0  # ... with a hole ...
    m[7:9, 8:10, 1] = 1  # ... holding an island
    m[1, 1, 2] = m[2, 2, 2] = m[3, 1, 2] = 1  # pixels touching only at corners
    m[10:13, 2:18, 2] = 2  # a bar of class 2 ...
    m[4:6, 4:6, 2] = 2  # ... and a separate blob
    rng = np.random.default_rng(3)
    m[:, :, 3] = rng.integers(0, 3, size=shape[:2])  # noise: every kind of saddle, hole and island
    return m


@pytest.fixture
def case(tmp_path: Path) -> tuple[SeriesSpec, Path, np.ndarray]:
    """A 5-slice oblique series, its dicom2nifti NIfTI, and a mask in that NIfTI's grid."""
    spec = write_ct_series(tmp_path / "ct", n_slices=5, rows=16, cols=20, orientation=rotation_orientation(20, -10))
    report = dicom_to_nifti(tmp_path / "ct", tmp_path / "nifti")
    assert report.ok
    nifti = report.converted[0].nifti
    return spec, nifti, _mask(nib.load(nifti).shape)


def _read_back(rt: Path, nifti: Path, out: Path) -> dict[str, np.ndarray]:
    written = rtstruct_to_nifti(rt, nifti, out)
    return {w.roi: np.asarray(nib.load(w.path).dataobj) for w in written}


def test_rtstruct_round_trips_through_rtstruct2nifti(case: tuple[SeriesSpec, Path, np.ndarray], tmp_path: Path) -> None:
    spec, nifti, mask = case
    image = nib.load(nifti)
    rt = write_rtstruct(mask, image.affine, spec.folder, tmp_path / "rt.dcm", CLASSES)
    back = _read_back(rt, nifti, tmp_path / "back")
    assert sorted(back) == sorted(CLASSES[1:])
    for value, name in enumerate(CLASSES[1:], start=1):
        np.testing.assert_array_equal(back[name], (mask == value).astype(np.uint8), err_msg=name)
    assert not back["nodule"].any()  # an absent class is an ROI without contours


def test_rtstruct_references_the_series_and_copies_only_identity(
    case: tuple[SeriesSpec, Path, np.ndarray], tmp_path: Path
) -> None:
    spec, nifti, mask = case
    _add_private_details(spec)
    rt = write_rtstruct(mask, nib.load(nifti).affine, spec.folder, tmp_path / "rt.dcm", CLASSES)
    ds = pydicom.dcmread(rt)
    assert ds.SOPClassUID == RTStructureSetStorage
    assert ds.Modality == "RTSTRUCT"
    for uid in (ds.SOPInstanceUID, ds.SeriesInstanceUID):
        assert UID(uid).is_valid
        assert uid not in (spec.series_uid, spec.study_uid, *spec.sop_uids)
    assert ds.StudyInstanceUID == spec.study_uid  # filed in the source's study
    assert ds.FrameOfReferenceUID == spec.frame_uid
    frame = ds.ReferencedFrameOfReferenceSequence[0]
    assert frame.FrameOfReferenceUID == spec.frame_uid
    series_ref = frame.RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series_ref.SeriesInstanceUID == spec.series_uid
    assert {i.ReferencedSOPInstanceUID for i in series_ref.ContourImageSequence} == set(spec.sop_uids)
    assert [r.ROIName for r in ds.StructureSetROISequence] == CLASSES[1:]
    assert all(r.ReferencedFrameOfReferenceUID == spec.frame_uid for r in ds.StructureSetROISequence)
    # every contour lies in the plane of the slice it references
    normal = np.cross(spec.orientation[:3], spec.orientation[3:])
    position = dict(zip(spec.sop_uids, spec.positions, strict=True))
    for roi in ds.ROIContourSequence:
        for contour in getattr(roi, "ContourSequence", []):
            points = np.asarray(contour.ContourData, dtype=float).reshape(-1, 3)
            assert contour.NumberOfContourPoints == len(points)
            ref = contour.ContourImageSequence[0].ReferencedSOPInstanceUID
            np.testing.assert_allclose((points - position[ref]) @ normal, 0.0, atol=1e-3)
    codes = [o.RTROIIdentificationCodeSequence[0].CodeValue for o in ds.RTROIObservationsSequence]
    assert codes == ["52988006", "52988006", "27925004"]  # lesion, lesion, nodule (SNOMED CT)
    _assert_private(ds, spec)


def _add_private_details(spec: SeriesSpec) -> None:
    """Put details into the source that a derived object must not carry."""
    for path in spec.files:
        ds = pydicom.dcmread(path)
        ds.InstitutionName = "General Hospital"
        ds.PatientAge = "064Y"
        ds.PatientWeight = "71"
        ds.OtherPatientIDs = "MRN-5551234"
        ds.OperatorsName = "Tech^Tom"
        ds.StudyDescription = "CHEST CT Doe"
        block = ds.private_block(0x0011, "ACME 1.0", create=True)
        block.add_new(0x01, "LO", "secret")
        ds.save_as(path)


def _assert_private(ds: Any, spec: SeriesSpec) -> None:
    assert ds.PatientName == "Doe^Jane"
    assert ds.PatientID == "PID-98765"
    for keyword in ("InstitutionName", "PatientAge", "PatientWeight", "OtherPatientIDs", "StudyDescription", "KVP"):
        assert keyword not in ds, keyword
    assert not any(elem.tag.is_private for elem in ds.iterall())
    assert "secret" not in str(ds)
    assert ds.Manufacturer == "medseg"  # not the scanner's "SynthCo"
    assert set(COPIED_ATTRIBUTES) <= set(ds.dir())


def test_dicom_seg_is_read_back_by_highdicom(case: tuple[SeriesSpec, Path, np.ndarray], tmp_path: Path) -> None:
    import highdicom as hd

    spec, nifti, mask = case
    _add_private_details(spec)
    path = write_dicom_seg(mask, nib.load(nifti).affine, spec.folder, tmp_path / "seg.dcm", CLASSES)
    seg = hd.seg.segread(path)
    assert seg.SegmentationType == "BINARY"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == CLASSES[1:]
    types = [s.SegmentedPropertyTypeCodeSequence[0].CodeValue for s in seg.SegmentSequence]
    categories = [s.SegmentedPropertyCategoryCodeSequence[0].CodeValue for s in seg.SegmentSequence]
    assert types == ["52988006", "52988006", "27925004"]
    assert categories == ["49755003"] * 3  # morphologically abnormal structure
    assert seg.FrameOfReferenceUID == spec.frame_uid
    assert seg.StudyInstanceUID == spec.study_uid
    assert UID(seg.SeriesInstanceUID).is_valid
    assert seg.SeriesInstanceUID != spec.series_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == spec.series_uid
    # the SEG's frames, placed on the source instances, are the mask (in series order)
    series = read_source_series(spec.folder)
    expected = mask_on_series(mask, nib.load(nifti).affine, series)
    got = seg.get_pixels_by_source_instance(
        source_sop_instance_uids=series.sop_instance_uids, combine_segments=True, relabel=False
    )
    np.testing.assert_array_equal(got, expected)
    ds = pydicom.dcmread(path)
    _assert_private(ds, spec)


def test_an_empty_mask_gives_empty_segments_and_rois(
    case: tuple[SeriesSpec, Path, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import highdicom as hd

    spec, nifti, mask = case
    empty = np.zeros_like(mask)
    affine = nib.load(nifti).affine
    with caplog.at_level(logging.WARNING):
        seg = hd.seg.segread(write_dicom_seg(empty, affine, spec.folder, tmp_path / "seg.dcm", CLASSES))
    assert "the mask is empty" in caplog.text
    assert [s.SegmentLabel for s in seg.SegmentSequence] == CLASSES[1:]
    rt = write_rtstruct(empty, affine, spec.folder, tmp_path / "rt.dcm", CLASSES)
    assert all("ContourSequence" not in roi for roi in pydicom.dcmread(rt).ROIContourSequence)
    back = _read_back(rt, nifti, tmp_path / "back")
    assert not any(m.any() for m in back.values())


def test_any_axis_order_of_the_mask_gives_the_same_objects(
    case: tuple[SeriesSpec, Path, np.ndarray], tmp_path: Path
) -> None:
    spec, nifti, mask = case
    affine = nib.load(nifti).affine
    # flip the first axis (new index i' = n - 1 - i) and swap the first two: another array, the same world voxels
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, mask.shape[0] - 1
    other = np.swapaxes(mask[::-1], 0, 1)
    other_affine = (affine @ flip)[:, [1, 0, 2, 3]]
    series = read_source_series(spec.folder)
    np.testing.assert_array_equal(mask_on_series(other, other_affine, series), mask_on_series(mask, affine, series))
    rt = write_rtstruct(other, other_affine, series, tmp_path / "rt.dcm", CLASSES)
    back = _read_back(rt, nifti, tmp_path / "back")
    np.testing.assert_array_equal(back["consolidation"], (mask == 2).astype(np.uint8))


def test_masks_off_the_series_grid_are_refused(case: tuple[SeriesSpec, Path, np.ndarray], tmp_path: Path) -> None:
    spec, nifti, mask = case
    affine = nib.load(nifti).affine
    series = read_source_series(spec.folder)
    shifted = affine.copy()
    shifted[:3, 3] += affine[:3, 0] * 0.5  # half a voxel off
    with pytest.raises(ValueError, match=r"pixel \(0, 0\) of slice 0 lands at voxel"):
        write_rtstruct(mask, shifted, series, tmp_path / "rt.dcm", CLASSES)
    coarse = affine.copy()
    coarse[:3, :3] *= 2  # a resampled grid
    with pytest.raises(ValueError, match="mask grid differs from the series"):
        write_dicom_seg(mask[::2, ::2], coarse, series, tmp_path / "seg.dcm", CLASSES)
    with pytest.raises(ValueError, match=r"label values \[2\] that class_names does not name"):
        write_dicom_seg(mask, affine, series, tmp_path / "seg.dcm", ["background", "infection"])
    assert not list(tmp_path.glob("*.dcm"))
    (tmp_path / "rt.dcm").write_bytes(b"old")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_rtstruct(mask, affine, series, tmp_path / "rt.dcm", CLASSES)
    assert (tmp_path / "rt.dcm").read_bytes() == b"old"


def test_blank_source_uids_get_stand_ins_and_file_meta_instance_uids(
    case: tuple[SeriesSpec, Path, np.ndarray], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """As in de-identified data (the shared TotalSegmentator series): blank study, series and SOP instance UIDs."""
    spec, nifti, mask = case
    for path in spec.files:
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID = ds.SeriesInstanceUID = ds.SOPInstanceUID = ""
        ds.save_as(path)
    affine = nib.load(nifti).affine
    with caplog.at_level(logging.WARNING):
        first = read_source_series(spec.folder)
    assert "blank UIDs" in caplog.text
    assert sorted(first.sop_instance_uids) == sorted(spec.sop_uids)  # from the file meta
    again = read_source_series(spec.folder)
    assert (first.study_uid, first.series_uid) == (again.study_uid, again.series_uid)  # the same on every run
    assert UID(first.study_uid).is_valid
    assert UID(first.series_uid).is_valid
    seg = pydicom.dcmread(write_dicom_seg(mask, affine, first, tmp_path / "seg.dcm", CLASSES))
    rt = pydicom.dcmread(write_rtstruct(mask, affine, again, tmp_path / "rt.dcm", CLASSES))
    assert seg.StudyInstanceUID == rt.StudyInstanceUID == first.study_uid
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == first.series_uid
    series_ref = rt.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0].RTReferencedSeriesSequence[0]
    assert series_ref.SeriesInstanceUID == first.series_uid


def test_a_folder_with_two_series_needs_a_series_uid(tmp_path: Path) -> None:
    a = write_ct_series(tmp_path / "study", n_slices=3, rows=8, cols=8, seed=1, prefix="a")
    b = write_ct_series(tmp_path / "study", n_slices=4, rows=8, cols=8, seed=2, prefix="b", study_uid=a.study_uid)
    (tmp_path / "study" / "notes.txt").write_text("not DICOM")
    with pytest.raises(ValueError, match="holds 2 series"):
        read_source_series(tmp_path / "study")
    chosen = read_source_series(tmp_path / "study", series_uid=b.series_uid)
    assert len(chosen.datasets) == 4
    # slices come sorted along the normal, not by file name or InstanceNumber
    np.testing.assert_allclose(chosen.positions, b.positions)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("not DICOM")
    with pytest.raises(ValueError, match="no DICOM image slices"):
        read_source_series(tmp_path / "empty")


@pytest.mark.parametrize("seed", range(6))
def test_traced_edges_rasterise_back_to_the_mask(seed: int) -> None:
    """Pixel centres inside an odd number of polygons (matplotlib, as the RTSTRUCT reader) are the mask."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(1, 14)), int(rng.integers(1, 14)))
    mask = rng.random(shape) < rng.uniform(0.2, 0.8)
    polygons = trace_pixel_edges(mask)
    rr, cc = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    centres = np.c_[rr.ravel(), cc.ravel()]
    inside = np.zeros(mask.size, dtype=bool)
    for polygon in polygons:
        assert np.all(np.abs(polygon - np.round(polygon)) == 0.5)  # vertices on pixel corners
        assert len(polygon) >= 4
        inside ^= MplPath(polygon).contains_points(centres)
    np.testing.assert_array_equal(inside.reshape(shape), mask)


def test_trace_separates_diagonal_pixels_and_finds_holes() -> None:
    diagonal = np.array([[1, 0], [0, 1]], dtype=bool)
    assert [p.tolist() for p in trace_pixel_edges(diagonal)] == [
        [[-0.5, -0.5], [-0.5, 0.5], [0.5, 0.5], [0.5, -0.5]],
        [[0.5, 0.5], [0.5, 1.5], [1.5, 1.5], [1.5, 0.5]],
    ]
    assert trace_pixel_edges(np.zeros((3, 3), bool)) == []
    ring = np.ones((4, 5), bool)
    ring[1:3, 1:4] = False
    outer, hole = trace_pixel_edges(ring)
    assert len(outer) == 4
    assert len(hole) == 4


@pytest.mark.parametrize(
    ("name", "category", "type_"),
    [
        ("infection", "49755003", "52988006"),  # morphologically abnormal structure / lesion
        ("Ground-glass opacity", "49755003", "52988006"),
        ("consolidation", "49755003", "52988006"),
        ("lesion", "49755003", "52988006"),
        ("nodules", "49755003", "27925004"),
        ("liver", "91723000", "10200004"),  # anatomical structure / liver
        ("kidney_left", "91723000", "64033007"),
        ("shaft", "85756007", "85756007"),  # no standard code: generic tissue
    ],
)
def test_segment_codes(name: str, category: str, type_: str) -> None:
    code = segment_code(name)
    assert (code.category[0], code.type[0]) == (category, type_)
    assert code.generic == (category == "85756007")


def test_shared_dicom_series_round_trip(shared_data: Path, tmp_path: Path) -> None:
    """The real series (JPEG 2000, blank UIDs) with TotalSegmentator's mask stored in another axis order (LAS)."""
    import highdicom as hd
    from nibabel.orientations import apply_orientation, io_orientation, ornt_transform

    folder = shared_data / "totalsegmentator_example_ct_dicom"
    if not (folder / "dicom").is_dir():
        pytest.skip("totalsegmentator_example_ct_dicom not in the shared data")
    labelmap = json.loads((shared_data / "totalsegmentator_example_ct" / "labelmap_total_v2.json").read_text())
    reference = nib.load(folder / "example_seg_dicom.nii.gz")
    full = np.asarray(reference.dataobj)
    # an organ, a vessel, a vertebra (holes: the spinal canal) and a rib (several pieces per slice)
    wanted = {5: "liver", 52: "aorta", 32: "vertebrae_T12", 98: "rib_left_7"}
    assert all(labelmap[str(k)] == v for k, v in wanted.items())
    mask = np.zeros(full.shape, dtype=np.uint8)
    for index, value in enumerate(wanted, start=1):
        mask[full == value] = index
    classes = ["background", *wanted.values()]
    series = read_source_series(folder / "dicom")
    assert len(series.datasets) == 20
    rt = write_rtstruct(mask, reference.affine, series, tmp_path / "rt.dcm", classes)
    seg = write_dicom_seg(mask, reference.affine, series, tmp_path / "seg.dcm", classes)

    converted = dicom_to_nifti(folder / "dicom", tmp_path / "nifti")
    ct = nib.load(converted.converted[0].nifti)
    to_ct = ornt_transform(io_orientation(reference.affine), io_orientation(ct.affine))
    expected = apply_orientation(mask, to_ct)
    back = _read_back(rt, converted.converted[0].nifti, tmp_path / "back")
    for index, name in enumerate(classes[1:], start=1):
        assert back[name].any(), name
        np.testing.assert_array_equal(back[name], (expected == index).astype(np.uint8), err_msg=name)
    frames = hd.seg.segread(seg).get_pixels_by_source_instance(
        source_sop_instance_uids=series.sop_instance_uids, combine_segments=True, relabel=False
    )
    np.testing.assert_array_equal(frames, mask_on_series(mask, reference.affine, series))
