"""A converted series as annotation tools see it: the NIfTI grid, its sidecar, and how to compare UIDs with it.

``rtstruct2nifti`` and ``lidc`` check that an annotation belongs to the series by its UIDs. A private sidecar holds
keyed digests (:mod:`data_tools.dicom.deid`), so the annotation's UIDs are digested with the same key before they
are compared; the sidecar names the key's public fingerprint, so a wrong key file is an error, not a silent
mismatch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from data_tools.dicom.deid import DIGEST_SCHEME, UidKey, default_key_file, load_key, uid_in
from data_tools.dicom.geometry import LPS_TO_RAS
from data_tools.dicom.sidecar import load_sidecar
from medseg.typing import PathLike

__all__ = ["ReferenceVolume", "load_reference"]


@dataclasses.dataclass
class ReferenceVolume:
    """A converted series as annotation tools see it: the NIfTI grid plus, when present, the sidecar.

    Attributes:
        path: the NIfTI file.
        shape: its 3-D shape.
        affine_ras: voxel-to-RAS affine (the NIfTI sform/qform, as nibabel reports it).
        header: the NIfTI header (copied into the masks written for it).
        sidecar: the dicom2nifti sidecar, or None.
        key: the UID key its sidecar's digests were made with (None for plain UIDs or no sidecar).
    """

    path: Path
    shape: tuple[int, int, int]
    affine_ras: npt.NDArray[np.float64]
    header: Any
    sidecar: Mapping[str, Any] | None
    key: UidKey | None = None

    @property
    def affine_lps(self) -> npt.NDArray[np.float64]:
        return LPS_TO_RAS @ self.affine_ras

    def uid_matches(self, uid: str | None, stored: Iterable[str | None]) -> bool:
        """Whether the plain ``uid`` (from an annotation) is one of the ``stored`` sidecar values."""
        return uid_in(uid, stored, self.key)

    def lps_to_voxel(self, points: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Continuous voxel indices ``(N, 3)`` of LPS points ``(N, 3)`` (integers = voxel centres)."""
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        homog = np.c_[pts, np.ones(len(pts))]
        return (np.linalg.inv(self.affine_lps) @ homog.T).T[:, :3]

    def write_mask(self, path: PathLike, mask: npt.NDArray[Any]) -> None:
        """Write ``mask`` (same shape) as uint8 NIfTI with this volume's affine and codes, atomically."""
        import nibabel as nib

        from medseg.io import atomic_path

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


def _sidecar_key(side: Mapping[str, Any], where: Path, key_file: PathLike | None) -> UidKey | None:
    """The key of a private sidecar's digests, checked against the fingerprint it records; None for plain UIDs."""
    info = side.get("uid_digest")
    if not info:
        return None
    if not isinstance(info, Mapping) or info.get("scheme") != DIGEST_SCHEME:
        raise ValueError(f"sidecar of {where}: unknown UID digest scheme {info!r}; convert the series again")
    path = Path(key_file) if key_file is not None else default_key_file()
    try:
        key = load_key(path)
    except FileNotFoundError as err:
        raise ValueError(
            f"the sidecar of {where.name} holds UID digests keyed with key {info.get('key_id')}, but the key file "
            f"{str(path)!r} does not exist; pass --key-file with the key that dicom2nifti used for this series"
        ) from err
    if key.key_id != info.get("key_id"):
        raise ValueError(
            f"the sidecar of {where.name} holds UID digests keyed with key {info.get('key_id')}, but --key-file "
            f"{str(path)!r} is key {key.key_id}; pass the key file that dicom2nifti used for this series"
        )
    return key


def load_reference(
    series_nifti: PathLike, sidecar: PathLike | None = None, *, key_file: PathLike | None = None
) -> ReferenceVolume:
    """Load the grid of a converted series (the NIfTI header only), its sidecar and, for a private one, the key.

    Args:
        series_nifti: the NIfTI written by ``dicom2nifti``.
        sidecar: its sidecar; default ``<stem>.json`` beside it, when present.
        key_file: the UID key file, for private sidecars; default
            :func:`~data_tools.dicom.deid.default_key_file`.

    Raises:
        FileNotFoundError: the NIfTI (or an explicit sidecar) does not exist.
        ValueError: the file is not a 3-D NIfTI, the sidecar does not match it, or the key is missing or another.
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
    key = _sidecar_key(side, path, key_file) if side is not None else None
    shape3 = (shape[0], shape[1], shape[2])
    return ReferenceVolume(path, shape3, np.asarray(img_any.affine, dtype=np.float64), img_any.header, side, key)
