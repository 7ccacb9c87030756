"""Image readers behind the pipelines: NIfTI, 2D images, and DICOM series folders through SimpleITK.

Why not plain ``monai.transforms.LoadImaged``:

* **DICOM series folders.** MONAI reads them with ``ITKReader`` (needs the ``itk`` package, which this project
  does not install) or ``PydicomReader`` (merges every series found in a folder and sorts slices by
  InstanceNumber, which is wrong for feet-first scans). :class:`SimpleITKSeriesReader` uses SimpleITK/GDCM
  instead: one series per folder (or the ``series_uid`` asked for), slices sorted by their position along the
  slice normal, rescale slope/intercept applied (CT in HU), compressed transfer syntaxes (JPEG 2000) decoded,
  gaps or uneven slice spacing refused.
* **Array orientation of 2D images.** MONAI's ``PILReader`` swaps the two axes by default
  (``reverse_indexing=True``), so a PNG of ``W x H`` pixels becomes an array ``(W, H)``. medseg keeps the
  NumPy/Pillow order instead (see :class:`RowMajorPILReader`).
* **Clean errors.** ``LoadImage`` given a reader still falls back to every other registered reader and, when
  all fail, raises one long multi-traceback message. :class:`LoadMedicalImage` always calls
  :class:`MedicalImageReader`, whose errors name the file in one line.

Array conventions (the contract with the inference writers):

* 3D volumes (NIfTI, DICOM): array index order ``(x, y, z)`` as nibabel gives it, ``affine`` in RAS world
  coordinates (DICOM's LPS converted with ``diag(-1, -1, 1)``), so a DICOM folder and its NIfTI conversion
  load identically.
* 2D images (PNG, JPEG, BMP, TIFF) and 2D NIfTI slices written by ``medseg-data slices2d``: ``(H, W)`` =
  (row, column), the order of ``np.asarray(PIL.Image.open(path))``. A predicted mask ``m`` of shape
  ``(1, H, W)`` is therefore written back with ``PIL.Image.fromarray(m[0])`` without any transpose.
* After loading, images are channel-first: ``(C, *spatial)``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Hashable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from monai.config.type_definitions import KeysCollection
from monai.data.image_reader import ImageReader, NibabelReader, NumpyReader, PILReader
from monai.transforms.io.array import LoadImage
from monai.transforms.transform import MapTransform
from monai.utils.enums import MetaKeys, SpaceKeys

from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = [
    "IMAGE_2D_SUFFIXES",
    "NIFTI_SUFFIXES",
    "LoadMedicalImage",
    "LoadMedicalImaged",
    "MedicalImageReader",
    "RowMajorPILReader",
    "SimpleITKSeriesReader",
    "lps_to_ras_affine",
]

NIFTI_SUFFIXES: tuple[str, ...] = (".nii", ".nii.gz")
IMAGE_2D_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NUMPY_SUFFIXES: tuple[str, ...] = (".npy", ".npz")
#: Single-file formats SimpleITK reads (besides DICOM files, which often have no suffix at all).
SITK_SUFFIXES: tuple[str, ...] = (".dcm", ".mha", ".mhd", ".nrrd", ".nhdr")

#: Relative tolerance on slice-spacing uniformity (0.1 % of the median spacing, at least 1e-3 mm).
_SPACING_RTOL = 1e-3


@contextlib.contextmanager
def _quiet_itk() -> Iterator[None]:
    """Silence ITK's own stderr warnings (e.g. GDCM's "No Series were found"); we raise clear errors instead."""
    import SimpleITK as sitk  # noqa: N813

    previous = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(previous)


def _as_list(names: Sequence[PathLike] | PathLike) -> list[PathLike]:
    if isinstance(names, (str, os.PathLike)):
        return [names]
    return list(names)


def _name(path: PathLike) -> str:
    return Path(path).name.lower()


def lps_to_ras_affine(direction: Sequence[float], spacing: Sequence[float], origin: Sequence[float]) -> np.ndarray:
    r"""The RAS voxel-to-world affine of an ITK/DICOM image given in LPS.

    .. math::
        A_{RAS} = \operatorname{diag}(-1, -1, 1, 1)
        \begin{pmatrix} D \operatorname{diag}(s) & o \\ 0 & 1 \end{pmatrix}

    Args:
        direction: row-major direction cosines (``n*n`` values, SimpleITK's ``GetDirection()``).
        spacing: voxel size per axis in mm.
        origin: world position of voxel 0 in LPS mm.

    Returns:
        ``(n+1, n+1)`` float64 affine mapping voxel indices ``(x, y[, z])`` to RAS mm.
    """
    n = len(spacing)
    d = np.asarray(direction, dtype=np.float64).reshape(n, n)
    affine = np.eye(n + 1)
    affine[:n, :n] = d @ np.diag(np.asarray(spacing, dtype=np.float64))
    affine[:n, n] = np.asarray(origin, dtype=np.float64)
    flip = np.ones(n + 1)
    flip[: min(n, 2)] = -1.0
    return np.diag(flip) @ affine


class RowMajorPILReader(PILReader):
    """MONAI's ``PILReader`` that keeps Pillow's ``(H, W)`` array order and records it in ``spatial_shape``.

    MONAI's reader with ``reverse_indexing=False`` still reports ``spatial_shape = (W, H)``; here it matches
    the array. Palette (``P``) images give their raw indices, which is what label masks need.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.pop("reverse_indexing", None)
        super().__init__(reverse_indexing=False, **kwargs)

    def _get_spatial_shape(self, img: Any) -> np.ndarray:
        return np.asarray((img.height, img.width))


class SimpleITKSeriesReader(ImageReader):
    """Read a DICOM series folder (or one SimpleITK-readable file) with SimpleITK.

    Args:
        series_uid: which series to read when a folder holds several; ``None`` requires exactly one.
        check_spacing: refuse series whose slice positions are unevenly spaced (missing slices, mixed
            thickness), since a single voxel spacing would misplace them; convert such a series with
            ``medseg-data dicom2nifti`` (which can opt in to resampling) instead.

    The output array is ``(x, y, z)`` (ITK index order, i.e. the transpose of SimpleITK's NumPy view) with a
    RAS ``affine``, like nibabel's reading of the same data converted to NIfTI.
    """

    def __init__(self, series_uid: str | None = None, check_spacing: bool = True) -> None:
        super().__init__()
        self.series_uid = series_uid
        self.check_spacing = check_spacing

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        names = _as_list(filename)
        return all(Path(n).is_dir() or _name(n).endswith(SITK_SUFFIXES) for n in names)

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> Any:
        names = _as_list(data)
        images = [self._read_one(Path(n)) for n in names]
        return images if len(images) > 1 else images[0]

    def _read_one(self, path: Path) -> Any:
        import SimpleITK as sitk  # noqa: N813

        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file or DICOM folder")
        if path.is_file():
            return sitk.ReadImage(str(path))
        with _quiet_itk():
            series = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path))
        if not series:
            raise ValueError(f"{path}: no DICOM series found in this folder (is it the series folder?)")
        if self.series_uid is not None:
            if self.series_uid not in series:
                raise ValueError(f"{path}: series_uid={self.series_uid!r} not found; the folder holds {list(series)}")
            uid = self.series_uid
        elif len(series) > 1:
            raise ValueError(
                f"{path}: the folder holds {len(series)} DICOM series {list(series)}; pass series_uid=... "
                "or split them first with `medseg-data dicom2nifti`"
            )
        else:
            uid = series[0]
        # GDCM's IPP sorter orders files by their position along the slice normal, not by InstanceNumber.
        files = sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), uid)
        if len(files) < 2:
            raise ValueError(f"{path}: DICOM series {uid!r} has {len(files)} slice(s); a volume needs at least 2")
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()
        try:
            with _quiet_itk():
                image = reader.Execute()
        except RuntimeError as err:
            first = str(err).strip().splitlines()[-1] if str(err).strip() else repr(err)
            raise ValueError(f"{path}: SimpleITK cannot read DICOM series {uid!r}: {first}") from err
        if self.check_spacing:
            self._check_positions(path, uid, reader, image)
        image.SetMetaData("medseg_series_uid", uid)
        image.SetMetaData("medseg_num_files", str(len(files)))
        return image

    @staticmethod
    def _check_positions(path: Path, uid: str, reader: Any, image: Any) -> None:
        normal = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)[:, 2]
        positions = []
        for i in range(image.GetSize()[2]):
            if not reader.HasMetaDataKey(i, "0020|0032"):
                return  # no ImagePositionPatient (secondary capture): nothing to check against
            ipp = [float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")]
            positions.append(float(np.dot(ipp, normal)))
        steps = np.diff(np.asarray(positions))
        median = float(np.median(np.abs(steps)))
        tol = max(_SPACING_RTOL * median, 1e-3)
        if median <= 0 or np.any(np.abs(np.abs(steps) - median) > tol):
            listed = ", ".join(f"{s:.3f}" for s in steps[:12])
            raise ValueError(
                f"{path}: DICOM series {uid!r} has uneven slice spacing (steps mm: {listed}"
                f"{', ...' if steps.size > 12 else ''}), i.e. missing or duplicated slices; convert it with "
                "`medseg-data dicom2nifti` or pass check_spacing=False to accept the average spacing"
            )

    def get_data(self, img: Any) -> tuple[np.ndarray, dict[str, Any]]:
        import SimpleITK as sitk  # noqa: N813

        arrays: list[np.ndarray] = []
        meta: dict[str, Any] = {}
        for im in img if isinstance(img, list) else [img]:
            ncomp = im.GetNumberOfComponentsPerPixel()
            view = sitk.GetArrayFromImage(im)  # (z, y, x[, c])
            arr = view.T if ncomp == 1 else np.moveaxis(view.T, 0, -1)  # (x, y, z[, c])
            affine = lps_to_ras_affine(im.GetDirection(), im.GetSpacing(), im.GetOrigin())
            header: dict[str, Any] = {
                MetaKeys.ORIGINAL_AFFINE: affine,
                MetaKeys.AFFINE: affine.copy(),
                MetaKeys.SPACE: SpaceKeys.RAS,
                MetaKeys.SPATIAL_SHAPE: np.asarray(im.GetSize()),
                MetaKeys.ORIGINAL_CHANNEL_DIM: float("nan") if ncomp == 1 else -1,
                "spacing": np.asarray(im.GetSpacing()),
            }
            for key, tag in (("series_uid", "medseg_series_uid"), ("modality", "0008|0060")):
                if im.HasMetaDataKey(tag):
                    header[key] = im.GetMetaData(tag).strip()
            if meta and not np.allclose(meta[MetaKeys.AFFINE], header[MetaKeys.AFFINE]):
                raise ValueError("channels read from several files must share one geometry (affine differs)")
            meta = meta or header
            arrays.append(np.ascontiguousarray(arr))
        if len(arrays) == 1:
            return arrays[0], meta
        meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
        return np.stack(arrays, axis=0), meta


class MedicalImageReader(ImageReader):
    """One reader for every input medseg accepts, chosen by suffix, with one-line errors naming the file.

    ``.nii``/``.nii.gz`` -> nibabel; ``.png``/``.jpg``/``.bmp``/``.tif`` -> :class:`RowMajorPILReader`;
    ``.npy``/``.npz`` -> NumPy; a folder, ``.dcm``, ``.mha``, ``.nrrd`` or a suffix-less file (DICOM) ->
    :class:`SimpleITKSeriesReader`.

    Args:
        series_uid: see :class:`SimpleITKSeriesReader`.
        check_spacing: see :class:`SimpleITKSeriesReader`.
    """

    def __init__(self, series_uid: str | None = None, check_spacing: bool = True) -> None:
        super().__init__()
        self.nifti = NibabelReader()
        self.image2d = RowMajorPILReader()
        self.numpy = NumpyReader()
        self.sitk = SimpleITKSeriesReader(series_uid=series_uid, check_spacing=check_spacing)

    def _pick(self, filename: PathLike) -> ImageReader:
        name = _name(filename)
        if name.endswith(NIFTI_SUFFIXES):
            return self.nifti
        if name.endswith(IMAGE_2D_SUFFIXES):
            return self.image2d
        if name.endswith(NUMPY_SUFFIXES):
            return self.numpy
        # Folders (DICOM series), .dcm/.mha/.nrrd, and anything else: DICOM files often carry no suffix or a
        # UID-like name ("CT.1.3.12..."), so SimpleITK is the fallback; it names the file if it cannot read it.
        return self.sitk

    def verify_suffix(self, filename: Sequence[PathLike] | PathLike) -> bool:
        return True  # every path is routed somewhere; unreadable ones fail in read() with the file named

    def read(self, data: Sequence[PathLike] | PathLike, **kwargs: Any) -> tuple[ImageReader, Any, str]:
        names = _as_list(data)
        if not names:
            raise ValueError("no file name given to read")
        readers = {type(self._pick(n)) for n in names}
        if len(readers) > 1:
            raise ValueError(f"channels {names} mix file types; give every channel in the same format")
        reader = self._pick(names[0])
        shown = str(names[0]) if len(names) == 1 else f"{names[0]} (+{len(names) - 1} channel files)"
        for n in names:
            if not Path(n).exists():
                raise FileNotFoundError(f"{n}: no such file")
        try:
            obj = reader.read(names if len(names) > 1 else names[0], **kwargs)
        except FileNotFoundError:
            raise
        except Exception as err:  # any library's failure becomes one line naming the file
            if isinstance(err, ValueError) and str(names[0]) in str(err):
                raise
            detail = " ".join(str(err).split())[-300:]
            kind = (
                "not a NIfTI, 2D image, NumPy or DICOM/ITK file that can be read"
                if reader is self.sitk and Path(names[0]).is_file()
                else "cannot read"
            )
            raise ValueError(f"{shown}: {kind} ({type(err).__name__}: {detail})") from err
        return reader, obj, shown

    def get_data(self, img: tuple[ImageReader, Any, str]) -> tuple[np.ndarray, dict[str, Any]]:
        reader, obj, shown = img
        try:
            array, meta = reader.get_data(obj)
        except Exception as err:  # truncated PNG/JPEG/gz data surface only when the pixels are decoded
            detail = " ".join(str(err).split())[-300:]
            raise ValueError(f"{shown}: cannot decode image data ({type(err).__name__}: {detail})") from err
        return np.asarray(array), meta


class LoadMedicalImage(LoadImage):
    """``monai.transforms.LoadImage`` that always reads through :class:`MedicalImageReader`.

    Args:
        dtype: array dtype after loading (``"float32"`` for images; labels too, so interpolation and
            collation behave; :class:`~medseg.transforms.labels.MapLabels` checks they stay integral).
        ensure_channel_first: move/add the channel axis first (``(C, *spatial)``).
        series_uid: see :class:`SimpleITKSeriesReader`.
        check_spacing: see :class:`SimpleITKSeriesReader`.

    Note:
        ``LoadImage.__init__`` is not called: it instantiates every default reader, among them MONAI's
        nvImageCodec DICOM reader, which logs a warning for each instance on machines without it, and
        those readers would only serve as fallbacks this class never uses. The attributes
        ``LoadImage.__call__`` reads are set here instead.
    """

    def __init__(
        self,
        dtype: str | None = "float32",
        ensure_channel_first: bool = True,
        series_uid: str | None = None,
        check_spacing: bool = True,
    ) -> None:
        self.medical_reader = MedicalImageReader(series_uid=series_uid, check_spacing=check_spacing)
        self.auto_select = False
        self.image_only = True
        self.dtype = None if dtype is None else np.dtype(dtype).type
        self.ensure_channel_first = ensure_channel_first
        self.simple_keys = False
        self.pattern = None
        self.sep = "."
        self.expanduser = True
        self.readers = [self.medical_reader]
        # JSON-friendly record of the settings (part of the transform fingerprint for persistent caching).
        self.settings = {
            "dtype": dtype,
            "ensure_channel_first": ensure_channel_first,
            "series_uid": series_uid,
            "check_spacing": check_spacing,
        }

    def __call__(self, filename: Sequence[PathLike] | PathLike, reader: ImageReader | None = None) -> Any:
        """Load ``filename`` (a file, a DICOM series folder, or a list of files stacked as channels)."""
        return super().__call__(filename, reader=reader or self.medical_reader)


class LoadMedicalImaged(MapTransform):
    """Dictionary wrapper of :class:`LoadMedicalImage` (MONAI's ``LoadImaged`` with medseg's reader).

    Args:
        keys: keys whose values are paths (a folder for a DICOM series).
        dtype: see :class:`LoadMedicalImage`.
        ensure_channel_first: see :class:`LoadMedicalImage`.
        series_uid: see :class:`SimpleITKSeriesReader`.
        check_spacing: see :class:`SimpleITKSeriesReader`.
        allow_missing_keys: skip absent keys.
    """

    def __init__(
        self,
        keys: KeysCollection,
        dtype: str | None = "float32",
        ensure_channel_first: bool = True,
        series_uid: str | None = None,
        check_spacing: bool = True,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadMedicalImage(dtype, ensure_channel_first, series_uid, check_spacing)

    def __repr__(self) -> str:
        return f"LoadMedicalImaged(keys={list(self.keys)})"

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d
