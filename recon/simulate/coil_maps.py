"""Smooth coil sensitivity maps and background phase, in NumPy (SigPy is not a runtime dependency).

Two map models:
- `birdcage_maps`: the classical birdcage model (magnitude 1/distance to a wire at radius
  `r`, phase from the azimuth), normalized to unit root-sum-of-squares; the same physics as
  `sigpy.mri.birdcage_maps` for 2-D shapes (a test checks the two agree).
- `knee_coil_maps`: a cylindrical receive array around the leg (the 15-channel knee coil of
  fastMRI is a cylinder of loops): each loop of radius `a` has the on-axis Biot-Savart
  magnitude a^2 / (a^2 + d^2)^(3/2) at distance d, and a phase that turns with the azimuth
  around the loop. Maps change smoothly with the coronal slice depth `z`, as real maps do.
  Not normalized to unit RSS, so RSS images keep the brighter-near-the-coil shading of real data.
"""

from __future__ import annotations

import numpy as np


def birdcage_maps(num_coils: int, rows: int, cols: int, r: float = 1.5) -> np.ndarray:
    """Birdcage sensitivity maps (num_coils, rows, cols) complex64 with unit RSS at every pixel."""
    angle = 2.0 * np.pi * np.arange(num_coils) / num_coils
    y = (np.arange(rows) - rows / 2.0) / (rows / 2.0)
    x = (np.arange(cols) - cols / 2.0) / (cols / 2.0)
    dx = x[None, None, :] - (r * np.cos(angle))[:, None, None]
    dy = y[None, :, None] - (r * np.sin(angle))[:, None, None]
    maps = np.exp(1j * (np.arctan2(dx, -dy) - angle[:, None, None])) / np.hypot(dx, dy)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(0))
    return maps.astype(np.complex64)


def coil_layout(num_coils: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of loop centres (num_coils, 4): azimuth psi, height v, radius R, loop radius a.

    Coils sit in rings of up to 8 around the leg axis (the rows direction), rings spread along
    the leg; a small random jitter makes each volume's array slightly different.
    """
    rings = max(1, int(np.ceil(num_coils / 8)))
    per_ring = int(np.ceil(num_coils / rings))
    out = np.zeros((num_coils, 4), np.float64)
    for c in range(num_coils):
        ring, k = divmod(c, per_ring)
        n_in_ring = min(per_ring, num_coils - ring * per_ring)
        psi = 2.0 * np.pi * (k + 0.5 * (ring % 2)) / n_in_ring
        height = (ring - (rings - 1) / 2.0) * 0.8
        out[c] = (psi, height, 1.6, 0.7)
    out[:, 0] += rng.uniform(-0.1, 0.1, num_coils)
    out[:, 1] += rng.uniform(-0.08, 0.08, num_coils)
    out[:, 2] *= rng.uniform(0.95, 1.05)
    return out


def knee_coil_maps(layout: np.ndarray, rows: int, width: int, z: float) -> np.ndarray:
    """Loop-coil sensitivities (C, rows, width) complex64 for the coronal slice at depth `z`.

    Coordinates as in `recon.simulate.phantom` (quarter-readout units, square pixels); the
    leg axis is vertical, the coronal plane is z = const.
    """
    unit = rows / 4.0
    v = ((np.arange(rows, dtype=np.float32) - rows / 2) / unit)[None, :, None]
    u = ((np.arange(width, dtype=np.float32) - width / 2) / unit)[None, None, :]
    psi, height, radius, loop = (layout[:, i].astype(np.float32)[:, None, None] for i in range(4))
    cu, cz = radius * np.cos(psi), radius * np.sin(psi)
    dz = np.float32(z) - cz
    d2 = (u - cu) ** 2 + (v - height) ** 2 + dz**2
    mag = loop**2 / (loop**2 + d2) ** 1.5
    # Phase: azimuth of the pixel seen from the loop, measured in the loop's own frame (axis
    # pointing into the leg), so it turns smoothly across the object and has no vortex inside it.
    depth = -(u - cu) * np.cos(psi) - dz * np.sin(psi) + loop
    lateral = -(u - cu) * np.sin(psi) + dz * np.cos(psi)
    phase = np.arctan2(v - height, depth) + 0.5 * np.arctan2(lateral, depth) - psi
    maps = mag * np.exp(1j * phase)
    return maps.astype(np.complex64)


def draw_phase_coeffs(rng: np.random.Generator) -> np.ndarray:
    """Per-volume coefficients (2, 6) float32 of `background_phase`: base and slice drift."""
    return rng.uniform(-1.0, 1.0, (2, 6)).astype(np.float32)


def background_phase(coeffs: np.ndarray, rows: int, width: int, t: float) -> np.ndarray:
    """Smooth object phase (rows, width) float32 in radians: a low-order polynomial
    (B0 / eddy-current like) whose coefficients drift linearly with the slice position `t`."""
    unit = rows / 4.0
    v = ((np.arange(rows, dtype=np.float32) - rows / 2) / unit)[:, None]
    u = ((np.arange(width, dtype=np.float32) - width / 2) / unit)[None, :]
    c = coeffs[0] + np.float32(t) * coeffs[1]
    phase = np.pi * (c[0] + 0.4 * c[1] * u + 0.4 * c[2] * v + 0.2 * c[3] * u * v
                     + 0.15 * c[4] * u**2 + 0.15 * c[5] * v**2)
    return phase.astype(np.float32)
