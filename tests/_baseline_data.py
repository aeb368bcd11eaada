"""Small deterministic multi-coil test data for the baseline tests (numpy, no files)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import numpy as np


def bart_cfl() -> ModuleType:
    """`benchmarks/bart_cfl.py` (BART .cfl reading and writing), loaded by path."""
    path = Path(__file__).parents[1] / "benchmarks" / "bart_cfl.py"
    spec = importlib.util.spec_from_file_location("bart_cfl", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def phantom_kspace(coils: int = 8, rows: int = 64, cols: int = 48, seed: int = 0, noise: float = 1e-3):
    """Fully sampled `(C, H, W)` complex64 k-space of an ellipse phantom with smooth phase.

    Returns (kspace, true maps `(C, H, W)` unit RSS, image `(H, W)`).
    """
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[-1 : 1 : rows * 1j, -1 : 1 : cols * 1j]
    img = np.zeros((rows, cols), complex)
    img[(x / 0.7) ** 2 + (y / 0.85) ** 2 < 1] = 1.0
    for _ in range(5):
        cx, cy, a, b = rng.uniform(-0.4, 0.4), rng.uniform(-0.5, 0.5), rng.uniform(0.05, 0.25), rng.uniform(0.05, 0.25)
        img[((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 < 1] += rng.uniform(-0.5, 0.5)
    img = img * np.exp(1j * (0.5 * x + 0.3 * y))
    maps = []
    for c in range(coils):
        t = 2 * np.pi * c / coils
        r2 = (x - 1.5 * np.cos(t)) ** 2 + (y - 1.5 * np.sin(t)) ** 2
        maps.append(np.exp(-r2 / 2.0) * np.exp(1j * (t + 0.4 * x * np.cos(t) - 0.4 * y * np.sin(t))))
    maps = np.array(maps)
    maps /= np.sqrt((abs(maps) ** 2).sum(0))
    coil = maps * img
    k = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(coil, axes=(-2, -1)), norm="ortho"), axes=(-2, -1))
    k = k + noise * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))
    return k.astype(np.complex64), maps.astype(np.complex64), img


def column_mask(cols: int, step: int, nlow: int) -> np.ndarray:
    """Every `step`-th column plus `nlow` center columns placed as fastMRI places them."""
    mask = np.zeros(cols, bool)
    mask[::step] = True
    pad = (cols - nlow + 1) // 2
    mask[pad : pad + nlow] = True
    return mask
