r"""Slice order and voxel grid of a series: sort along the slice normal, find gaps, build the affine.

:func:`series_geometry` sorts the slices by their position along the slice normal ``n = r × c`` (``r``, ``c``: the row
and column direction cosines of ImageOrientationPatient), i.e. by ``ImagePositionPatient · n``, never by
InstanceNumber, and derives the spacing from the positions, never from SliceThickness. It detects duplicated
positions, missing slices and non-uniform spacing. :func:`uniform_grid` plans the resampling of a non-uniform series
onto a uniform grid (which output slices copy a source slice and which are interpolated).

Geometry and conventions:
    Voxel ``(i, j, k)`` of the written array is column ``i``, row ``j`` of the ``k``-th slice in ascending order along
    ``n``. Its centre is at (DICOM PS3.3 C.7.6.2.1.1, LPS patient coordinates in mm)

    .. math::
        x_{LPS} = P_0 + i\,\Delta_c\,r + j\,\Delta_r\,c + k\,s,

    where ``P_0`` is ImagePositionPatient of the first sorted slice (the centre of its first pixel), ``Δ_r, Δ_c`` are
    PixelSpacing (row spacing first), and ``s = (P_{N-1} - P_0) / (N - 1)`` is the slice step vector (parallel to
    ``n`` unless the gantry was tilted). NIfTI world space is RAS, so the stored affine is
    ``diag(-1, -1, 1, 1) @ A_LPS``. This is the grid SimpleITK's ``ImageSeriesReader`` produces (its array is the
    transpose ``[k, j, i]``).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from data_tools.dicom.discovery import SliceHeader
from data_tools.dicom.tags import SeriesError

__all__ = ["LPS_TO_RAS", "GridPlan", "SeriesGeometry", "series_geometry", "uniform_grid"]

#: LPS (DICOM patient coordinates) to RAS (NIfTI world coordinates): negate x and y.
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Relative and absolute tolerance (mm) when comparing slice steps; IPP is written with limited decimals.
STEP_RTOL = 0.01
STEP_ATOL = 0.01
#: Tolerance on direction cosines when checking that all slices share one orientation.
_ORIENTATION_ATOL = 1e-4


@dataclasses.dataclass
class SeriesGeometry:
    """Slices sorted along the slice normal, and the grid they define.

    Attributes:
        slices: the slices in ascending order of ``ImagePositionPatient · n``.
        offsets: position of each slice along the stacking direction, relative to the first (mm, ascending).
        direction: unit stacking direction (LPS); equals the normal ``n`` unless the gantry was tilted.
        normal: slice normal ``n = r × c`` (LPS).
        step: slice spacing (mm): the median step between neighbouring slices.
        uniform: whether all steps equal ``step`` (within 1 % or 0.01 mm).
        missing: number of missing slices detected (gaps that are whole multiples of ``step``).
        problems: human-readable description of each gap or irregular step.
        tilt_deg: angle between ``direction`` and ``normal`` (degrees; gantry tilt).
    """

    slices: list[SliceHeader]
    offsets: npt.NDArray[np.float64]
    direction: npt.NDArray[np.float64]
    normal: npt.NDArray[np.float64]
    step: float
    uniform: bool
    missing: int
    problems: list[str]
    tilt_deg: float

    @property
    def shape(self) -> tuple[int, int, int]:
        s = self.slices[0]
        return (s.columns, s.rows, len(self.slices))

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size (mm) along the array axes ``(i, j, k)``: column spacing, row spacing, slice step."""
        dr, dc = self.slices[0].pixel_spacing
        return (dc, dr, self.step)

    def affine_lps(self) -> npt.NDArray[np.float64]:
        """4×4 voxel-to-LPS affine of the uniform grid starting at the first slice (see the module docstring)."""
        first = self.slices[0]
        row_dir = np.asarray(first.orientation[:3], dtype=np.float64)
        col_dir = np.asarray(first.orientation[3:], dtype=np.float64)
        dr, dc = first.pixel_spacing
        affine = np.eye(4)
        affine[:3, 0] = row_dir * dc
        affine[:3, 1] = col_dir * dr
        affine[:3, 2] = self.direction * self.step
        affine[:3, 3] = first.position
        return affine

    def affine_ras(self) -> npt.NDArray[np.float64]:
        """4×4 voxel-to-RAS affine (NIfTI world): ``diag(-1, -1, 1, 1) @ affine_lps()``."""
        return LPS_TO_RAS @ self.affine_lps()


def _unit(v: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def series_geometry(slices: Sequence[SliceHeader], *, name: str = "series") -> SeriesGeometry:
    """Sort ``slices`` along the slice normal and check that they form a regular grid.

    Args:
        slices: the image headers of one series, in any order.
        name: how to call the series in error messages.

    Returns:
        The sorted geometry; ``uniform`` and ``problems`` report gaps and irregular steps (not an error here:
        the caller decides).

    Raises:
        SeriesError: fewer than two slices, mixed orientations, matrix sizes or pixel spacings, or several slices at
            the same position.
    """
    if len(slices) < 2:
        raise SeriesError(
            f"{name}: has {len(slices)} slice; a volume needs at least 2, since the slice spacing comes from the "
            "positions of neighbouring slices (ImagePositionPatient), not from SliceThickness"
        )
    first = slices[0]
    orient0 = np.asarray(first.orientation)
    for s in slices[1:]:
        if not np.allclose(s.orientation, orient0, atol=_ORIENTATION_ATOL):
            raise SeriesError(
                f"{name}: slices have different orientations ({first.path.name}: {list(first.orientation)}, "
                f"{s.path.name}: {list(s.orientation)}); a localizer mixed into the series? remove those files"
            )
        if (s.rows, s.columns) != (first.rows, first.columns):
            raise SeriesError(
                f"{name}: slices have different matrix sizes ({first.rows}x{first.columns} in {first.path.name}, "
                f"{s.rows}x{s.columns} in {s.path.name})"
            )
        if not np.allclose(s.pixel_spacing, first.pixel_spacing, rtol=1e-4, atol=1e-5):
            raise SeriesError(
                f"{name}: slices have different PixelSpacing ({list(first.pixel_spacing)} in {first.path.name}, "
                f"{list(s.pixel_spacing)} in {s.path.name})"
            )
    row_dir = _unit(orient0[:3].astype(np.float64))
    col_dir = _unit(orient0[3:].astype(np.float64))
    if abs(float(row_dir @ col_dir)) > 1e-3:
        raise SeriesError(f"{name}: ImageOrientationPatient {list(orient0)} is not orthogonal")
    normal = _unit(np.cross(row_dir, col_dir))
    positions = np.asarray([s.position for s in slices], dtype=np.float64)
    along_normal = positions @ normal
    order = np.argsort(along_normal, kind="stable")
    sorted_slices = [slices[int(i)] for i in order]
    positions = positions[order]
    d = along_normal[order]
    gaps = np.diff(d)
    dup = np.flatnonzero(gaps <= STEP_ATOL)
    if dup.size:
        a, b = sorted_slices[int(dup[0])], sorted_slices[int(dup[0]) + 1]
        raise SeriesError(
            f"{name}: {dup.size + 1} or more slices share a position (e.g. {a.path.name} and {b.path.name} at "
            f"{d[dup[0]]:.3f} mm along the normal): several acquisitions, echoes or phases in one series are not "
            "supported; split them into separate folders"
        )
    span = positions[-1] - positions[0]
    direction = _unit(span)
    tilt = math.degrees(math.acos(min(1.0, abs(float(direction @ normal)))))
    # Offsets along the stacking direction, and how far each slice lies off the line through first and last.
    rel = positions - positions[0]
    offsets = rel @ direction
    off_line = np.linalg.norm(rel - np.outer(offsets, direction), axis=1)
    steps = np.diff(offsets)
    step = float(np.median(steps))
    tol = max(STEP_ATOL, STEP_RTOL * step)
    problems: list[str] = []
    missing = 0
    for idx, st in enumerate(steps):
        if abs(st - step) <= tol:
            continue
        ratio = st / step
        lo, hi = sorted_slices[idx], sorted_slices[idx + 1]
        where = f"between {lo.path.name} and {hi.path.name} ({offsets[idx]:.2f} → {offsets[idx + 1]:.2f} mm)"
        if round(ratio) >= 2 and abs(st - round(ratio) * step) <= tol * round(ratio):
            n_miss = round(ratio) - 1
            missing += n_miss
            problems.append(f"{n_miss} missing slice(s) {where}: gap {st:.3f} mm, spacing {step:.3f} mm")
        else:
            problems.append(f"irregular step {st:.3f} mm {where}; spacing elsewhere {step:.3f} mm")
    if float(off_line.max()) > tol:
        worst = int(np.argmax(off_line))
        raise SeriesError(
            f"{name}: slice {sorted_slices[worst].path.name} lies {off_line[worst]:.3f} mm off the line through the "
            "first and last slice positions; the slices do not stack into one volume (mixed acquisitions?)"
        )
    return SeriesGeometry(
        slices=sorted_slices,
        offsets=offsets,
        direction=direction,
        normal=normal,
        step=step,
        uniform=not problems,
        missing=missing,
        problems=problems,
        tilt_deg=tilt,
    )


@dataclasses.dataclass(frozen=True)
class GridPlan:
    """Where each slice of the uniform output grid comes from.

    Attributes:
        sources: for each output slice, the index of the sorted source slice it copies exactly, or None where it is
            interpolated.
        lower: for each output slice, the source slice below it (the one copied, when exact).
        weight: for each output slice, the linear weight of the source slice above ``lower`` (0 when exact).
    """

    sources: list[int | None]
    lower: list[int]
    weight: list[float]

    @property
    def interpolated(self) -> int:
        """How many output slices are interpolated rather than copied."""
        return sum(s is None for s in self.sources)


def uniform_grid(geometry: SeriesGeometry) -> GridPlan:
    """Plan a uniform grid with spacing ``geometry.step`` from the first to the last slice.

    An output slice within the step tolerance (1 % or 0.01 mm) of a source slice copies it; any other is linearly
    interpolated between its two neighbouring source slices along the stacking direction.

    Example:
        >>> import numpy as np
        >>> g = SeriesGeometry([], np.array([0.0, 2.5, 7.5]), np.zeros(3), np.zeros(3), 2.5, False, 1, [], 0.0)
        >>> plan = uniform_grid(g)
        >>> plan.sources, plan.lower, plan.weight, plan.interpolated
        ([0, 1, None, 2], [0, 1, 1, 2], [0.0, 0.0, 0.5, 0.0], 1)
    """
    offsets = geometry.offsets
    step = geometry.step
    count = round(float(offsets[-1]) / step) + 1
    tol = max(STEP_ATOL, STEP_RTOL * step)
    sources: list[int | None] = []
    lower: list[int] = []
    weight: list[float] = []
    for m in range(count):
        t = m * step
        hi = int(np.searchsorted(offsets, t))
        exact = next((i for i in (hi, hi - 1) if 0 <= i < len(offsets) and abs(offsets[i] - t) <= tol), None)
        if exact is not None:
            sources.append(exact)
            lower.append(exact)
            weight.append(0.0)
            continue
        hi = min(max(hi, 1), len(offsets) - 1)
        lo = hi - 1
        sources.append(None)
        lower.append(lo)
        weight.append(float((t - offsets[lo]) / (offsets[hi] - offsets[lo])))
    return GridPlan(sources, lower, weight)
