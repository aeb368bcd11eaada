"""Small fastMRI-format files for tests, written with recon.io's own writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from recon.io import build_header, write_fastmri_volume

SLICES, COILS, ROWS, COLS = 3, 4, 64, 37
CROP = (32, 32)
# Acquired columns [2, 35): center 16, maximum 32 -> padding_left = 37 // 2 - 16 = 2, right = 2 + 33.
ENC_CENTER, ENC_MAX = 16, 32
PADDING = (COLS // 2 - ENC_CENTER, COLS // 2 - ENC_CENTER + ENC_MAX + 1)


def random_kspace(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Seeded complex64 Gaussian k-space, zero in the padded columns (as real files are)."""
    rng = np.random.default_rng(seed)
    k = (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
    k[..., : PADDING[0]] = 0
    k[..., PADDING[1] :] = 0
    return k


def header(cols: int = COLS) -> str:
    """fastMRI-like ISMRMRD header for (ROWS, cols) k-space and a CROP recon size."""
    return build_header((ROWS, cols, 1), (*CROP, 1), ENC_CENTER, ENC_MAX)


def write_multicoil(
    path: Path,
    seed: int = 0,
    slices: int = SLICES,
    coils: int = COILS,
    with_target: bool = True,
    mask: np.ndarray | None = None,
) -> np.ndarray:
    """A multi-coil training-style file (target + attrs), or challenge-style with `mask`.

    Returns the k-space written, (slices, coils, ROWS, COLS) complex64.
    """
    kspace = random_kspace((slices, coils, ROWS, COLS), seed)
    attrs: dict[str, object] = {"acquisition": "CORPD_FBK", "max": 1.5 + seed, "norm": 3.0, "patient_id": f"p{seed}"}
    target = None
    if mask is not None:
        kspace = kspace * mask.astype(np.float32) + np.float32(0.0)
        attrs.update(acceleration=4, num_low_frequency=int(round(COLS * 0.08)))
    elif with_target:
        target = np.random.default_rng(seed + 1000).random((slices, *CROP), dtype=np.float32)
    write_fastmri_volume(path, kspace, header(), target=target, attrs=attrs, mask=mask)
    return kspace
