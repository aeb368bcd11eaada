"""Noise prewhitening of receiver coils from a noise-only scan.

Receiver noise is correlated across coils. With the noise covariance `Psi = L L^H`
(Cholesky), applying `W = L^{-1}` along the coil axis makes the noise white with unit
variance in every coil, which SENSE/RSS combination assumes.

Noise variance per sample is proportional to the receiver bandwidth, i.e. to 1 / dwell time.
A noise scan sampled with dwell `t_noise` has covariance `Psi_noise`; imaging data sampled
with dwell `t_data` has `Psi_noise * t_noise / t_data`, and that is the one to whiten with.

Receiver noise bandwidth: the anti-aliasing filter rolls off towards the edges of the sampled
band, so the variance of noise samples is the pass band's variance times the filter's
equivalent noise bandwidth relative to the sampling bandwidth (ISMRMRD
`relativeReceiverNoiseBandwidth`, about 0.79 on Siemens; Kellman and McVeigh, MRM 2005). The
covariance is divided by it, so whitened data have unit noise variance in the pass band (SNR
units) and the measured sample variance of whitened noise equals that factor; Gadgetron's
noise adjustment scales its whitening matrix by the same `sqrt` of the factor.
"""

from __future__ import annotations

import numpy as np


def noise_covariance(
    noise: np.ndarray,
    *,
    noise_dwell_us: float | None = None,
    data_dwell_us: float | None = None,
    noise_bandwidth: float | None = None,
) -> np.ndarray:
    """(C, C) complex128 noise covariance of the coils, scaled to the imaging data's bandwidth.

    Args:
        noise: (C, N) complex noise-only samples (coils, samples); N > 1.
        noise_dwell_us: dwell time (sample_time_us) of the noise scan.
        data_dwell_us: dwell time of the imaging data. The covariance is multiplied by
            `noise_dwell_us / data_dwell_us` (variance ∝ bandwidth). Give both or neither; a
            dwell time that is not finite and > 0 is a ValueError, not a skipped scaling (the
            covariance, and so the whitened data, would be off by the bandwidth ratio).
        noise_bandwidth: the receiver's relative noise bandwidth (`relativeReceiverNoiseBandwidth`);
            when given the covariance is divided by it (module docstring). Must be in (0, 2].
    """
    x = np.asarray(noise, dtype=np.complex128)
    if x.ndim != 2 or x.shape[1] < 2:
        raise ValueError(f"noise must be (coils, samples) with samples > 1, got {x.shape}")
    if (noise_dwell_us is None) != (data_dwell_us is None):
        raise ValueError("give both dwell times (noise and imaging) or neither")
    x = x - x.mean(axis=1, keepdims=True)
    cov = (x @ x.conj().T) / (x.shape[1] - 1)
    if noise_dwell_us is not None and data_dwell_us is not None:
        for name, dwell in (("noise", noise_dwell_us), ("imaging", data_dwell_us)):
            if not (np.isfinite(float(dwell)) and float(dwell) > 0):
                raise ValueError(f"{name} dwell time {float(dwell):g} us is not > 0; the noise covariance cannot be scaled to the imaging bandwidth")
        cov = cov * (float(noise_dwell_us) / float(data_dwell_us))
    if noise_bandwidth is not None:
        if not 0 < float(noise_bandwidth) <= 2.0:
            raise ValueError(f"relative receiver noise bandwidth must be in (0, 2], got {noise_bandwidth}")
        cov = cov / float(noise_bandwidth)
    return cov


def prewhitening_matrix(cov: np.ndarray) -> np.ndarray:
    """(C, C) complex64 `W = L^{-1}` with `cov = L L^H`, so `W cov W^H = I`.

    Raises ValueError saying why `cov` is not Hermitian positive definite: non-finite, all zero
    (a noise scan that recorded no noise), a coil without noise (a dead or unconnected
    channel), or coils whose noise is linearly dependent.
    """
    c = np.asarray(cov, dtype=np.complex128)
    if not np.isfinite(c).all():
        raise ValueError("the noise covariance is not finite")
    c = 0.5 * (c + c.conj().T)
    if not c.any():
        raise ValueError("the noise covariance is all zero (no receiver noise was recorded)")
    variance = np.real(np.diag(c))
    if (variance <= 0).any():
        dead = ", ".join(str(i) for i in np.flatnonzero(variance <= 0)[:8])
        raise ValueError(f"coil(s) {dead} have zero noise variance (a dead or unconnected receiver channel); "
                         "the noise covariance is not positive definite")
    try:
        low = np.linalg.cholesky(c)
    except np.linalg.LinAlgError as err:
        raise ValueError("the noise covariance is not positive definite (the coils' noise is linearly dependent)") from err
    return np.linalg.inv(low).astype(np.complex64)


def prewhiten(kspace: np.ndarray, w: np.ndarray, coil_axis: int = 1) -> np.ndarray:
    """Apply the (C, C) prewhitening matrix `w` along `coil_axis` of complex `kspace`.

    Returns an array of the same shape and dtype: `out[..., c, ...] = sum_d w[c, d] x[..., d, ...]`.
    """
    x = np.moveaxis(np.asarray(kspace), coil_axis, -1)
    if x.shape[-1] != w.shape[1]:
        raise ValueError(f"{x.shape[-1]} coils in data, prewhitening matrix is {w.shape}")
    out = x @ np.asarray(w).T.astype(x.dtype, copy=False)
    return np.moveaxis(out, -1, coil_axis)
