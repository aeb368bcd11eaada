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
    """Geometry for files that carry none (fastMRI): identity directions, slices along +z.

    The default voxel (0.5 x 0.5 mm in plane, 3 mm slices) is nominal for fastMRI knee; pass
    the header FOV / matrix where known. Slice s is centred at (0, 0, s * voxel_mm[2]).
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


def slice_step_lps(geometry: list[SliceGeometry]) -> np.ndarray:
    """(3,) LPS vector from one slice to the next: the mean step between positions.

    For one slice (or coincident positions) it is `slice_dir * thickness`. Assumes equally spaced parallel slices
    (what a NIfTI affine can express); DICOM output stores each slice's own position.
    """
    g = geometry[0]
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
