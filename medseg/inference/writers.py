"""Writers for predicted masks: NIfTI label volumes, PNG label maps, colour overlays and overlay videos.

Every file is written through :func:`medseg.io.atomic_path` (temporary name, then rename), so a file that
exists is complete, which is what lets an interrupted batch skip finished cases.

Geometry: a NIfTI mask copies the reference file's header (qform, sform and their codes, pixdim, units),
with only the data type, scaling and intent changed, so its shape and affine are exactly the input's. For a
DICOM series, the mask carries the RAS affine of the series as read (LPS converted with ``diag(-1, -1, 1)``,
see :mod:`medseg.transforms.readers`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io import atomic_path
from medseg.typing import PathLike

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_COLORS",
    "MaskWriter",
    "overlay",
    "read_rgb",
    "write_nifti_like",
    "write_png",
]

#: Label colours (RGB) used when a bundle gives none: background black (not drawn), then distinct hues.
DEFAULT_COLORS: tuple[tuple[int, int, int], ...] = (
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


def _check_colors(colors: Sequence[Sequence[int]] | None) -> np.ndarray:
    if colors is None:
        return np.asarray(DEFAULT_COLORS, dtype=np.uint8)
    try:
        table = np.asarray(colors, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"label_colors must be a list of [r, g, b] triples, got {colors!r}") from err
    if table.ndim != 2 or table.shape[1] != 3 or table.shape[0] < 1 or table.min() < 0 or table.max() > 255:
        raise ValueError(
            f"label_colors must be a list of [r, g, b] triples with values 0..255 (one per label, background "
            f"first), got {colors!r}"
        )
    return table.astype(np.uint8)


def write_nifti_like(
    path: PathLike, array: np.ndarray, reference: Any | None, affine: np.ndarray | None = None
) -> None:
    """Write ``array`` as NIfTI with the geometry of ``reference`` (a nibabel image), atomically.

    Args:
        path: output ``.nii.gz`` path.
        array: voxel data in the reference's voxel order; shape ``ref.shape`` (plus trailing dims for
            per-class maps), or the same voxels without the reference's singleton axes.
        reference: nibabel image whose header (qform/sform) is copied; ``None`` to use ``affine``.
        affine: the voxel-to-RAS affine when there is no reference (DICOM input).

    Raises:
        ValueError: if the array's spatial shape does not match the reference.
    """
    import nibabel as nib

    if reference is not None:
        ref_shape = tuple(int(s) for s in reference.shape)
        spatial = tuple(array.shape[: len(ref_shape)])
        if spatial != ref_shape:
            squeezed = tuple(s for s in ref_shape if s != 1)
            if tuple(s for s in array.shape if s != 1) == squeezed and array.ndim <= len(ref_shape):
                array = array.reshape(ref_shape)
            else:
                raise ValueError(
                    f"{path}: mask shape {array.shape} does not match the input's shape {ref_shape} (internal error "
                    "in undoing the preprocessing)"
                )
        header = reference.header.copy()
        header.set_data_dtype(array.dtype)
        header.set_slope_inter(1.0, 0.0)
        header["cal_min"] = 0
        header["cal_max"] = 0
        header["intent_code"] = 0
        # No affine argument: nibabel keeps the header's qform/sform (and codes) as they are.
        image = nib.Nifti1Image(array, None, header=header)
        if array.ndim > len(ref_shape):
            image.header.set_intent("vector")
    else:
        if affine is None:
            raise ValueError("write_nifti_like needs a reference image or an affine")
        image = nib.Nifti1Image(array, np.asarray(affine, dtype=np.float64))
        image.header.set_qform(np.asarray(affine, dtype=np.float64), code=1)
        image.header.set_sform(np.asarray(affine, dtype=np.float64), code=1)
    with atomic_path(path) as tmp:
        nib.save(image, str(tmp))


def write_png(path: PathLike, array: np.ndarray) -> None:
    """Write a ``(H, W)`` label map or ``(H, W, 3)`` RGB image as PNG, atomically."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(array)).save(tmp, format="PNG")


def read_rgb(path: PathLike) -> np.ndarray:
    """Read a 2D image as ``(H, W, 3)`` uint8 for display (gray repeated; 16-bit/float scaled by min/max)."""
    from PIL import Image

    with Image.open(path) as im:
        if im.mode in ("RGB", "L"):
            return np.asarray(im.convert("RGB"))
        if im.mode in ("RGBA", "LA", "P", "PA", "CMYK", "YCbCr", "1"):
            return np.asarray(im.convert("RGB"))
        arr = np.asarray(im, dtype=np.float64)
    return _to_display(arr)


def _to_display(arr: np.ndarray) -> np.ndarray:
    arr = np.asarray(arr, dtype=np.float64)
    lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
    scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
    gray = np.nan_to_num(scaled).round().astype(np.uint8)
    return np.repeat(gray[..., None], 3, axis=-1) if gray.ndim == 2 else gray


def overlay(image: np.ndarray, mask: np.ndarray, colors: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend label colours over an RGB image where ``mask > 0``.

    Args:
        image: ``(H, W, 3)`` uint8.
        mask: ``(H, W)`` integer labels.
        colors: ``(L, 3)`` uint8 colour table; labels beyond it reuse it cyclically.
        alpha: colour opacity in [0, 1].

    Returns:
        ``(H, W, 3)`` uint8.

    Example:
        >>> img = np.zeros((1, 2, 3), np.uint8)
        >>> overlay(img, np.array([[0, 1]]), np.array([[0, 0, 0], [255, 0, 0]], np.uint8), 0.5)[0, 1].tolist()
        [128, 0, 0]
    """
    if image.shape[:2] != mask.shape:
        raise ValueError(f"overlay: image {image.shape[:2]} and mask {mask.shape} differ in size")
    out = image.astype(np.float32)
    fg = mask > 0
    if fg.any():
        colour = colors[mask[fg].astype(np.int64) % len(colors)].astype(np.float32)
        out[fg] = (1.0 - alpha) * out[fg] + alpha * colour
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class MaskWriter:
    """Output options: label colours, overlay opacity, probability maps, video codec.

    Args:
        label_colors: ``[[r, g, b], ...]`` per label, background first (drawn only for labels > 0); default
            :data:`DEFAULT_COLORS`.
        alpha: overlay opacity in [0, 1] (default 0.5).
        save_probabilities: also write the class probabilities (NIfTI ``(x, y, z, K)`` float32 next to a
            volume mask; ``.npy`` ``(K, H, W)`` float32 next to a 2D mask).
        save_overlays: write colour overlays for 2D images and frame folders (videos always get an overlay video).
        video_codec: ffmpeg encoder for overlay videos (default ``"libx264"``).
        video_fps: frame rate of overlay videos; default the input video's (10 if unknown).

    Raises:
        ValueError: for bad colours or ``alpha``.
    """

    def __init__(
        self,
        label_colors: Sequence[Sequence[int]] | None = None,
        alpha: float = 0.5,
        save_probabilities: bool = False,
        save_overlays: bool = True,
        video_codec: str = "libx264",
        video_fps: float | None = None,
    ) -> None:
        self.colors = _check_colors(label_colors)
        if not 0.0 <= float(alpha) <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
        self.alpha = float(alpha)
        self.save_probabilities = bool(save_probabilities)
        self.save_overlays = bool(save_overlays)
        self.video_codec = video_codec
        if video_fps is not None and not float(video_fps) > 0:
            raise ValueError(f"video_fps must be positive or None, got {video_fps!r}")
        self.video_fps = video_fps

    def overlay(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """:func:`overlay` with this writer's colours and opacity."""
        return overlay(image, mask, self.colors, self.alpha)

    def open_video(self, path: Path, fps: float) -> Any:
        """An imageio-ffmpeg writer for ``path`` (frames are padded to even sizes for yuv420p)."""
        import imageio.v2 as imageio

        return imageio.get_writer(
            str(path),
            format="FFMPEG",
            mode="I",
            fps=float(self.video_fps or fps or 10.0),
            codec=self.video_codec,
            macro_block_size=1,
            pixelformat="yuv420p",
            ffmpeg_log_level="error",
        )


def even_frame(frame: np.ndarray) -> np.ndarray:
    """Pad a ``(H, W, 3)`` frame by one edge row/column where H or W is odd (yuv420p needs even sizes)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    return np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
