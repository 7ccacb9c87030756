"""Find the DICOM image series in a folder tree, reading each file's header once.

:func:`discover_series` walks a tree, reads headers only (the pixel data is skipped, its file offset recorded so
the pixels can later be read straight into the volume), and groups image files by ``SeriesInstanceUID`` (several
series in one folder is normal). Non-DICOM files are skipped (those named like DICOM, ``*.dcm``, are listed so the
caller can say so); non-image DICOM objects (RTSTRUCT, SR, DICOMDIR, ...) are skipped with an info log; truncated or
unreadable DICOM files are reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from data_tools.dicom.tags import SeriesError, float_or_none, int_or_none
from medseg.typing import PathLike

__all__ = [
    "DICOM_SUFFIXES",
    "DicomSeries",
    "DiscoveryResult",
    "SliceHeader",
    "discover_series",
]

logger = logging.getLogger(__name__)

#: File name endings that claim to be DICOM: a file so named that is not DICOM is reported, not skipped silently.
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima")

#: Transfer syntaxes whose pixel data is stored raw, little endian: read straight from the file, no decoder.
NATIVE_LITTLE_ENDIAN = frozenset({"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"})

_UNDEFINED_LENGTH = 0xFFFFFFFF


@dataclasses.dataclass(frozen=True)
class SliceHeader:
    """What conversion needs from one image file's header.

    Attributes:
        path: the file.
        sop_instance_uid: SOPInstanceUID, ``""`` when blank.
        instance_number: InstanceNumber, or None; recorded, never used for ordering.
        position: ImagePositionPatient (LPS, mm): the centre of the first transmitted pixel.
        orientation: ImageOrientationPatient: row direction cosines then column direction cosines.
        rows: Rows.
        columns: Columns.
        pixel_spacing: PixelSpacing (mm): spacing between rows, then between columns.
        slope: RescaleSlope (1 when absent).
        intercept: RescaleIntercept (0 when absent).
        transfer_syntax_uid: TransferSyntaxUID of the file.
        bits_allocated: BitsAllocated (bits per stored sample, with padding).
        bits_stored: BitsStored (significant bits of each sample).
        pixel_representation: PixelRepresentation: 0 unsigned, 1 two's complement.
        pixel_offset: byte offset of the raw pixel values in the file, when they can be read without a decoder
            (native little-endian transfer syntax, defined length); None otherwise.
    """

    path: Path
    sop_instance_uid: str
    instance_number: int | None
    position: tuple[float, float, float]
    orientation: tuple[float, float, float, float, float, float]
    rows: int
    columns: int
    pixel_spacing: tuple[float, float]
    slope: float
    intercept: float
    transfer_syntax_uid: str
    bits_allocated: int = 16
    bits_stored: int = 16
    pixel_representation: int = 0
    pixel_offset: int | None = None


@dataclasses.dataclass
class DicomSeries:
    """The image files of one series, unsorted, with the first file's header for series-level facts.

    Attributes:
        key: SeriesInstanceUID, or a fallback key when the files carry none.
        series_instance_uid: SeriesInstanceUID (``""`` when blank).
        slices: headers of the files that can be placed in space.
        header: the first file's header (pydicom Dataset without pixel data).
        problems: reasons some files of the series cannot be used (no position, multi-frame, ...): any problem
            makes the series fail, since converting the rest would silently drop slices.
    """

    key: str
    series_instance_uid: str
    slices: list[SliceHeader]
    header: Any
    problems: list[str] = dataclasses.field(default_factory=list)

    @property
    def series_number(self) -> int | None:
        return int_or_none(self.header.get("SeriesNumber"))

    @property
    def series_description(self) -> str:
        return str(self.header.get("SeriesDescription", "") or "").strip()

    @property
    def label(self) -> str:
        """Human-readable identification for messages (may name folders; never written to outputs)."""
        folders = sorted({str(s.path.parent) for s in self.slices}) or ["?"]
        where = folders[0] if len(folders) == 1 else f"{folders[0]} (+{len(folders) - 1} more folders)"
        number = self.series_number
        desc = self.series_description
        what = "series" + (f" {number}" if number is not None else "") + (f" {desc!r}" if desc else "")
        uid = self.series_instance_uid or "<no SeriesInstanceUID>"
        return f"{what} [{uid}] ({len(self.slices)} files in {where})"


@dataclasses.dataclass
class DiscoveryResult:
    """What :func:`discover_series` found.

    Attributes:
        series: image series, ordered by (SeriesNumber, key).
        unreadable: ``(file, reason)`` for DICOM files that could not be read (truncated, corrupt).
        skipped_non_dicom: files that are not DICOM (no ``DICM`` preamble).
        skipped_non_image: DICOM files without an image (RTSTRUCT, SR, DICOMDIR, ...).
    """

    series: list[DicomSeries]
    unreadable: list[tuple[Path, str]]
    skipped_non_dicom: list[Path]
    skipped_non_image: list[Path]

    @property
    def misnamed_non_dicom(self) -> list[Path]:
        """The skipped non-DICOM files whose names claim DICOM (``*.dcm`` and the like): worth a word to the user."""
        return [p for p in self.skipped_non_dicom if p.name.lower().endswith(DICOM_SUFFIXES)]


def _is_image_storage(sop_class_uid: Any) -> bool:
    name = str(getattr(sop_class_uid, "name", "") or "")
    return name.endswith("Image Storage")


def _read_header(path: Path) -> Any:
    """Read a DICOM header with large values deferred (the pixels are not read); None when the file is not DICOM.

    Raises:
        SeriesError: for a DICOM file that is truncated or otherwise unreadable.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, defer_size=1024)
    except InvalidDicomError:
        return None
    except Exception as err:  # pydicom raises a variety of errors on corrupt files
        raise SeriesError(f"unreadable DICOM file {path}: {type(err).__name__}: {err}") from err
    if "PixelData" in ds:
        raw = ds.get_item("PixelData", keep_deferred=True)
        length = getattr(raw, "length", None)
        tell = getattr(raw, "value_tell", None)
        if length is not None and tell is not None and length != _UNDEFINED_LENGTH:
            size = path.stat().st_size
            if tell + length > size:
                raise SeriesError(
                    f"truncated DICOM file {path}: pixel data needs {length} bytes at offset {tell} "
                    f"but the file has {size} bytes"
                )
    return ds


def _pixel_offset(ds: Any, transfer_syntax_uid: str, needed: int) -> int | None:
    """File offset of raw little-endian pixel values (at least ``needed`` bytes), or None when a decoder is needed."""
    if transfer_syntax_uid not in NATIVE_LITTLE_ENDIAN:
        return None
    raw = ds.get_item("PixelData", keep_deferred=True)
    length = getattr(raw, "length", None)
    tell = getattr(raw, "value_tell", None)
    if not isinstance(tell, int) or not isinstance(length, int) or length == _UNDEFINED_LENGTH or length < needed:
        return None
    return tell


def _slice_header(path: Path, ds: Any) -> SliceHeader:
    """Extract the geometry of one image file; raises SeriesError when it cannot be placed in space."""
    ipp = ds.get("ImagePositionPatient")
    iop = ds.get("ImageOrientationPatient")
    spacing = ds.get("PixelSpacing")
    if ipp is None or len(ipp) != 3:
        raise SeriesError(f"{path}: no valid ImagePositionPatient, so the slice cannot be placed in space")
    if iop is None or len(iop) != 6:
        raise SeriesError(f"{path}: no valid ImageOrientationPatient, so the slice cannot be placed in space")
    if spacing is None or len(spacing) != 2:
        raise SeriesError(f"{path}: no valid PixelSpacing")
    frames = int_or_none(ds.get("NumberOfFrames")) or 1
    if frames > 1:
        raise SeriesError(
            f"{path}: multi-frame image ({frames} frames, e.g. Enhanced CT); only one-slice-per-file series "
            "are supported — convert it with dcm2niix or SimpleITK"
        )
    samples = int_or_none(ds.get("SamplesPerPixel")) or 1
    if samples != 1:
        raise SeriesError(f"{path}: {samples} samples per pixel (colour); only grey-level series are supported")
    try:
        position = tuple(float(v) for v in ipp)
        orientation = tuple(float(v) for v in iop)
        pixel_spacing = tuple(float(v) for v in spacing)
    except (TypeError, ValueError) as err:
        raise SeriesError(f"{path}: unreadable geometry tags: {err}") from err
    if not all(math.isfinite(v) for v in (*position, *orientation, *pixel_spacing)) or min(pixel_spacing) <= 0:
        raise SeriesError(f"{path}: invalid geometry (position {position}, spacing {pixel_spacing})")
    slope = float_or_none(ds.get("RescaleSlope"))
    intercept = float_or_none(ds.get("RescaleIntercept"))
    ts = str(ds.file_meta.get("TransferSyntaxUID", "") if hasattr(ds, "file_meta") else "")
    rows, columns = int(ds.Rows), int(ds.Columns)
    bits_allocated = int_or_none(ds.get("BitsAllocated")) or 16
    bits_stored = int_or_none(ds.get("BitsStored")) or bits_allocated
    representation = int_or_none(ds.get("PixelRepresentation")) or 0
    offset = None
    if bits_allocated in (8, 16, 32) and 0 < bits_stored <= bits_allocated:
        offset = _pixel_offset(ds, ts, rows * columns * bits_allocated // 8)
    return SliceHeader(
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or "").strip(),
        instance_number=int_or_none(ds.get("InstanceNumber")),
        position=position,  # type: ignore[arg-type]
        orientation=orientation,  # type: ignore[arg-type]
        rows=rows,
        columns=columns,
        pixel_spacing=pixel_spacing,  # type: ignore[arg-type]
        slope=1.0 if slope is None or slope == 0 else slope,
        intercept=0.0 if intercept is None else intercept,
        transfer_syntax_uid=ts,
        bits_allocated=bits_allocated,
        bits_stored=bits_stored,
        pixel_representation=representation,
        pixel_offset=offset,
    )


def _fallback_key(path: Path, ds: Any) -> str:
    """Group key for files without SeriesInstanceUID: folder + study + series number + frame of reference + plane."""
    iop = ds.get("ImageOrientationPatient") or []
    try:
        plane = ",".join(f"{float(v):.3f}" for v in iop)
    except (TypeError, ValueError):
        plane = "?"
    parts = [
        str(path.parent),
        str(ds.get("StudyInstanceUID", "") or ""),
        str(ds.get("SeriesNumber", "") or ""),
        str(ds.get("Modality", "") or ""),
        str(ds.get("FrameOfReferenceUID", "") or ""),
        plane,
        f"{ds.get('Rows', '')}x{ds.get('Columns', '')}",
    ]
    return "nouid:" + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def _iter_files(root: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name


def discover_series(root: PathLike, *, progress: bool = False) -> DiscoveryResult:
    """Walk ``root`` and group the DICOM image files by series, reading headers only.

    Files are grouped by SeriesInstanceUID. Files whose SeriesInstanceUID is blank (some anonymisers blank it, as
    in the TotalSegmentator example) are grouped by folder, StudyInstanceUID, SeriesNumber, modality,
    FrameOfReferenceUID, orientation and matrix size instead, with a warning.

    Args:
        root: folder to search recursively (a single file is accepted too).
        progress: show a tqdm bar over files.

    Returns:
        The series found, plus the files that were unreadable, not DICOM, or not images.

    Raises:
        FileNotFoundError: if ``root`` does not exist.
    """
    from tqdm.auto import tqdm

    root = Path(root)
    if not root.exists():
        raise FileNotFoundError(f"input {str(root)!r} does not exist; give a folder containing DICOM files")
    files = [root] if root.is_file() else list(_iter_files(root))
    groups: dict[str, DicomSeries] = {}
    unreadable: list[tuple[Path, str]] = []
    non_dicom: list[Path] = []
    non_image: list[Path] = []
    blank_uid_folders: set[Path] = set()
    seen_sops: dict[str, dict[str, Path]] = {}
    for path in tqdm(files, desc="reading DICOM headers", unit="file", disable=not progress, leave=False):
        try:
            ds = _read_header(path)
        except SeriesError as err:
            logger.debug("unreadable: %s", err)
            unreadable.append((path, str(err)))
            continue
        except OSError as err:
            unreadable.append((path, f"cannot read {path}: {err}"))
            continue
        if ds is None:
            logger.debug("skipping %s: not a DICOM file", path)
            non_dicom.append(path)
            continue
        sop_class = ds.get("SOPClassUID") or ds.file_meta.get("MediaStorageSOPClassUID")
        if "PixelData" not in ds or "Rows" not in ds:
            if _is_image_storage(sop_class):
                unreadable.append((path, f"incomplete DICOM image file {path}: no pixel data (truncated?)"))
            else:
                logger.info("skipping %s: DICOM without an image (%s)", path, getattr(sop_class, "name", sop_class))
                non_image.append(path)
            continue
        series_uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
        if series_uid:
            key = series_uid
        else:
            key = _fallback_key(path, ds)
            blank_uid_folders.add(path.parent)
        series = groups.get(key)
        if series is None:
            series = groups[key] = DicomSeries(key=key, series_instance_uid=series_uid, slices=[], header=ds)
        try:
            header = _slice_header(path, ds)
        except SeriesError as err:
            series.problems.append(str(err))
            continue
        sop = header.sop_instance_uid
        if sop and sop in seen_sops.setdefault(key, {}):
            logger.warning("skipping %s: same SOPInstanceUID as %s (a copy)", path, seen_sops[key][sop])
            continue
        if sop:
            seen_sops[key][sop] = path
        series.slices.append(header)
    for folder in sorted(blank_uid_folders):
        logger.warning(
            "DICOM files in %s have a blank SeriesInstanceUID; grouped by folder, study, series number, frame of "
            "reference, orientation and matrix size instead",
            folder,
        )
    ordered = sorted(groups.values(), key=lambda s: (s.series_number is None, s.series_number or 0, s.key))
    return DiscoveryResult(ordered, unreadable, non_dicom, non_image)
