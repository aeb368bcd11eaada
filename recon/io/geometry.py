"""Slice geometry in patient coordinates, and the voxel-to-world maps that outputs need.

Conventions (as ISMRMRD and DICOM define them):

- Patient coordinates are LPS (x to the patient's Left, y Posterior, z Superior), in mm.
- `position` is the centre of the slice's field of view (ISMRMRD acquisition `position`).
- An image of one slice is `(rows, cols)`: rows run along `read_dir` (readout), columns
  along `phase_dir` (phase encoding), as in the fastMRI layout `(slices, coils, rows, cols)`.
- With a centred FFT, the FOV centre is pixel `(rows // 2, cols // 2)`.

NIfTI wants RAS+ world coordinates, so `nifti_affine` flips the first two axes.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def _unit(v: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """`v` normalised, or `fallback` where `v` is (near) zero (files that leave it unset)."""
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-6 else fallback


def make_geometry(
    position: np.ndarray,
    read_dir: np.ndarray,
    phase_dir: np.ndarray,
    slice_dir: np.ndarray,
    fov_mm: tuple[float, float, float],
    matrix: tuple[int, int],
) -> SliceGeometry:
    """Build a SliceGeometry, replacing unset (zero) direction vectors by the identity axes."""
    r = _unit(np.asarray(read_dir, float), np.array([1.0, 0.0, 0.0]))
    p = _unit(np.asarray(phase_dir, float), np.array([0.0, 1.0, 0.0]))
    s = _unit(np.asarray(slice_dir, float), np.cross(r, p))
    as3 = lambda v: tuple(float(x) for x in v)  # noqa: E731
    return SliceGeometry(
        as3(position), as3(r), as3(p), as3(s), as3(fov_mm), (int(matrix[0]), int(matrix[1]))
    )


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
    if len(geometry) < 3:
        return None
    pos = np.array([h.position for h in geometry], float)
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
