"""Slice geometry in patient coordinates, and the voxel-to-world maps that outputs need.

Conventions (as ISMRMRD and DICOM define them):

- Patient coordinates are LPS (x to the patient's Left, y Posterior, z Superior), in mm.
- `position` is the centre of the slice's field of view (ISMRMRD acquisition `position`).
- An image of one slice is `(rows, cols)`: rows run along `read_dir` (readout), columns
  along `phase_dir` (phase encoding), as in the fastMRI layout `(slices, coils, rows, cols)`.
- With a centred FFT, the FOV centre is pixel `(rows // 2, cols // 2)`.

NIfTI wants RAS+ world coordinates, so `nifti_affine` flips the first two axes.

`make_geometry` accepts only what places an image: a finite position, finite orthonormal
directions (`ORTHONORMAL_TOLERANCE`) and a field of view > 0; anything else would be written as
a NaN or singular affine or a PixelSpacing of 0. Raw headers go through `header_directions`,
which says what it assumes for unset (all-zero) direction vectors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass(frozen=True)
class SliceGeometry:
    """Where one 2-D slice sits in the scanner (patient LPS coordinates, mm).

    Attributes:
        position: (3,) centre of the slice's field of view.
        read_dir: (3,) unit vector along image rows' index (readout).
        phase_dir: (3,) unit vector along image columns' index (phase encoding).
        slice_dir: (3,) unit vector normal to the slice.
        fov_mm: (3,) field of view (readout, phase, slice thickness) of the image grid.
        matrix: (rows, cols) of the image grid that `fov_mm` covers.
    """

    position: tuple[float, float, float]
    read_dir: tuple[float, float, float]
    phase_dir: tuple[float, float, float]
    slice_dir: tuple[float, float, float]
    fov_mm: tuple[float, float, float]
    matrix: tuple[int, int]

    @property
    def voxel_mm(self) -> tuple[float, float, float]:
        """Pixel spacing along rows, columns, and the slice thickness (mm)."""
        return (
            self.fov_mm[0] / self.matrix[0],
            self.fov_mm[1] / self.matrix[1],
            self.fov_mm[2],
        )

    def resized(self, matrix: tuple[int, int]) -> "SliceGeometry":
        """The same slice on a centre crop/pad of the grid to `matrix` (same pixel size)."""
        dr, dp, _ = self.voxel_mm
        fov = (dr * matrix[0], dp * matrix[1], self.fov_mm[2])
        return SliceGeometry(
            self.position, self.read_dir, self.phase_dir, self.slice_dir, fov, tuple(matrix)
        )

    def corner_lps(self) -> np.ndarray:
        """(3,) LPS centre of pixel (0, 0): `position` minus half the grid along each axis."""
        dr, dp, _ = self.voxel_mm
        rows, cols = self.matrix
        return (
            np.asarray(self.position, float)
            - (rows // 2) * dr * np.asarray(self.read_dir, float)
            - (cols // 2) * dp * np.asarray(self.phase_dir, float)
        )


#: Largest deviation of a direction vector's length from 1, and of the cosine between two of the
#: read / phase / slice directions from 0, that still counts as orthonormal: headers store the
#: cosines as float32, some rounded to 4-6 decimals (errors of 1e-4 at most); 1e-3 is 0.06 degrees.
ORTHONORMAL_TOLERANCE = 1e-3
#: Below this length (of an unset, all-zero header vector) a direction counts as absent.
_UNSET = 1e-6
_AXES = ("read_dir", "phase_dir", "slice_dir")


def _vector(value: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    """`value` as a finite (3,) float array; ValueError naming `name` otherwise."""
    v = np.asarray(value, float).reshape(-1)
    if v.shape != (3,):
        raise ValueError(f"{name} has {v.size} components, not 3")
    if not np.isfinite(v).all():
        raise ValueError(f"{name} ({', '.join(f'{x:g}' for x in v)}) is not finite")
    return v


def orthonormal_problem(read_dir: np.ndarray, phase_dir: np.ndarray, slice_dir: np.ndarray) -> str | None:
    """Why three direction vectors are not unit length and mutually orthogonal (within
    `ORTHONORMAL_TOLERANCE`), or None. Only those give an affine that maps the image without
    shear or scaling, and a DICOM orientation that readers accept."""
    vectors = dict(zip(_AXES, (np.asarray(v, float) for v in (read_dir, phase_dir, slice_dir))))
    for name, v in vectors.items():
        length = float(np.linalg.norm(v))
        if abs(length - 1.0) > ORTHONORMAL_TOLERANCE:
            return f"{name} has length {length:.4g}, not 1 (direction cosines must be unit vectors)"
    for i, a in enumerate(_AXES):
        for b in _AXES[i + 1 :]:
            cosine = float(np.dot(vectors[a], vectors[b]))
            if abs(cosine) > ORTHONORMAL_TOLERANCE:
                return f"{a} and {b} are not orthogonal (cosine {cosine:.4g})"
    return None


def header_directions(
    read_dir: Sequence[float] | np.ndarray,
    phase_dir: Sequence[float] | np.ndarray,
    slice_dir: Sequence[float] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, str | None]:
    """Unit read / phase / slice directions from a raw header's vectors, and what was assumed.

    Files that leave the direction cosines unset (all zero: simulators, converters without
    geometry) get the identity axes; a file that sets read and phase but not the slice normal
    gets `read x phase`. The last item says so (None when nothing was assumed), so the reader
    can warn: such an orientation is nominal, not the scanner's. Anything else that is not
    finite, unit length and orthogonal raises ValueError naming the vector.
    """
    read, phase, normal = (_vector(v, name) for v, name in zip((read_dir, phase_dir, slice_dir), _AXES))
    unset = [name for name, v in zip(_AXES, (read, phase, normal)) if float(np.linalg.norm(v)) < _UNSET]
    assumed = None
    if len(unset) == 3:
        read, phase, normal = np.eye(3)
        assumed = ("read_dir, phase_dir and slice_dir are all zero (no orientation in the file); assuming read along x, "
                   "phase along y and slice along z of the patient (LPS): the written orientation is nominal, not the scanner's")
    elif unset == ["slice_dir"]:
        normal = np.cross(read, phase)
        assumed = "slice_dir is zero; assuming the slice normal read_dir x phase_dir"
    elif unset:
        raise ValueError(f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} zero while the other directions are set; "
                         "the image orientation is unknown")
    problem = orthonormal_problem(read, phase, normal)
    if problem is not None:
        raise ValueError(problem)
    return _unit(read), _unit(phase), _unit(normal), assumed


def geometry_problem(
    position: Sequence[float] | np.ndarray,
    read_dir: Sequence[float] | np.ndarray,
    phase_dir: Sequence[float] | np.ndarray,
    slice_dir: Sequence[float] | np.ndarray,
    fov_mm: Sequence[float],
) -> str | None:
    """Why these cannot place an image (a non-finite position or direction, directions that are
    not orthonormal, a field of view that is not finite and > 0), or None. Such a slice would give
    a NaN or singular NIfTI affine, or a DICOM PixelSpacing of 0."""
    try:
        _vector(position, "position")
        vectors = [_vector(v, name) for v, name in zip((read_dir, phase_dir, slice_dir), _AXES)]
    except ValueError as err:
        return str(err)
    problem = orthonormal_problem(*vectors)
    if problem is not None:
        return problem
    fov = [float(v) for v in fov_mm]
    if len(fov) != 3 or not all(np.isfinite(v) and v > 0 for v in fov):
        return f"field of view {' x '.join(f'{v:g}' for v in fov)} mm is not finite and > 0"
    return None


def make_geometry(
    position: np.ndarray,
    read_dir: np.ndarray,
    phase_dir: np.ndarray,
    slice_dir: np.ndarray,
    fov_mm: tuple[float, float, float],
    matrix: tuple[int, int],
) -> SliceGeometry:
    """A SliceGeometry from finite, orthonormal directions (normalised here) and a positive FOV.

    ValueError (`geometry_problem`) otherwise: raw headers go through `header_directions`
    first, which decides what to assume for unset vectors.
    """
    problem = geometry_problem(position, read_dir, phase_dir, slice_dir, fov_mm)
    if problem is not None:
        raise ValueError(problem)
    if min(int(matrix[0]), int(matrix[1])) < 1:
        raise ValueError(f"image matrix {matrix[0]}x{matrix[1]} is empty")
    return SliceGeometry(
        _as3(position), _as3(_unit(read_dir)), _as3(_unit(phase_dir)), _as3(_unit(slice_dir)), _as3(fov_mm),
        (int(matrix[0]), int(matrix[1])),
    )


def _unit(v: Sequence[float] | np.ndarray) -> np.ndarray:
    """`v` divided by its length (callers have checked that it is about 1)."""
    a = np.asarray(v, float).reshape(3)
    return a / np.linalg.norm(a)


def _as3(v: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """A (3,) vector as a tuple of Python floats (what SliceGeometry stores)."""
    x, y, z = (float(c) for c in np.asarray(v, float).reshape(3))
    return x, y, z


def nominal_geometry(
    num_slices: int,
    matrix: tuple[int, int],
    voxel_mm: tuple[float, float, float] = (0.5, 0.5, 3.0),
) -> list[SliceGeometry]:
    """Geometry for files that carry no positions (fastMRI): identity directions, slices along +z.

    Pass the voxel from the header (`header_voxel`: recon FOV / recon matrix); the default
    (0.5 x 0.5 mm, 3 mm slices) is only for files without any FOV. Slice s is centred at
    (0, 0, s * voxel_mm[2]).
    """
    fov = (voxel_mm[0] * matrix[0], voxel_mm[1] * matrix[1], voxel_mm[2])
    return [
        make_geometry(
            np.array([0.0, 0.0, s * voxel_mm[2]]),
            np.array([1.0, 0.0, 0.0]),
            np.array([0.0, 1.0, 0.0]),
            np.array([0.0, 0.0, 1.0]),
            fov,
            matrix,
        )
        for s in range(num_slices)
    ]


#: Largest deviation (mm) of one slice step from the mean step, or of a direction cosine from the
#: first slice's, that still counts as one evenly spaced, parallel stack.
STACK_TOLERANCE_MM = 1e-3


def stack_problem(geometry: list[SliceGeometry]) -> str | None:
    """Why these slices are not one evenly spaced stack of parallel, equal grids (what a NIfTI
    affine can express), or None when they are. The slices are taken in the given order."""
    g = geometry[0]
    for s, h in enumerate(geometry[1:], 1):
        same = all(
            np.allclose(getattr(h, name), getattr(g, name), atol=STACK_TOLERANCE_MM)
            for name in ("read_dir", "phase_dir", "fov_mm")
        ) and h.matrix == g.matrix
        if not same:
            return f"slice {s} differs from slice 0 in orientation or grid"
    if len(geometry) < 2:
        return None
    pos = np.array([h.position for h in geometry], float)
    step = (pos[-1] - pos[0]) / (len(geometry) - 1)
    length = float(np.linalg.norm(step))
    if length > 1e-6 and abs(float(step @ np.asarray(g.slice_dir, float))) <= ORTHONORMAL_TOLERANCE * length:
        return f"slice positions step {length:.4g} mm within the slice plane, not along its normal (a singular affine)"
    if len(geometry) < 3:
        return None
    steps = np.diff(pos, axis=0)
    mean = (pos[-1] - pos[0]) / (len(geometry) - 1)
    worst = float(np.linalg.norm(steps - mean, axis=1).max())
    if worst > STACK_TOLERANCE_MM:
        lengths = ", ".join(f"{float(np.linalg.norm(v)):.4g}" for v in steps[:8])
        return f"slices are unevenly spaced (steps {lengths}{', ...' if len(steps) > 8 else ''} mm)"
    return None


def display_transform(g: SliceGeometry) -> tuple[bool, bool, bool]:
    """`(transpose, flip_rows, flip_cols)` that put an image indexed (read, phase) in radiological
    display orientation: axial and coronal with the patient's left on the screen's right,
    sagittal with posterior on the right; axial with posterior down, coronal and sagittal with
    inferior down (the patient's LPS axes; the plane is the one the slice normal is closest to).

    Apply in this order: transpose, then flip the rows (up-down), then the columns (left-right).
    """
    read, phase = np.asarray(g.read_dir, float), np.asarray(g.phase_dir, float)
    plane = int(np.argmax(np.abs(np.cross(read, phase))))  # 0 sagittal, 1 coronal, 2 axial
    screen_right, screen_down = {
        0: (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])),
        1: (np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, -1.0])),
        2: (np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])),
    }[plane]
    kept = abs(read @ screen_down) + abs(phase @ screen_right)
    swapped = abs(phase @ screen_down) + abs(read @ screen_right)
    transpose = swapped > kept
    down, right = (phase, read) if transpose else (read, phase)
    return bool(transpose), bool(down @ screen_down < 0), bool(right @ screen_right < 0)


def to_display(image: np.ndarray, g: SliceGeometry) -> np.ndarray:
    """`image` (read, phase) in radiological display orientation (`display_transform`)."""
    transpose, flip_rows, flip_cols = display_transform(g)
    out = image.T if transpose else image
    out = out[::-1] if flip_rows else out
    return np.ascontiguousarray(out[:, ::-1] if flip_cols else out)


def slice_step_lps(geometry: list[SliceGeometry]) -> np.ndarray:
    """(3,) LPS vector from one slice to the next: the mean step between positions.

    For one slice (or coincident positions) it is `slice_dir * thickness`. Slices that are not
    one evenly spaced parallel stack (`stack_problem`) raise ValueError: a NIfTI affine cannot
    express them; DICOM output stores each slice's own position.
    """
    g = geometry[0]
    problem = stack_problem(geometry)
    if problem is not None:
        raise ValueError(f"{problem}; NIfTI needs one constant slice step: write DICOM (one file per slice) instead")
    if len(geometry) > 1:
        pos = np.array([h.position for h in geometry], float)
        step = (pos[-1] - pos[0]) / (len(geometry) - 1)
        if np.linalg.norm(step) > 1e-6:
            return step
    return np.asarray(g.slice_dir, float) * g.fov_mm[2]


def nifti_affine(geometry: list[SliceGeometry]) -> np.ndarray:
    """(4,4) RAS+ affine for a NIfTI array indexed (row, col, slice) with these slices.

    Voxel (i, j, k) maps to `corner_0 + i*dr*read + j*dp*phase + k*step` (converted LPS->RAS),
    so voxel (rows//2, cols//2, k) is slice k's acquisition `position`.
    """
    g = geometry[0]
    dr, dp, _ = g.voxel_mm
    lps = np.eye(4)
    lps[:3, 0] = np.asarray(g.read_dir) * dr
    lps[:3, 1] = np.asarray(g.phase_dir) * dp
    lps[:3, 2] = slice_step_lps(geometry)
    lps[:3, 3] = g.corner_lps()
    ras = np.eye(4)
    ras[:3, :] = _LPS_TO_RAS @ lps[:3, :]
    return ras


def header_voxel(
    recon_fov_mm: tuple[float, float, float], matrix: tuple[int, int]
) -> tuple[float, float, float]:
    """Pixel spacing (rows, cols) and slice thickness from the header: recon FOV / recon matrix."""
    return recon_fov_mm[0] / matrix[0], recon_fov_mm[1] / matrix[1], recon_fov_mm[2]
