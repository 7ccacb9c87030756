"""The one reader/writer layer for images and label maps: NIfTI, MHA/NRRD, PNG/JPEG/BMP/TIFF.

Every stage reads and writes image files here: ``medseg-data`` converters and checks, the class statistics,
``medseg evaluate`` and inference. Readers return a :class:`LoadedImage` (the array with its spacing, affine and
header) and turn every failure (missing file, not an image, truncated data, a header that claims more voxels than
:data:`DEFAULT_MAX_VOXELS`) into one ``ValueError`` or ``FileNotFoundError`` whose message names the file, so a
batch can report it and go on. Writers write atomically (:func:`medseg.io.atomic_path`).

Conventions:
    * NIfTI and ITK volumes are returned in stored voxel order ``(x, y, z)`` with a 4x4 voxel-to-RAS affine (ITK's
      LPS direction is converted with ``diag(-1, -1, 1)``); spacing is the voxel size in mm.
    * 2D rasters are ``(H, W)`` or ``(H, W, C)`` as NumPy reads them with Pillow (row, column); they have no affine
      and their distances are in pixels. Palette images give their indices, not the colours.
    * Spacing is *known* when an ITK header or a NIfTI header gives it: a NIfTI whose units field says mm (or
      micron/meter), or whose zooms are not all 1 (the NIfTI-1 world space is in mm when the units field is
      left unspecified, as TotalSegmentator's files do). A NIfTI with unspecified units and unit zooms (what a
      writer that knew no spacing leaves) and every raster are in pixels (``units == "pixel"``).

Only NumPy is imported at module level; nibabel, Pillow and SimpleITK are imported by the functions that need
them, so a command that reads PNG labels never pays for SimpleITK.

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_nifti(d / "a.nii.gz", np.zeros((4, 5, 3), np.uint8), np.diag([0.5, 0.5, 2.5, 1.0]), units="mm")
    >>> img = read_label(d / "a.nii.gz")
    >>> img.array.shape, img.spacing, img.units
    ((4, 5, 3), (0.5, 0.5, 2.5), 'mm')
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt

from medseg.io import atomic_path
from medseg.typing import PathLike

if TYPE_CHECKING:
    from PIL import Image as PILImage

__all__ = [
    "DEFAULT_MAX_VOXELS",
    "IMAGE_SUFFIXES",
    "LABEL_COLORS",
    "NIFTI_SUFFIXES",
    "READABLE_SUFFIXES",
    "SITK_SUFFIXES",
    "ImageSizeError",
    "LoadedImage",
    "check_voxel_count",
    "file_stem",
    "image_suffix",
    "is_nifti",
    "load_nifti",
    "max_voxels_arg",
    "natural_key",
    "open_image",
    "read_image",
    "read_label",
    "read_rgb",
    "reorient_like",
    "write_label_png",
    "write_nifti",
    "write_nifti_like",
    "write_png",
]

logger = logging.getLogger(__name__)

#: 2D raster formats read with Pillow.
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
#: NIfTI-1/2, read with nibabel.
NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")
#: Other volume formats, read with SimpleITK.
SITK_SUFFIXES: tuple[str, ...] = (".mha", ".mhd", ".nrrd")
#: Everything :func:`read_image` reads, longest suffix first so ``.nii.gz`` wins over ``.gz``.
READABLE_SUFFIXES: tuple[str, ...] = NIFTI_SUFFIXES + SITK_SUFFIXES + IMAGE_SUFFIXES

#: Largest voxel (pixel x channel) count a header may claim before its data are read: 2**29 = 536,870,912, e.g.
#: 512 x 512 x 2048 or 1024 x 1024 x 512. Clinical CT and MR stay below it; a 1 MB ``.nii.gz`` of zeros can claim
#: 2048 x 2048 x 256 (2**30) and would otherwise take several GB to read. Raise it per call (``max_voxels``) or
#: with the commands' ``--max-voxels``.
DEFAULT_MAX_VOXELS = 1 << 29

#: Label colours (RGB) for palette PNG masks: background black, then distinct hues (cycled beyond ten labels).
LABEL_COLORS: tuple[tuple[int, int, int], ...] = (
    (0, 0, 0),
    (255, 0, 0),
    (0, 255, 0),
    (0, 0, 255),
    (255, 255, 0),
    (255, 0, 255),
    (0, 255, 255),
    (255, 128, 0),
    (128, 0, 255),
    (0, 128, 255),
)

Kind = Literal["nifti", "itk", "raster"]
_NIFTI_UNITS = {"mm": "mm", "micron": "micron", "meter": "meter"}


class ImageSizeError(ValueError):
    """A header claims more voxels than the allowed maximum; raised before any voxel data are read."""


# --------------------------------------------------------------------------------------------------- names
def image_suffix(path: PathLike) -> str | None:
    """The readable suffix ``path`` ends with (``".nii.gz"``, ``".png"``, ...), lower-case, or ``None``."""
    name = Path(path).name.lower()
    for s in READABLE_SUFFIXES:
        if name.endswith(s) and len(name) > len(s):
            return s
    return None


def is_nifti(path: PathLike) -> bool:
    """Whether ``path`` names a NIfTI file (``.nii`` or ``.nii.gz``)."""
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def file_stem(path: PathLike) -> str:
    """The file name without its (possibly double, ``.nii.gz``) suffix.

    Example:
        >>> file_stem("a/ct_001.nii.gz"), file_stem("frame12.png"), file_stem("notes")
        ('ct_001', 'frame12', 'notes')
    """
    name = Path(path).name
    if name.lower().endswith(".nii.gz"):
        return name[: -len(".nii.gz")]
    return Path(name).stem


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders ``frame2`` before ``frame10`` (digit runs compare as integers).

    Example:
        >>> sorted(["f10", "f2", "F1"], key=natural_key)
        ['F1', 'f2', 'f10']
    """
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text))


# --------------------------------------------------------------------------------------------------- size guard
def check_voxel_count(path: PathLike, shape: Sequence[int], max_voxels: int | None = None) -> None:
    """Refuse a header whose claimed shape holds more than ``max_voxels`` elements (default :data:`DEFAULT_MAX_VOXELS`).

    Raises:
        ImageSizeError: one line naming the file, the claimed shape, its voxel count and the limit.
    """
    limit = DEFAULT_MAX_VOXELS if max_voxels is None else int(max_voxels)
    count = math.prod(int(s) for s in shape)
    if count > limit:
        raise ImageSizeError(
            f"{path}: header claims shape {tuple(int(s) for s in shape)} = {count:,} voxels, above the limit of "
            f"{limit:,} (--max-voxels); refusing to read it. Raise the limit if the file is genuine"
        )


def max_voxels_arg(value: str) -> int:
    """``argparse`` type of the commands' ``--max-voxels`` option: a positive whole number (``1e9``, ``2**30`` work)."""
    import argparse

    text = value.strip().replace("_", "")
    try:
        if "**" in text:
            base, exponent = text.split("**", 1)
            number = int(base) ** int(exponent)
        else:
            as_float = float(text)
            if not as_float.is_integer():
                raise ValueError(text)
            number = int(as_float)
    except (ValueError, OverflowError) as err:
        raise argparse.ArgumentTypeError(f"--max-voxels: {value!r} is not a whole number of voxels") from err
    if number < 1:
        raise argparse.ArgumentTypeError(f"--max-voxels: got {value!r}; give a positive number of voxels")
    return number


def _check_limit(max_voxels: int | None) -> None:
    if max_voxels is not None and (isinstance(max_voxels, bool) or not isinstance(max_voxels, int) or max_voxels < 1):
        raise ValueError(f"max_voxels: got {max_voxels!r}; give a positive integer or None for the default")


# --------------------------------------------------------------------------------------------------- readers
@dataclass
class LoadedImage:
    """An array read from disk plus the geometry it carries.

    Attributes:
        array: the data; ``(H, W)``/``(H, W, C)`` for rasters, stored voxel order for volumes.
        affine: 4x4 voxel-to-RAS matrix (mm) for NIfTI/ITK volumes, ``None`` for rasters.
        spacing: voxel size per spatial axis when known (see the module docstring), else ``None``.
        units: units of ``spacing`` and of distances computed with it: ``"mm"``, ``"micron"``, ``"meter"`` or
            ``"pixel"`` (spacing unknown).
        kind: ``"nifti"``, ``"itk"`` or ``"raster"``.
        channel_last: ``True`` when the last axis holds colour channels (RGB/RGBA rasters, vector ITK images).
        header: the nibabel header of a NIfTI (``None`` otherwise).
        path: the file read.
    """

    array: np.ndarray
    affine: npt.NDArray[np.float64] | None
    spacing: tuple[float, ...] | None
    units: str
    kind: Kind
    channel_last: bool = False
    header: Any = None
    path: Path | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """The shape without the channel axis."""
        return tuple(self.array.shape[:-1] if self.channel_last else self.array.shape)


def load_nifti(path: PathLike, *, max_voxels: int | None = None, max_dims: int | None = None) -> Any:
    """Open a NIfTI file with nibabel, reading only its header: the image's data stay on disk until asked for.

    This is what a writer needs to copy a reference geometry (:func:`write_nifti_like`), and it is where the
    voxel-count guard runs for every NIfTI read.

    Args:
        path: ``.nii`` or ``.nii.gz`` file.
        max_voxels: largest claimed element count (default :data:`DEFAULT_MAX_VOXELS`).
        max_dims: refuse images with more than this many non-singleton axes (3: a 4D series is refused).

    Returns:
        The ``nibabel`` image (``Nifti1Image`` or ``Nifti2Image``) with lazy data.

    Raises:
        FileNotFoundError: missing file.
        ValueError: not a NIfTI, unreadable header, too many axes; :class:`ImageSizeError` above the limit.
    """
    import nibabel as nib

    _check_limit(max_voxels)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: file not found")
    try:
        img: Any = nib.load(str(p))
    except Exception as err:  # nibabel raises many types for corrupt headers
        raise ValueError(
            f"{p}: unreadable NIfTI header ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
        ) from err
    if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise ValueError(f"{p}: not a NIfTI image ({type(img).__name__})")
    shape = tuple(int(s) for s in img.header.get_data_shape())
    check_voxel_count(p, shape, max_voxels)
    if max_dims is not None and sum(s > 1 for s in shape[max_dims:]) > 0:
        raise ValueError(
            f"{p}: a {len(shape)}D NIfTI of shape {shape} where at most {max_dims} axes are expected; split the "
            "series into 3D volumes first"
        )
    return img


def _nifti_units(header: Any, spacing: tuple[float, ...]) -> str:
    unit = str(header.get_xyzt_units()[0])
    if unit in _NIFTI_UNITS:
        return _NIFTI_UNITS[unit]
    return "pixel" if all(abs(s - 1.0) < 1e-6 for s in spacing) else "mm"


def _read_nifti(p: Path, max_voxels: int | None) -> LoadedImage:
    img = load_nifti(p, max_voxels=max_voxels)
    try:
        data = np.asarray(np.asanyarray(img.dataobj))
    except Exception as err:  # short or corrupt data
        raise ValueError(f"{p}: unreadable or truncated NIfTI ({type(err).__name__}: {err})") from err
    spatial = min(data.ndim, 3)
    spacing = tuple(float(z) for z in img.header.get_zooms()[:spatial])
    units = _nifti_units(img.header, spacing)
    return LoadedImage(
        data,
        np.asarray(img.affine, dtype=np.float64),
        spacing if units != "pixel" else None,
        units,
        "nifti",
        header=img.header,
        path=p,
    )


def _read_sitk(p: Path, max_voxels: int | None) -> LoadedImage:
    import SimpleITK as sitk  # noqa: N813

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(p))
    try:
        reader.ReadImageInformation()
        size = list(reader.GetSize())
        check_voxel_count(p, [*size, reader.GetNumberOfComponents()], max_voxels)
        img = reader.Execute()
    except RuntimeError as err:
        raise ValueError(f"{p}: unreadable image ({str(err).strip().splitlines()[-1]})") from err
    d = img.GetDimension()
    arr = sitk.GetArrayFromImage(img)  # (z, y, x[, c]): reverse to voxel (x, y, z) order like nibabel
    arr = np.moveaxis(arr, list(range(d)), list(range(d))[::-1])
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(d, d)
    spacing = tuple(float(s) for s in img.GetSpacing())
    affine = np.eye(4)
    affine[:d, :d] = direction * np.asarray(spacing)[None, :]
    affine[:d, 3] = img.GetOrigin()
    if d == 3:
        affine = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine  # LPS (ITK) -> RAS (NIfTI)
    return LoadedImage(arr, affine, spacing, "mm", "itk", channel_last=img.GetNumberOfComponentsPerPixel() > 1, path=p)


def open_image(path: PathLike, *, max_voxels: int | None = None) -> PILImage.Image:
    """Open and fully decode a 2D raster with Pillow (after checking its claimed size).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: not an image Pillow can read, or truncated/corrupt (the message names it);
            :class:`ImageSizeError` when width x height x bands exceeds the limit.
    """
    from PIL import Image, UnidentifiedImageError

    _check_limit(max_voxels)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: file not found")
    try:
        with Image.open(p) as im:
            width, height = im.size
            check_voxel_count(p, (height, width, len(im.getbands())), max_voxels)
            im.load()  # decode now: a truncated file fails here, not later
            return im.copy()
    except ImageSizeError:
        raise
    except UnidentifiedImageError as err:
        raise ValueError(f"{p}: not an image file Pillow can read") from err
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ValueError(f"{p}: unreadable or truncated image ({err})") from err


def read_image(path: PathLike, *, max_voxels: int | None = None) -> LoadedImage:
    """Read an image or label file as a NumPy array with its geometry.

    NIfTI with nibabel, PNG/JPEG/BMP/TIFF with Pillow (palette images keep their indices), MHA/NRRD with
    SimpleITK. The header's size is checked against ``max_voxels`` before any data are read.

    Args:
        path: the file.
        max_voxels: largest claimed element count (default :data:`DEFAULT_MAX_VOXELS`).

    Raises:
        FileNotFoundError: missing file.
        ValueError: unknown suffix, not an image, or truncated data (the message names the file);
            :class:`ImageSizeError` when the header claims more than ``max_voxels`` voxels.
    """
    _check_limit(max_voxels)
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: file not found")
    suffix = image_suffix(p)
    if suffix in NIFTI_SUFFIXES:
        return _read_nifti(p, max_voxels)
    if suffix in SITK_SUFFIXES:
        return _read_sitk(p, max_voxels)
    if suffix in IMAGE_SUFFIXES:
        arr = np.asarray(open_image(p, max_voxels=max_voxels))
        return LoadedImage(arr, None, None, "pixel", "raster", channel_last=arr.ndim == 3, path=p)
    raise ValueError(f"{p}: unsupported file type (allowed: {', '.join(READABLE_SUFFIXES)})")


def read_label(path: PathLike, *, max_voxels: int | None = None) -> LoadedImage:
    """Read a label map: one channel of integer class codes, values untouched.

    A colour raster whose colour channels are all equal (e.g. CholecSeg8k's watershed masks) gives its first
    channel; trailing singleton axes beyond the third are dropped; integer-valued floats become int32 and
    booleans uint8.

    Raises:
        FileNotFoundError: missing file.
        ValueError: unreadable file, a colour label whose channels differ, or non-integer, non-finite or
            non-numeric values (the message names the file); :class:`ImageSizeError` above the size limit.
    """
    img = read_image(path, max_voxels=max_voxels)
    p = img.path
    arr = img.array
    if img.channel_last:
        colour = arr[..., : min(arr.shape[-1], 3)]
        if not (colour == colour[..., :1]).all():
            raise ValueError(
                f"{p}: colour label with differing channels; labels must hold class indices in one channel "
                "(convert colours to indices first)"
            )
        arr = arr[..., 0]
    while arr.ndim > 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if np.issubdtype(arr.dtype, np.floating):
        bad = ~np.isfinite(arr) | (arr != np.round(arr))
        if bad.any():
            shown = ", ".join(f"{v:g}" for v in np.unique(arr[bad])[:8].tolist())
            raise ValueError(
                f"{p}: label has non-integer or non-finite values ({shown}); labels must be integer class codes "
                "(resample with nearest neighbour, save losslessly)"
            )
        arr = arr.astype(np.int32)
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{p}: label dtype {arr.dtype} is not numeric")
    img.array = arr
    img.channel_last = False
    return img


def read_rgb(path: PathLike, *, max_voxels: int | None = None) -> np.ndarray:
    """Read a 2D raster as ``(H, W, 3)`` uint8 for display: grey repeated, palette expanded, 16-bit/float scaled.

    Raises:
        FileNotFoundError: missing file.
        ValueError: unreadable file (named); :class:`ImageSizeError` above the size limit.
    """
    im = open_image(path, max_voxels=max_voxels)
    if im.mode in ("RGB", "L", "RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1"):
        return np.asarray(im.convert("RGB"))
    arr = np.asarray(im, dtype=np.float64)
    lo, hi = (float(np.nanmin(arr)), float(np.nanmax(arr))) if arr.size else (0.0, 0.0)
    scaled = np.zeros_like(arr) if not hi > lo else (arr - lo) / (hi - lo) * 255.0
    gray = np.nan_to_num(scaled).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1) if gray.ndim == 2 else gray


# --------------------------------------------------------------------------------------------------- geometry
def reorient_like(
    array: np.ndarray, affine: npt.ArrayLike, target_affine: npt.ArrayLike
) -> tuple[np.ndarray, npt.NDArray[np.float64]]:
    """Permute and flip the first three axes of ``array`` so that they run like ``target_affine``'s axes.

    Two files of one series written by different tools (dcm2niix and TotalSegmentator versus a DICOM reader
    that keeps the slice order) often store the same voxels with axes in another order or direction; their
    affines then differ only by that permutation and those flips. nibabel's orientation tools (``io_orientation``,
    ``ornt_transform``, ``apply_orientation``, ``inv_ornt_aff``) give the exact voxel re-ordering; no resampling
    takes place, so a real geometry difference (spacing, origin, shape) remains visible in the returned affine.

    Args:
        array: voxel data, at least 3D (extra trailing axes follow along).
        affine: its 4x4 voxel-to-world affine.
        target_affine: the affine whose axis order and directions to take.

    Returns:
        ``(reoriented_array, its_affine)``; the inputs unchanged when the orientations already agree.

    Example:
        >>> a = np.arange(6).reshape(1, 2, 3)
        >>> flipped = np.diag([1.0, -1.0, 1.0, 1.0]); flipped[1, 3] = 1.0  # y runs backwards from y = 1
        >>> b, aff = reorient_like(a[:, ::-1, :], flipped, np.eye(4))
        >>> bool((b == a).all()), aff[1].tolist()
        (True, [0.0, 1.0, 0.0, 0.0])
    """
    from nibabel import orientations as ornt

    src = ornt.io_orientation(np.asarray(affine, dtype=np.float64))
    dst = ornt.io_orientation(np.asarray(target_affine, dtype=np.float64))
    aff = np.asarray(affine, dtype=np.float64)
    if np.array_equal(src, dst) or array.ndim < 3:
        return array, aff
    transform = ornt.ornt_transform(src, dst)
    out = ornt.apply_orientation(array, transform)
    return np.ascontiguousarray(out), aff @ ornt.inv_ornt_aff(transform, array.shape[:3])


# --------------------------------------------------------------------------------------------------- writers
def write_png(path: PathLike, array: np.ndarray, *, compress_level: int = 6) -> None:
    """Write a ``(H, W)`` uint8/uint16 or ``(H, W, 3|4)`` uint8 array as PNG, atomically.

    ``compress_level`` is zlib's 0-9; 3 encodes a 1920x1080 RGB frame about twice as fast as 6 for ~8 % more
    bytes (measured on the EndoVis sample frame), which is what the frame writers use.
    """
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG", compress_level=compress_level)


def _palette(colors: Sequence[Sequence[int]] | None) -> list[int]:
    table = np.asarray(LABEL_COLORS if colors is None else colors, dtype=np.int64)
    if table.ndim != 2 or table.shape[1] != 3 or not len(table) or table.min() < 0 or table.max() > 255:
        raise ValueError(
            f"colors: got {colors!r}; give [r, g, b] triples with values 0..255, one per label, background first"
        )
    full = np.zeros((256, 3), dtype=np.int64)
    full[0] = table[0]
    if len(table) > 1:  # foreground colours cycle, so label 10 of a 10-colour table is not drawn as background
        full[1:] = np.resize(table[1:], (255, 3))
    return [int(v) for v in full.reshape(-1)]


def write_label_png(path: PathLike, labels: np.ndarray, *, colors: Sequence[Sequence[int]] | None = None) -> None:
    """Write a ``(H, W)`` label map as a palette PNG: the stored values are the class indices, the palette colours them.

    Readers that take the indices (NumPy through Pillow, :func:`read_label`, MONAI's PIL reader) get the classes
    back unchanged, while an image viewer shows class 1 red, class 2 green, ... instead of a nearly black image.

    Args:
        path: output ``.png``.
        labels: integer class indices 0..255.
        colors: ``[[r, g, b], ...]`` per label, background first (default :data:`LABEL_COLORS`).

    Raises:
        ValueError: not 2D, non-integer values or values outside 0..255 (a palette holds 256 entries), bad colours.

    Example:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "m.png"
        >>> write_label_png(p, np.array([[0, 1], [2, 1]], np.uint8))
        >>> read_label(p).array.tolist()
        [[0, 1], [2, 1]]
    """
    from PIL import Image

    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"{path}: a label PNG needs a 2D (H, W) array, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == np.bool_):
        raise ValueError(f"{path}: label dtype {arr.dtype} is not integer")
    if arr.size and (int(arr.min()) < 0 or int(arr.max()) > 255):
        raise ValueError(
            f"{path}: label values {int(arr.min())}..{int(arr.max())} do not fit a palette PNG (0..255); "
            "write NIfTI instead"
        )
    im = Image.fromarray(np.ascontiguousarray(arr.astype(np.uint8)), mode="P")
    im.putpalette(_palette(colors))
    with atomic_path(path) as tmp:
        im.save(tmp, format="PNG")


def write_nifti(path: PathLike, array: np.ndarray, affine: npt.ArrayLike, *, units: str | None = None) -> None:
    """Write ``array`` with ``affine`` as NIfTI-1 (``.nii`` or ``.nii.gz`` by the name), atomically.

    Args:
        path: output file.
        array: voxel data in the affine's voxel order.
        affine: 4x4 voxel-to-RAS matrix (qform and sform, code 1).
        units: spatial units to record (``"mm"``) when the spacing is real; ``None`` leaves them unspecified, which
            readers of this layer take as pixel units when the zooms are 1.
    """
    import nibabel as nib

    aff = np.asarray(affine, dtype=np.float64)
    img = nib.Nifti1Image(np.ascontiguousarray(array), aff)
    img.header.set_data_dtype(array.dtype)
    img.set_qform(aff, code=1)
    img.set_sform(aff, code=1)
    if units is not None:
        img.header.set_xyzt_units(units)
    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))


def write_nifti_like(path: PathLike, array: np.ndarray, reference: Any | None, affine: Any = None) -> None:
    """Write ``array`` as NIfTI with the geometry of ``reference`` (a nibabel image), atomically.

    The reference header is copied (qform, sform and their codes, pixdim, units) with only the data type,
    scaling and intent changed, so a mask has exactly its input's shape and affine.

    Args:
        path: output ``.nii.gz`` path.
        array: voxel data in the reference's voxel order; shape ``reference.shape`` (plus trailing axes for
            per-class maps), or the same voxels without the reference's singleton axes.
        reference: nibabel image whose header is copied (e.g. from :func:`load_nifti`); ``None`` to use ``affine``.
        affine: the voxel-to-RAS affine when there is no reference (a DICOM series read another way).

    Raises:
        ValueError: the array's spatial shape does not match the reference, or neither is given.
    """
    import nibabel as nib

    if reference is not None:
        ref_shape = tuple(int(s) for s in reference.shape)
        if tuple(array.shape[: len(ref_shape)]) != ref_shape:
            squeezed = tuple(s for s in ref_shape if s != 1)
            if tuple(s for s in array.shape if s != 1) == squeezed and array.ndim <= len(ref_shape):
                array = array.reshape(ref_shape)
            else:
                raise ValueError(f"{path}: array shape {array.shape} does not match the reference shape {ref_shape}")
        header = reference.header.copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"] = 0
        header["cal_max"] = 0
        header["intent_code"] = 0
        image = nib.Nifti1Image(array, None, header=header)  # no affine: the header's qform/sform are kept
        if array.ndim > len(ref_shape):
            image.header.set_intent("vector")
    else:
        if affine is None:
            raise ValueError(f"{path}: write_nifti_like needs a reference image or an affine")
        aff = np.asarray(affine, dtype=np.float64)
        image = nib.Nifti1Image(array, aff)
        image.header.set_qform(aff, code=1)
        image.header.set_sform(aff, code=1)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))
