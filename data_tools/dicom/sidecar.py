"""The JSON sidecar written beside each converted series, and reading it back.

``<name>.json`` beside ``<name>.nii.gz`` holds the acquisition facts (modality, kVp, nominal slice thickness,
measured spacing, slice count, ...), the DICOM geometry (orientation, pixel spacing, per-slice positions) and the
UIDs that let ``rtstruct2nifti`` and ``lidc`` verify that annotations reference this series
(``series_instance_uid``, ``frame_of_reference_uid``, per-slice ``sop_instance_uids``). By default it is private
(:mod:`data_tools.dicom.deid`): an allow-list of facts, UIDs as keyed digests (``uid_digest`` names the scheme and
the key's public fingerprint), no free text unless kept by name. With ``keep_phi`` it also holds the patient and
study identifiers, dates, free text, plain UIDs and the source file paths.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from data_tools.dicom.deid import DIGEST_SCHEME, IDENTIFYING_FIELDS, KEEPABLE_TEXT, Privacy
from data_tools.dicom.discovery import DicomSeries
from data_tools.dicom.geometry import SeriesGeometry
from data_tools.dicom.tags import float_or_none, text
from medseg.typing import PathLike

__all__ = ["SIDECAR_VERSION", "build_sidecar", "load_sidecar", "sidecar_path_for"]

#: 2: private by default, UIDs as keyed (HMAC-SHA256) digests. 1 (older): plain UIDs or unkeyed SHA-256 digests.
SIDECAR_VERSION = 2

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

#: Defined terms of RescaleType (DICOM PS3.3 C.11.1.1.2); any other text is free text and not kept in private outputs.
_RESCALE_TYPES = frozenset({"OD", "HU", "US", "MGML", "Z_EFF", "ED", "EDW", "HU_MOD", "PCT"})


def sidecar_path_for(nifti: PathLike) -> Path:
    """``scan.nii.gz`` → ``scan.json`` (also ``scan.nii`` → ``scan.json``)."""
    p = Path(nifti)
    name = p.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return p.with_name(name[: -len(ext)] + ".json")
    return p.with_suffix(".json")


def load_sidecar(nifti: PathLike, sidecar: PathLike | None = None) -> dict[str, Any] | None:
    """The sidecar written by ``dicom2nifti`` for ``nifti`` (or the explicit ``sidecar``), else None.

    Raises:
        FileNotFoundError: if an explicit ``sidecar`` does not exist.
        ValueError: if the sidecar is not valid JSON, not a medseg DICOM sidecar, or an old one whose unkeyed UID
            digests cannot be trusted.
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
    if data.get("uid_hash") == "sha256":
        raise ValueError(
            f"sidecar {path}: written by an older dicom2nifti with unkeyed SHA-256 UID digests, which anyone can "
            "re-link to the UIDs; convert the series again (medseg-data dicom2nifti)"
        )
    return data


def _coded(value: str | None, privacy: Privacy) -> str | None:
    """A CS (code string) value: kept when it is a code (upper-case letters, digits, space, underscore)."""
    if value is None or privacy.keep_phi:
        return value
    return value if re.fullmatch(r"[A-Z0-9_ ]{1,16}", value) else None


def build_sidecar(
    series: DicomSeries,
    geometry: SeriesGeometry,
    *,
    affine_ras: npt.NDArray[np.float64],
    shape: tuple[int, ...],
    dtype: str,
    sources: Sequence[int | None],
    privacy: Privacy,
) -> dict[str, Any]:
    """The sidecar of a converted series (see the module docstring).

    Args:
        series: the series.
        geometry: its sorted geometry.
        affine_ras: the written voxel-to-RAS affine.
        shape: the written array shape ``(columns, rows, slices)``.
        dtype: the written data type.
        sources: for each written slice, the sorted source slice it copies, or None where interpolated.
        privacy: what may be written about the patient.
    """
    from pydicom.uid import UID

    ds = series.header
    first = geometry.slices[0]
    ts = first.transfer_syntax_uid
    slopes = sorted({s.slope for s in geometry.slices})
    intercepts = sorted({s.intercept for s in geometry.slices})
    modality = _coded(text(ds, "Modality"), privacy)
    rescale_type = text(ds, "RescaleType")
    if not privacy.keep_phi and rescale_type not in _RESCALE_TYPES:
        rescale_type = None
    uid = privacy.uid
    key = privacy.key
    sidecar: dict[str, Any] = {
        "medseg_sidecar_version": SIDECAR_VERSION,
        "source": "medseg-data dicom2nifti",
        "deidentified": not privacy.keep_phi,
        "deidentification": None
        if privacy.keep_phi
        else "DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile: allow-listed attributes only, "
        "UIDs replaced by keyed digests, free text dropped unless kept",
        "uid_digest": None if privacy.keep_phi or key is None else {"scheme": DIGEST_SCHEME, "key_id": key.key_id},
        "kept_text": sorted(privacy.keep_text),
        "modality": modality,
        "series_number": series.series_number,
        **{field: privacy.free_text(ds, field) for field in KEEPABLE_TEXT},
        "contrast_bolus": bool(text(ds, "ContrastBolusAgent")),
        "patient_position": _coded(text(ds, "PatientPosition"), privacy),
        "kvp": float_or_none(ds.get("KVP")),
        "xray_tube_current_ma": float_or_none(ds.get("XRayTubeCurrent")),
        "exposure_mas": float_or_none(ds.get("Exposure")),
        "slice_thickness_nominal_mm": float_or_none(ds.get("SliceThickness")),
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
        "rescale_type": rescale_type or ("HU" if modality == "CT" else None),
        "pixel_padding_value": float_or_none(ds.get("PixelPaddingValue")),
        "dtype": dtype,
        "transfer_syntax_uid": ts or None,
        "transfer_syntax": UID(ts).name if ts else None,
        "lossy_compression": ts in _LOSSY_TRANSFER_SYNTAXES or str(ds.get("LossyImageCompression", "")) == "01",
        "affine_ras": [[float(v) for v in row] for row in affine_ras],
        "axes": "i = DICOM column, j = DICOM row, k = slice in ascending order along the slice normal",
        "series_instance_uid": uid(series.series_instance_uid),
        "study_instance_uid": uid(text(ds, "StudyInstanceUID")),
        "frame_of_reference_uid": uid(text(ds, "FrameOfReferenceUID")),
        "sop_instance_uids": [uid(geometry.slices[i].sop_instance_uid) if i is not None else None for i in sources],
        "instance_numbers": [geometry.slices[i].instance_number if i is not None else None for i in sources],
        # of the written slices; None where interpolated
        "slice_positions_lps": [list(geometry.slices[i].position) if i is not None else None for i in sources],
    }
    if privacy.keep_phi:
        for field, keyword in IDENTIFYING_FIELDS:
            sidecar[field] = text(ds, keyword)
        sidecar["source_files"] = [str(geometry.slices[i].path) if i is not None else None for i in sources]
    return sidecar
