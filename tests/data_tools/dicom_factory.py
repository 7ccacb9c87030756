"""Synthetic DICOM CT series, RTSTRUCT and LIDC XML files for the data_tools tests, written with pydicom.

Every stored pixel value encodes where it came from: ``code(s, r, c) = 4096 s + 64 r + c`` for slice ``s`` (in
ascending order along the slice normal), row ``r`` and column ``c``. A test can therefore decode any voxel of a
converted volume back to its DICOM slice/row/column and compare world coordinates computed independently from
ImagePositionPatient, ImageOrientationPatient and PixelSpacing (DICOM PS3.3 C.7.6.2.1.1).
"""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

__all__ = [
    "ContourSpec",
    "SeriesSpec",
    "code",
    "decode",
    "rotation_orientation",
    "write_ct_series",
    "write_lidc_xml",
    "write_rtstruct",
]

MAX_RC = 64  # rows and columns must stay below this for the value code to be unique
MAX_SLICES = 16  # and slices below this, for the code to fit in uint16


def code(s: npt.ArrayLike, r: npt.ArrayLike, c: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """Stored value of slice ``s``, row ``r``, column ``c``."""
    return np.asarray(s) * MAX_RC * MAX_RC + np.asarray(r) * MAX_RC + np.asarray(c)


def decode(value: npt.ArrayLike) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Inverse of :func:`code`."""
    v = np.rint(np.asarray(value, dtype=np.float64)).astype(np.int64)
    return v // (MAX_RC * MAX_RC), (v // MAX_RC) % MAX_RC, v % MAX_RC


def _ds(value: float) -> str:
    """A DS string (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.8g}"


def rotation_orientation(yaw_deg: float, pitch_deg: float) -> tuple[float, ...]:
    """An oblique ImageOrientationPatient: the axial row/column directions rotated about z, then about x."""
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rot = rx @ rz
    return tuple(float(v) for v in (*rot[:, 0], *rot[:, 1]))


@dataclasses.dataclass
class SeriesSpec:
    """What was written: enough to compute every pixel's world position independently of the converter."""

    folder: Path
    files: list[Path]  # by slice index s (ascending along the normal); skipped slices are absent
    slice_indices: list[int]  # the s of each written file
    series_uid: str
    study_uid: str
    frame_uid: str
    sop_uids: list[str]  # by written file
    positions: npt.NDArray[np.float64]  # (n, 3) IPP as written (parsed back from the DS strings)
    orientation: npt.NDArray[np.float64]  # (6,) as written
    pixel_spacing: tuple[float, float]  # (row spacing, column spacing)
    rows: int
    cols: int
    slope: float
    intercept: float
    instance_numbers: list[int]

    def world_lps(self, s_pos: int, r: npt.ArrayLike, c: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """LPS position of row ``r``, column ``c`` (may be fractional) of the ``s_pos``-th written file."""
        row_dir, col_dir = self.orientation[:3], self.orientation[3:]
        dr, dc = self.pixel_spacing
        r = np.asarray(r, dtype=np.float64)[..., None]
        c = np.asarray(c, dtype=np.float64)[..., None]
        return self.positions[s_pos] + c * dc * row_dir + r * dr * col_dir

    def pixel_to_lps(self, s_code: npt.ArrayLike, r: npt.ArrayLike, c: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Like :meth:`world_lps` but addressed by the slice code ``s`` stored in the pixel values."""
        s_code = np.asarray(s_code)
        lookup = {s: i for i, s in enumerate(self.slice_indices)}
        idx = np.vectorize(lookup.__getitem__)(s_code) if s_code.size else s_code
        row_dir, col_dir = self.orientation[:3], self.orientation[3:]
        dr, dc = self.pixel_spacing
        return (
            self.positions[idx]
            + np.asarray(c, dtype=np.float64)[..., None] * dc * row_dir
            + np.asarray(r, dtype=np.float64)[..., None] * dr * col_dir
        )


def write_ct_series(
    folder: Path,
    *,
    n_slices: int = 5,
    rows: int = 6,
    cols: int = 7,
    pixel_spacing: tuple[float, float] = (0.8, 0.6),
    step: float = 2.5,
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    origin: Sequence[float] = (-10.0, -20.0, 30.0),
    slope: float = 1.0,
    intercept: float = -1024.0,
    series_number: int | None = 2,
    description: str = "CT test",
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_uid: str | None = None,
    shuffle: bool = True,
    seed: int = 0,
    patient_name: str = "Doe^Jane",
    patient_id: str = "PID-98765",
    birth_date: str = "19600214",
    skip: Sequence[int] = (),
    offsets: Mapping[int, float] | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    slice_thickness: float = 3.0,
    prefix: str = "",
) -> SeriesSpec:
    """Write a CT series (one file per slice) to ``folder`` and describe it.

    Slice ``s`` sits at ``origin + s * step * n`` (``n`` = row × column direction) plus ``offsets[s]`` mm along
    ``n``; slices in ``skip`` are not written (a gap). InstanceNumbers are a random permutation when ``shuffle``,
    file names are random, and SliceThickness is deliberately not the spacing.
    """
    assert rows < MAX_RC
    assert cols < MAX_RC
    assert n_slices <= 30
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_uid or generate_uid()
    orient_txt = [_ds(float(v)) for v in orientation]
    orient = np.asarray([float(v) for v in orient_txt])
    normal = np.cross(orient[:3], orient[3:])
    kept = [s for s in range(n_slices) if s not in set(skip)]
    numbers = list(range(1, len(kept) + 1))
    if shuffle:
        numbers = [int(v) for v in rng.permutation(numbers)]
    files, sops, positions = [], [], []
    for pos, s in enumerate(kept):
        offset = (offsets or {}).get(s, 0.0)
        ipp_txt = [_ds(float(v)) for v in np.asarray(origin, dtype=float) + (s * step + offset) * normal]
        positions.append([float(v) for v in ipp_txt])
        sop = generate_uid()
        sops.append(sop)
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.Modality = "CT"
        ds.Manufacturer = "SynthCo"
        ds.PatientName = patient_name
        ds.PatientID = patient_id
        ds.PatientBirthDate = birth_date
        ds.StudyInstanceUID = study_uid
        ds.StudyDate = "20240102"
        ds.SeriesInstanceUID = series_uid
        if series_number is not None:
            ds.SeriesNumber = series_number
        ds.SeriesDescription = description
        ds.FrameOfReferenceUID = frame_uid
        ds.InstanceNumber = numbers[pos]
        ds.ImagePositionPatient = ipp_txt
        ds.ImageOrientationPatient = orient_txt
        ds.PixelSpacing = [_ds(pixel_spacing[0]), _ds(pixel_spacing[1])]
        ds.SliceThickness = _ds(slice_thickness)
        ds.KVP = "120"
        ds.ConvolutionKernel = "B30f"
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.RescaleSlope = _ds(slope)
        ds.RescaleIntercept = _ds(intercept)
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        ds.PixelData = code(s, r, c).astype("<u2").tobytes()
        if transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        path = folder / f"{prefix}{rng.integers(10**9):09d}"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return SeriesSpec(
        folder=folder,
        files=files,
        slice_indices=kept,
        series_uid=series_uid,
        study_uid=study_uid,
        frame_uid=frame_uid,
        sop_uids=sops,
        positions=np.asarray(positions),
        orientation=orient,
        pixel_spacing=(float(_ds(pixel_spacing[0])), float(_ds(pixel_spacing[1]))),
        rows=rows,
        cols=cols,
        slope=float(_ds(slope)),
        intercept=float(_ds(intercept)),
        instance_numbers=numbers,
    )


@dataclasses.dataclass
class ContourSpec:
    """A contour drawn on written file ``slice_pos`` of a series, in (column, row) pixel coordinates."""

    slice_pos: int
    points_cr: Sequence[tuple[float, float]]
    geometric_type: str = "CLOSED_PLANAR"
    sop_uid: str | None = None  # override the referenced image (default: that slice's SOPInstanceUID)
    z_shift_mm: float = 0.0  # move the contour off its slice along the normal


def write_rtstruct(
    path: Path,
    spec: SeriesSpec,
    rois: Mapping[str, Sequence[ContourSpec]],
    *,
    referenced_series_uid: str | None = None,
    frame_uid: str | None = None,
) -> Path:
    """Write an RTSTRUCT whose ROIs are ``rois`` (name -> contours) on the series ``spec``."""
    normal = np.cross(spec.orientation[:3], spec.orientation[3:])
    frame = frame_uid or spec.frame_uid
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = sop
    ds.Modality = "RTSTRUCT"
    ds.PatientName = "Doe^Jane"
    ds.StudyInstanceUID = spec.study_uid
    ds.SeriesInstanceUID = generate_uid()
    ds.StructureSetLabel = "test"

    def image_ref(uid: str) -> Dataset:
        item = Dataset()
        item.ReferencedSOPClassUID = CTImageStorage
        item.ReferencedSOPInstanceUID = uid
        return item

    series_item = Dataset()
    series_item.SeriesInstanceUID = referenced_series_uid or spec.series_uid
    series_item.ContourImageSequence = DicomSequence([image_ref(u) for u in spec.sop_uids])
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    study_item.ReferencedSOPInstanceUID = spec.study_uid
    study_item.RTReferencedSeriesSequence = DicomSequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = frame
    frame_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_item])
    roi_items, contour_items = [], []
    for number, (name, contours) in enumerate(rois.items(), start=1):
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = frame
        roi.ROIName = name
        roi.ROIGenerationAlgorithm = "MANUAL"
        roi_items.append(roi)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [255, 0, number % 256]
        seq = []
        for cs in contours:
            pts = np.asarray(cs.points_cr, dtype=np.float64)
            world = spec.world_lps(cs.slice_pos, pts[:, 1], pts[:, 0]) + cs.z_shift_mm * normal
            item = Dataset()
            item.ContourImageSequence = DicomSequence([image_ref(cs.sop_uid or spec.sop_uids[cs.slice_pos])])
            item.ContourGeometricType = cs.geometric_type
            item.NumberOfContourPoints = len(pts)
            item.ContourData = [_ds(float(v)) for v in world.ravel()]
            seq.append(item)
        if seq:
            rc.ContourSequence = DicomSequence(seq)
        contour_items.append(rc)
    ds.StructureSetROISequence = DicomSequence(roi_items)
    ds.ROIContourSequence = DicomSequence(contour_items)
    ds.save_as(path, enforce_file_format=True)
    return path


#: One LIDC ROI: (written slice position or None for "a slice outside the volume", [(x, y), ...], inclusion).
LidcRoiSpec = tuple[int | None, Sequence[tuple[int, int]], bool]


def write_lidc_xml(
    path: Path,
    spec: SeriesSpec,
    readers: Sequence[Sequence[Sequence[LidcRoiSpec]]],
    *,
    series_uid: str | None = None,
    with_sop: bool = True,
) -> Path:
    """Write an LIDC XML: ``readers[r][n]`` is the list of ROIs of nodule ``n`` of reader ``r``."""
    ns = "http://www.nih.gov"
    ET.register_namespace("", ns)

    def sub(parent: ET.Element, tag: str, text: str | None = None) -> ET.Element:
        el = ET.SubElement(parent, f"{{{ns}}}{tag}")
        if text is not None:
            el.text = text
        return el

    root = ET.Element(f"{{{ns}}}LidcReadMessage")
    header = sub(root, "ResponseHeader")
    sub(header, "SeriesInstanceUid", series_uid or spec.series_uid)
    sub(header, "StudyInstanceUID", spec.study_uid)
    for r_idx, nodules in enumerate(readers):
        session = sub(root, "readingSession")
        sub(session, "servicingRadiologistID", f"reader-{r_idx + 1}")
        for n_idx, rois in enumerate(nodules):
            nod = sub(session, "unblindedReadNodule")
            sub(nod, "noduleID", f"N{r_idx + 1}.{n_idx + 1}")
            chars = sub(nod, "characteristics")
            sub(chars, "malignancy", "3")
            for slice_pos, points, inclusion in rois:
                roi = sub(nod, "roi")
                if slice_pos is None:
                    z, sop = 999.0, generate_uid()
                else:
                    z, sop = float(spec.positions[slice_pos][2]), spec.sop_uids[slice_pos]
                sub(roi, "imageZposition", f"{z:.6f} ")
                if with_sop:
                    sub(roi, "imageSOP_UID", sop)
                sub(roi, "inclusion", "TRUE" if inclusion else "FALSE")
                for x, y in points:
                    edge = sub(roi, "edgeMap")
                    sub(edge, "xCoord", str(x))
                    sub(edge, "yCoord", str(y))
        non = sub(session, "nonNodule")
        sub(non, "nonNoduleID", "nn")
    ET.ElementTree(root).write(path, encoding="UTF-8", xml_declaration=True)
    return path
