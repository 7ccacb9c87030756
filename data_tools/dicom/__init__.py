"""DICOM image series to NIfTI: discover series in a folder tree, sort slices in space, convert, write a sidecar.

The library behind ``medseg-data dicom2nifti``, a module per job:

* :mod:`~data_tools.dicom.discovery`: walk a tree, read each header once, group image files by SeriesInstanceUID.
* :mod:`~data_tools.dicom.geometry`: sort slices along the slice normal (never by InstanceNumber), derive the spacing
  from ImagePositionPatient (never SliceThickness), detect gaps, build the RAS affine (the conventions are there).
* :mod:`~data_tools.dicom.pixels`: read or decode each slice once, rescale to modality values (HU), stack in the
  order NIfTI stores them.
* :mod:`~data_tools.dicom.deid`: private by default (DICOM PS3.15 Annex E Basic Application Level Confidentiality
  Profile): an allow-list of facts, keyed UID digests, the key file, safe names.
* :mod:`~data_tools.dicom.sidecar`: the JSON sidecar written beside each NIfTI, and reading it back.
* :mod:`~data_tools.dicom.writer`: NIfTI through a parallel gzip stream, sidecar first, atomic, never replacing.
* :mod:`~data_tools.dicom.convert`: one series, a whole tree, and the report.
* :mod:`~data_tools.dicom.reference`: a converted series as ``rtstruct2nifti`` and ``lidc`` see it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from data_tools.dicom.convert import (
        DEFAULT_MAX_INTERPOLATED,
        ConversionReport,
        ConvertedSeries,
        FailedItem,
        OutputWriteError,
        convert_series,
        dicom_to_nifti,
        output_name,
    )
    from data_tools.dicom.deid import KEEPABLE_TEXT, Privacy, UidKey, default_key_file, load_key, safe_name, uid_in
    from data_tools.dicom.discovery import DicomSeries, DiscoveryResult, SliceHeader, discover_series
    from data_tools.dicom.geometry import LPS_TO_RAS, SeriesGeometry, series_geometry
    from data_tools.dicom.reference import ReferenceVolume, load_reference
    from data_tools.dicom.sidecar import load_sidecar, sidecar_path_for
    from data_tools.dicom.tags import SeriesError

#: Where each public name lives; imported on first use, so ``medseg-data --help`` and the light modules (``deid``)
#: do not pull in numpy, pydicom and nibabel.
_EXPORTS = {
    "DEFAULT_MAX_INTERPOLATED": "convert",
    "ConversionReport": "convert",
    "ConvertedSeries": "convert",
    "FailedItem": "convert",
    "OutputWriteError": "convert",
    "convert_series": "convert",
    "dicom_to_nifti": "convert",
    "output_name": "convert",
    "KEEPABLE_TEXT": "deid",
    "Privacy": "deid",
    "UidKey": "deid",
    "default_key_file": "deid",
    "load_key": "deid",
    "safe_name": "deid",
    "uid_in": "deid",
    "DicomSeries": "discovery",
    "DiscoveryResult": "discovery",
    "SliceHeader": "discovery",
    "discover_series": "discovery",
    "LPS_TO_RAS": "geometry",
    "SeriesGeometry": "geometry",
    "series_geometry": "geometry",
    "ReferenceVolume": "reference",
    "load_reference": "reference",
    "load_sidecar": "sidecar",
    "sidecar_path_for": "sidecar",
    "SeriesError": "tags",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])


__all__ = [
    "DEFAULT_MAX_INTERPOLATED",
    "KEEPABLE_TEXT",
    "LPS_TO_RAS",
    "ConversionReport",
    "ConvertedSeries",
    "DicomSeries",
    "DiscoveryResult",
    "FailedItem",
    "OutputWriteError",
    "Privacy",
    "ReferenceVolume",
    "SeriesError",
    "SeriesGeometry",
    "SliceHeader",
    "UidKey",
    "convert_series",
    "default_key_file",
    "dicom_to_nifti",
    "discover_series",
    "load_key",
    "load_reference",
    "load_sidecar",
    "output_name",
    "safe_name",
    "series_geometry",
    "sidecar_path_for",
    "uid_in",
]
