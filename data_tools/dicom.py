r"""DICOM image series to NIfTI: discover series in a folder tree, sort slices in space, convert, write a sidecar.

The library behind ``medseg-data dicom2nifti``. The steps, each a public function:

1. :func:`discover_series` walks a tree, reads headers only, and groups image files by ``SeriesInstanceUID``
   (several series in one folder is normal). Non-DICOM files are skipped with a debug log; non-image DICOM objects
   (RTSTRUCT, SR, DICOMDIR, ...) are skipped with an info log; truncated or unreadable DICOM files are reported.
2. :func:`series_geometry` sorts the slices by their position along the slice normal
   ``n = r × c`` (``r``, ``c``: the row and column direction cosines of ImageOrientationPatient), i.e. by
   ``ImagePositionPatient · n``, never by InstanceNumber, and derives the spacing from the positions, never from
   SliceThickness. It detects duplicated positions, missing slices and non-uniform spacing.
3. :func:`convert_series` reads the pixels (pydicom with the pylibjpeg decoders; SimpleITK/GDCM for transfer syntaxes
   pydicom cannot decode), applies RescaleSlope/RescaleIntercept, and writes the NIfTI and its sidecar JSON
   atomically. :func:`dicom_to_nifti` does all of it for a tree and reports what failed.

Geometry and conventions:
    Voxel ``(i, j, k)`` of the written array is column ``i``, row ``j`` of the ``k``-th slice in ascending order along
    ``n``. Its centre is at (DICOM PS3.3 C.7.6.2.1.1, LPS patient coordinates in mm)

    .. math::
        x_{LPS} = P_0 + i\,\Delta_c\,r + j\,\Delta_r\,c + k\,s,

    where ``P_0`` is ImagePositionPatient of the first sorted slice (the centre of its first pixel), ``Δ_r, Δ_c`` are
    PixelSpacing (row spacing first), and ``s = (P_{N-1} - P_0) / (N - 1)`` is the slice step vector (parallel to
    ``n`` unless the gantry was tilted). NIfTI world space is RAS, so the stored affine is
    ``diag(-1, -1, 1, 1) @ A_LPS``. This is the grid SimpleITK's ``ImageSeriesReader`` produces (its array is the
    transpose ``[k, j, i]``).

Sidecar JSON (``<name>.json`` beside ``<name>.nii.gz``): the acquisition facts (modality, kVp, kernel, nominal slice
thickness, measured spacing, slice count, ...), the DICOM geometry (orientation, pixel spacing, per-slice positions)
and the UIDs that let ``rtstruct2nifti`` and ``lidc`` verify that annotations reference this series
(``series_instance_uid``, ``frame_of_reference_uid``, per-slice ``sop_instance_uids``). With ``deidentify=True`` no
names, IDs, dates, institutions or source paths are written, and UIDs are replaced by their SHA-256 digests
(:func:`uid_digest`): still comparable, no longer readable.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.io import atomic_path, write_json
from medseg.typing import PathLike

__all__ = [
    "LPS_TO_RAS",
    "ConversionReport",
    "ConvertedSeries",
    "DicomSeries",
    "DiscoveryResult",
    "FailedItem",
    "ReferenceVolume",
    "SeriesError",
    "SeriesGeometry",
    "SliceHeader",
    "convert_series",
    "dicom_to_nifti",
    "discover_series",
    "load_reference",
    "load_sidecar",
    "output_name",
    "safe_name",
    "series_geometry",
    "sidecar_path_for",
    "uid_digest",
    "uid_in",
]

logger = logging.getLogger(__name__)

#: LPS (DICOM patient coordinates) to RAS (NIfTI world coordinates): negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

SIDECAR_VERSION = 1

#: Transfer syntaxes that may be lossy (JPEG baseline/extended, JPEG-LS near-lossless, JPEG 2000 (lossy-capable),
#: HTJ2K, MPEG/HEVC video).
_LOSSY_TRANSFER_SYNTAXES = frozenset(
    {
        "1.2.840.10008.1.2.4.50",
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.4.91",
        "1.2.840.10008.1.2.4.93",
        "1.2.840.10008.1.2.4.203",
        "1.2.840.10008.1.2.4.100",
        "1.2.840.10008.1.2.4.101",
        "1.2.840.10008.1.2.4.102",
        "1.2.840.10008.1.2.4.103",
        "1.2.840.10008.1.2.4.104",
        "1.2.840.10008.1.2.4.105",
        "1.2.840.10008.1.2.4.106",
        "1.2.840.10008.1.2.4.107",
        "1.2.840.10008.1.2.4.108",
    }
)

#: Relative and absolute tolerance (mm) when comparing slice steps; IPP is written with limited decimals.
_STEP_RTOL = 0.01
_STEP_ATOL = 0.01
#: Tolerance on direction cosines when checking that all slices share one orientation.
_ORIENTATION_ATOL = 1e-4


class SeriesError(ValueError):
    """A series that cannot be converted (the message says which series and why)."""


# --------------------------------------------------------------------------------------------------------------------
# UIDs and names
# --------------------------------------------------------------------------------------------------------------------


def uid_digest(uid: str) -> str:
    """One-way digest of a DICOM UID, as written in de-identified sidecars.

    Example:
        >>> uid_digest("1.2.3")[:12]
        'sha256:c47f5'
    """
    return "sha256:" + hashlib.sha256(uid.strip().encode("ascii", "replace")).hexdigest()[:32]


def uid_in(uid: str | None, candidates: Iterable[str | None]) -> bool:
    """Whether ``uid`` equals one of ``candidates``, which may be plain UIDs or :func:`uid_digest` values.

    Example:
        >>> uid_in("1.2.3", [uid_digest("1.2.3")]), uid_in("1.2.3", ["1.2.3"]), uid_in("1.2.4", ["1.2.3"])
        (True, True, False)
    """
    if not uid:
        return False
    uid = uid.strip()
    digest = uid_digest(uid)
    return any(c is not None and c in (uid, digest) for c in candidates)


_RESERVED_NAMES = frozenset(
    {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
)


def safe_name(text: str, *, max_length: int = 80) -> str:
    """A file-system-safe version of ``text``: ASCII letters, digits, ``.``, ``+`` and ``-``, joined by ``_``.

    Leading dots and dashes are dropped (a name starting with ``-`` reads as an option on the command line), and
    reserved Windows device names get a leading underscore. May return an empty string.

    Example:
        >>> safe_name("CT Body 3.0 / Lung (ax)"), safe_name("-95.000000"), safe_name("Ödem re.")
        ('CT_Body_3.0_Lung_ax', '95.000000', 'Odem_re')
    """
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    name = re.sub(r"[^A-Za-z0-9.+-]+", "_", ascii_text)
    name = re.sub(r"_+", "_", name).strip("._-+")
    name = name[:max_length].rstrip("._-+")
    if name.lower().split(".")[0] in _RESERVED_NAMES:
        name = "_" + name
    return name


# --------------------------------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------------------------------


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
        return _int_or_none(self.header.get("SeriesNumber"))

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


def _int_or_none(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _float_or_none(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        value = value[0] if len(value) else None
        if value is None:
            return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _is_image_storage(sop_class_uid: Any) -> bool:
    name = str(getattr(sop_class_uid, "name", "") or "")
    return name.endswith("Image Storage")


def _read_header(path: Path) -> Any:
    """Read a DICOM header with large values deferred; None when the file is not DICOM.

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
        if length is not None and tell is not None and length != 0xFFFFFFFF:
            size = path.stat().st_size
            if tell + length > size:
                raise SeriesError(
                    f"truncated DICOM file {path}: pixel data needs {length} bytes at offset {tell} "
                    f"but the file has {size} bytes"
                )
    return ds


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
    frames = _int_or_none(ds.get("NumberOfFrames")) or 1
    if frames > 1:
        raise SeriesError(
            f"{path}: multi-frame image ({frames} frames, e.g. Enhanced CT); only one-slice-per-file series "
            "are supported — convert it with dcm2niix or SimpleITK"
        )
    samples = _int_or_none(ds.get("SamplesPerPixel")) or 1
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
    slope = _float_or_none(ds.get("RescaleSlope"))
    intercept = _float_or_none(ds.get("RescaleIntercept"))
    ts = ds.file_meta.get("TransferSyntaxUID", "") if hasattr(ds, "file_meta") else ""
    return SliceHeader(
        path=path,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "") or "").strip(),
        instance_number=_int_or_none(ds.get("InstanceNumber")),
        position=position,  # type: ignore[arg-type]
        orientation=orientation,  # type: ignore[arg-type]
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        pixel_spacing=pixel_spacing,  # type: ignore[arg-type]
        slope=1.0 if slope is None or slope == 0 else slope,
        intercept=0.0 if intercept is None else intercept,
        transfer_syntax_uid=str(ts),
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


# --------------------------------------------------------------------------------------------------------------------
# Geometry
# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SeriesGeometry:
    """Slices sorted along the slice normal, and the grid they define.

    Attributes:
        slices: the slices in ascending order of ``ImagePositionPatient · n``.
        offsets: position of each slice along the stacking direction, relative to the first (mm, ascending).
        direction: unit stacking direction (LPS); equals the normal ``n`` unless the gantry was tilted.
        normal: slice normal ``n = r × c`` (LPS).
        step: slice spacing (mm): the median step between neighbouring slices.
        uniform: whether all steps equal ``step`` (within 1 % or 0.01 mm).
        missing: number of missing slices detected (gaps that are whole multiples of ``step``).
        problems: human-readable description of each gap or irregular step.
        tilt_deg: angle between ``direction`` and ``normal`` (degrees; gantry tilt).
    """

    slices: list[SliceHeader]
    offsets: npt.NDArray[np.float64]
    direction: npt.NDArray[np.float64]
    normal: npt.NDArray[np.float64]
    step: float
    uniform: bool
    missing: int
    problems: list[str]
    tilt_deg: float

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.slices[0]
        return (s.columns, s.rows, len(self.slices))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) along the array axes ``(i, j, k)``: column spacing, row spacing, slice step."""
        dr, dc = self.slices[0].pixel_spacing
        return (dc, dr, self.step)

    def affine_lps(self, num_slices: int | None = None) -> npt.NDArray[np.float64]:
        """4×4 voxel-to-LPS affine of the uniform grid starting at the first slice (see the module docstring)."""
        first = self.slices[0]
        row_dir = np.asarray(first.orientation[:3], dtype=np.float64)
        col_dir = np.asarray(first.orientation[3:], dtype=np.float64)
        dr, dc = first.pixel_spacing
        affine = np.eye(4)
        affine[:3, 0] = row_dir * dc
        affine[:3, 1] = col_dir * dr
        affine[:3, 2] = self.direction * self.step
        affine[:3, 3] = first.position
        return affine

    def affine_ras(self) -> npt.NDArray[np.float64]:
        """4×4 voxel-to-RAS affine (NIfTI world): ``diag(-1, -1, 1, 1) @ affine_lps()``."""
        return LPS_TO_RAS @ self.affine_lps()


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def series_geometry(slices: Sequence[SliceHeader], *, name: str = "series") -> SeriesGeometry:
    """Sort ``slices`` along the slice normal and check that they form a regular grid.

    Args:
        slices: the image headers of one series, in any order.
        name: how to call the series in error messages.

    Returns:
        The sorted geometry; ``uniform`` and ``problems`` report gaps and irregular steps (not an error here:
        the caller decides).

    Raises:
        SeriesError: fewer than two slices, mixed orientations, matrix sizes or pixel spacings, or several slices at
            the same position.
    """
    if len(slices) < 2:
        raise SeriesError(
            f"{name}: has {len(slices)} slice; a volume needs at least 2, since the slice spacing comes from the "
            "positions of neighbouring slices (ImagePositionPatient), not from SliceThickness"
        )
    first = slices[0]
    orient0 = np.asarray(first.orientation)
    for s in slices[1:]:
        if not np.allclose(s.orientation, orient0, atol=_ORIENTATION_ATOL):
            raise SeriesError(
                f"{name}: slices have different orientations ({first.path.name}: {list(first.orientation)}, "
                f"{s.path.name}: {list(s.orientation)}); a localizer mixed into the series? remove those files"
            )
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise SeriesError(
                f"{name}: slices have different matrix sizes ({first.rows}x{first.columns} in {first.path.name}, "
                f"{s.rows}x{s.columns} in {s.path.name})"
            )
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-4, atol=1e-5):
            raise SeriesError(
                f"{name}: slices have different PixelSpacing ({list(first.pixel_spacing)} in {first.path.name}, "
                f"{list(s.pixel_spacing)} in {s.path.name})"
            )
    row_dir = _unit(orient0[:3].astype(np.float64))
    col_dir = _unit(orient0[3:].astype(np.float64))
    if abs(float(row_dir @ col_dir)) > 1e-3:
        raise SeriesError(f"{name}: ImageOrientationPatient {list(orient0)} is not orthogonal")
    normal = _unit(np.cross(row_dir, col_dir))
    positions = np.asarray([s.position for s in slices], dtype=np.float64)
    along_normal = positions @ normal
    order = np.argsort(along_normal, kind="stable")
    sorted_slices = [slices[int(i)] for i in order]
    positions = positions[order]
    d = along_normal[order]
    gaps = np.diff(d)
    dup = np.flatnonzero(gaps <= _STEP_ATOL)
    if dup.size:
        a, b = sorted_slices[int(dup[0])], sorted_slices[int(dup[0]) + 1]
        raise SeriesError(
            f"{name}: {dup.size + 1} or more slices share a position (e.g. {a.path.name} and {b.path.name} at "
            f"{d[dup[0]]:.3f} mm along the normal): several acquisitions, echoes or phases in one series are not "
            "supported; split them into separate folders"
        )
    span = positions[-1] - positions[0]
    direction = _unit(span)
    tilt = math.degrees(math.acos(min(1.0, abs(float(direction @ normal)))))
    # Offsets along the stacking direction, and how far each slice lies off the line through first and last.
    rel = positions - positions[0]
    offsets = rel @ direction
    off_line = np.linalg.norm(rel - np.outer(offsets, direction), axis=1)
    steps = np.diff(offsets)
    step = float(np.median(steps))
    tol = max(_STEP_ATOL, _STEP_RTOL * step)
    problems: list[str] = []
    missing = 0
    for idx, st in enumerate(steps):
        if abs(st - step) <= tol:
            continue
        ratio = st / step
        lo, hi = sorted_slices[idx], sorted_slices[idx + 1]
        where = f"between {lo.path.name} and {hi.path.name} ({offsets[idx]:.2f} → {offsets[idx + 1]:.2f} mm)"
        if round(ratio) >= 2 and abs(st - round(ratio) * step) <= tol * round(ratio):
            n_miss = round(ratio) - 1
            missing += n_miss
            problems.append(f"{n_miss} missing slice(s) {where}: gap {st:.3f} mm, spacing {step:.3f} mm")
        else:
            problems.append(f"irregular step {st:.3f} mm {where}; spacing elsewhere {step:.3f} mm")
    if float(off_line.max()) > tol:
        worst = int(np.argmax(off_line))
        raise SeriesError(
            f"{name}: slice {sorted_slices[worst].path.name} lies {off_line[worst]:.3f} mm off the line through the "
            "first and last slice positions; the slices do not stack into one volume (mixed acquisitions?)"
        )
    return SeriesGeometry(
        slices=sorted_slices,
        offsets=offsets,
        direction=direction,
        normal=normal,
        step=step,
        uniform=not problems,
        missing=missing,
        problems=problems,
        tilt_deg=tilt,
    )


# --------------------------------------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------------------------------------


def _pydicom_can_decode(transfer_syntax_uid: str) -> bool:
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID

    uid = UID(transfer_syntax_uid or "1.2.840.10008.1.2")
    if not uid.is_compressed:
        return True
    try:
        return bool(get_decoder(uid).is_available)
    except NotImplementedError:
        return False


def _read_slice(header: SliceHeader) -> npt.NDArray[np.float64]:
    """Modality values (stored value × slope + intercept) of one slice as a ``(rows, columns)`` float64 array.

    pydicom decodes native and most compressed transfer syntaxes (JPEG 2000 via pylibjpeg-openjpeg, RLE natively).
    For a compressed syntax without an installed pydicom decoder (e.g. JPEG Lossless without pylibjpeg-libjpeg),
    SimpleITK's GDCM reads the file instead; GDCM applies the rescale itself.
    """
    import pydicom

    path = header.path
    shape = (header.rows, header.columns)
    if _pydicom_can_decode(header.transfer_syntax_uid):
        try:
            ds = pydicom.dcmread(path)
            stored = np.asarray(ds.pixel_array)
        except Exception as err:
            raise SeriesError(f"cannot decode the pixels of {path}: {type(err).__name__}: {err}") from err
        if stored.shape != shape:
            raise SeriesError(f"{path}: pixel array has shape {stored.shape}, header says {shape}")
        return stored.astype(np.float64) * header.slope + header.intercept
    import SimpleITK as sitk  # noqa: N813

    logger.debug("decoding %s with SimpleITK/GDCM (no pydicom decoder for %s)", path, header.transfer_syntax_uid)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        raise SeriesError(
            f"cannot decode the pixels of {path} (transfer syntax {header.transfer_syntax_uid}) with pydicom or "
            f"SimpleITK/GDCM: {err}"
        ) from err
    values = sitk.GetArrayFromImage(image)
    values = values.reshape(values.shape[-2:]) if values.ndim == 3 and values.shape[0] == 1 else values
    if values.shape != shape:
        raise SeriesError(f"{path}: SimpleITK read shape {values.shape}, header says {shape}")
    return np.asarray(values, dtype=np.float64)


def _load_volume(geometry: SeriesGeometry, *, progress: bool = False) -> npt.NDArray[np.float32]:
    """Stack the slices as ``(columns, rows, slices)`` float32 modality values."""
    from tqdm.auto import tqdm

    cols, rows, n = geometry.shape
    volume = np.empty((cols, rows, n), dtype=np.float32)
    for k, header in enumerate(tqdm(geometry.slices, desc="slices", unit="slice", disable=not progress, leave=False)):
        volume[:, :, k] = _read_slice(header).T
    return volume


def _best_dtype(volume: npt.NDArray[np.floating[Any]], integral: bool = False) -> npt.DTypeLike:
    """The smallest lossless type for the rescaled values.

    int16 when every value is an integer in int16 range, int32 for larger integers (the float32 buffer holds
    integers exactly up to 2**24), float32 otherwise (non-integer slope or intercept).
    """
    if not integral and not np.array_equal(volume, np.rint(volume)):
        return np.float32
    lo, hi = float(volume.min()), float(volume.max())
    if lo >= -32768 and hi <= 32767:
        return np.int16
    if abs(lo) < 2**24 and abs(hi) < 2**24:
        return np.int32
    return np.float32


def _resample_uniform(
    volume: npt.NDArray[np.float32], geometry: SeriesGeometry
) -> tuple[npt.NDArray[np.float32], list[int | None]]:
    """Linearly interpolate along the stacking direction onto a grid with spacing ``geometry.step``.

    Returns the resampled volume and, for each output slice, the index of the source slice it copies exactly
    (None where interpolated).
    """
    offsets = geometry.offsets
    step = geometry.step
    count = round(float(offsets[-1]) / step) + 1
    targets = np.arange(count) * step
    out = np.empty((*volume.shape[:2], count), dtype=np.float32)
    sources: list[int | None] = []
    tol = max(_STEP_ATOL, _STEP_RTOL * step)
    for m, t in enumerate(targets):
        hi = int(np.searchsorted(offsets, t))
        if hi < len(offsets) and abs(offsets[hi] - t) <= tol:
            out[:, :, m] = volume[:, :, hi]
            sources.append(hi)
            continue
        if hi > 0 and abs(offsets[hi - 1] - t) <= tol:
            out[:, :, m] = volume[:, :, hi - 1]
            sources.append(hi - 1)
            continue
        hi = min(max(hi, 1), len(offsets) - 1)
        lo = hi - 1
        w = float((t - offsets[lo]) / (offsets[hi] - offsets[lo]))
        out[:, :, m] = (1.0 - w) * volume[:, :, lo] + w * volume[:, :, hi]
        sources.append(None)
    return out, sources


# --------------------------------------------------------------------------------------------------------------------
# Sidecar
# --------------------------------------------------------------------------------------------------------------------


def sidecar_path_for(nifti: PathLike) -> Path:
    """``scan.nii.gz`` → ``scan.json`` (also ``scan.nii`` → ``scan.json``)."""
    p = Path(nifti)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


def load_sidecar(nifti: PathLike, sidecar: PathLike | None = None) -> dict[str, Any] | None:
    """The sidecar written by :func:`convert_series` for ``nifti`` (or the explicit ``sidecar``), else None.

    Raises:
        FileNotFoundError: if an explicit ``sidecar`` does not exist.
        ValueError: if the sidecar is not valid JSON or not a medseg DICOM sidecar.
    """
    path = Path(sidecar) if sidecar is not None else sidecar_path_for(nifti)
    if not path.is_file():
        if sidecar is not None:
            raise FileNotFoundError(f"sidecar {str(path)!r} does not exist; give the JSON written by dicom2nifti")
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"sidecar {path}: not valid JSON ({err}); regenerate it with medseg-data dicom2nifti") from err
    if not isinstance(data, dict) or "slice_positions_lps" not in data:
        raise ValueError(
            f"sidecar {path}: not a medseg-data dicom2nifti sidecar (no 'slice_positions_lps'); "
            "pass the right file with --sidecar or regenerate it"
        )
    return data


_IDENTIFYING_ONLY = (
    ("patient_id", "PatientID"),
    ("patient_name", "PatientName"),
    ("patient_birth_date", "PatientBirthDate"),
    ("patient_sex", "PatientSex"),
    ("patient_age", "PatientAge"),
    ("study_date", "StudyDate"),
    ("series_date", "SeriesDate"),
    ("acquisition_date", "AcquisitionDate"),
    ("accession_number", "AccessionNumber"),
    ("study_id", "StudyID"),
    ("institution_name", "InstitutionName"),
    ("station_name", "StationName"),
    ("device_serial_number", "DeviceSerialNumber"),
)


def _text(ds: Any, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None:
        return None
    if type(value).__name__ == "MultiValue" or isinstance(value, (list, tuple)):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def _identifying_values(ds: Any) -> list[str]:
    """Patient-identifying strings to scrub from free text: name parts, IDs, birth date (several spellings)."""
    values: list[str] = []
    name = str(ds.get("PatientName", "") or "")
    values += [part for part in re.split(r"[\^\s,=]+", name) if len(part) >= 2]
    for keyword in ("PatientID", "OtherPatientIDs", "IssuerOfPatientID"):
        text = _text(ds, keyword)
        if text:
            values += [v for v in text.split("\\") if len(v) >= 2]
    birth = str(ds.get("PatientBirthDate", "") or "").strip()
    if re.fullmatch(r"\d{8}", birth):
        y, m, d = birth[:4], birth[4:6], birth[6:]
        values += [birth, f"{y}-{m}-{d}", f"{d}.{m}.{y}", f"{d}/{m}/{y}", f"{m}/{d}/{y}"]
    return sorted(set(values), key=len, reverse=True)


def _scrub(text: str, identifying: Sequence[str]) -> str:
    for value in identifying:
        text = re.sub(re.escape(value), " ", text, flags=re.IGNORECASE)
    return text


def _build_sidecar(
    series: DicomSeries,
    geometry: SeriesGeometry,
    *,
    affine_ras: npt.NDArray[np.float64],
    shape: tuple[int, ...],
    dtype: str,
    sources: Sequence[int | None],
    deidentify: bool,
) -> dict[str, Any]:
    ds = series.header
    uid = uid_digest if deidentify else (lambda u: u)

    def maybe_uid(value: str | None) -> str | None:
        return uid(value) if value else None

    first = geometry.slices[0]
    ts = first.transfer_syntax_uid
    try:
        from pydicom.uid import UID

        ts_name = UID(ts).name if ts else None
    except Exception:  # pragma: no cover - pydicom always knows its UIDs
        ts_name = None
    kernel = _text(ds, "ConvolutionKernel")
    description = series.series_description
    if deidentify:
        description = re.sub(r"\s+", " ", _scrub(description, _identifying_values(ds))).strip()
    slopes = sorted({s.slope for s in geometry.slices})
    intercepts = sorted({s.intercept for s in geometry.slices})
    positions = [
        list(geometry.slices[i].position) if i is not None else None for i in sources
    ]  # of the written slices; None where interpolated
    sidecar: dict[str, Any] = {
        "medseg_sidecar_version": SIDECAR_VERSION,
        "source": "medseg-data dicom2nifti",
        "deidentified": deidentify,
        "uid_hash": "sha256" if deidentify else None,
        "modality": _text(ds, "Modality"),
        "manufacturer": _text(ds, "Manufacturer"),
        "manufacturer_model_name": _text(ds, "ManufacturerModelName"),
        "series_number": series.series_number,
        "series_description": description or None,
        "body_part_examined": _text(ds, "BodyPartExamined"),
        "patient_position": _text(ds, "PatientPosition"),
        "kvp": _float_or_none(ds.get("KVP")),
        "xray_tube_current_ma": _float_or_none(ds.get("XRayTubeCurrent")),
        "exposure_mas": _float_or_none(ds.get("Exposure")),
        "convolution_kernel": kernel,
        "contrast_bolus_agent": _text(ds, "ContrastBolusAgent"),
        "slice_thickness_nominal_mm": _float_or_none(ds.get("SliceThickness")),
        "spacing_mm": [float(v) for v in (*geometry.spacing[:2], geometry.step)],
        "slice_spacing_mm": geometry.step,
        "slice_count": int(shape[2]),
        "source_slice_count": len(geometry.slices),
        "shape": [int(v) for v in shape],
        "rows": first.rows,
        "columns": first.columns,
        "pixel_spacing_mm": list(first.pixel_spacing),
        "image_orientation_patient": list(first.orientation),
        "gantry_tilt_deg": round(geometry.tilt_deg, 4),
        "uniform_spacing": geometry.uniform,
        "missing_slices": geometry.missing,
        "spacing_problems": list(geometry.problems),
        "interpolated_slices": [m for m, s in enumerate(sources) if s is None],
        "rescale_slope": slopes[0] if len(slopes) == 1 else slopes,
        "rescale_intercept": intercepts[0] if len(intercepts) == 1 else intercepts,
        "rescale_type": _text(ds, "RescaleType") or ("HU" if _text(ds, "Modality") == "CT" else None),
        "pixel_padding_value": _float_or_none(ds.get("PixelPaddingValue")),
        "dtype": dtype,
        "transfer_syntax_uid": ts or None,
        "transfer_syntax": ts_name,
        "lossy_compression": ts in _LOSSY_TRANSFER_SYNTAXES or str(ds.get("LossyImageCompression", "")) == "01",
        "affine_ras": [[float(v) for v in row] for row in affine_ras],
        "axes": "i = DICOM column, j = DICOM row, k = slice in ascending order along the slice normal",
        "series_instance_uid": maybe_uid(series.series_instance_uid),
        "study_instance_uid": maybe_uid(_text(ds, "StudyInstanceUID")),
        "frame_of_reference_uid": maybe_uid(_text(ds, "FrameOfReferenceUID")),
        "sop_instance_uids": [
            maybe_uid(geometry.slices[i].sop_instance_uid) if i is not None else None for i in sources
        ],
        "instance_numbers": [geometry.slices[i].instance_number if i is not None else None for i in sources],
        "slice_positions_lps": positions,
    }
    if not deidentify:
        for key, keyword in _IDENTIFYING_ONLY:
            sidecar[key] = _text(ds, keyword)
        sidecar["source_files"] = [str(geometry.slices[i].path) if i is not None else None for i in sources]
    return sidecar


# --------------------------------------------------------------------------------------------------------------------
# Conversion
# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ConvertedSeries:
    """One written series."""

    label: str
    nifti: Path
    sidecar: Path
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    dtype: str


@dataclasses.dataclass
class FailedItem:
    """One series or file that could not be converted, and why."""

    what: str
    reason: str


@dataclasses.dataclass
class ConversionReport:
    """Outcome of :func:`dicom_to_nifti`: what was written, what failed, what was skipped."""

    converted: list[ConvertedSeries]
    failed: list[FailedItem]
    skipped_non_dicom: list[Path]
    skipped_non_image: list[Path]

    @property
    def ok(self) -> bool:
        return not self.failed


def output_name(series: DicomSeries, *, deidentify: bool = False) -> str:
    """File stem for a series: ``<SeriesNumber>_<SeriesDescription>``, file-system safe.

    With ``deidentify`` any patient name part, ID or birth date found in the description is removed. When neither
    number nor description is available the stem is ``series_<digest of the series key>``.
    """
    description = series.series_description
    if deidentify:
        description = _scrub(description, _identifying_values(series.header))
    parts = []
    if series.series_number is not None:
        parts.append(f"{series.series_number:03d}")
    desc = safe_name(description)
    if desc:
        parts.append(desc)
    name = safe_name("_".join(parts))
    return name or f"series_{hashlib.sha256(series.key.encode()).hexdigest()[:8]}"


def _write_nifti(path: Path, data: npt.NDArray[Any], affine: npt.NDArray[np.float64]) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "sec")
    cols = affine[:3, :3]
    gram = cols.T @ cols
    orthogonal = np.allclose(gram - np.diag(np.diag(gram)), 0.0, atol=1e-4 * float(np.max(np.abs(gram))))
    img.set_sform(affine, code="scanner")
    if orthogonal:
        img.set_qform(affine, code="scanner")
    else:  # gantry tilt: the quaternion form cannot hold a sheared grid; readers must use the sform
        img.set_qform(None, code="unknown")
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def convert_series(
    series: DicomSeries,
    out_dir: PathLike,
    *,
    name: str | None = None,
    deidentify: bool = False,
    allow_nonuniform: bool = False,
    progress: bool = False,
) -> ConvertedSeries:
    """Convert one series to ``out_dir/<name>.nii.gz`` plus ``out_dir/<name>.json``.

    Args:
        series: a series from :func:`discover_series`.
        out_dir: output folder (created if needed).
        name: file stem; default :func:`output_name`.
        deidentify: write no patient-identifying values (see the module docstring).
        allow_nonuniform: for a series with missing slices or irregular steps, resample it onto a uniform grid at
            the median spacing (linear interpolation along the stacking direction; the sidecar lists the
            interpolated slices) instead of failing.
        progress: show a bar over slices.

    Returns:
        What was written.

    Raises:
        SeriesError: the series cannot be converted (one slice, mixed geometry, gaps without ``allow_nonuniform``,
            undecodable pixels, ...). Nothing is written then.
    """
    label = series.label
    if series.problems:
        more = f" (+{len(series.problems) - 1} more)" if len(series.problems) > 1 else ""
        raise SeriesError(f"{label}: {series.problems[0]}{more}")
    geometry = series_geometry(series.slices, name=label)
    if not geometry.uniform:
        details = "; ".join(geometry.problems[:3]) + (" ..." if len(geometry.problems) > 3 else "")
        if not allow_nonuniform:
            raise SeriesError(
                f"{label}: non-uniform slice positions ({details}); nothing written — pass --allow-nonuniform to "
                "resample it onto a uniform grid"
            )
        logger.warning("%s: non-uniform slice positions (%s); resampling onto a uniform grid", label, details)
    if geometry.tilt_deg > 0.01:
        logger.warning("%s: gantry tilt %.2f°; the affine is sheared (sform only)", label, geometry.tilt_deg)
    volume = _load_volume(geometry, progress=progress)
    sources: list[int | None] = list(range(len(geometry.slices)))
    if not geometry.uniform:
        volume, sources = _resample_uniform(volume, geometry)
    # Integer stored values with an integer slope and intercept give integers; otherwise check the values.
    integral = geometry.uniform and all(
        float(s.slope).is_integer() and float(s.intercept).is_integer() for s in geometry.slices
    )
    dtype = np.dtype(_best_dtype(volume, integral))
    data = volume.astype(dtype) if dtype != volume.dtype else volume
    affine = geometry.affine_ras()
    stem = name or output_name(series, deidentify=deidentify)
    out = Path(out_dir)
    nifti_path = out / f"{stem}.nii.gz"
    sidecar_path = out / f"{stem}.json"
    sidecar = _build_sidecar(
        series,
        geometry,
        affine_ras=affine,
        shape=data.shape,
        dtype=str(dtype),
        sources=sources,
        deidentify=deidentify,
    )
    _write_nifti(nifti_path, data, affine)
    try:
        write_json(sidecar_path, sidecar)
    except BaseException:
        nifti_path.unlink(missing_ok=True)
        raise
    spacing = (geometry.spacing[0], geometry.spacing[1], geometry.step)
    logger.info("wrote %s %s %s", nifti_path, data.shape, dtype)
    shape3 = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    return ConvertedSeries(label, nifti_path, sidecar_path, shape3, spacing, str(dtype))


def _unique(stem: str, used: set[str]) -> str:
    name, n = stem, 2
    while name.lower() in used:
        name = f"{stem}_{n}"
        n += 1
    used.add(name.lower())
    return name


def dicom_to_nifti(
    in_dir: PathLike,
    out_dir: PathLike,
    *,
    deidentify: bool = False,
    allow_nonuniform: bool = False,
    progress: bool = False,
) -> ConversionReport:
    """Convert every DICOM image series under ``in_dir`` to NIfTI + sidecar JSON in ``out_dir``.

    A series that fails (one slice, gaps, undecodable pixels, ...) is reported and the others are still converted;
    unreadable DICOM files are reported too. Outputs are written atomically, so a failure leaves nothing partial.

    Args:
        in_dir: folder tree with DICOM files (names and extensions do not matter).
        out_dir: output folder.
        deidentify: see :func:`convert_series`.
        allow_nonuniform: see :func:`convert_series`.
        progress: show a bar over series.

    Returns:
        The report; ``report.ok`` is False when anything failed.

    Raises:
        FileNotFoundError: ``in_dir`` does not exist.
        ValueError: no DICOM image series and no unreadable DICOM file was found under ``in_dir``.

    Example:
        >>> import tempfile
        >>> dicom_to_nifti(tempfile.mkdtemp(), tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        ValueError: no DICOM files found under ...
    """
    from tqdm.auto import tqdm

    found = discover_series(in_dir, progress=progress)
    failed = [FailedItem(str(path), reason) for path, reason in found.unreadable]
    if not found.series and not failed:
        if found.skipped_non_image:
            raise ValueError(
                f"no DICOM image series under {str(in_dir)!r}, only {len(found.skipped_non_image)} non-image DICOM "
                "objects (RTSTRUCT, SR, ...); give the folder that holds the image series"
            )
        raise ValueError(
            f"no DICOM files found under {str(in_dir)!r} ({len(found.skipped_non_dicom)} other files); "
            "give the folder that holds the DICOM image series"
        )
    used: set[str] = set()
    converted: list[ConvertedSeries] = []
    for series in tqdm(found.series, desc="series", unit="series", disable=not progress):
        stem = _unique(output_name(series, deidentify=deidentify), used)
        try:
            converted.append(
                convert_series(series, out_dir, name=stem, deidentify=deidentify, allow_nonuniform=allow_nonuniform)
            )
        except SeriesError as err:
            logger.debug("failed: %s", err)
            failed.append(FailedItem(series.label, str(err)))
    return ConversionReport(converted, failed, found.skipped_non_dicom, found.skipped_non_image)


# --------------------------------------------------------------------------------------------------------------------
# Reference geometry for annotation tools
# --------------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ReferenceVolume:
    """A converted series as annotation tools see it: the NIfTI grid plus, when present, the sidecar.

    Attributes:
        path: the NIfTI file.
        shape: its 3-D shape.
        affine_ras: voxel-to-RAS affine (the NIfTI sform/qform, as nibabel reports it).
        header: the NIfTI header (copied into the masks written for it).
        sidecar: the dicom2nifti sidecar, or None.
    """

    path: Path
    shape: tuple[int, int, int]
    affine_ras: npt.NDArray[np.float64]
    header: Any
    sidecar: Mapping[str, Any] | None

    @property
    def affine_lps(self) -> npt.NDArray[np.float64]:
        return LPS_TO_RAS @ self.affine_ras

    def lps_to_voxel(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Continuous voxel indices ``(N, 3)`` of LPS points ``(N, 3)`` (integers = voxel centres)."""
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        homog = np.c_[pts, np.ones(len(pts))]
        return (np.linalg.inv(self.affine_lps) @ homog.T).T[:, :3]

    def write_mask(self, path: PathLike, mask: npt.NDArray[Any]) -> None:
        """Write ``mask`` (same shape) as uint8 NIfTI with this volume's affine and codes, atomically."""
        import nibabel as nib

        if tuple(mask.shape) != self.shape:
            raise ValueError(f"mask shape {mask.shape} differs from the reference volume {self.shape}")
        img = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), self.affine_ras)
        img.header.set_xyzt_units("mm", "sec")
        sform, scode = self.header.get_sform(coded=True)
        qform, qcode = self.header.get_qform(coded=True)
        if not scode and not qcode:
            img.set_sform(self.affine_ras, code="aligned")
            img.set_qform(None, code="unknown")
        else:
            img.set_sform(sform if scode else None, code=int(scode))
            img.set_qform(qform if qcode else None, code=int(qcode))
        with atomic_path(path) as tmp:
            nib.save(img, str(tmp))


def load_reference(series_nifti: PathLike, sidecar: PathLike | None = None) -> ReferenceVolume:
    """Load the grid of a converted series (the NIfTI header only) and its sidecar.

    Raises:
        FileNotFoundError: the NIfTI (or an explicit sidecar) does not exist.
        ValueError: the file is not a 3-D NIfTI, or the sidecar does not match it.
    """
    import nibabel as nib

    path = Path(series_nifti)
    if not path.is_file():
        raise FileNotFoundError(f"SERIES_NIFTI {str(path)!r} does not exist; convert the series with dicom2nifti")
    try:
        img = nib.load(str(path))
    except Exception as err:
        raise ValueError(f"SERIES_NIFTI {path}: not a readable NIfTI file ({err})") from err
    img_any: Any = img
    shape = tuple(int(v) for v in img_any.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"SERIES_NIFTI {path}: expected a 3-D volume, got shape {shape}")
    side = load_sidecar(path, sidecar)
    if side is not None and sorted(side.get("shape", [])) != sorted(shape):
        raise ValueError(
            f"sidecar for {path} describes shape {side.get('shape')} but the NIfTI has {list(shape)}; "
            "pass the matching sidecar with --sidecar"
        )
    shape3 = (shape[0], shape[1], shape[2])
    return ReferenceVolume(path, shape3, np.asarray(img_any.affine, dtype=np.float64), img_any.header, side)
