"""BART `.cfl/.hdr` files and the `bart` command, for cross-checks and timings.

`.hdr`: a comment line, then the dims (16 shown, column-major order: READ, PHS1, PHS2, COIL,
MAPS, ...). `.cfl`: interleaved float32 real/imag, column-major (Fortran order).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import numpy as np


def bart_available() -> bool:
    """Whether the `bart` command is on PATH."""
    return shutil.which("bart") is not None


def write_cfl(base: Path, array: np.ndarray) -> None:
    """Write `array` (any shape, BART dim order) as `base.hdr` + `base.cfl`."""
    dims = list(array.shape) + [1] * (16 - array.ndim)
    Path(f"{base}.hdr").write_text("# Dimensions\n" + " ".join(str(d) for d in dims) + "\n")
    np.asfortranarray(array.astype(np.complex64)).ravel(order="F").tofile(f"{base}.cfl")


def read_cfl(base: Path) -> np.ndarray:
    """Read `base.hdr` + `base.cfl` into a complex64 array, trailing singleton dims dropped."""
    lines = Path(f"{base}.hdr").read_text().splitlines()
    dims = [int(d) for d in lines[1].split()]
    while len(dims) > 1 and dims[-1] == 1:
        dims.pop()
    data = np.fromfile(f"{base}.cfl", dtype=np.complex64, count=int(np.prod(dims)))
    return data.reshape(dims, order="F")


def run_bart(*args: str, threads: int | None = None) -> float:
    """Run `bart ARGS...`; returns wall seconds. Raises on a non-zero exit status."""
    env = None
    if threads is not None:
        import os

        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    subprocess.run(["bart", *args], check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def kspace_to_bart(kspace: np.ndarray) -> np.ndarray:
    """`(C, H, W)` k-space -> BART `(H, W, 1, C)`."""
    return np.transpose(kspace, (1, 2, 0))[:, :, None, :]


def maps_from_bart(maps: np.ndarray) -> np.ndarray:
    """BART `(H, W, 1, C[, 1])` maps -> `(C, H, W)`."""
    return np.transpose(maps.reshape(maps.shape[0], maps.shape[1], -1), (2, 0, 1))
