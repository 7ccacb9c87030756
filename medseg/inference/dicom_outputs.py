r"""Clinical outputs for a DICOM input: a DICOM-SEG and an RTSTRUCT from a label mask on the series' grid.

Both objects reference the source series (every SOP instance that a segment or contour lies on) and its frame
of reference, get new UIDs, and code each class by name (:func:`segment_code`).

* :func:`write_dicom_seg`: a Segmentation (``BINARY``, one segment per class, empty frames omitted) written with
  highdicom, which implements the Segmentation IOD and its references.
* :func:`write_rtstruct`: an RT Structure Set, one ROI per class, written with pydicom: highdicom has no RT
  Structure Set IOD. Contours are traced along pixel edges (:func:`trace_pixel_edges`), not through pixel
  centres: a voxel-centre rasteriser (``medseg-data rtstruct2nifti``, treatment-planning systems) then gives the
  mask back exactly, because no pixel centre lies on an outline. Holes are separate contours inside the outer
  one and combine by the even-odd rule, as most planning systems export them (no keyholes).

Geometry:
    The mask is given as ``labels`` with its voxel-to-world ``affine`` in RAS (the NIfTI convention that
    ``medseg predict`` writes). :func:`mask_on_series` maps every pixel centre of every source slice,
    ``x_{LPS} = P_k + c\,\Delta_c\,r + j\,\Delta_r\,c`` (DICOM PS3.3 C.7.6.2.1.1), through the affine into the
    mask and requires it to land on a voxel centre: any axis order or flip (``dcm2niix``'s, SimpleITK's,
    ``nibabel.as_closest_canonical``'s) is accepted; a mask resampled to another grid is refused.

Privacy:
    A derived object is filed in the source's study, so DICOM requires the Patient and General Study modules.
    Only their identifying attributes are copied (PatientName, PatientID, PatientBirthDate, PatientSex,
    StudyInstanceUID, StudyDate, StudyTime, StudyID, AccessionNumber, ReferringPhysicianName), with the values
    of the source, blank or not. Nothing else of the source header (institution, operators, devices, ages,
    weights, comments, private tags) is written.

References:
    DICOM PS3.3 A.51 (Segmentation IOD), A.19 (RT Structure Set IOD), C.8.8.5-C.8.8.8 (Structure Set, ROI
    Contour, RT ROI Observations); CID 7150, 7151, 7159 (segmentation property categories and types).
    Herrmann et al., "Implementing the DICOM Standard for Digital Pathology", J Pathol Inform 2018 (highdicom).
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from medseg.typing import PathLike

__all__ = [
    "COPIED_ATTRIBUTES",
    "SegmentCode",
    "SourceSeries",
    "mask_on_series",
    "read_source_series",
    "segment_code",
    "trace_pixel_edges",
    "write_dicom_seg",
    "write_rtstruct",
]

logger = logging.getLogger(__name__)

#: Patient and General Study attributes copied from the source into derived objects (see the module docstring).
COPIED_ATTRIBUTES: tuple[str, ...] = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
#: Source attributes that the geometry and references need (never identifying).
_GEOMETRY_ATTRIBUTES: tuple[str, ...] = (
    "SOPClassUID",
    "SOPInstanceUID",
    "SeriesInstanceUID",
    "FrameOfReferenceUID",
    "Modality",
    "Rows",
    "Columns",
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "SliceThickness",
    "SpacingBetweenSlices",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "InstanceNumber",
)
#: Referenced SOP Class of a study in an RTSTRUCT (Detached Study Management, as RT systems expect it).
_STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"
#: Display colours of the classes 1, 2, ... (RGB), cycled.
_COLOURS = ((255, 0, 0), (0, 200, 0), (0, 100, 255), (255, 200, 0), (200, 0, 255), (0, 220, 220), (255, 120, 0))
_ORIENTATION_ATOL = 1e-4


# --------------------------------------------------------------------------------------------- source series
@dataclasses.dataclass(frozen=True)
class SourceSeries:
    """The headers of a single-frame DICOM image series, sorted along the slice normal.

    Attributes:
        datasets: reduced headers (geometry, references and :data:`COPIED_ATTRIBUTES` only), slice order.
        files: the file of each slice.
        rows, cols: pixels per slice.
        pixel_spacing: ``(row spacing, column spacing)`` in mm.
        orientation: ImageOrientationPatient (row direction, then column direction).
        positions: ``(n, 3)`` ImagePositionPatient of each slice (LPS mm).
    """

    datasets: list[Any]
    files: list[Path]
    rows: int
    cols: int
    pixel_spacing: tuple[float, float]
    orientation: npt.NDArray[np.float64]
    positions: npt.NDArray[np.float64]

    @property
    def series_uid(self) -> str:
        return str(self.datasets[0].SeriesInstanceUID)

    @property
    def study_uid(self) -> str:
        return str(self.datasets[0].StudyInstanceUID)

    @property
    def frame_of_reference_uid(self) -> str:
        return str(self.datasets[0].FrameOfReferenceUID)

    @property
    def sop_class_uid(self) -> str:
        return str(self.datasets[0].SOPClassUID)

    @property
    def sop_instance_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]

    def pixel_to_lps(self, k: int, rows: npt.ArrayLike, cols: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """LPS positions (mm) of (possibly fractional) ``rows``, ``cols`` of slice ``k``: shape ``(..., 3)``."""
        row_dir, col_dir = self.orientation[:3], self.orientation[3:]
        dr, dc = self.pixel_spacing
        r = np.asarray(rows, dtype=np.float64)[..., None]
        c = np.asarray(cols, dtype=np.float64)[..., None]
        out: npt.NDArray[np.float64] = self.positions[k] + c * dc * row_dir + r * dr * col_dir
        return out


def _reduced_header(ds: Any) -> Any:
    from pydicom.dataset import Dataset

    out = Dataset()
    for keyword in (*_GEOMETRY_ATTRIBUTES, *COPIED_ATTRIBUTES):
        if keyword in ds:
            setattr(out, keyword, ds[keyword].value)
    for keyword in COPIED_ATTRIBUTES:  # Type 2 in the Patient and General Study modules: present, maybe empty
        if keyword not in out:
            setattr(out, keyword, "")
    meta = getattr(ds, "file_meta", None)
    for keyword, fallback in (
        ("SOPClassUID", "MediaStorageSOPClassUID"),
        ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
    ):
        # de-identification tools sometimes blank these; the file meta holds the same UIDs (PS3.10 7.1)
        if not str(out.get(keyword, "") or "").strip() and meta is not None and meta.get(fallback):
            setattr(out, keyword, str(meta[fallback].value))
        if not str(out.get(keyword, "") or "").strip():
            raise ValueError(f"{keyword} is missing; the derived objects could not reference this image")
    out.SpecificCharacterSet = "ISO_IR 192"  # values are decoded to str; written back as UTF-8
    return out


def _dicom_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))


def read_source_series(path: PathLike | Sequence[PathLike], *, series_uid: str | None = None) -> SourceSeries:
    """Read the headers of the image series in a folder (or a list of files) and sort its slices in space.

    Non-DICOM files and non-image objects (an RTSTRUCT or SEG beside the images) are skipped.

    Args:
        path: a series folder (searched recursively), or the series' files.
        series_uid: which series to use when the folder holds several.

    Returns:
        The sorted :class:`SourceSeries` (headers only: pixel data is not read).

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: no image series, several series and no ``series_uid``, multi-frame images, or slices whose
            orientation, size or spacing differ, or that share a position.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    paths = [Path(p) for p in path] if isinstance(path, list | tuple) else [Path(path)]  # type: ignore[arg-type]
    files: list[Path] = []
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"DICOM series {p}: no such file or folder")
        files.extend(_dicom_files(p))
    where = str(paths[0]) if len(paths) == 1 else f"{len(paths)} files"
    by_series: dict[str, list[tuple[Path, Any]]] = {}
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError):
            logger.debug("%s: not a readable DICOM file; skipped", f)
            continue
        if "ImagePositionPatient" not in ds or "Rows" not in ds or "SeriesInstanceUID" not in ds:
            logger.debug("%s: not an image slice (%s); skipped", f, ds.get("Modality", "?"))
            continue
        by_series.setdefault(str(ds.SeriesInstanceUID), []).append((f, ds))
    if not by_series:
        raise ValueError(f"DICOM series {where}: no DICOM image slices found")
    if series_uid is not None:
        if series_uid not in by_series:
            raise ValueError(
                f"DICOM series {where}: no series with SeriesInstanceUID {series_uid}; found {sorted(by_series)}"
            )
        chosen = by_series[series_uid]
    elif len(by_series) > 1:
        listing = ", ".join(f"{uid} ({len(v)} slices)" for uid, v in sorted(by_series.items()))
        raise ValueError(f"DICOM series {where}: holds {len(by_series)} series ({listing}); pick one by series_uid")
    else:
        chosen = next(iter(by_series.values()))
    return _sorted_series(chosen, where)


def _sorted_series(items: list[tuple[Path, Any]], where: str) -> SourceSeries:
    first = items[0][1]
    for f, ds in items:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        if frames > 1:
            raise ValueError(
                f"DICOM series {where}: {f.name} is a multi-frame image ({frames} frames); only series of "
                "single-frame images (CT, MR, PET slices) are supported"
            )
        for keyword in ("FrameOfReferenceUID", "ImageOrientationPatient", "PixelSpacing", "StudyInstanceUID"):
            if keyword not in ds:
                raise ValueError(f"DICOM series {where}: {f.name} has no {keyword}; cannot place the mask in space")
    orientation = np.asarray([float(v) for v in first.ImageOrientationPatient], dtype=np.float64)
    spacing = (float(first.PixelSpacing[0]), float(first.PixelSpacing[1]))
    rows, cols = int(first.Rows), int(first.Columns)
    for f, ds in items:
        other = np.asarray([float(v) for v in ds.ImageOrientationPatient], dtype=np.float64)
        if not np.allclose(other, orientation, atol=_ORIENTATION_ATOL):
            raise ValueError(f"DICOM series {where}: {f.name} has another ImageOrientationPatient than the others")
        if (int(ds.Rows), int(ds.Columns)) != (rows, cols):
            raise ValueError(f"DICOM series {where}: {f.name} is {ds.Rows}x{ds.Columns}, the others {rows}x{cols}")
        if not np.allclose([float(v) for v in ds.PixelSpacing], spacing, rtol=1e-5, atol=1e-6):
            raise ValueError(f"DICOM series {where}: {f.name} has another PixelSpacing than the others")
        if str(ds.FrameOfReferenceUID) != str(first.FrameOfReferenceUID):
            raise ValueError(f"DICOM series {where}: {f.name} has another FrameOfReferenceUID than the others")
    normal = np.cross(orientation[:3], orientation[3:])
    positions = np.asarray([[float(v) for v in ds.ImagePositionPatient] for _, ds in items], dtype=np.float64)
    order = np.argsort(positions @ normal, kind="stable")
    depth = (positions @ normal)[order]
    if len(depth) > 1 and np.min(np.diff(depth)) < 1e-3:
        raise ValueError(f"DICOM series {where}: two slices share a position; the folder mixes acquisitions")
    headers = []
    for i in order:
        try:
            headers.append(_reduced_header(items[i][1]))
        except ValueError as err:
            raise ValueError(f"DICOM series {where}: {items[i][0].name}: {err}") from err
    _stand_in_uids(headers, where)
    return SourceSeries(
        datasets=headers,
        files=[items[i][0] for i in order],
        rows=rows,
        cols=cols,
        pixel_spacing=spacing,
        orientation=orientation,
        positions=positions[order],
    )


def _stand_in_uids(headers: list[Any], where: str) -> None:
    """Give a series whose StudyInstanceUID/SeriesInstanceUID were blanked (by a de-identifier) stand-in UIDs.

    The derived objects must carry a study UID and reference a series UID (Type 1). The stand-ins are derived
    from the slices' SOP instance UIDs, so every run (and the SEG and the RTSTRUCT of one run) uses the same.
    """
    from pydicom.uid import generate_uid

    sops = sorted(str(h.SOPInstanceUID) for h in headers)
    missing = []
    for keyword in ("StudyInstanceUID", "SeriesInstanceUID"):
        values = {str(h.get(keyword, "") or "").strip() for h in headers}
        if values == {""}:
            uid = str(generate_uid(entropy_srcs=[keyword, *sops]))
            for h in headers:
                setattr(h, keyword, uid)
            missing.append(f"{keyword} {uid}")
        elif "" in values or len(values) > 1:
            raise ValueError(f"DICOM series {where}: its slices disagree on {keyword} ({sorted(values)})")
    if missing:
        logger.warning(
            "DICOM series %s has blank UIDs (de-identified?); derived objects refer to it as %s: they still reference "
            "its images by SOP instance UID and its frame of reference",
            where,
            " and ".join(missing),
        )


def _as_series(series: SourceSeries | PathLike) -> SourceSeries:
    return series if isinstance(series, SourceSeries) else read_source_series(series)


# --------------------------------------------------------------------------------------------- geometry
def mask_on_series(
    labels: npt.ArrayLike, affine: npt.ArrayLike, series: SourceSeries, *, tolerance: float = 0.01
) -> npt.NDArray[Any]:
    """The mask's labels at every pixel of every source slice: ``(slices, rows, columns)`` in series order.

    Args:
        labels: 3D label map (``(x, y, z)`` or any other axis order; a trailing singleton axis is dropped).
        affine: its 4x4 voxel-to-world affine in RAS (NIfTI convention).
        series: the source series.
        tolerance: how far (in voxels) a pixel centre may land from a voxel centre.

    Raises:
        ValueError: the mask's grid is not the series' grid (message names the first mismatch and how to fix).
    """
    data = np.asarray(labels)
    if data.ndim == 4 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise ValueError(f"labels must be a 3D label map, got shape {data.shape}")
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.all(np.isfinite(a)):
        raise ValueError(f"affine must be a finite 4x4 matrix, got shape {a.shape}")
    try:
        inverse = np.linalg.inv(a)
    except np.linalg.LinAlgError as err:
        raise ValueError("affine is singular; it does not map voxels to world positions") from err
    lps_to_ras = np.array([-1.0, -1.0, 1.0])
    n = len(series.datasets)
    out = np.zeros((n, series.rows, series.cols), dtype=data.dtype)
    fix = (
        "the mask must be on the series' own voxel grid (any axis order or flip); write it from the prediction "
        "on the series, not after resampling"
    )
    for k in range(n):
        corners = series.pixel_to_lps(k, [0, 0, 1], [0, 1, 0]) * lps_to_ras  # (0,0), (0,1), (1,0)
        ijk = (inverse[:3, :3] @ corners.T).T + inverse[:3, 3]
        origin, col_step, row_step = ijk[0], ijk[1] - ijk[0], ijk[2] - ijk[0]
        for name, step in (("column", col_step), ("row", row_step)):
            unit = np.round(step)
            if np.abs(step - unit).max() > tolerance or np.abs(unit).sum() != 1:
                raise ValueError(
                    f"mask grid differs from the series: one {name} step of slice {k} moves by "
                    f"{np.round(step, 3).tolist()} voxels, not one voxel along one axis; {fix}"
                )
        start = np.round(origin)
        if np.abs(origin - start).max() > tolerance:
            raise ValueError(
                f"mask grid differs from the series: pixel (0, 0) of slice {k} lands at voxel "
                f"{np.round(origin, 3).tolist()}, not on a voxel centre; {fix}"
            )
        axis_c, axis_r = int(np.argmax(np.abs(col_step))), int(np.argmax(np.abs(row_step)))
        sign_c, sign_r = int(np.round(col_step[axis_c])), int(np.round(row_step[axis_r]))
        o = [int(v) for v in start]
        last_c, last_r = o[axis_c] + sign_c * (series.cols - 1), o[axis_r] + sign_r * (series.rows - 1)
        if (
            axis_c == axis_r
            or not 0 <= o[3 - axis_c - axis_r] < data.shape[3 - axis_c - axis_r]
            or not (0 <= o[axis_c] < data.shape[axis_c] and 0 <= last_c < data.shape[axis_c])
            or not (0 <= o[axis_r] < data.shape[axis_r] and 0 <= last_r < data.shape[axis_r])
        ):
            raise ValueError(
                f"mask grid differs from the series: slice {k} falls outside the mask of shape {data.shape}; {fix}"
            )
        index: list[Any] = [o[0], o[1], o[2]]
        index[axis_c] = slice(o[axis_c], last_c + sign_c if last_c + sign_c >= 0 else None, sign_c)
        index[axis_r] = slice(o[axis_r], last_r + sign_r if last_r + sign_r >= 0 else None, sign_r)
        plane = data[tuple(index)]  # axes in increasing order of axis_c, axis_r
        out[k] = plane.T if axis_c < axis_r else plane
    covered = n * series.rows * series.cols
    if covered != data.size:
        raise ValueError(
            f"mask of shape {data.shape} ({data.size} voxels) is not the series' grid of {n} slices of "
            f"{series.rows}x{series.cols} pixels; {fix}"
        )
    return out


# --------------------------------------------------------------------------------------------- coding
@dataclasses.dataclass(frozen=True)
class SegmentCode:
    """Coded meaning of a class: category and type as ``(value, scheme designator, meaning)``."""

    category: tuple[str, str, str]
    type: tuple[str, str, str]
    generic: bool = False


#: Class names with a fitting DICOM code that is not their literal keyword (normalised: lower case, words).
_SYNONYMS: dict[str, tuple[str, str]] = {
    "infection": ("cid7159", "Lesion"),
    "covid 19 infection": ("cid7159", "Lesion"),
    "covid 19 lesion": ("cid7159", "Lesion"),
    "ground glass opacity": ("cid7159", "Lesion"),
    "ground glass": ("cid7159", "Lesion"),
    "ggo": ("cid7159", "Lesion"),
    "consolidation": ("cid7159", "Lesion"),
    "lesions": ("cid7159", "Lesion"),
    "tumor": ("cid7159", "Neoplasm"),
    "tumour": ("cid7159", "Neoplasm"),
    "nodules": ("cid7159", "Nodule"),
}
_CATEGORY_OF = {"cid7159": "MorphologicallyAbnormalStructure", "cid7151": "AnatomicalStructure"}


def _words(name: str) -> list[str]:
    spaced = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def segment_code(name: str) -> SegmentCode:
    """The DICOM codes of a class name: a fitting standard code where one exists, else a generic one.

    Lookup: a small table of synonyms (``infection``, ``ground-glass opacity`` and ``consolidation`` are
    lesions, SCT 52988006; ``tumour`` is a neoplasm), then the morphologically abnormal structures of CID 7159
    (``nodule``, ``mass``, ``cyst``, ...), then the anatomical structures of CID 7151 (``liver``, ``lung``,
    ``kidney``, ...); the words ``left``/``right`` are left out of the lookup (``kidney_left`` is a kidney). A
    name found nowhere gets category and type *Tissue* (SCT 85756007), the generic code
    3D Slicer also gives an uncoded segment; the segment label keeps the class name in any case.

    Example:
        >>> segment_code("infection").type
        ('52988006', 'SCT', 'Lesion')
        >>> segment_code("liver").category
        ('91723000', 'SCT', 'Anatomical Structure')
        >>> segment_code("shaft").generic
        True
    """
    from pydicom.sr.codedict import codes

    words = [w for w in _words(name) if w not in ("left", "right")] or _words(name)  # laterality stays in the label
    key = " ".join(words)
    candidates: list[tuple[str, str]] = []
    if key in _SYNONYMS:
        candidates.append(_SYNONYMS[key])
    keyword = "".join(w.capitalize() for w in words)
    if words and words[-1].endswith("s"):
        singular = "".join(w.capitalize() for w in [*words[:-1], words[-1][:-1]])
    else:
        singular = keyword
    for cid in ("cid7159", "cid7151"):
        candidates.extend((cid, k) for k in (keyword, singular))
    for cid, kw in candidates:
        collection = getattr(codes, cid)
        if kw in collection.dir() and kw != "Background":
            code = getattr(collection, kw)
            category = getattr(codes.cid7150, _CATEGORY_OF[cid])
            return SegmentCode(
                (category.value, category.scheme_designator, category.meaning),
                (code.value, code.scheme_designator, code.meaning),
            )
    tissue = codes.cid7150.Tissue
    generic = (tissue.value, tissue.scheme_designator, tissue.meaning)
    return SegmentCode(generic, generic, generic=True)


def _class_table(class_names: Sequence[str] | Mapping[int, str], present: npt.NDArray[Any]) -> dict[int, str]:
    """Foreground classes ``{label value: name}``; every value in the mask must have a name."""
    if isinstance(class_names, Mapping):
        table = {int(k): str(v) for k, v in class_names.items()}
    else:
        if isinstance(class_names, str):
            raise TypeError("class_names must be a list of names by class index, not a string")
        table = {i: str(v) for i, v in enumerate(class_names)}
    table.pop(0, None)  # background
    if not table:
        raise ValueError("class_names must name at least one foreground class (index >= 1)")
    if any(k < 1 for k in table):
        raise ValueError(f"class indices must be >= 0, got {sorted(table)}")
    unknown = sorted(int(v) for v in present if v != 0 and int(v) not in table)
    if unknown:
        raise ValueError(
            f"the mask holds label values {unknown} that class_names does not name (named: {sorted(table)}); "
            "give one name per class index"
        )
    return dict(sorted(table.items()))


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")


def _copy_identity(target: Any, source: Any) -> None:
    for keyword in COPIED_ATTRIBUTES:
        if keyword in source:
            setattr(target, keyword, source[keyword].value)


# --------------------------------------------------------------------------------------------- DICOM-SEG
def write_dicom_seg(
    labels: npt.ArrayLike,
    affine: npt.ArrayLike,
    series: SourceSeries | PathLike,
    path: PathLike,
    class_names: Sequence[str] | Mapping[int, str],
    *,
    series_description: str = "medseg segmentation",
    series_number: int = 901,
    algorithm_name: str = "medseg",
    algorithm_version: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a DICOM Segmentation of ``labels`` (on ``series``' grid) to ``path``, one binary segment per class.

    Args:
        labels: 3D label map (0 = background, ``i`` = ``class_names[i]``) with its RAS ``affine``.
        affine: voxel-to-RAS affine of ``labels``.
        series: the source series (folder or :func:`read_source_series` result).
        path: the ``.dcm`` file to write (atomically).
        class_names: names by class index (background first), or ``{index: name}``.
        series_description: SeriesDescription of the new series.
        series_number: SeriesNumber of the new series.
        algorithm_name: the algorithm named in each segment (e.g. the bundle).
        algorithm_version: its version (default: the medseg version).
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: a mask off the series' grid, or label values without a class name.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from medseg import __version__
    from medseg.io import atomic_path

    out = Path(path)
    _check_output(out, overwrite)
    source = _as_series(series)
    frames = mask_on_series(labels, affine, source)
    table = _class_table(class_names, np.unique(frames))
    # label-map style input: segment numbers must run 1..N, so renumber the classes in index order
    numbers = {value: n for n, value in enumerate(table, start=1)}
    lut = np.zeros(int(max(max(table), frames.max(initial=0))) + 1, dtype=np.uint16)
    for value, number in numbers.items():
        lut[value] = number
    pixel_array = lut[frames]
    version = algorithm_version or __version__
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name, version=version, family=codes.DCM.ArtificialIntelligence
    )
    descriptions = []
    for value, name in table.items():
        code = segment_code(name)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=numbers[value],
                segment_label=name[:64],
                segmented_property_category=hd.sr.CodedConcept(*code.category),
                segmented_property_type=hd.sr.CodedConcept(*code.type),
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
            )
        )
    if not pixel_array.any():
        logger.warning("%s: the mask is empty; the segmentation holds empty segments only", out.name)
    seg = hd.seg.Segmentation(
        source_images=source.datasets,
        pixel_array=pixel_array,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=hd.UID(),
        series_number=series_number,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="medseg",
        manufacturer_model_name=algorithm_name[:64],
        software_versions=f"medseg {__version__}",
        device_serial_number="0",
        series_description=series_description[:64],
        content_label="SEGMENTATION",
        content_description=f"{algorithm_name} automatic segmentation"[:64],
        omit_empty_frames=bool(pixel_array.any()),
    )
    _copy_identity(seg, source.datasets[0])
    with atomic_path(out) as tmp:
        seg.save_as(tmp)
    logger.info("wrote DICOM-SEG %s (%d segments, %d frames)", out, len(descriptions), int(seg.NumberOfFrames))
    return out


# --------------------------------------------------------------------------------------------- RTSTRUCT
#: Row and column steps of the four edge directions: east, south, west, north (rows grow downwards).
_DY = np.array([0, 1, 0, -1])
_DX = np.array([1, 0, -1, 0])


def trace_pixel_edges(mask: npt.ArrayLike) -> list[npt.NDArray[np.float64]]:
    """Closed polygons along the pixel edges of a 2D mask, in ``(row, column)`` pixel coordinates.

    Pixel ``(r, c)`` is the square ``[r - 0.5, r + 0.5] x [c - 0.5, c + 0.5]`` (integer coordinates are pixel
    centres, as in DICOM), so every vertex lies on half-integers and no pixel centre lies on an outline. Each
    connected component (4-connectivity: pixels touching only at a corner are separate) gives an outer polygon,
    each hole an inner one, each island in a hole another outer one; collinear vertices are dropped. The pixels
    whose centres lie inside an odd number of the polygons are exactly the mask.

    Every boundary edge is directed with the mask on its right; at a corner shared by two diagonal pixels the
    walk turns right, around the pixel it came from. Each edge then has one successor, and the polygons are the
    cycles of that permutation.

    Example:
        >>> ring = np.ones((3, 3), bool); ring[1, 1] = False
        >>> [p.tolist() for p in trace_pixel_edges(ring)]
        [[[-0.5, -0.5], [-0.5, 2.5], [2.5, 2.5], [2.5, -0.5]], [[0.5, 0.5], [1.5, 0.5], [1.5, 1.5], [0.5, 1.5]]]
    """
    full = np.asarray(mask, dtype=bool)
    if full.ndim != 2:
        raise ValueError(f"mask must be 2D, got shape {full.shape}")
    rows_any, cols_any = np.flatnonzero(full.any(axis=1)), np.flatnonzero(full.any(axis=0))
    if rows_any.size == 0:
        return []
    top, left = int(rows_any[0]), int(cols_any[0])
    m = full[top : int(rows_any[-1]) + 1, left : int(cols_any[-1]) + 1]
    width = m.shape[1] + 1
    p = np.pad(m, 1)
    inside = p[1:-1, 1:-1]
    # Corner (y, x) is the top-left corner of pixel (y, x); vertex id y * width + x.
    starts, directions = [], []
    for direction, outside, dy, dx in (
        (0, p[:-2, 1:-1], 0, 0),  # top edges run east from (r, c)
        (1, p[1:-1, 2:], 0, 1),  # right edges run south from (r, c + 1)
        (2, p[2:, 1:-1], 1, 1),  # bottom edges run west from (r + 1, c + 1)
        (3, p[1:-1, :-2], 1, 0),  # left edges run north from (r + 1, c)
    ):
        r, c = np.nonzero(inside & ~outside)
        starts.append((r + dy) * width + (c + dx))
        directions.append(np.full(r.size, direction))
    vertex, d = np.concatenate(starts), np.concatenate(directions)
    order = np.lexsort((d, vertex))
    vertex, d = vertex[order], d[order]
    end = vertex + _DY[d] * width + _DX[d]
    lo = np.searchsorted(vertex, end, side="left")
    two = np.searchsorted(vertex, end, side="right") - lo == 2  # a saddle corner: pick the right turn
    successor = np.where(two & (d[lo] != (d + 1) % 4), lo + 1, lo)
    predecessor = np.empty_like(successor)
    predecessor[successor] = np.arange(successor.size)
    corner = (d != d[predecessor]).tolist()
    nxt, ids = successor.tolist(), vertex.tolist()
    seen = [False] * len(nxt)
    polygons: list[npt.NDArray[np.float64]] = []
    for first in range(len(nxt)):
        if seen[first]:
            continue
        corners: list[int] = []
        e = first
        while not seen[e]:
            seen[e] = True
            if corner[e]:
                corners.append(ids[e])
            e = nxt[e]
        ys, xs = np.divmod(np.asarray(corners, dtype=np.int64), width)
        polygons.append(np.stack([ys + (top - 0.5), xs + (left - 0.5)], axis=1).astype(np.float64))
    return polygons


def _ds_list(values: npt.NDArray[np.float64]) -> list[str]:
    from pydicom.valuerep import format_number_as_ds

    return [format_number_as_ds(float(v)) for v in values.ravel()]


def write_rtstruct(
    labels: npt.ArrayLike,
    affine: npt.ArrayLike,
    series: SourceSeries | PathLike,
    path: PathLike,
    class_names: Sequence[str] | Mapping[int, str],
    *,
    series_description: str = "medseg contours",
    series_number: int = 902,
    structure_set_label: str = "medseg",
    algorithm_name: str = "medseg",
    overwrite: bool = False,
) -> Path:
    """Write an RT Structure Set of ``labels`` (on ``series``' grid) to ``path``: one ROI per class.

    Each slice's mask of a class is traced along pixel edges (:func:`trace_pixel_edges`) into ``CLOSED_PLANAR``
    contours that reference that slice's SOP instance. A class absent from the mask is an ROI without contours.

    Args:
        labels: 3D label map (0 = background, ``i`` = ``class_names[i]``) with its RAS ``affine``.
        affine: voxel-to-RAS affine of ``labels``.
        series: the source series (folder or :func:`read_source_series` result).
        path: the ``.dcm`` file to write (atomically).
        class_names: names by class index (background first), or ``{index: name}``.
        series_description: SeriesDescription of the new series.
        series_number: SeriesNumber of the new series.
        structure_set_label: StructureSetLabel.
        algorithm_name: ROIGenerationDescription of each ROI.
        overwrite: replace an existing file.

    Returns:
        ``path``.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: a mask off the series' grid, or label values without a class name.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence as DicomSequence
    from pydicom.uid import ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

    from medseg import __version__
    from medseg.io import atomic_path

    out = Path(path)
    _check_output(out, overwrite)
    source = _as_series(series)
    frames = mask_on_series(labels, affine, source)
    table = _class_table(class_names, np.unique(frames))
    first = source.datasets[0]
    now = datetime.datetime.now()
    sop_uid = generate_uid()

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = RTStructureSetStorage
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    _copy_identity(ds, first)  # Patient and General Study modules
    ds.Modality = "RTSTRUCT"  # RT Series module
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = series_number
    ds.SeriesDescription = series_description[:64]
    ds.OperatorsName = ""
    ds.Manufacturer = "medseg"  # General Equipment module
    ds.ManufacturerModelName = algorithm_name[:64]
    ds.SoftwareVersions = f"medseg {__version__}"
    ds.FrameOfReferenceUID = source.frame_of_reference_uid  # Frame of Reference module
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = structure_set_label[:16]  # Structure Set module
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")
    ds.InstanceNumber = 1
    ds.ApprovalStatus = "UNAPPROVED"  # Approval module: an automatic result awaiting review

    def image_ref(index: int) -> Any:
        item = Dataset()
        item.ReferencedSOPClassUID = str(source.datasets[index].SOPClassUID)
        item.ReferencedSOPInstanceUID = str(source.datasets[index].SOPInstanceUID)
        return item

    series_item = Dataset()
    series_item.SeriesInstanceUID = source.series_uid
    series_item.ContourImageSequence = DicomSequence([image_ref(k) for k in range(len(source.datasets))])
    study_item = Dataset()
    study_item.ReferencedSOPClassUID = _STUDY_COMPONENT_SOP_CLASS
    study_item.ReferencedSOPInstanceUID = source.study_uid
    study_item.RTReferencedSeriesSequence = DicomSequence([series_item])
    frame_item = Dataset()
    frame_item.FrameOfReferenceUID = source.frame_of_reference_uid
    frame_item.RTReferencedStudySequence = DicomSequence([study_item])
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([frame_item])

    rois, contours, observations = [], [], []
    total = 0
    for number, (value, name) in enumerate(table.items(), start=1):
        code = segment_code(name)
        roi = Dataset()
        roi.ROINumber = number
        roi.ReferencedFrameOfReferenceUID = source.frame_of_reference_uid
        roi.ROIName = name[:64]
        roi.ROIGenerationAlgorithm = "AUTOMATIC"
        roi.ROIGenerationDescription = f"{algorithm_name} (medseg {__version__})"[:64]
        rois.append(roi)
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = list(_COLOURS[(number - 1) % len(_COLOURS)])
        sequence: list[Any] = []
        for k in range(len(source.datasets)):
            plane = frames[k] == value
            if not plane.any():
                continue
            for polygon in trace_pixel_edges(plane):
                world = source.pixel_to_lps(k, polygon[:, 0], polygon[:, 1])
                contour = Dataset()
                contour.ContourImageSequence = DicomSequence([image_ref(k)])
                contour.ContourGeometricType = "CLOSED_PLANAR"
                contour.NumberOfContourPoints = len(polygon)
                contour.ContourNumber = len(sequence) + 1
                contour.ContourData = _ds_list(world)
                sequence.append(contour)
        if sequence:
            item.ContourSequence = DicomSequence(sequence)
        total += len(sequence)
        contours.append(item)
        observation = Dataset()
        observation.ObservationNumber = number
        observation.ReferencedROINumber = number
        observation.RTROIInterpretedType = ""
        observation.ROIInterpreter = ""
        identification = Dataset()
        identification.CodeValue, identification.CodingSchemeDesignator, identification.CodeMeaning = code.type
        observation.RTROIIdentificationCodeSequence = DicomSequence([identification])
        observations.append(observation)
    ds.StructureSetROISequence = DicomSequence(rois)
    ds.ROIContourSequence = DicomSequence(contours)
    ds.RTROIObservationsSequence = DicomSequence(observations)
    with atomic_path(out) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    logger.info("wrote RTSTRUCT %s (%d ROIs, %d contours)", out, len(rois), total)
    return out
