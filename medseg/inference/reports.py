"""What goes with a NIfTI mask: a label-names sidecar JSON and per-case class volumes in mL (a CSV).

Sidecar (``NAME_seg_labels.json`` beside ``NAME_seg.nii.gz``; not ``NAME_seg.json``, so that ``NAME_seg.*`` names
the mask alone, which is what scripts and ``medseg evaluate`` look for)::

    {"labels": {"0": "background", "1": "infection"},
     "mask": "NAME_seg.nii.gz",
     "provenance": {"software": "medseg 0.1.0", "created": "2025-01-31T12:00:00+00:00", ...}}

``labels`` maps each label value to its class name; ``provenance`` holds what the caller gives (bundle,
checkpoint, its SHA-256, the input's file name) plus the software and the time. Give file names, not paths: a
folder name can carry a patient's name.

Volumes: the voxel count of each class times the voxel volume from the NIfTI header (``pixdim`` in the header's
spatial unit, converted to mm³), divided by 1000 (mL = cm³). A lesion burden is the volume of the lesion classes.

Example:
    >>> import tempfile, pathlib, numpy as np, nibabel as nib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> mask = np.zeros((10, 10, 10), np.uint8); mask[:5, :4, :2] = 1  # 40 voxels of 2 x 2 x 2.5 mm = 0.4 mL
    >>> nib.save(nib.Nifti1Image(mask, np.diag([2.0, 2.0, 2.5, 1.0])), d / "case_seg.nii.gz")
    >>> mask_volumes(d / "case_seg.nii.gz", ["background", "infection"]).volumes_ml
    {'infection': 0.4}
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.typing import PathLike

__all__ = ["CaseVolumes", "label_sidecar_path", "mask_volumes", "write_label_sidecar", "write_volumes_csv"]

logger = logging.getLogger(__name__)

#: NIfTI spatial units (``xyzt_units``) in mm.
_UNIT_MM = {"mm": 1.0, "meter": 1000.0, "micron": 0.001}


def _names(class_names: Sequence[str] | Mapping[int, str]) -> dict[int, str]:
    if isinstance(class_names, str):
        raise TypeError("class_names must be a list of names by class index (background first), not a string")
    table = (
        {int(k): str(v) for k, v in class_names.items()}
        if isinstance(class_names, Mapping)
        else {i: str(v) for i, v in enumerate(class_names)}
    )
    if not table:
        raise ValueError("class_names must name at least the background class 0")
    if len(set(table.values())) != len(table):
        raise ValueError(f"class_names must be unique, got {list(table.values())}")
    return dict(sorted(table.items()))


def _nifti_stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    raise ValueError(f"{path}: not a NIfTI file name (.nii or .nii.gz)")


def label_sidecar_path(mask_path: PathLike) -> Path:
    """The sidecar of ``NAME.nii.gz``: ``NAME_labels.json`` in the same folder."""
    p = Path(mask_path)
    return p.with_name(f"{_nifti_stem(p)}_labels.json")


def write_label_sidecar(
    mask_path: PathLike,
    class_names: Sequence[str] | Mapping[int, str],
    *,
    provenance: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the label-names sidecar JSON of a NIfTI mask (see the module docstring); return its path.

    Args:
        mask_path: the mask (it need not exist yet: the sidecar is named after it).
        class_names: names by label value (background first), or ``{value: name}``.
        provenance: facts about how the mask was made (JSON data): bundle, checkpoint, input file name, ...
        overwrite: replace an existing sidecar.

    Raises:
        FileExistsError: the sidecar exists and ``overwrite`` is false.
        ValueError, TypeError: bad class names, or provenance that is not JSON data.
    """
    import json

    from medseg import __version__
    from medseg.io import write_json

    table = _names(class_names)
    out = label_sidecar_path(mask_path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    info: dict[str, Any] = {
        "software": f"medseg {__version__}",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    info.update(dict(provenance or {}))
    try:
        json.dumps(info)
    except (TypeError, ValueError) as err:
        raise TypeError(f"provenance must be JSON data (strings, numbers, lists, dicts): {err}") from err
    write_json(out, {"labels": {str(k): v for k, v in table.items()}, "mask": Path(mask_path).name, "provenance": info})
    return out


@dataclasses.dataclass
class CaseVolumes:
    """Per-class volumes of one mask.

    Attributes:
        case: the case name (the mask's file name without ``.nii.gz`` unless given).
        voxel_ml: the volume of one voxel in mL.
        voxels: voxel count per foreground class name.
        volumes_ml: volume per foreground class name, in mL.
    """

    case: str
    voxel_ml: float
    voxels: dict[str, int]
    volumes_ml: dict[str, float]

    @property
    def foreground_ml(self) -> float:
        """The volume of all foreground classes together (mL)."""
        return float(sum(self.volumes_ml.values()))


def mask_volumes(
    mask: PathLike | Any,
    class_names: Sequence[str] | Mapping[int, str],
    *,
    case: str | None = None,
) -> CaseVolumes:
    """Count each foreground class of a 3D NIfTI mask and convert to mL with the header's voxel size.

    Args:
        mask: a NIfTI file or a loaded nibabel image.
        class_names: names by label value, background (value 0) first.
        case: the case name (default: the file name without ``.nii``/``.nii.gz``).

    Returns:
        A :class:`CaseVolumes` (foreground classes only; absent classes have 0).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a 3D mask, non-integer labels, label values without a name, or a zero voxel size.
    """
    import nibabel as nib

    if isinstance(mask, str | Path):
        path = Path(mask)
        if not path.is_file():
            raise FileNotFoundError(f"mask {path}: no such file")
        try:
            image: Any = nib.load(str(path))
        except Exception as err:
            raise ValueError(f"mask {path}: cannot read as NIfTI ({type(err).__name__}: {err})") from err
        name = case or _nifti_stem(path)
    else:
        image, name = mask, case or "case"
    table = _names(class_names)
    shape = tuple(int(s) for s in image.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise ValueError(f"mask {name}: volumes need a 3D mask, got shape {tuple(image.shape)}")
    zooms = [float(z) for z in image.header.get_zooms()[:3]]
    unit = image.header.get_xyzt_units()[0] if hasattr(image.header, "get_xyzt_units") else "unknown"
    if unit not in _UNIT_MM:
        logger.info("mask %s: spatial unit %r in the header; taking millimetres (the NIfTI default)", name, unit)
    scale = _UNIT_MM.get(unit, 1.0)
    voxel_mm3 = float(np.prod([abs(z) * scale for z in zooms]))
    if not voxel_mm3 > 0:
        raise ValueError(f"mask {name}: voxel size {zooms} in its header is zero; cannot compute volumes")
    data = np.asarray(image.dataobj).reshape(shape)
    if not np.issubdtype(data.dtype, np.integer):
        rounded = np.rint(data)
        if not np.array_equal(rounded, data):
            raise ValueError(f"mask {name}: holds non-integer values; expected a label map")
        data = rounded.astype(np.int64)
    values, counts = np.unique(data, return_counts=True)
    unknown = sorted(int(v) for v in values if int(v) not in table)
    if unknown:
        raise ValueError(
            f"mask {name}: label values {unknown} have no class name (named: {sorted(table)}); give one name per class"
        )
    count = {int(v): int(n) for v, n in zip(values, counts, strict=True)}
    voxel_ml = voxel_mm3 / 1000.0
    voxels = {label: count.get(value, 0) for value, label in table.items() if value != 0}
    volumes = {label: n * voxel_ml for label, n in voxels.items()}
    return CaseVolumes(name, voxel_ml, voxels, volumes)


def write_volumes_csv(path: PathLike, cases: Sequence[CaseVolumes], *, overwrite: bool = False) -> Path:
    """Write one row per case: ``case``, ``<class>_ml`` for each class, ``foreground_ml`` and ``voxel_ml``.

    Volumes are written with 4 decimals (0.1 µL). Cases must share their class names.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: no cases, or cases with different classes.
    """
    from medseg.io import write_text

    out = Path(path)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass overwrite=True to replace it")
    if not cases:
        raise ValueError("no cases to write")
    classes = list(cases[0].volumes_ml)
    for c in cases:
        if list(c.volumes_ml) != classes:
            raise ValueError(f"case {c.case} has classes {list(c.volumes_ml)}, the first case {classes}")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["case", *(f"{name}_ml" for name in classes), "foreground_ml", "voxel_ml"])
    for c in cases:
        writer.writerow(
            [c.case, *(f"{c.volumes_ml[n]:.4f}" for n in classes), f"{c.foreground_ml:.4f}", f"{c.voxel_ml:.6g}"]
        )
    write_text(out, buf.getvalue())
    return out
