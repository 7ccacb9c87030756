"""Input discovery: paths given to ``predict`` -> cases, one per volume, image, frame folder, video or DICOM series.

=========================================  ======================================================================
path                                       cases
=========================================  ======================================================================
NIfTI file ``NAME.nii[.gz]``               one (``NAME``); 3D volume or 2D slice
2D image ``NAME.png|jpg|bmp|tif``          one (``NAME``)
video ``NAME.mp4|avi|mov|...``             one (``NAME``)
``NAME.dcm|mha|nrrd`` file                 one (``NAME``)
folder with DICOM files                    one per series: ``NAME`` for a single series, else ``NAME_s<SeriesNumber>``
                                           (plus ``_<digest>`` of the series UID where numbers repeat)
folder with 2D images                      one frame folder (``NAME``)
folder with NIfTI/volume/video files       one per file, named by the file (nnU-Net's ``-i imagesTs/``)
folder with sub-folders                    the cases of every sub-folder, named by their path below the given
                                           folder joined with ``_`` (``patient1/ct`` -> ``patient1_ct``)
=========================================  ======================================================================

A folder may hold several of these at once (e.g. NIfTI files next to a sub-folder of DICOM files). Files inside a
DICOM folder that belong to no readable series are reported (one line per folder), not silently dropped. Hidden
files are ignored. Cases come out in a fixed order (sorted names, natural order for frames), which is what
:func:`split_parts` relies on to give every one of ``N`` processes a disjoint share.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SUFFIXES",
    "NIFTI_SUFFIXES",
    "VIDEO_SUFFIXES",
    "VOLUME_SUFFIXES",
    "InputCase",
    "SourceKind",
    "discover_input",
    "split_parts",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")
VOLUME_SUFFIXES = (".dcm", ".mha", ".mhd", ".nrrd", ".nhdr")
SourceKind = Literal["nifti", "dicom", "image", "frames", "video", "volume_file"]
#: How deep sub-folders are searched below a given folder.
MAX_DEPTH = 6

T = TypeVar("T")


def _natural_key(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _lower(path: Path) -> str:
    return path.name.lower()


def _is_dicom_file(path: Path) -> bool:
    try:
        with path.open("rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


@dataclass(frozen=True)
class InputCase:
    """One case to predict.

    Attributes:
        path: the file or folder.
        source: ``"nifti"``, ``"dicom"`` (a series in a folder), ``"volume_file"`` (``.dcm``/``.mha``/``.nrrd``),
            ``"image"``, ``"frames"`` (folder of 2D images) or ``"video"``.
        name: the output base name.
        files: the frame files of a ``"frames"`` folder (natural order), or the files of a DICOM series.
        series_uid: the SeriesInstanceUID of a ``"dicom"`` case (``None`` when unknown).
        notes: one-line remarks found while discovering it (e.g. files of the folder that were ignored).
    """

    path: Path
    source: SourceKind
    name: str
    files: tuple[Path, ...] = ()
    series_uid: str | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def content_files(self) -> list[Path]:
        """The files whose bytes make up the input (for its digest)."""
        return list(self.files) if self.files else [self.path]


def _file_case(path: Path, name: str | None = None) -> InputCase | None:
    low = _lower(path)
    if low.endswith(NIFTI_SUFFIXES):
        stem = path.name[: -len(".nii.gz")] if low.endswith(".nii.gz") else path.stem
        return InputCase(path, "nifti", name or stem)
    if low.endswith(IMAGE_SUFFIXES):
        return InputCase(path, "image", name or path.stem)
    if low.endswith(VIDEO_SUFFIXES):
        return InputCase(path, "video", name or path.stem)
    if low.endswith(VOLUME_SUFFIXES) or _is_dicom_file(path):
        return InputCase(path, "volume_file", name or (path.stem if path.suffix else path.name))
    return None


def _series_number(path: Path) -> str | None:
    try:
        import pydicom

        ds = pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["SeriesNumber"])
        value = ds.get("SeriesNumber")
    except Exception:  # an unreadable header: the series gets a digest name instead
        return None
    return None if value in (None, "") else str(value).strip()


def _dicom_cases(folder: Path, name: str, files: list[Path]) -> list[InputCase]:
    """One case per DICOM series among ``files`` (the folder's own files), with a note on the others."""
    import SimpleITK as sitk  # noqa: N813

    from medseg.transforms.readers import _quiet_itk

    with _quiet_itk():
        uids = sorted(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)))
        series = {
            uid: [Path(f) for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)] for uid in uids
        }
    used = {p.resolve() for members in series.values() for p in members}
    ignored = sorted(p.name for p in files if p.resolve() not in used)
    notes: tuple[str, ...] = ()
    if ignored:
        shown = ", ".join(ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        notes = (
            f"{folder}: {len(ignored)} of {len(files)} files belong to no readable DICOM image series and were "
            f"ignored ({shown})",
        )
    if not series:
        raise ValueError(
            f"{folder}: no readable DICOM series in this folder ({len(files)} files; unreadable or not DICOM images)"
        )
    if len(series) == 1:
        uid = uids[0]
        return [InputCase(folder, "dicom", name, tuple(series[uid]), uid, notes)]
    numbers = {uid: _series_number(series[uid][0]) for uid in uids}
    counts: dict[str | None, int] = {}
    for number in numbers.values():
        counts[number] = counts.get(number, 0) + 1
    cases = []
    for uid in sorted(uids, key=lambda u: (_natural_key(numbers[u] or ""), u)):
        number = numbers[uid]
        label = f"{name}_s{number}" if number is not None else name
        if number is None or counts[number] > 1:
            label += "_" + hashlib.sha256(uid.encode()).hexdigest()[:8]
        cases.append(InputCase(folder, "dicom", label, tuple(series[uid]), uid, notes))
    return cases


def _folder_cases(folder: Path, name: str, depth: int, top: bool) -> list[InputCase]:
    entries = sorted((e for e in folder.iterdir() if not e.name.startswith(".")), key=lambda e: e.name)
    files = [e for e in entries if e.is_file()]
    dicom = [e for e in files if _lower(e).endswith(".dcm") or _is_dicom_file(e)]
    cases: list[InputCase] = []
    if dicom:  # a series folder: every other file in it is reported as ignored
        cases += _dicom_cases(folder, name, files)
    else:
        images = sorted((e for e in files if _lower(e).endswith(IMAGE_SUFFIXES)), key=lambda e: _natural_key(e.name))
        if images:
            cases.append(InputCase(folder, "frames", name, tuple(images)))
        for entry in files:
            if _lower(entry).endswith(IMAGE_SUFFIXES):
                continue
            case = _file_case(entry)
            if case is not None:
                prefix = "" if top else f"{name}_"
                cases.append(InputCase(case.path, case.source, prefix + case.name))
    if depth < MAX_DEPTH:
        for sub in (e for e in entries if e.is_dir()):
            cases += _folder_cases(sub, sub.name if top else f"{name}_{sub.name}", depth + 1, top=False)
    return cases


def discover_input(path: PathLike) -> list[InputCase]:
    """The cases of one input path (see the module docstring).

    Raises:
        FileNotFoundError: if the path does not exist.
        ValueError: if it is no supported kind of input, or a folder with nothing to segment.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or folder")
    if p.is_file():
        case = _file_case(p)
        if case is None:
            raise ValueError(
                f"{p}: not a supported input (NIfTI {'/'.join(NIFTI_SUFFIXES)}, DICOM, 2D image "
                f"{'/'.join(IMAGE_SUFFIXES)}, video {'/'.join(VIDEO_SUFFIXES)}, or a folder of them)"
            )
        return [case]
    cases = _folder_cases(p, p.name, 0, top=True)
    if not cases:
        raise ValueError(
            f"{p}: the folder holds no DICOM series, 2D images (frames), NIfTI volumes or videos (also in its "
            "sub-folders); nothing to segment"
        )
    return cases


def split_parts(items: Sequence[T], num_parts: int, part_id: int) -> list[T]:
    """Every ``num_parts``-th item starting at ``part_id``: disjoint shares that together cover ``items``.

    Args:
        items: the full, deterministically ordered list (the same in every process).
        num_parts: how many processes (GPUs, machines) share the work, at least 1.
        part_id: this process's share, ``0 <= part_id < num_parts``.

    Raises:
        ValueError: for a bad ``num_parts`` or ``part_id``.

    Example:
        >>> split_parts(list("abcdefg"), 3, 1)
        ['b', 'e']
    """
    if isinstance(num_parts, bool) or not isinstance(num_parts, int) or num_parts < 1:
        raise ValueError(f"num_parts must be an int >= 1, got {num_parts!r}")
    if isinstance(part_id, bool) or not isinstance(part_id, int) or not 0 <= part_id < num_parts:
        raise ValueError(f"part_id must be an int in [0, {num_parts - 1}] for num_parts={num_parts}, got {part_id!r}")
    return list(items[part_id::num_parts])
