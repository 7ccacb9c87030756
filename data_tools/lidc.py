"""LIDC-IDRI XML reader outlines to per-reader and consensus nodule masks (``medseg-data lidc``).

The LIDC XML (root ``LidcReadMessage``; older files ``IdriReadMessage``) holds one ``readingSession`` per
radiologist. Each ``unblindedReadNodule`` (a nodule marked by that reader) has one ``roi`` per slice, with the slice
named by ``imageSOP_UID`` and ``imageZposition``, an ``inclusion`` flag (``FALSE``: the outline of a hole to cut out)
and the outline as ``edgeMap`` points ``(xCoord, yCoord)`` = (column, row) in 0-based pixel indices of that DICOM
slice. Nodules under 3 mm carry a single point. ``nonNodule`` marks (points on non-nodules) are ignored.

Rasterisation:
    The LIDC readers drew the outline on the pixels just outside the nodule boundary (Armato et al., Med Phys 2011;
    the README of the shared slabs). Following the common practice (pylidc, and the voxel counts in
    ``../shared/data/lidc_idri_ct_nodule_slabs/README.md``), the outline pixels are included: a slice's region is
    the PIL ``ImageDraw.polygon`` fill of the edge points *with* its outline. Integer point coordinates are pixel
    centres. An exclusion outline removes its interior but keeps its outline pixels (they lie on the nodule). A
    single-point nodule marks that one voxel.

Mapping to the NIfTI:
    With the dicom2nifti sidecar, a ROI's slice is found by ``imageSOP_UID`` (plain, or a keyed digest in private
    outputs, see :meth:`data_tools.dicom.reference.ReferenceVolume.uid_matches`) or else by ``imageZposition``
    against the slices' ImagePositionPatient z; its
    edge points go to LPS through that slice's position, orientation and pixel spacing, then to voxel indices
    through the NIfTI affine, so any NIfTI of the series grid works. Without a sidecar, the NIfTI is assumed to have
    the dicom2nifti axes (``i`` = column, ``j`` = row) and slices are matched by the world z of each voxel plane
    (a warning says so). ROIs on slices that are not in the volume are skipped: the XML covers the whole series,
    while the volume may be a slab of it.

Consensus:
    ``consensus`` marks voxels outlined by at least ``K`` readers, counting every reading session in the XML as a
    reader (also those who marked nothing here). The default ``K = ceil(R / 2)``: 2 of 4 readers, the 50 %
    agreement level common for LIDC (pylidc's ``consensus(clevel=0.5)``). Note: pylidc applies the level per
    nodule among the readers who marked that nodule; this is a voxel-wise vote among all readers of the series, so
    a nodule marked by only one of four readers is not in the default consensus.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from data_tools.dicom.reference import ReferenceVolume, load_reference
from data_tools.rtstruct import plane_of
from medseg.io import write_json
from medseg.typing import PathLike

__all__ = [
    "LidcNodule",
    "LidcRead",
    "LidcReader",
    "LidcRoi",
    "default_agreement",
    "lidc_masks",
    "lidc_to_nifti",
    "parse_lidc_xml",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class LidcRoi:
    """One slice of one nodule outline."""

    z: float | None
    sop_uid: str | None
    inclusion: bool
    points: npt.NDArray[np.int64]  # (N, 2): x = column, y = row


@dataclasses.dataclass
class LidcNodule:
    """A nodule as marked by one reader."""

    nodule_id: str
    rois: list[LidcRoi]
    characteristics: dict[str, int]

    @property
    def is_small(self) -> bool:
        """Whether it is a < 3 mm nodule, marked by a single point."""
        return sum(len(r.points) for r in self.rois) == 1


@dataclasses.dataclass
class LidcReader:
    """One reading session (one radiologist)."""

    index: int
    radiologist_id: str | None
    nodules: list[LidcNodule]


@dataclasses.dataclass
class LidcRead:
    """A parsed LIDC XML file."""

    path: Path
    series_uid: str | None
    study_uid: str | None
    readers: list[LidcReader]


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(elem: ET.Element, name: str) -> ET.Element | None:
    return next((c for c in elem if _local(c.tag) == name), None)


def _children(elem: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in elem if _local(c.tag) == name]


def _text(elem: ET.Element | None) -> str | None:
    if elem is None or elem.text is None:
        return None
    text = elem.text.strip()
    return text or None


def parse_lidc_xml(path: PathLike) -> LidcRead:
    """Parse the reading sessions of an LIDC XML file (namespace-agnostic).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: not XML, not an LIDC read message, or malformed coordinates.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"XML_FILE {str(path)!r} does not exist")
    try:
        root = ET.parse(path).getroot()  # expat fetches no external entities
    except ET.ParseError as err:
        raise ValueError(f"XML_FILE {path}: not well-formed XML ({err})") from err
    if _local(root.tag) not in ("LidcReadMessage", "IdriReadMessage"):
        raise ValueError(
            f"XML_FILE {path}: root element is <{_local(root.tag)}>, not <LidcReadMessage>; give an LIDC-IDRI XML file"
        )
    header = _child(root, "ResponseHeader")
    series_uid = _text(_child(header, "SeriesInstanceUid")) if header is not None else None
    study_uid = _text(_child(header, "StudyInstanceUID")) if header is not None else None
    readers: list[LidcReader] = []
    for r_idx, session in enumerate(_children(root, "readingSession"), start=1):
        nodules: list[LidcNodule] = []
        for nod in _children(session, "unblindedReadNodule"):
            rois: list[LidcRoi] = []
            for roi in _children(nod, "roi"):
                try:
                    pts = [
                        (
                            int(float(_text(_child(e, "xCoord")) or "nan")),
                            int(float(_text(_child(e, "yCoord")) or "nan")),
                        )
                        for e in _children(roi, "edgeMap")
                    ]
                    z_text = _text(_child(roi, "imageZposition"))
                    z = float(z_text) if z_text is not None else None
                except ValueError as err:
                    raise ValueError(
                        f"XML_FILE {path}: reader {r_idx}, nodule {_text(_child(nod, 'noduleID'))}: "
                        f"bad coordinate ({err})"
                    ) from err
                if not pts:
                    continue
                inclusion = (_text(_child(roi, "inclusion")) or "TRUE").upper() != "FALSE"
                sop = _text(_child(roi, "imageSOP_UID"))
                rois.append(LidcRoi(z, sop, inclusion, np.asarray(pts, dtype=np.int64)))
            chars: dict[str, int] = {}
            ch = _child(nod, "characteristics")
            if ch is not None:
                for c in ch:
                    value = _text(c)
                    if value is not None and value.lstrip("-").isdigit():
                        chars[_local(c.tag)] = int(value)
            nodules.append(LidcNodule(_text(_child(nod, "noduleID")) or f"nodule {len(nodules) + 1}", rois, chars))
        readers.append(LidcReader(r_idx, _text(_child(session, "servicingRadiologistID")), nodules))
    if not readers:
        raise ValueError(f"XML_FILE {path}: no <readingSession> elements; is it an LIDC read message?")
    return LidcRead(path, series_uid, study_uid, readers)


def default_agreement(num_readers: int) -> int:
    """``ceil(R / 2)`` readers: the 50 % level (2 of 4, 2 of 3, 1 of 2).

    Example:
        >>> [default_agreement(r) for r in (1, 2, 3, 4)]
        [1, 1, 2, 2]
    """
    return max(1, math.ceil(num_readers / 2))


def _polygon(points: npt.NDArray[np.int64], size: tuple[int, int], *, outline: bool) -> npt.NDArray[np.bool_]:
    """PIL fill of integer pixel points ``(N, 2)`` on an ``(a, b)`` grid; ``outline`` also draws the edge pixels.

    Points are ``(a, b)`` indices; PIL's image x is ``a`` and y is ``b`` after the final transpose.
    """
    from PIL import Image, ImageDraw

    image = Image.new("1", (size[0], size[1]), 0)  # PIL size = (width, height) = (x extent, y extent)
    draw = ImageDraw.Draw(image)
    xy = [(int(a), int(b)) for a, b in points]
    if len(xy) == 1:
        draw.point(xy, fill=1)
    elif len(xy) == 2:
        draw.line(xy, fill=1)
    else:
        draw.polygon(xy, fill=1, outline=1 if outline else None)
    return np.asarray(image, dtype=bool).T  # PIL arrays are (y, x)


class _SliceMapper:
    """Maps (slice of a ROI, pixel column/row) to voxel indices of the reference volume."""

    def __init__(self, reference: ReferenceVolume, read: LidcRead) -> None:
        self.reference = reference
        side = reference.sidecar
        self.side = side
        if side is not None:
            self.sops: list[str | None] = list(side.get("sop_instance_uids") or [])
            self.positions = [None if p is None else np.asarray(p, dtype=float) for p in side["slice_positions_lps"]]
            orient = np.asarray(side["image_orientation_patient"], dtype=float)
            dr, dc = (float(v) for v in side["pixel_spacing_mm"])
            self.row_step = orient[:3] * dc  # moving one column
            self.col_step = orient[3:] * dr  # moving one row
            self.tol_z = 0.25 * float(side.get("slice_spacing_mm") or 1.0)
            xml_sops = {r.sop_uid for rd in read.readers for n in rd.nodules for r in n.rois if r.sop_uid}
            self.by_sop = any(reference.uid_matches(u, self.sops) for u in xml_sops)
            if not self.by_sop:
                logger.info("no imageSOP_UID of the XML is a slice of %s; matching slices by z", reference.path.name)
        else:
            logger.warning(
                "no dicom2nifti sidecar for %s: assuming its axes are (DICOM column, row, slice) and matching "
                "slices by z position only",
                reference.path,
            )
            aff = reference.affine_lps
            self.slice_z = np.asarray([(aff @ [0.0, 0.0, k, 1.0])[2] for k in range(reference.shape[2])])
            self.tol_z = 0.25 * abs(float(aff[2, 2])) if aff[2, 2] else 0.5

    def voxels(self, roi: LidcRoi) -> npt.NDArray[np.float64] | None:
        """Continuous voxel coordinates ``(N, 3)`` of the ROI's points, or None when its slice is not in the volume."""
        if self.side is None:
            if roi.z is None:
                return None
            k = int(np.argmin(np.abs(self.slice_z - roi.z)))
            if abs(self.slice_z[k] - roi.z) > self.tol_z:
                return None
            pts = roi.points.astype(np.float64)
            return np.c_[pts, np.full(len(pts), float(k))]
        index = None
        if self.by_sop:
            if roi.sop_uid:
                index = next(
                    (
                        i
                        for i, s in enumerate(self.sops)
                        if s is not None and self.reference.uid_matches(roi.sop_uid, [s])
                    ),
                    None,
                )
        elif roi.z is not None:
            dz = [abs(p[2] - roi.z) if p is not None else np.inf for p in self.positions]
            best = int(np.argmin(dz))
            index = best if dz[best] <= self.tol_z else None
        position = None if index is None else self.positions[index]
        if position is None:
            return None
        pts = roi.points.astype(np.float64)
        lps = position + np.outer(pts[:, 0], self.row_step) + np.outer(pts[:, 1], self.col_step)
        return self.reference.lps_to_voxel(lps)


@dataclasses.dataclass
class LidcMasks:
    """Per-reader masks, their vote count and the consensus, plus a JSON-ready summary."""

    readers: list[npt.NDArray[np.bool_]]
    count: npt.NDArray[np.uint8]
    consensus: npt.NDArray[np.bool_]
    agreement: int
    summary: dict[str, Any]


def _check_series(read: LidcRead, reference: ReferenceVolume) -> None:
    side = reference.sidecar
    if side is None or not read.series_uid:
        return
    series_uid = side.get("series_instance_uid")
    if series_uid and not reference.uid_matches(read.series_uid, [series_uid]):
        raise ValueError(
            f"XML_FILE {read.path.name} annotates series {read.series_uid}, but SERIES_NIFTI {reference.path.name} "
            f"is series {series_uid}; give the NIfTI converted from the series the XML belongs to"
        )


def lidc_masks(read: LidcRead, reference: ReferenceVolume, *, agreement: int | None = None) -> LidcMasks:
    """Rasterise every reader's nodules in the grid of ``reference`` and vote (see the module docstring).

    Args:
        read: the parsed XML.
        reference: the series grid (NIfTI header + sidecar).
        agreement: minimum number of readers for the consensus, ``1..R``; default :func:`default_agreement`.

    Raises:
        ValueError: ``agreement`` out of range; the XML belongs to another series; an outline maps off the grid.
    """
    num_readers = len(read.readers)
    k = default_agreement(num_readers) if agreement is None else agreement
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= num_readers:
        raise ValueError(
            f"agreement must be an integer number of readers in 1..{num_readers} (the XML has {num_readers} reading "
            f"sessions), got {agreement!r}; omit it for the 50 % default ({default_agreement(num_readers)})"
        )
    _check_series(read, reference)
    mapper = _SliceMapper(reference, read)
    shape = reference.shape
    masks: list[npt.NDArray[np.bool_]] = []
    summary_readers: list[dict[str, Any]] = []
    for reader in read.readers:
        reader_mask = np.zeros(shape, dtype=bool)
        nodule_summaries = []
        for nodule in reader.nodules:
            nodule_mask: npt.NDArray[np.bool_] | None = None  # allocated at the first ROI inside the volume
            in_volume = 0
            for roi in sorted(nodule.rois, key=lambda r: not r.inclusion):  # inclusions first, then holes
                vox = mapper.voxels(roi)
                if vox is None:
                    continue
                in_volume += 1
                if nodule_mask is None:
                    nodule_mask = np.zeros(shape, dtype=bool)
                what = f"reader {reader.index}, {nodule.nodule_id}, slice z={roi.z} ({roi.sop_uid})"
                if len(vox) == 1:
                    idx = np.rint(vox[0]).astype(int)
                    if np.all(idx >= 0) and np.all(idx < shape):
                        nodule_mask[tuple(idx)] = True
                    continue
                if len(vox) >= 3:
                    axis, index = plane_of(vox, shape, what=what, tolerance=0.25)
                else:  # a two-point outline: use the slice axis found from its ROI's z
                    axis, index = 2, round(float(vox[:, 2].mean()))
                in_plane = [a for a in range(3) if a != axis]
                plane = np.rint(vox[:, in_plane]).astype(np.int64)
                if np.abs(vox[:, in_plane] - plane).max() > 0.25:
                    logger.warning("%s: outline does not fall on voxel centres (resampled NIfTI?); rounded", what)
                size = (shape[in_plane[0]], shape[in_plane[1]])
                sl: list[Any] = [slice(None)] * 3
                sl[axis] = index
                if roi.inclusion:
                    nodule_mask[tuple(sl)] |= _polygon(plane, size, outline=True)
                else:
                    hole = _polygon(plane, size, outline=True) & ~_edge(plane, size)
                    nodule_mask[tuple(sl)] &= ~hole
            if nodule_mask is not None:
                reader_mask |= nodule_mask
            nodule_summaries.append(
                {
                    "nodule_id": nodule.nodule_id,
                    "small": nodule.is_small,
                    "rois": len(nodule.rois),
                    "rois_in_volume": in_volume,
                    "voxels": 0 if nodule_mask is None else int(nodule_mask.sum()),
                    "characteristics": nodule.characteristics,
                }
            )
        masks.append(reader_mask)
        summary_readers.append(
            {
                "reader": reader.index,
                "radiologist_id": reader.radiologist_id,
                "voxels": int(reader_mask.sum()),
                "nodules": nodule_summaries,
            }
        )
    count: npt.NDArray[np.uint8] = np.zeros(shape, dtype=np.uint8)
    for m in masks:
        count += m
    consensus: npt.NDArray[np.bool_] = np.asarray(count >= k)
    summary = {
        "xml": read.path.name,
        "series_nifti": reference.path.name,
        "num_readers": num_readers,
        "agreement": k,
        "consensus_voxels": int(consensus.sum()),
        "readers": summary_readers,
    }
    return LidcMasks(masks, count, consensus, k, summary)


def _edge(points: npt.NDArray[np.int64], size: tuple[int, int]) -> npt.NDArray[np.bool_]:
    """The closed outline through integer pixel points, one pixel wide."""
    from PIL import Image, ImageDraw

    image = Image.new("1", (size[0], size[1]), 0)
    xy = [(int(a), int(b)) for a, b in points]
    ImageDraw.Draw(image).line([*xy, xy[0]], fill=1)
    return np.asarray(image, dtype=bool).T


def lidc_to_nifti(
    xml_file: PathLike,
    series_nifti: PathLike,
    out_dir: PathLike,
    *,
    agreement: int | None = None,
    sidecar: PathLike | None = None,
    key_file: PathLike | None = None,
) -> dict[str, Any]:
    """Write ``reader_<r>.nii.gz`` (one per reading session), ``reader_count.nii.gz``, ``consensus.nii.gz``.

    All masks are uint8 in the grid of ``series_nifti`` (same shape and affine); ``reader_count`` holds the number
    of readers per voxel, the others 0/1. ``lidc.json`` summarises readers, nodules (with the readers'
    characteristics ratings), voxel counts and the agreement level.

    Args:
        xml_file: the LIDC XML of the series.
        series_nifti: the series (or slab) NIfTI written by ``medseg-data dicom2nifti``.
        out_dir: output folder.
        agreement: readers needed for the consensus; default ``ceil(R / 2)``.
        sidecar: the dicom2nifti sidecar; default ``<series_nifti stem>.json`` when present.
        key_file: the UID key file dicom2nifti used, for a private sidecar; default
            :func:`data_tools.dicom.deid.default_key_file`.

    Returns:
        The summary written to ``lidc.json``.

    Raises:
        FileNotFoundError, ValueError: bad inputs (see :func:`parse_lidc_xml` and :func:`lidc_masks`).
    """
    read = parse_lidc_xml(xml_file)
    reference = load_reference(series_nifti, sidecar, key_file=key_file)
    result = lidc_masks(read, reference, agreement=agreement)
    out = Path(out_dir)
    files = []
    for reader, mask in zip(read.readers, result.readers, strict=True):
        path = out / f"reader_{reader.index}.nii.gz"
        reference.write_mask(path, mask)
        files.append(path.name)
    reference.write_mask(out / "reader_count.nii.gz", result.count)
    reference.write_mask(out / "consensus.nii.gz", result.consensus)
    summary = dict(result.summary)
    summary["files"] = {"readers": files, "reader_count": "reader_count.nii.gz", "consensus": "consensus.nii.gz"}
    if not any(r["voxels"] for r in summary["readers"]):
        logger.warning("no nodule outline of %s falls on a slice of %s", read.path.name, reference.path.name)
    write_json(out / "lidc.json", summary)
    return summary
