"""Convert discovered series to NIfTI + sidecar: names, the batch, and what counts as whose fault.

:func:`convert_series` sorts one series (:mod:`~data_tools.dicom.geometry`), reads its pixels once
(:mod:`~data_tools.dicom.pixels`), and writes the NIfTI and its sidecar (:mod:`~data_tools.dicom.writer`).
:func:`dicom_to_nifti` does it for every series under a folder.

Failures are of two kinds. A series that cannot be converted as it is (one slice, gaps, undecodable pixels, an
output of that name already there) is bad input: it is reported and the batch goes on. Failing to write our own
outputs (full disk, no permission, read-only file system) stops the batch at once with :class:`OutputWriteError`,
which carries the report of what was done until then: every further series would fail the same way.

File names are unique per series and carry no free text in private outputs: ``<SeriesNumber>_<Modality>_<d>`` with
``d`` the first 12 hex digits of the keyed digest of the SeriesInstanceUID; with ``keep_phi``,
``<SeriesNumber>_<SeriesDescription>_<d>`` with ``d`` from a plain SHA-256 of the UID.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from data_tools.dicom.deid import KEEPABLE_TEXT, Privacy, UidKey, load_key, safe_name
from data_tools.dicom.discovery import DicomSeries, discover_series
from data_tools.dicom.geometry import series_geometry, uniform_grid
from data_tools.dicom.pixels import load_volume, resample_volume
from data_tools.dicom.sidecar import build_sidecar
from data_tools.dicom.tags import SeriesError, text
from data_tools.dicom.writer import write_series_files
from medseg.typing import PathLike

__all__ = [
    "DEFAULT_MAX_INTERPOLATED",
    "ConversionReport",
    "ConvertedSeries",
    "FailedItem",
    "OutputWriteError",
    "convert_series",
    "dicom_to_nifti",
    "output_name",
]

logger = logging.getLogger(__name__)

#: Default cap on the fraction of interpolated slices when resampling a non-uniform series.
DEFAULT_MAX_INTERPOLATED = 0.1
_NAME_DIGEST_HEX = 12


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
    #: skipped non-DICOM files whose names claim DICOM (``*.dcm``), worth telling the user about
    misnamed_non_dicom: list[Path] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


class OutputWriteError(RuntimeError):
    """Writing an output failed (full disk, no permission, ...): the batch stopped.

    Attributes:
        path: the output that could not be written.
        report: what was converted, failed and skipped before the stop.
    """

    def __init__(self, path: Path, error: OSError, report: ConversionReport) -> None:
        reason = error.strerror or str(error)
        super().__init__(f"cannot write {path}: {reason} (errno {error.errno})")
        self.path = path
        self.report = report


def output_name(series: DicomSeries, privacy: Privacy) -> str:
    """File stem of a series, unique per series (see the module docstring); never free text unless ``keep_phi``.

    Example:
        >>> from data_tools.dicom.deid import UidKey
        >>> s = DicomSeries("1.2.3", "1.2.3", [], {"SeriesNumber": "0", "Modality": "CT", "SeriesDescription": "Doe"})
        >>> output_name(s, Privacy(key=UidKey(bytes(32), Path("k"))))
        '000_CT_f45c672e859f'
        >>> output_name(s, Privacy(keep_phi=True))
        '000_Doe_c47f5b18b8a4'
    """
    parts = []
    if series.series_number is not None:
        parts.append(f"{series.series_number:03d}")
    if privacy.keep_phi:
        parts.append(safe_name(series.series_description))
        digest = hashlib.sha256(series.key.encode("ascii", "replace")).hexdigest()
    else:
        modality = text(series.header, "Modality") or ""
        if re.fullmatch(r"[A-Z0-9]{1,16}", modality):
            parts.append(modality)
        digest = privacy.uid(series.key) or ""
        digest = digest.split(":", 1)[-1]
    parts.append(digest[:_NAME_DIGEST_HEX])
    return safe_name("_".join(p for p in parts if p))


def convert_series(
    series: DicomSeries,
    out_dir: PathLike,
    *,
    privacy: Privacy,
    name: str | None = None,
    overwrite: bool = False,
    allow_nonuniform: bool = False,
    max_interpolated: float = DEFAULT_MAX_INTERPOLATED,
    threads: int | None = None,
    progress: bool = False,
) -> ConvertedSeries:
    """Convert one series to ``out_dir/<name>.nii.gz`` plus ``out_dir/<name>.json``.

    Args:
        series: a series from :func:`~data_tools.dicom.discovery.discover_series`.
        out_dir: output folder (created if needed).
        privacy: what may be written about the patient (private unless ``keep_phi``).
        name: file stem; default :func:`output_name`.
        overwrite: replace existing outputs of that name (else the series fails, nothing replaced).
        allow_nonuniform: for a series with missing slices or irregular steps, resample it onto a uniform grid at
            the median spacing (linear interpolation along the stacking direction; the sidecar lists the
            interpolated slices) instead of failing.
        max_interpolated: with ``allow_nonuniform``, the largest fraction of output slices that may be
            interpolated (0-1); a series needing more fails.
        threads: compression threads; None uses every CPU this process may run on.
        progress: show a bar over slices.

    Returns:
        What was written.

    Raises:
        SeriesError: the series cannot be converted (one slice, mixed geometry, gaps without ``allow_nonuniform``,
            too many interpolated slices, undecodable pixels, ...). Nothing is written then.
        FileExistsError: an output exists and ``overwrite`` is False. Nothing is written then.
        OSError: writing an output failed. Nothing is left behind.
    """
    if not 0.0 <= max_interpolated <= 1.0:
        raise ValueError(f"max_interpolated must be a fraction in [0, 1], got {max_interpolated!r}")
    label = series.label
    if series.problems:
        more = f" (+{len(series.problems) - 1} more)" if len(series.problems) > 1 else ""
        raise SeriesError(f"{label}: {series.problems[0]}{more}")
    stem = name or output_name(series, privacy)
    out = Path(out_dir)
    nifti_path = out / f"{stem}.nii.gz"
    sidecar_path = out / f"{stem}.json"
    if not overwrite:
        for path in (nifti_path, sidecar_path):
            if path.exists():
                raise FileExistsError(f"{label}: {path} exists; nothing replaced — pass --overwrite to replace it")
    geometry = series_geometry(series.slices, name=label)
    sources: list[int | None] = list(range(len(geometry.slices)))
    if geometry.uniform:
        volume = load_volume(geometry, progress=progress)
    else:
        details = "; ".join(geometry.problems[:3]) + (" ..." if len(geometry.problems) > 3 else "")
        if not allow_nonuniform:
            raise SeriesError(
                f"{label}: non-uniform slice positions ({details}); nothing written — pass --allow-nonuniform to "
                "resample it onto a uniform grid"
            )
        plan = uniform_grid(geometry)
        fraction = plan.interpolated / len(plan.sources)
        if fraction > max_interpolated:
            raise SeriesError(
                f"{label}: resampling would interpolate {plan.interpolated} of {len(plan.sources)} slices "
                f"({fraction:.0%}), above --max-interpolated {max_interpolated:.0%} ({details}); nothing written — "
                "the positions are too irregular for a uniform grid (raise --max-interpolated to accept it)"
            )
        logger.warning(
            "%s: non-uniform slice positions (%s); resampling onto a uniform grid (%d of %d slices interpolated)",
            label,
            details,
            plan.interpolated,
            len(plan.sources),
        )
        volume = resample_volume(load_volume(geometry, keep_float=True, progress=progress), plan)  # type: ignore[arg-type]
        sources = plan.sources
    if geometry.tilt_deg > 0.01:
        logger.warning("%s: gantry tilt %.2f°; the affine is sheared (sform only)", label, geometry.tilt_deg)
    affine = geometry.affine_ras()
    shape3 = (int(volume.shape[2]), int(volume.shape[1]), int(volume.shape[0]))
    sidecar = build_sidecar(
        series, geometry, affine_ras=affine, shape=shape3, dtype=str(volume.dtype), sources=sources, privacy=privacy
    )
    write_series_files(nifti_path, sidecar_path, volume, affine, sidecar, overwrite=overwrite, threads=threads)
    logger.info("wrote %s %s %s", nifti_path, shape3, volume.dtype)
    spacing = (geometry.spacing[0], geometry.spacing[1], geometry.step)
    return ConvertedSeries(label, nifti_path, sidecar_path, shape3, spacing, str(volume.dtype))


def _unique(stem: str, used: set[str]) -> str:
    name, n = stem, 2
    while name.lower() in used:
        name = f"{stem}_{n}"
        n += 1
    used.add(name.lower())
    return name


def _key_outside(key: UidKey, out_dir: Path) -> None:
    key_path, out = key.path.resolve(), out_dir.resolve()
    if key_path == out or out in key_path.parents:
        raise ValueError(
            f"--key-file {str(key.path)!r} lies inside OUT_DIR {str(out_dir)!r}: the key must stay apart from the "
            "outputs it protects; keep it elsewhere (the default is in your user config folder)"
        )


def dicom_to_nifti(
    in_dir: PathLike,
    out_dir: PathLike,
    *,
    keep_phi: bool = False,
    keep_text: Sequence[str] = (),
    key_file: PathLike | None = None,
    overwrite: bool = False,
    allow_nonuniform: bool = False,
    max_interpolated: float = DEFAULT_MAX_INTERPOLATED,
    threads: int | None = None,
    progress: bool = False,
) -> ConversionReport:
    """Convert every DICOM image series under ``in_dir`` to NIfTI + sidecar JSON in ``out_dir``.

    A series that fails (one slice, gaps, undecodable pixels, an existing output, ...) is reported and the others are
    still converted; unreadable DICOM files are reported too. Outputs are written atomically, so a failure leaves
    nothing partial.

    Args:
        in_dir: folder tree with DICOM files (names and extensions do not matter).
        out_dir: output folder.
        keep_phi: write patient and study identifiers, dates, free text, plain UIDs and source paths (default:
            private outputs, see :mod:`data_tools.dicom.deid`).
        keep_text: free-text fields to keep (scrubbed) in private outputs; names from
            :data:`~data_tools.dicom.deid.KEEPABLE_TEXT`.
        key_file: the UID key file of private outputs; default :func:`~data_tools.dicom.deid.default_key_file`.
            Created (0600) when it does not exist; must not lie inside ``out_dir``.
        overwrite: replace outputs that exist (default: such a series fails, nothing is replaced).
        allow_nonuniform: see :func:`convert_series`.
        max_interpolated: see :func:`convert_series`.
        threads: compression threads; None uses every CPU this process may run on.
        progress: show a bar over series.

    Returns:
        The report; ``report.ok`` is False when anything failed.

    Raises:
        FileNotFoundError: ``in_dir`` does not exist.
        ValueError: no DICOM image series and no unreadable DICOM file was found under ``in_dir``; bad options.
        OutputWriteError: an output could not be written; the batch stopped (the error carries the report).

    Example:
        >>> import tempfile
        >>> dicom_to_nifti(tempfile.mkdtemp(), tempfile.mkdtemp())
        Traceback (most recent call last):
        ...
        ValueError: no DICOM files found under ...
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"OUT_DIR {str(out)!r} exists and is not a folder; give a folder (created if needed)")
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    if not 0.0 <= max_interpolated <= 1.0:
        raise ValueError(f"--max-interpolated must be a fraction in [0, 1], got {max_interpolated!r}")
    unknown = sorted(set(keep_text) - set(KEEPABLE_TEXT))
    if unknown:
        raise ValueError(f"--keep-text: unknown field(s) {unknown}; choose from {', '.join(KEEPABLE_TEXT)}")
    found = discover_series(in_dir, progress=progress)
    failed = [FailedItem(str(path), reason) for path, reason in found.unreadable]
    if found.misnamed_non_dicom:
        logger.info("%d files named like DICOM are not DICOM", len(found.misnamed_non_dicom))
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
    key = None
    if not keep_phi:
        key = load_key(key_file, create=True)
        _key_outside(key, out)
    privacy = Privacy(keep_phi=keep_phi, keep_text=frozenset(keep_text), key=key)
    report = ConversionReport([], failed, found.skipped_non_dicom, found.skipped_non_image, found.misnamed_non_dicom)
    used: set[str] = set()
    for series in tqdm(found.series, desc="series", unit="series", disable=not progress):
        stem = _unique(output_name(series, privacy), used)
        try:
            report.converted.append(
                convert_series(
                    series,
                    out,
                    privacy=privacy,
                    name=stem,
                    overwrite=overwrite,
                    allow_nonuniform=allow_nonuniform,
                    max_interpolated=max_interpolated,
                    threads=threads,
                )
            )
        except (SeriesError, FileExistsError) as err:
            reason = str(err)
            if isinstance(err, FileExistsError) and err.filename:
                reason = f"{series.label}: {err.filename} exists; nothing replaced — pass --overwrite to replace it"
            logger.debug("failed: %s", reason)
            report.failed.append(FailedItem(series.label, reason))
        except OSError as err:
            path = Path(err.filename) if err.filename else out / stem
            raise OutputWriteError(path, err, report) from err
    return report
