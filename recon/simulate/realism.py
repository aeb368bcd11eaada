"""Realism bands: numbers that a simulated fastMRI-format volume must fall inside.

Three statistics are computed from what a file holds (k-space and `reconstruction_rss`), so the
same function scores simulated and real files alike:

- `snr`: mean of the RSS target over the object, divided by the complex per-coil noise std
  sigma estimated from the k-space edge (`recon.noise.estimate_noise_sigma`). The object is
  where the target, smoothed by a 2-pixel Gaussian, exceeds twice the RSS noise floor
  sigma * sqrt(C) (C coils): anything clearly above pure noise, dark tissue included.
- `kspace_slope`: slope of log(radially averaged power) against log(radius) of the coil-summed
  k-space power after subtracting the noise floor, over radii 0.02-0.25 cycles/pixel. Objects
  with sharp edges and smooth interiors give about -3; pure 1/f texture about -2; blurred
  objects fall steeper than -4.
- `background_fraction`: fraction of the target pixels outside that object mask.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage.filters import threshold_otsu

from recon.noise import estimate_noise_sigma, sampled_columns

#: Allowed (low, high) of every statistic. SNR: fastMRI-like clinical 2-D scans; the simulators'
#: stated levels span 5-40. Slope: between a 1/f-textured (-2) and a blurred (-4.5) object.
#: Background: the object fills at least a fifth of the field of view; the low end is open, as
#: real knee slices can be filled wall to wall.
REALISM_BANDS: dict[str, tuple[float, float]] = {
    "snr": (4.0, 60.0),
    "kspace_slope": (-4.5, -2.0),
    "background_fraction": (0.0, 0.80),
}

SLOPE_RADII = (0.02, 0.25)
#: Object = smoothed target above this multiple of the RSS noise floor sigma * sqrt(C).
NOISE_FLOOR_FACTOR = 2.0


def object_mask(target: np.ndarray, floor: float | None = None, smooth: float = 2.0) -> np.ndarray:
    """Boolean object mask of an (S, h, w) or (h, w) magnitude image.

    The image is smoothed in-plane by a `smooth`-pixel Gaussian; pixels above `floor` are object.
    Without `floor` the threshold is Otsu's over the whole (noiseless) image.
    """
    img = np.asarray(target, dtype=np.float32)
    sm = ndimage.gaussian_filter(img, sigma=(0,) * (img.ndim - 2) + (smooth, smooth))
    return sm > (threshold_otsu(sm) if floor is None else floor)


def kspace_power_slope(kspace: np.ndarray, sigma: float, radii: tuple[float, float] = SLOPE_RADII, bins: int = 16) -> float:
    """Log-log slope of the radially averaged, noise-subtracted power of (S, C, rows, W) k-space.

    Radius is in cycles per pixel, `sqrt((ky / rows)^2 + (kx / W)^2)`, so the 2x oversampled
    readout and the phase-encode axis are on one scale. Only sampled columns count; bins whose
    power is under 1.5x the noise floor `C * sigma^2` are left out. NaN when fewer than 4 bins remain.
    """
    k = np.asarray(kspace)
    if k.ndim == 3:
        k = k[None]
    S, C, H, W = k.shape
    cols = sampled_columns(k)
    power = (np.abs(k) ** 2).sum(axis=1).mean(axis=0)  # (H, W), summed over coils
    ky = (np.arange(H) - H // 2)[:, None] / H
    kx = (np.arange(W) - W // 2)[None, :] / W
    r = np.sqrt(ky**2 + kx**2) * np.ones((1, W))
    sel = cols[None, :] & (r >= radii[0]) & (r <= radii[1])
    edges = np.geomspace(radii[0], radii[1], bins + 1)
    which = np.digitize(r[sel], edges) - 1
    p = power[sel]
    floor = C * sigma**2
    xs, ys = [], []
    for b in range(bins):
        inb = which == b
        if inb.sum() < 4:
            continue
        excess = p[inb].mean() - floor
        if excess > 0.5 * floor:
            xs.append(np.log(np.sqrt(edges[b] * edges[b + 1])))
            ys.append(np.log(excess))
    if len(xs) < 4:
        return float("nan")
    return float(np.polyfit(xs, ys, 1)[0])


def realism_metrics(kspace: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """`snr`, `kspace_slope`, `background_fraction` (and the estimated `sigma`) of one volume.

    Args:
        kspace: (S, C, rows, W) fully sampled complex k-space as stored in a fastMRI file.
        target: (S, h, w) `reconstruction_rss`.
    """
    sigma = float(estimate_noise_sigma(kspace))
    coils = np.asarray(kspace).shape[-3]
    mask = object_mask(target, floor=NOISE_FLOOR_FACTOR * sigma * np.sqrt(coils))
    snr = float(np.asarray(target)[mask].mean()) / sigma
    return {
        "sigma": sigma,
        "snr": snr,
        "kspace_slope": kspace_power_slope(kspace, sigma),
        "background_fraction": float(1.0 - mask.mean()),
    }


def check_bands(metrics: dict[str, Any], bands: dict[str, tuple[float, float]] | None = None) -> dict[str, bool]:
    """For every banded statistic, whether `metrics` has it inside its (low, high) band."""
    out = {}
    for name, (lo, hi) in (bands or REALISM_BANDS).items():
        v = metrics.get(name)
        out[name] = v is not None and bool(np.isfinite(v)) and lo <= float(v) <= hi
    return out
