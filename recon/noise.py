"""Noise level of Cartesian multi-coil k-space, estimated from the data itself.

With 2x readout oversampling the outermost readout rows of k-space carry almost no object
signal, so their samples are (nearly) pure receiver noise. For complex Gaussian noise with
E|n|^2 = sigma^2 the magnitude |n| is Rayleigh-distributed with median sigma * sqrt(ln 2), so
`sigma = median(|k|) / sqrt(ln 2)` over those samples is a robust estimate: the few samples that
still hold signal shift a median far less than a mean.

Only sampled columns count: a column is sampled when it is in `mask` (when given) and not
identically zero (the zero padding declared in `encodingLimits`, or undersampling applied by
zero-filling, holds no noise).

For torch batches of slices: `noise_sigma` (this estimate per slice) and `data_scale` (BART
`pics`'s automatic data scale), which the model-based methods normalize by.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from recon import partial_fourier as pf
from recon.core import ifft2c, rss

#: Default fraction of the readout rows used at each end of k-space (1/16 each side = 1/8 in all).
EDGE_FRACTION = 1.0 / 16.0


def sampled_columns(kspace: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Boolean (W,) of the phase-encode columns that hold data: in `mask` and not all zero.

    Args:
        kspace: (..., rows, W) complex k-space; any leading axes (slices, coils).
        mask: optional (W,) or broadcastable sampling mask; nonzero = sampled.
    """
    k = np.asarray(kspace)
    nonzero = np.any(k.reshape(-1, k.shape[-2], k.shape[-1]) != 0, axis=(0, 1))
    if mask is not None:
        m = np.asarray(mask).reshape(-1)
        if m.shape[0] != k.shape[-1]:
            raise ValueError(f"mask has {m.shape[0]} columns, k-space has {k.shape[-1]}")
        nonzero &= m != 0
    return nonzero


def edge_rows(rows: int, edge_fraction: float = EDGE_FRACTION) -> np.ndarray:
    """Indices of the outer readout rows: `max(2, round(rows * edge_fraction))` at each end."""
    if not 0.0 < edge_fraction < 0.5:
        raise ValueError(f"edge_fraction must be in (0, 0.5), got {edge_fraction}")
    n = max(2, int(round(rows * edge_fraction)))
    if 2 * n >= rows:
        raise ValueError(f"{rows} readout rows are too few for an edge band of {n} rows per side")
    return np.concatenate([np.arange(n), np.arange(rows - n, rows)])


def estimate_noise_sigma(
    kspace: np.ndarray,
    mask: np.ndarray | None = None,
    edge_fraction: float = EDGE_FRACTION,
    per_coil: bool = False,
    coil_axis: int = -3,
) -> float | np.ndarray:
    """Robust complex noise std sigma (E|n|^2 = sigma^2 per sample) of multi-coil k-space.

    Args:
        kspace: (..., C, rows, W) complex k-space, readout along `rows` (2x oversampled as in
            fastMRI files), e.g. a (slices, coils, rows, W) volume or one (coils, rows, W) slice.
        mask: optional (W,) sampling mask; unsampled and all-zero columns are ignored.
        edge_fraction: fraction of readout rows used at each end.
        per_coil: return one sigma per coil (shape (C,)) instead of one pooled value.
        coil_axis: the coil axis (used only with `per_coil`).

    Returns:
        sigma in the units of `kspace`: a float, or a (C,) float64 array with `per_coil`.

    Raises:
        ValueError: no sampled column, or all edge samples exactly zero (no noise to measure).
    """
    k = np.asarray(kspace)
    if k.ndim < 2 or not np.iscomplexobj(k):
        raise ValueError(f"need complex k-space with at least 2 axes, got {k.dtype} {k.shape}")
    cols = sampled_columns(k, mask)
    if not cols.any():
        raise ValueError("no sampled, nonzero k-space column to estimate the noise from")
    rows = edge_rows(k.shape[-2], edge_fraction)
    edge = np.abs(k[..., rows, :][..., cols])
    scale = math.sqrt(math.log(2.0))
    if per_coil:
        axis = coil_axis % k.ndim
        moved = np.moveaxis(edge, axis, 0).reshape(edge.shape[axis], -1)
        sig = np.median(moved, axis=1).astype(np.float64) / scale
        if not np.all(sig > 0):
            raise ValueError("k-space edge samples of some coil are all zero: no noise to measure")
        return sig
    sigma = float(np.median(edge)) / scale
    if not sigma > 0:
        raise ValueError("k-space edge samples are all zero: no noise to measure")
    return sigma


#: Object mask threshold of `estimate_snr`, as a fraction of the image's 99th percentile.
OBJECT_FRACTION = 0.1


def estimate_snr(image: np.ndarray, sigma: float, coils: int) -> float:
    """SNR of an RSS image: mean over the object / per-coil complex noise std `sigma`.

    The noise bias of RSS is removed first (E[rss^2] = |s|^2 + coils * sigma^2, so the signal is
    sqrt(max(rss^2 - coils * sigma^2, 0))); without it the noise floor of a low-SNR background
    passes the threshold and pulls the mean down (SNR 8 read as 5-6.5). The object is every pixel
    above `OBJECT_FRACTION` of the debiased image's 99th percentile. This is how the MNI152
    source states its SNR levels (`recon.simulate.mni152`, on the clean image), so the estimate
    from a file's fully sampled k-space (`estimate_noise_sigma`) and its `reconstruction_rss`
    (same units: fastMRI's orthonormal FFT) compares with them and applies to any file, e.g. to
    bin a benchmark by SNR.

    Args:
        image: (..., h, w) RSS magnitude image(s), e.g. one target slice.
        sigma: per-coil complex noise std in the same units (`estimate_noise_sigma`).
        coils: number of coils combined in `image`.
    """
    img = np.asarray(image, dtype=np.float64)
    if not (math.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive and finite, got {sigma}")
    if coils < 1:
        raise ValueError(f"coils must be >= 1, got {coils}")
    signal = np.sqrt(np.clip(img**2 - coils * sigma**2, 0.0, None))
    body = signal > OBJECT_FRACTION * float(np.percentile(signal, 99))
    if not body.any():
        raise ValueError("the image has no object above its noise floor")
    return float(signal[body].mean()) / sigma


#: BART's calibration block for its automatic scale: at most 32 samples per axis.
SCALE_BLOCK = 32


def _center_run(sampled: torch.Tensor, limit: int) -> tuple[int, int]:
    """`[W//2 - r, W//2 + r)`: the widest sampled run symmetric about the center column, at most `limit` wide (BART's calibration region)."""
    width = sampled.shape[0]
    start = stop = width // 2
    while stop - start + 2 <= limit and start > 0 and stop < width and bool(sampled[start - 1]) and bool(sampled[stop]):
        start, stop = start - 1, stop + 1
    return start, stop


def data_scale(kspace: torch.Tensor) -> torch.Tensor:
    """Per-slice scale `(B, 1, 1, 1)` of `(B, C, H, W)` k-space, computed as BART `pics` scales its data automatically.

    BART (`estimate_scaling`, used by `pics` unless `-w` is given) takes the fully sampled
    k-space center, at most 32 x 32, inverse-FFTs it, combines the coils by root-sum-of-squares
    and divides by `sqrt(N / n)` per axis (full over block size), so the low-resolution image is
    on the full image's scale. Of its magnitudes it takes the median, the 90th percentile and
    the maximum, and uses the 90th percentile unless the maximum is an outlier
    (`max - p90 >= 2 (p90 - median)`), then the maximum. Here the block is the sampled run
    symmetric about the center column (the ACS region, up to 32) by the central 32 rows; where
    the image data hold no such run (calibration lines stored apart), the central 32 columns
    zero-filled, with the energy of the missing columns restored by `sqrt(block / sampled)`.

    Dividing k-space by it puts bright tissue at ~1, whatever the scanner's units. A slice with
    no sampled column near the center, or an all-zero block, gets scale 1.
    """
    batch, _, height, width = kspace.shape
    sampled = (kspace != 0).flatten(1, 2).any(1)
    scales = []
    for b in range(batch):
        c0, c1 = _center_run(sampled[b], SCALE_BLOCK)
        if c1 - c0 < 2:
            c0 = max(0, width // 2 - SCALE_BLOCK // 2)
            c1 = min(width, c0 + SCALE_BLOCK)
        measured = int(sampled[b, c0:c1].sum())
        rows = min(height, SCALE_BLOCK)
        r0 = height // 2 - rows // 2
        if measured == 0:
            scales.append(1.0)
            continue
        block = kspace[b : b + 1, :, r0 : r0 + rows, c0:c1]
        low = rss(ifft2c(block), 1).flatten() * math.sqrt((c1 - c0) / measured)
        low = low / math.sqrt(height * width / (rows * (c1 - c0)))
        ordered = torch.sort(low.float()).values.cpu()
        n = ordered.numel()
        median, p90, peak = float(ordered[n // 2]), float(ordered[int(0.9 * n)]), float(ordered[-1])
        scale = p90 if (peak - p90) < 2 * (p90 - median) else peak
        scales.append(scale if scale > 0 else 1.0)
    return torch.tensor(scales, dtype=torch.float32, device=kspace.device).reshape(-1, 1, 1, 1)


def noise_sigma(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-slice complex noise std `(B,)` float of `(B, C, H, W)` k-space, in its units (`estimate_noise_sigma`).

    mask: `(B, 1, 1, W)` columns or `(B, 1, H, W)` locations (then the columns sampled anywhere
    count). 0 for a slice without measurable noise (edge rows all zero). The estimate holds
    where the outer readout rows are pure noise (2x readout oversampling, as in fastMRI files);
    where they still carry the object's k-space tail (no oversampling, analytic phantoms with
    sharp edges) it measures signal. With a partial echo the outer rows are those of the
    acquired readout (the unacquired ones are not noise).
    """
    cols = mask.bool().flatten(1, 2).any(1).reshape(mask.shape[0], -1).expand(kspace.shape[0], -1).cpu().numpy()
    r0, r1 = pf.readout_extent(mask, kspace.shape[-2])
    data = kspace[..., r0:r1, :].detach().cpu().numpy()
    out = []
    for b in range(kspace.shape[0]):
        try:
            out.append(float(estimate_noise_sigma(data[b], np.asarray(cols[b]))))
        except ValueError:
            out.append(0.0)
    return torch.tensor(out, dtype=torch.float32)
