"""DICOM RTSTRUCT contours to label masks in the geometry of a converted CT series (``medseg-data rtstruct2nifti``).

An RT Structure Set stores each region of interest (ROI) as planar polygons: ``ContourData`` holds ``x, y, z``
triples in patient coordinates (LPS, mm), and each contour names the image it was drawn on
(``ContourImageSequence`` → ``ReferencedSOPInstanceUID``). This module maps the points into the voxel grid of the
series NIfTI written by :mod:`data_tools.dicom` (any NIfTI of that series works: only its affine is used), finds the
slice plane each contour lies in, and fills the polygon there.

Pixel-centre convention:
    Voxel indices are continuous coordinates whose integers are voxel centres (``ImagePositionPatient`` is the
    centre of the first pixel; the NIfTI affine maps index ``(0, 0, 0)`` to that centre). A voxel belongs to a closed
    contour when its centre lies inside the polygon (``matplotlib.path.Path.contains_points``); a voxel whose centre
    lies exactly on the outline may fall either way. Several contours of one ROI on the same slice combine by the
    even-odd rule (XOR), so a contour drawn inside another is a hole, as treatment-planning systems export holes
    that are not keyholed. ``POINT`` contours mark the nearest voxel; open contours are skipped with a warning.

Reference checks:
    A NIfTI alone has no UIDs, so the sidecar JSON written by ``dicom2nifti`` (``<name>.json`` beside the NIfTI, or
    ``sidecar=``) supplies the series' SeriesInstanceUID, FrameOfReferenceUID and per-slice SOPInstanceUIDs
    (plain, or keyed digests in private outputs: the RTSTRUCT's UIDs are digested with the same key and compared
    through :meth:`data_tools.dicom.reference.ReferenceVolume.uid_matches`). An RTSTRUCT for
    another series, another frame of reference, or a contour referencing an image that is not a slice of the series
    is an error naming the ROI and the UID. Independently of UIDs, every contour must lie on a slice of the volume.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from data_tools.dicom.deid import safe_name
from data_tools.dicom.reference import ReferenceVolume, load_reference
from medseg.io import write_json
from medseg.typing import PathLike

__all__ = [
    "Contour",
    "RoiContours",
    "RtStruct",
    "plane_of",
    "rasterise_roi",
    "read_rtstruct",
    "rtstruct_to_nifti",
    "select_rois",
]

logger = logging.getLogger(__name__)

#: A contour is "on" a slice when its points are within this many voxels of the slice plane.
PLANE_TOLERANCE_VOXELS = 0.1


@dataclasses.dataclass
class Contour:
    """One contour of an ROI.

    Attributes:
        geometric_type: ContourGeometricType (``CLOSED_PLANAR``, ``POINT``, ``OPEN_PLANAR``, ...).
        points: ``(N, 3)`` points in LPS mm.
        referenced_sop_uids: the ReferencedSOPInstanceUIDs of its ContourImageSequence (may be empty).
    """

    geometric_type: str
    points: npt.NDArray[np.float64]
    referenced_sop_uids: list[str]


@dataclasses.dataclass
class RoiContours:
    """An ROI of the structure set with its contours."""

    number: int
    name: str
    frame_of_reference_uid: str | None
    contours: list[Contour]
    color: list[int] | None = None


@dataclasses.dataclass
class RtStruct:
    """The parts of an RTSTRUCT that rasterisation needs."""

    path: Path
    frame_of_reference_uids: list[str]
    referenced_series_uids: list[str]
    rois: list[RoiContours]


def read_rtstruct(path: PathLike) -> RtStruct:
    """Read the ROIs and contours of an RTSTRUCT file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not a DICOM file, not an RTSTRUCT, or malformed contour data.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"RTSTRUCT {str(path)!r} does not exist")
    try:
        ds = pydicom.dcmread(path)
    except InvalidDicomError as err:
        raise ValueError(f"RTSTRUCT {path}: not a DICOM file; give the RT Structure Set (.dcm)") from err
    except Exception as err:
        raise ValueError(f"RTSTRUCT {path}: unreadable DICOM ({type(err).__name__}: {err})") from err
    modality = str(ds.get("Modality", "") or "")
    if modality != "RTSTRUCT" or "StructureSetROISequence" not in ds:
        raise ValueError(
            f"RTSTRUCT {path}: Modality is {modality or 'blank'!r}, not 'RTSTRUCT' (or it has no "
            "StructureSetROISequence); give the RT Structure Set file"
        )
    frames: list[str] = []
    series: list[str] = []
    for fr in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        if fr.get("FrameOfReferenceUID"):
            frames.append(str(fr.FrameOfReferenceUID))
        for study in fr.get("RTReferencedStudySequence", []) or []:
            for ser in study.get("RTReferencedSeriesSequence", []) or []:
                if ser.get("SeriesInstanceUID"):
                    series.append(str(ser.SeriesInstanceUID))
    contours_by_number: dict[int, tuple[list[Contour], list[int] | None]] = {}
    for item in ds.get("ROIContourSequence", []) or []:
        number = int(item.get("ReferencedROINumber", -1))
        color = [int(c) for c in item.ROIDisplayColor] if item.get("ROIDisplayColor") else None
        contours: list[Contour] = []
        for c in item.get("ContourSequence", []) or []:
            data = c.get("ContourData")
            if data is None or len(data) == 0:
                continue
            if len(data) % 3:
                raise ValueError(
                    f"RTSTRUCT {path}: ROI number {number} has ContourData with {len(data)} values, not a multiple of 3"
                )
            points = np.asarray([float(v) for v in data], dtype=np.float64).reshape(-1, 3)
            refs = [
                str(img.ReferencedSOPInstanceUID)
                for img in (c.get("ContourImageSequence", []) or [])
                if img.get("ReferencedSOPInstanceUID")
            ]
            gtype = str(c.get("ContourGeometricType", "CLOSED_PLANAR") or "CLOSED_PLANAR").upper()
            contours.append(Contour(gtype, points, refs))
        contours_by_number[number] = (contours, color)
    rois: list[RoiContours] = []
    for roi in ds.StructureSetROISequence:
        number = int(roi.get("ROINumber", -1))
        contours, color = contours_by_number.get(number, ([], None))
        frame = str(roi.get("ReferencedFrameOfReferenceUID", "") or "") or None
        rois.append(RoiContours(number, str(roi.get("ROIName", "") or "").strip(), frame, contours, color))
    return RtStruct(path, frames, series, rois)


def select_rois(rtstruct: RtStruct, names: Sequence[str] | None) -> list[RoiContours]:
    """The ROIs named in ``names`` (exact match first, then case-insensitive), or all ROIs when None/empty.

    Raises:
        ValueError: a name matches no ROI; the message lists the ROIs and the closest names.
    """
    if not names:
        return list(rtstruct.rois)
    available = [r.name for r in rtstruct.rois]
    chosen: list[RoiContours] = []
    for name in names:
        matches = [r for r in rtstruct.rois if r.name == name] or [
            r for r in rtstruct.rois if r.name.lower() == name.lower()
        ]
        if not matches:
            close = difflib.get_close_matches(name, available, n=3, cutoff=0.5)
            hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
            raise ValueError(
                f"--roi {name!r}: no such ROI in {rtstruct.path.name}; available: "
                f"{', '.join(map(repr, available)) or 'none'}{hint}"
            )
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def plane_of(
    voxels: npt.NDArray[np.float64], shape: Sequence[int], *, what: str, tolerance: float = PLANE_TOLERANCE_VOXELS
) -> tuple[int, int]:
    """The voxel axis and slice index of the grid plane that planar points ``voxels`` ``(N, 3)`` lie in.

    The axis is the one along which the points' coordinates vary least; they must be within ``tolerance`` voxels
    of one integer index inside the volume.

    Raises:
        ValueError: the points lie between slices, outside the volume, or on no grid plane (oblique to the grid).
    """
    spread = voxels.max(axis=0) - voxels.min(axis=0)
    axis = int(np.argmin(spread))
    centre = float(voxels[:, axis].mean())
    index = round(centre)
    if spread[axis] > 2 * tolerance:
        raise ValueError(
            f"{what}: the contour does not lie in a slice plane of the volume (its voxel coordinates vary by "
            f"{spread[axis]:.2f} along the flattest axis); is the RTSTRUCT drawn on another series?"
        )
    if abs(centre - index) > tolerance:
        raise ValueError(
            f"{what}: the contour lies between slices {int(np.floor(centre))} and {int(np.floor(centre)) + 1} of "
            f"axis {axis} (index {centre:.2f}); it does not reference a slice of this series"
        )
    if not 0 <= index < shape[axis]:
        raise ValueError(
            f"{what}: the contour lies on slice {index} of axis {axis}, outside the volume (0..{shape[axis] - 1}); "
            "it references a slice that is not in this series"
        )
    return axis, index


def _fill_centres(polygon: npt.NDArray[np.float64], size: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """Pixels of a ``size`` grid whose centres (integer coordinates) lie inside ``polygon`` ``(N, 2)``."""
    from matplotlib.path import Path as MplPath

    out = np.zeros(size, dtype=bool)
    lo = np.maximum(np.floor(polygon.min(axis=0)).astype(int), 0)
    hi = np.minimum(np.ceil(polygon.max(axis=0)).astype(int), np.asarray(size) - 1)
    if np.any(hi < lo):
        return out
    a, b = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    inside = MplPath(polygon, closed=False).contains_points(np.c_[a.ravel(), b.ravel()])
    out[lo[0] : hi[0] + 1, lo[1] : hi[1] + 1] = inside.reshape(a.shape)
    return out


def _plane_slicer(axis: int, index: int) -> tuple[Any, ...]:
    sl: list[Any] = [slice(None)] * 3
    sl[axis] = index
    return tuple(sl)


def rasterise_roi(roi: RoiContours, reference: ReferenceVolume) -> npt.NDArray[np.bool_]:
    """Boolean mask of ``roi`` in the grid of ``reference`` (see the module docstring for the conventions).

    Raises:
        ValueError: a contour lies off the slices of the volume (named by ROI and referenced UID).
    """
    shape = reference.shape
    mask = np.zeros(shape, dtype=bool)
    skipped_open = 0
    for n, contour in enumerate(roi.contours):
        uid = contour.referenced_sop_uids[0] if contour.referenced_sop_uids else "no referenced image"
        what = f"ROI {roi.name!r} contour {n + 1} (referenced SOPInstanceUID {uid})"
        voxels = reference.lps_to_voxel(contour.points)
        if contour.geometric_type == "POINT" or len(voxels) == 1:
            idx = np.rint(voxels[0]).astype(int)
            if np.any(idx < 0) or np.any(idx >= shape):
                raise ValueError(f"{what}: point at voxel {voxels[0].round(2).tolist()} is outside the volume {shape}")
            mask[tuple(idx)] = True
            continue
        if contour.geometric_type != "CLOSED_PLANAR":
            skipped_open += 1
            continue
        axis, index = plane_of(voxels, shape, what=what)
        in_plane = [a for a in range(3) if a != axis]
        size = (shape[in_plane[0]], shape[in_plane[1]])
        poly = voxels[:, in_plane]
        if np.any(poly.min(axis=0) < -0.5) or np.any(poly.max(axis=0) > np.asarray(size) - 0.5):
            logger.warning("%s: extends beyond the volume's field of view; clipped", what)
        sl = _plane_slicer(axis, index)
        mask[sl] ^= _fill_centres(poly, size)
    if skipped_open:
        logger.warning("ROI %r: %d open (non-closed) contours skipped; they enclose no region", roi.name, skipped_open)
    return mask


def _check_references(rtstruct: RtStruct, rois: Sequence[RoiContours], reference: ReferenceVolume) -> None:
    """Verify UIDs against the sidecar and each referenced slice's position (see the module docstring)."""
    side = reference.sidecar
    nifti = reference.path
    if side is None:
        logger.warning(
            "no dicom2nifti sidecar for %s: cannot verify that %s references this series by UID; checking only that "
            "every contour lies on a slice of the volume",
            nifti,
            rtstruct.path.name,
        )
        return
    series_uid = side.get("series_instance_uid")
    refs = rtstruct.referenced_series_uids
    if series_uid and refs and not any(reference.uid_matches(u, [series_uid]) for u in refs):
        raise ValueError(
            f"RTSTRUCT {rtstruct.path.name} references series {', '.join(refs)}, but SERIES_NIFTI {nifti.name} is "
            f"series {series_uid}; convert the referenced series and use its NIfTI"
        )
    frame = side.get("frame_of_reference_uid")
    sops: list[str | None] = list(side.get("sop_instance_uids") or [])
    positions = side.get("slice_positions_lps") or []
    orientation = side.get("image_orientation_patient")
    normal = None
    if orientation and len(orientation) == 6:
        normal = np.cross(np.asarray(orientation[:3], dtype=float), np.asarray(orientation[3:], dtype=float))
    spacing = float(side.get("slice_spacing_mm") or 0.0)
    have_sops = any(sops)
    for roi in rois:
        if frame and roi.frame_of_reference_uid and not reference.uid_matches(roi.frame_of_reference_uid, [frame]):
            raise ValueError(
                f"ROI {roi.name!r}: FrameOfReferenceUID {roi.frame_of_reference_uid} differs from that of SERIES_NIFTI "
                f"{nifti.name} ({frame}); the structure set was drawn on another scan"
            )
        if not have_sops:
            continue
        for n, contour in enumerate(roi.contours):
            for uid in contour.referenced_sop_uids:
                if not reference.uid_matches(uid, sops):
                    raise ValueError(
                        f"ROI {roi.name!r} contour {n + 1}: references image SOPInstanceUID {uid}, which is not a "
                        f"slice of SERIES_NIFTI {nifti.name} (series {series_uid}); the slice is missing from the "
                        "conversion or the RTSTRUCT belongs to another series"
                    )
                k = next(i for i, s in enumerate(sops) if s is not None and reference.uid_matches(uid, [s]))
                if normal is None or spacing <= 0 or k >= len(positions) or positions[k] is None:
                    continue
                distance = float(np.abs((contour.points - np.asarray(positions[k])) @ normal).max())
                if distance > 0.5 * spacing:
                    raise ValueError(
                        f"ROI {roi.name!r} contour {n + 1}: references image SOPInstanceUID {uid}, but its points lie "
                        f"up to {distance:.2f} mm from that slice (slice spacing {spacing:.2f} mm)"
                    )


@dataclasses.dataclass
class WrittenMask:
    """One mask written by :func:`rtstruct_to_nifti`."""

    roi: str
    number: int
    path: Path
    voxels: int
    contours: int


def rtstruct_to_nifti(
    rtstruct: PathLike,
    series_nifti: PathLike,
    out_dir: PathLike,
    *,
    rois: Sequence[str] | None = None,
    sidecar: PathLike | None = None,
    key_file: PathLike | None = None,
    progress: bool = False,
) -> list[WrittenMask]:
    """Rasterise the ROIs of ``rtstruct`` into ``out_dir/<roi>.nii.gz`` (uint8 0/1) in the grid of ``series_nifti``.

    Every mask has the shape and affine (sform and qform with their codes) of ``series_nifti``. A summary
    ``out_dir/rois.json`` lists each ROI's file, number, contour count, voxel count and display colour.

    Args:
        rtstruct: the RT Structure Set file.
        series_nifti: the NIfTI of the referenced series, as written by ``medseg-data dicom2nifti``.
        out_dir: output folder (created if needed).
        rois: ROI names to convert; None or empty converts all.
        sidecar: the dicom2nifti sidecar JSON; default ``<series_nifti stem>.json`` when it exists.
        key_file: the UID key file dicom2nifti used, for a private sidecar (keyed UID digests); default
            :func:`data_tools.dicom.deid.default_key_file`.
        progress: show a bar over ROIs.

    Returns:
        The masks written.

    Raises:
        FileNotFoundError: an input does not exist.
        ValueError: not an RTSTRUCT, unknown ROI name, references to another series or to slices not present (the
            message names the ROI and the UID), a private sidecar without its key. Nothing is written then.
    """
    from tqdm.auto import tqdm

    structure = read_rtstruct(rtstruct)
    reference = load_reference(series_nifti, sidecar, key_file=key_file)
    chosen = select_rois(structure, rois)
    if not chosen:
        raise ValueError(f"RTSTRUCT {structure.path.name} contains no ROI")
    _check_references(structure, chosen, reference)
    # Rasterise everything first, so a bad contour in the last ROI leaves no outputs behind.
    masks: list[tuple[RoiContours, npt.NDArray[np.bool_]]] = []
    for roi in tqdm(chosen, desc="ROIs", unit="roi", disable=not progress):
        mask = rasterise_roi(roi, reference)
        if not roi.contours:
            logger.warning("ROI %r has no contours; writing an empty mask", roi.name)
        elif not mask.any():
            logger.warning("ROI %r: its contours enclose no voxel centre; the mask is empty", roi.name)
        masks.append((roi, mask))
    out = Path(out_dir)
    used: set[str] = set()
    written: list[WrittenMask] = []
    for roi, mask in masks:
        stem = safe_name(roi.name) or f"roi_{roi.number}"
        name, n = stem, 2
        while name.lower() in used:
            name, n = f"{stem}_{n}", n + 1
        used.add(name.lower())
        path = out / f"{name}.nii.gz"
        reference.write_mask(path, mask)
        written.append(WrittenMask(roi.name, roi.number, path, int(mask.sum()), len(roi.contours)))
    write_json(
        out / "rois.json",
        {
            "rtstruct": structure.path.name,
            "series_nifti": reference.path.name,
            "rois": [
                {
                    "name": w.roi,
                    "number": w.number,
                    "file": w.path.name,
                    "contours": w.contours,
                    "voxels": w.voxels,
                    "color": roi.color,
                }
                for w, (roi, _) in zip(written, masks, strict=True)
            ],
        },
    )
    return written
