"""g-factor maps: the noise amplification of parallel imaging, per pixel.

`SNR_R = SNR_full / (g sqrt(R))`: at acceleration `R` a linear reconstruction's noise std is
`g sqrt(R)` times that of the fully sampled reconstruction of the same coils. Coil noise is
white with identity covariance, as after prewhitening (`recon.io.prewhiten`; fastMRI files
carry no noise scan and are taken as white); `sense_gfactor` whitens by a given covariance.
All maps are for uniform undersampling of the phase-encode columns (every `R`-th column, no
calibration lines: those only lower the noise), on the stored `(H, W)` grid.

- `sense_gfactor`: analytic SENSE (Pruessmann 1999), per group of `R` pixels that alias onto
  one another, `g = sqrt(diag((S^H S)^-1) * diag(S^H S))`; pixels whose maps are zero (RSS
  <= `tol`) drop out of their group and get g = 0. As `pygrappa.gfactor` (John Pauly's), the
  inverse is a pseudo-inverse; pygrappa takes the real part of `S^H S`, exact for real maps
  only, here the complex Gram matrix is used.
- `grappa_gfactor`: analytic image-domain GRAPPA (Breuer et al. 2009): the kernels of the
  interior sampling patterns form one convolution kernel on zero-filled k-space, whose Fourier
  transform is a `C x C` unmixing matrix `W(x)` per pixel (`grappa_unmixing`). With the RSS
  combination linearized, `p = I / RSS(I)` (`I` the coil images), `g = ||p^H W|| / (R ||p||)`.
  The interior kernels are applied at every location (circularly); the method's own kernels at
  the k-space border are not modelled. Where an unsampled edge column is filled by a one-sided
  kernel they add noise: the median over the object is 6% above the map at R = 2, 1% at R = 3,
  on a 96-column matrix (`tests/test_gfactor.py`); fastMRI's zero-padded edge columns hold none.
  Tikhonov-regularized kernels can trade noise for residual aliasing, so unlike SENSE's, a
  GRAPPA g can fall slightly below 1.
- `pseudo_replica_std`: the noise std of any linear reconstruction by Monte Carlo (Robson et
  al. 2008), the check of both.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from recon.calib.grappa import DEFAULT_LAM, grappa_calibrate
from recon.core import ifft2c


def _check_acceleration(acceleration: int, width: int, divisible: bool = True) -> int:
    step = int(acceleration)
    if step != acceleration or step < 1:
        raise ValueError(f"g-factor acceleration must be a positive integer column spacing, got {acceleration}")
    if divisible and width % step:
        raise ValueError(f"g-factor at spacing {step} needs a column count divisible by it (aliased pixels on the grid); got {width} columns")
    return step


def sense_gfactor(
    maps: torch.Tensor, acceleration: int, noise_cov: torch.Tensor | None = None, tol: float = 1e-6
) -> torch.Tensor:
    """Analytic SENSE g-factor `(B, H, W)` float32 of coil maps `(B, C, H, W)` at column spacing `R`.

    Aliasing is along the last axis (phase encodes): pixel `x` folds with `x + k W / R`.
    noise_cov: `(C, C)` receiver noise covariance (None = identity, prewhitened data); the
    maps are whitened by its Cholesky factor. tol: RSS of the maps at or below which a pixel
    is outside the object (g = 0, and it does not enter its group's inversion).
    """
    maps = torch.as_tensor(maps).to(torch.complex128)
    batch, coils, height, width = maps.shape
    step = _check_acceleration(acceleration, width)
    maps = _whiten(maps, noise_cov)
    block = width // step
    s = maps.reshape(batch, coils, height, step, block).permute(0, 2, 4, 1, 3)  # (B, H, n, C, R)
    present = s.abs().square().sum(-2).sqrt() > tol  # (B, H, n, R)
    gram = s.mH @ s
    keep = present[..., :, None] & present[..., None, :]
    eye = torch.eye(step, dtype=gram.dtype, device=gram.device)
    gram = torch.where(keep, gram, eye)  # absent pixels decouple from their group
    inverse = torch.linalg.pinv(gram, hermitian=True)
    g = (torch.diagonal(inverse, dim1=-2, dim2=-1).real * torch.diagonal(gram, dim1=-2, dim2=-1).real).clamp_min(0).sqrt()
    g = torch.where(present, g, torch.zeros((), dtype=g.dtype, device=g.device))
    return g.permute(0, 1, 3, 2).reshape(batch, height, width).float()


def _whiten(maps: torch.Tensor, noise_cov: torch.Tensor | None) -> torch.Tensor:
    if noise_cov is None:
        return maps
    batch, coils = maps.shape[:2]
    factor = torch.linalg.cholesky(torch.as_tensor(noise_cov, dtype=torch.complex128, device=maps.device))
    return torch.linalg.solve_triangular(factor, maps.reshape(batch, coils, -1), upper=False).reshape(maps.shape)


def sense_gfactor_columns(
    maps: torch.Tensor, columns: torch.Tensor, noise_cov: torch.Tensor | None = None, tol: float = 1e-6, chunk: int = 32
) -> torch.Tensor:
    """Exact SENSE g-factor `(B, H, W)` float32 for any Cartesian column mask `columns` `(W,)` bool.

    Per image row (the readout decouples), `E^H E = sum_c S_c^H F^H M F S_c` (`W x W`, `F` the
    centred orthonormal DFT, `M` the mask) is inverted, and with `R = W / n` (`n` sampled columns)
    `g = sqrt([(E^H E)^-1]_xx sum_c |S_c(x)|^2 / R`: the noise variance against full sampling's,
    over `R`. On uniform sampling with `W` divisible by `R` it equals `sense_gfactor`; it also
    holds where `R` does not divide `W`. Cost `O(H W^3)` per slice. Pixels with map RSS <= `tol`
    get g = 0 and drop out of the inversion; `noise_cov` as in `sense_gfactor`.
    """
    maps = _whiten(torch.as_tensor(maps).to(torch.complex128), noise_cov)
    batch, coils, height, width = maps.shape
    cols = torch.as_tensor(columns).reshape(-1).bool().to(maps.device)
    if cols.numel() != width or not bool(cols.any()):
        raise ValueError(f"g-factor column mask must be {width} columns with at least one sampled, got {cols.numel()} with {int(cols.sum())}")
    eye = torch.eye(width, dtype=torch.complex128, device=maps.device)
    dft = torch.fft.fftshift(torch.fft.fft(torch.fft.ifftshift(eye, dim=0), dim=0, norm="ortho"), dim=0)  # F: x -> k
    psf = dft.mH @ (cols[:, None] * dft)  # F^H M F
    step = width / float(cols.sum())
    power = maps.abs().square().sum(1)  # (B, H, W)
    out = torch.zeros(batch, height, width, dtype=torch.float64, device=maps.device)
    for b in range(batch):
        for top in range(0, height, chunk):
            s = maps[b, :, top : top + chunk].transpose(0, 1)  # (r, C, W)
            gram = torch.einsum("rcx,xy,rcy->rxy", s.conj(), psf, s)
            present = power[b, top : top + chunk].sqrt() > tol  # (r, W)
            keep = present[:, :, None] & present[:, None, :]
            gram = torch.where(keep, gram, eye)
            inverse = torch.linalg.pinv(gram, hermitian=True)
            var = torch.diagonal(inverse, dim1=-2, dim2=-1).real.clamp_min(0)
            g = (var * power[b, top : top + chunk] / step).sqrt()
            out[b, top : top + chunk] = torch.where(present, g, torch.zeros((), dtype=g.dtype, device=g.device))
    return out.float()


def interior_codes(acceleration: int, kernel: tuple[int, int]) -> torch.Tensor:
    """Pattern codes (`calib.grappa.pattern_codes`) of the targets `m = 1..R-1` columns right of a
    sampled column on uniform sampling at spacing `R`, window inside the matrix: `(R - 1,)` int64."""
    kx, ky = int(kernel[0]), int(kernel[1])
    codes = []
    for m in range(1, int(acceleration)):
        code = 0
        for q in range(ky):
            if (m + q - ky // 2) % acceleration == 0:
                for r in range(kx):
                    code |= 1 << (r * ky + q)
        if code == 0:
            raise ValueError(f"GRAPPA kernel {kx}x{ky} reaches no sampled column at spacing {acceleration}; widen ky to at least {acceleration + 1}")
        codes.append(code)
    return torch.tensor(codes, dtype=torch.int64)


def grappa_unmixing(weights: torch.Tensor, acceleration: int, kernel: tuple[int, int], shape: tuple[int, int], out_coil: int) -> torch.Tensor:
    """Row `out_coil` of the image-domain GRAPPA unmixing `W(x)`: `(B, C_in, H, W)` complex64.

    weights: `(B, R - 1, kx * ky, C_in, C_out)`, the kernels of `interior_codes` in that order
    (`GrappaKernels.weights`). The filled k-space is the correlation `k_out(y) = sum_d K(d)
    k_zf(y + d)` of zero-filled data with the kernels placed side by side (sampled locations:
    the identity), so with orthonormal centred FFTs `ifft2c(k_out) = W ifft2c(k_zf)`,
    `W = sqrt(H W) ifft2c(K(-d))`.
    """
    kx, ky = kernel
    batch, _, points, coils, _ = weights.shape
    height, width = shape
    padded = torch.zeros(batch, coils, height, width, dtype=torch.complex64, device=weights.device)
    padded[:, out_coil, height // 2, width // 2] = 1.0
    for p, m in enumerate(range(1, int(acceleration))):
        for pos in range(points):
            r, q = divmod(pos, ky)
            dy, dx = r - kx // 2, q - ky // 2
            if (m + dx) % acceleration:
                continue
            padded[:, :, (height // 2 - dy) % height, (width // 2 - dx) % width] += weights[:, p, pos, :, out_coil].to(torch.complex64)
    return ifft2c(padded) * math.sqrt(height * width)


def grappa_gfactor(
    calib_kspace: torch.Tensor,
    calib: torch.Tensor | tuple[int, int],
    acceleration: int,
    kernel: tuple[int, int],
    images: torch.Tensor,
    lam: float = DEFAULT_LAM,
) -> torch.Tensor:
    """Analytic GRAPPA g-factor `(B, H, W)` float32 (Breuer et al. 2009; module docstring).

    calib_kspace: `(B, C, H, W)` with calibration data in the column region `calib`; kernel
    `(kx, ky)` and `lam` as `calib.grappa.grappa_calibrate`; images: `(B, C, H, W)` coil images
    whose RSS combination is linearized (the GRAPPA reconstruction's, or coil maps). Pixels
    where the images are zero get g = 0.
    """
    step = _check_acceleration(acceleration, images.shape[-1], divisible=False)
    kernel = (int(kernel[0]), int(kernel[1]))
    batch, coils, height, width = images.shape
    if step == 1:
        return (images.abs().square().sum(1) > 0).float()
    codes = interior_codes(step, kernel)
    kernels = grappa_calibrate(calib_kspace.to(torch.complex64), calib, codes.to(calib_kspace.device), kernel, lam)
    images = images.to(torch.complex64)
    rss = images.abs().square().sum(1, keepdim=True).sqrt()
    p = torch.where(rss > 0, images / rss.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros((), dtype=images.dtype, device=images.device))
    combined = torch.zeros(batch, coils, height, width, dtype=torch.complex64, device=images.device)
    for out in range(coils):
        combined += p[:, out : out + 1].conj() * grappa_unmixing(kernels.weights, step, kernel, (height, width), out)
    norm = p.abs().square().sum(1).sqrt()
    g = combined.abs().square().sum(1).sqrt() / step
    return torch.where(norm > 0, g / norm.clamp_min(torch.finfo(torch.float32).tiny), torch.zeros((), device=g.device)).float()


def pseudo_replica_std(
    reconstruct: Callable[[torch.Tensor], torch.Tensor],
    sampled: torch.Tensor,
    coils: int,
    replicas: int = 200,
    seed: int = 0,
    chunk: int = 50,
) -> torch.Tensor:
    """Noise std `(H, W)` of a linear reconstruction by pseudo-replicas (Robson et al. 2008).

    reconstruct: `(N, C, H, W)` k-space -> `(N, H, W)` complex combined images, linear (fixed
    kernels, maps and combination weights); sampled: `(H, W)` bool. Each replica is white
    complex Gaussian noise of unit variance per sampled location and coil, zero elsewhere.
    `g = std_R / (std_full sqrt(R))` with `std_full` the same for full sampling.
    """
    sampled = sampled.bool()
    gen = torch.Generator().manual_seed(int(seed))
    done = 0
    outputs = []
    while done < replicas:
        n = min(chunk, replicas - done)
        noise = torch.randn(n, coils, *sampled.shape, 2, generator=gen) * math.sqrt(0.5)
        noise = torch.view_as_complex(noise).to(torch.complex64) * sampled.cpu()
        outputs.append(reconstruct(noise.to(sampled.device)).detach().cpu().to(torch.complex128))
        done += n
    stack = torch.cat(outputs)
    variance = (stack - stack.mean(0)).abs().square().sum(0) / max(1, replicas - 1)
    return variance.sqrt().float()
