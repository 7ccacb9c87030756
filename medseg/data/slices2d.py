"""2D CT slice folders (image files + mask files) -> NIfTI or PNG pairs with integer labels + a datalist.

The layout this converts is the one of the MedSeg COVID-19 CT slices as released with Inf-Net (Fan et al.,
"Inf-Net: Automatic COVID-19 Lung Infection Segmentation from CT Images", IEEE TMI 2020): a folder of 8-bit
slice images (JPEG, already windowed, not HU) and a folder of masks with the same stems, either binary 0/255
(``gt_binary``) or palette images whose raw indices are the classes 0/1/2 (``gt_multiclass``).

Output (``OUT_DIR``)::

    images/<stem>.nii.gz   (or .png)   grayscale slice, intensities exactly as given
    labels/<stem>.nii.gz   (or .png)   uint8 integer labels
    datalist.json                      {"training": [{"image": "images/..", "label": "labels/.."}, ...]}

Every pair goes into ``training``; run ``medseg-data split`` next to carve validation and test.

Conventions:
    * Arrays are ``(H, W)`` in the NumPy/Pillow order (row, column), for NIfTI too: voxel ``(i, j)`` of
      the 2D NIfTI is row ``i``, column ``j`` of the source image, so ``np.asarray(nib.load(p).dataobj)``
      equals ``np.asarray(PIL.Image.open(src))``. The affine is diagonal, ``diag(sy, sx, 1, 1)`` with the
      ``spacing``, origin 0. JPEG slices carry no spacing: without ``spacing`` the zooms are 1 and the units
      are left unspecified, which :mod:`medseg.imageio` reads as pixel units (so ``medseg evaluate`` reports
      distances in pixels, not in a millimetre it cannot know); with ``spacing`` the units are recorded as mm.
    * Image intensities are kept as given: 8-bit JPEG/PNG values 0-255 are stored as uint8 by default
      (lossless, a quarter of float32's size; the training transforms cast to float32 anyway), or as
      float32 with ``image_dtype="float32"``. Colour images are converted to grayscale (Pillow's ITU-R 601
      luma) with a warning unless their three channels are equal.
    * Labels: ``mask_type="binary"`` maps 0/255 (or 0/1) to 0/1 and rejects any other value (anti-aliased
      or JPEG-compressed masks: give ``threshold``); ``"palette"`` keeps the raw indices (palette or
      grayscale images); ``label_map`` (a :mod:`medseg.data.label_map` preset or a ``{source: target}``
      dict) is applied to the raw values afterwards, exactly as the training transform would. PNG labels are
      written as palette images: the stored values are the classes, the palette makes them visible.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from medseg.data.datalist import ConversionReport, write_datalist
from medseg.data.label_map import LabelMap
from medseg.imageio import IMAGE_SUFFIXES, file_stem, natural_key, open_image, write_label_png, write_nifti, write_png
from medseg.typing import PathLike

__all__ = ["ConversionReport", "convert_slices", "read_mask", "read_slice"]

logger = logging.getLogger(__name__)

MaskType = Literal["binary", "palette"]
OutputFormat = Literal["nifti", "png"]


def read_slice(path: PathLike) -> np.ndarray:
    """Read a slice image as a 2D grayscale array ``(H, W)`` with its original values and dtype.

    Raises:
        ValueError: not an image, truncated, or a mode that is not grayscale/colour (names the file).
    """
    im = open_image(path)
    if im.mode in ("L", "I", "I;16", "F") or im.mode.startswith("I;16"):
        return np.asarray(im)
    if im.mode == "P":
        im = im.convert("RGB")
    if im.mode == "LA":
        return np.asarray(im)[..., 0]
    if im.mode in ("RGB", "RGBA", "CMYK", "YCbCr"):
        rgb = np.asarray(im.convert("RGB"))
        if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
            return np.ascontiguousarray(rgb[..., 0])
        logger.warning("%s: colour image converted to grayscale (ITU-R 601 luma)", path)
        return np.asarray(im.convert("L"))
    raise ValueError(f"{path}: unsupported image mode {im.mode!r} for a CT slice (expected grayscale)")


def read_mask(path: PathLike, mask_type: MaskType = "binary", threshold: int | None = None) -> np.ndarray:
    """Read a mask image as uint8 integer labels ``(H, W)``.

    Args:
        path: mask file (PNG/BMP/TIFF; JPEG works but compression noise needs ``threshold``).
        mask_type: ``"binary"``: 0/255 or 0/1 -> 0/1; ``"palette"``: raw indices kept (palette or grayscale).
        threshold: binary only: label = value >= threshold, for masks with intermediate values.

    Raises:
        ValueError: unreadable file, a colour (RGB) mask, or (binary without threshold) values other than
            {0, 255} / {0, 1}; the message names the file and the values found.
    """
    im = open_image(path)
    if im.mode in ("RGB", "RGBA"):
        rgb = np.asarray(im.convert("RGB"))
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise ValueError(
                f"{path}: colour mask (mode {im.mode}); give a grayscale or palette mask with class indices"
            )
        raw = rgb[..., 0]
    elif im.mode in ("L", "P"):
        raw = np.asarray(im)  # palette images give their raw indices, not the colours
    elif im.mode == "1":
        raw = np.asarray(im).astype(np.uint8)
    elif im.mode.startswith("I"):
        raw = np.asarray(im)
    else:
        raise ValueError(f"{path}: unsupported mask mode {im.mode!r} (expected L, P or 1)")
    if mask_type == "palette":
        if raw.min() < 0 or raw.max() > 255:
            raise ValueError(f"{path}: label values {int(raw.min())}..{int(raw.max())} do not fit uint8")
        return raw.astype(np.uint8)
    if mask_type != "binary":
        raise ValueError(f"mask_type: got {mask_type!r}; allowed: 'binary', 'palette'")
    if threshold is not None:
        return (raw >= threshold).astype(np.uint8)
    values = np.unique(raw)
    if set(values.tolist()) <= {0, 255}:
        return (raw == 255).astype(np.uint8)
    if set(values.tolist()) <= {0, 1}:
        return raw.astype(np.uint8)
    shown = ", ".join(str(v) for v in values[:8]) + (", ..." if values.size > 8 else "")
    raise ValueError(
        f"{path}: binary mask has values {{{shown}}}, expected 0/255 or 0/1; "
        "pass --threshold T for soft masks or --mask-type palette for class indices"
    )


def _pair_files(
    img_dir: Path, mask_dir: Path, mask_suffix: str
) -> tuple[list[tuple[str, Path, Path]], list[tuple[str, str]]]:
    def index(folder: Path, strip: str) -> tuple[dict[str, Path], list[tuple[str, str]]]:
        found: dict[str, Path] = {}
        problems: list[tuple[str, str]] = []
        for p in sorted(folder.iterdir()):
            if not p.is_file() or p.name.startswith(".") or not p.name.lower().endswith(IMAGE_SUFFIXES):
                continue
            stem = file_stem(p)
            if strip:
                if not stem.endswith(strip):
                    problems.append((str(p), f"mask name does not end with --mask-suffix {strip!r}; skipped"))
                    continue
                stem = stem[: -len(strip)]
            if stem in found:
                problems.append((str(p), f"two files with stem {stem!r} ({found[stem].name}, {p.name})"))
                continue
            found[stem] = p
        return found, problems

    images, p1 = index(img_dir, "")
    masks, p2 = index(mask_dir, mask_suffix)
    if not images:
        raise ValueError(f"{img_dir}: no slice images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    if not masks:
        raise ValueError(f"{mask_dir}: no mask images found (looked for {', '.join(IMAGE_SUFFIXES)})")
    failures = p1 + p2
    for stem in sorted(set(images) - set(masks), key=natural_key):
        failures.append((str(images[stem]), f"no mask with stem {stem!r} in {mask_dir}"))
    for stem in sorted(set(masks) - set(images), key=natural_key):
        failures.append((str(masks[stem]), f"no image with stem {stem!r} in {img_dir}"))
    pairs = [(s, images[s], masks[s]) for s in sorted(set(images) & set(masks), key=natural_key)]
    return pairs, failures


def convert_slices(
    img_dir: PathLike,
    mask_dir: PathLike,
    out_dir: PathLike,
    *,
    fmt: OutputFormat = "nifti",
    mask_type: MaskType = "binary",
    label_map: str | Mapping[Any, Any] | None = None,
    threshold: int | None = None,
    mask_suffix: str = "",
    image_dtype: Literal["uint8", "float32"] = "uint8",
    spacing: Sequence[float] | None = None,
    datalist_name: str = "datalist.json",
    progress: bool = False,
) -> ConversionReport:
    """Convert paired slice images and masks into NIfTI/PNG pairs with integer labels and a datalist.

    Args:
        img_dir: folder of slice images (PNG/JPEG/BMP/TIFF).
        mask_dir: folder of masks, paired with the images by file stem.
        out_dir: output folder (``images/``, ``labels/`` and the datalist are written there).
        fmt: ``"nifti"`` (2D ``.nii.gz``) or ``"png"``.
        mask_type: ``"binary"`` (0/255 -> 0/1) or ``"palette"`` (raw indices kept); see :func:`read_mask`.
        label_map: optional mapping applied to the labels after reading (a :class:`~medseg.data.label_map.LabelMap`
            preset name, table or dict).
        threshold: binary masks only: foreground = value >= threshold.
        mask_suffix: the part of the mask stem after the image stem (``"_mask"`` pairs ``12.jpg`` with
            ``12_mask.png``).
        image_dtype: stored image dtype; ``"uint8"`` needs 8-bit input.
        spacing: pixel spacing ``(row, column)`` in mm for the NIfTI affine (default 1, 1).
        datalist_name: file name of the datalist in ``out_dir``.
        progress: show a progress bar.

    Returns:
        A :class:`ConversionReport`. Failed pairs (unreadable file, size mismatch, bad mask values) are listed
        there and left out of the datalist; nothing partial is written for them.

    Raises:
        ValueError: bad arguments, or an input folder without any image.
        NotADirectoryError: an input folder does not exist.
    """
    from tqdm.auto import tqdm

    img_path, mask_path, out_path = Path(img_dir), Path(mask_dir), Path(out_dir)
    for name, folder in (("img_dir", img_path), ("mask_dir", mask_path)):
        if not folder.is_dir():
            raise NotADirectoryError(f"{name}: {str(folder)!r} is not an existing directory")
    if fmt not in ("nifti", "png"):
        raise ValueError(f"fmt: got {fmt!r}; allowed: 'nifti', 'png'")
    if mask_type not in ("binary", "palette"):
        raise ValueError(f"mask_type: got {mask_type!r}; allowed: 'binary', 'palette'")
    if image_dtype not in ("uint8", "float32"):
        raise ValueError(f"image_dtype: got {image_dtype!r}; allowed: 'uint8', 'float32'")
    if fmt == "png" and image_dtype == "float32":
        raise ValueError("image_dtype: float32 cannot be written as PNG; use --format nifti or uint8")
    if threshold is not None and mask_type != "binary":
        raise ValueError("threshold: only applies to --mask-type binary; drop it or use binary masks")
    if threshold is not None and not 0 < threshold <= 255:
        raise ValueError(f"threshold: got {threshold}; allowed: 1..255")
    sy, sx = (1.0, 1.0) if spacing is None else (float(spacing[0]), float(spacing[1]))
    if not (np.isfinite([sy, sx]).all() and sy > 0 and sx > 0):
        raise ValueError(f"spacing: got {spacing!r}; give two positive pixel sizes in mm (row, column)")
    mapper = None if label_map is None else LabelMap(label_map)
    units = None if spacing is None else "mm"
    affine = np.diag([sy, sx, 1.0, 1.0])
    suffix = ".nii.gz" if fmt == "nifti" else ".png"

    pairs, failures = _pair_files(img_path, mask_path, mask_suffix)
    entries: list[dict[str, Any]] = []
    for stem, image_file, mask_file in tqdm(pairs, desc="slices2d", unit="pair", disable=not progress):
        try:
            image = read_slice(image_file)
            label = read_mask(mask_file, mask_type, threshold)
            if image.shape != label.shape:
                raise ValueError(
                    f"size mismatch: image {image_file} is {image.shape[1]}x{image.shape[0]} (WxH) but mask "
                    f"{mask_file} is {label.shape[1]}x{label.shape[0]}"
                )
            if mapper is not None:
                try:
                    label = np.asarray(mapper(label)).astype(np.uint8)
                except (ValueError, KeyError) as err:
                    raise ValueError(f"{mask_file}: label map failed: {err}") from err
            if image_dtype == "uint8":
                if image.dtype != np.uint8:
                    raise ValueError(
                        f"{image_file}: {image.dtype} image cannot be stored as uint8 losslessly; "
                        "use --image-dtype float32 with --format nifti"
                    )
            else:
                image = image.astype(np.float32)
            out_image = out_path / "images" / f"{stem}{suffix}"
            out_label = out_path / "labels" / f"{stem}{suffix}"
            if fmt == "nifti":
                write_nifti(out_image, image, affine, units=units)
                write_nifti(out_label, label, affine, units=units)
            else:
                write_png(out_image, image)
                write_label_png(out_label, label)
        except (ValueError, FileNotFoundError) as err:
            msg = str(err)
            logger.debug("pair %s failed: %s", stem, msg)
            named = next((str(f) for f in (image_file, mask_file) if msg.startswith(str(f))), str(image_file))
            failures.append((named, msg))
            continue
        entries.append({"image": str(out_image), "label": str(out_label)})

    report = ConversionReport(datalist=None, converted=len(entries), failures=failures)
    if entries:
        meta = {
            "name": f"slices2d from {img_path.name}",
            "description": f"2D slices converted by medseg-data slices2d (mask type {mask_type})",
            "tensorImageSize": "2D",
        }
        report.datalist = write_datalist(out_path / datalist_name, {"training": entries}, meta)
    return report
