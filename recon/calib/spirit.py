"""SPIRiT in torch (CPU or GPU): calibrated k-space self-consistency kernels and the operator
`D = G - I` that the SPIRiT reconstructions minimize (Lustig and Pauly, MRM 64:457-471, 2010).

Kernel: every k-space sample of coil `c` is predicted from its `(kx, ky)` neighbourhood in all
coils, itself excluded:
`(G x)_c(y, x) = sum_{c', r, q} w[c, c', r, q] x_{c'}(y + r - kx//2, x + q - ky//2)`,
with `w[c, c, kx//2, ky//2] = 0` (rows = readout, columns = phase encodes). Unlike a GRAPPA
kernel it does not depend on which neighbours were sampled, so it applies to any Cartesian
mask (fastMRI's random masks included).

Fit (`spirit_calibrate`): the windows lying inside the calibration block (all readout rows x
the calibration columns, no zero padding) form the calibration matrix `A` (one row per window,
`kx ky C` values); for each target coil the weights solve the Tikhonov system
`(A_s^H A_s + lam0 I) w = A_s^H a_t` (sources `s` = all values but the target `t`), in
complex128 (Gram matrix included) by a batched Cholesky over slices and coils. `lam0` is either relative, Lustig's
`calibSPIRiT` convention `lam0 = tikhonov ||A_s^H A_s||_F / n` (`n` = number of sources), or,
given the complex noise std `sigma` per k-space sample, set by the noise:
`lam0 = tikhonov m sigma^2` with `m` windows: `E[A^H A] = A_0^H A_0 + m sigma^2 I` for white
noise, so `tikhonov = 1` damps every direction of the calibration matrix whose energy is at
the noise floor by a factor 2.

Operator (`SpiritOperator`): `G` is a convolution in k-space, so it acts in the image domain
as one `C x C` matrix per pixel, `G_img(r)` (the kernel's inverse DFT on the k-space grid);
`D x = F (G_img - I) F^H x`, with `F` the centred orthonormal 2-D FFT. The convolution is
circular (it wraps at the k-space edges, where 2x readout oversampling leaves only noise).
Because `D` is pixelwise in the image domain, its norm (`lipschitz`) and the noise energy it
passes (`noise_energy`) are exact closed forms.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from recon.calib.grappa import _calibration_gram
from recon.calib.regions import calib_regions
from recon.core import fft2c, ifft2c
from recon.linops import Linop

#: Lustig's `calibSPIRiT` default relative Tikhonov weight.
DEFAULT_TIKHONOV = 0.01
#: Relative floor of the noise-set weight, `lam0 >= FLOOR ||A_s^H A_s||_F / n`: keeps the
#: Cholesky factorization defined on noise-free data.
FLOOR = 1e-6


class SpiritKernel(NamedTuple):
    """Calibrated SPIRiT weights.

    weights: `(B, C, C, kx, ky)` complex64, `weights[b, c_out, c_in, r, q]` (module docstring),
        zero at `(c, c, kx//2, ky//2)`.
    lam0: `(B, C)` float64 absolute Tikhonov weight each coil's fit used.
    """

    weights: torch.Tensor
    lam0: torch.Tensor

    @property
    def kernel(self) -> tuple[int, int]:
        """`(kx, ky)`."""
        return int(self.weights.shape[-2]), int(self.weights.shape[-1])


def _check_kernel(kernel: tuple[int, int]) -> tuple[int, int]:
    kx, ky = (int(k) for k in kernel)
    if kx < 1 or ky < 1 or kx % 2 == 0 or ky % 2 == 0 or kx * ky < 2:
        raise ValueError(f"SPIRiT kernel {tuple(kernel)} must have odd positive sizes (kx rows, ky columns), not 1x1")
    return kx, ky


def spirit_calibrate(
    calib_kspace: torch.Tensor,
    calib: torch.Tensor | tuple[int, int],
    kernel: tuple[int, int] = (5, 5),
    tikhonov: float = DEFAULT_TIKHONOV,
    sigma: torch.Tensor | None = None,
) -> SpiritKernel:
    """SPIRiT weights per slice from the calibration block of `calib_kspace`.

    calib_kspace: `(B, C, H, W)` holding calibration data in the column region `calib`
    (`(B, 2)` or `(2,)`, `[start, stop)`, all rows). tikhonov: the relative weight (sigma None)
    or the noise factor (sigma `(B,)`, complex noise std per sample in `calib_kspace`'s units);
    module docstring. Raises ValueError when a region is narrower than the kernel's
    phase-encode extent `ky`, or has fewer windows than unknowns per coil without Tikhonov.
    """
    kx, ky = _check_kernel(kernel)
    if not (math.isfinite(tikhonov) and tikhonov >= 0):
        raise ValueError(f"SPIRiT tikhonov must be finite and >= 0, got {tikhonov}")
    batch, coils, height, width = calib_kspace.shape
    regions = calib_regions(calib, batch, width)
    device = calib_kspace.device
    for start, stop in regions:
        if stop - start < ky or height < kx:
            raise ValueError(
                f"calibration region [{start}, {stop}) x {height} rows is narrower than the SPIRiT kernel {kx}x{ky}; "
                f"use a kernel with ky <= {stop - start} or data with a wider calibration block"
            )
    data = calib_kspace.to(torch.complex128)  # the block is small: the Gram in double precision
    grams = torch.stack([_calibration_gram(data[b, :, :, start:stop], (kx, ky), False) for b, (start, stop) in enumerate(regions)])
    windows = torch.tensor([(height - kx + 1) * (stop - start - ky + 1) for start, stop in regions], dtype=torch.float64, device=device)
    size = kx * ky * coils
    target = ((kx // 2) * ky + ky // 2) * coils + torch.arange(coils, device=device)  # (C,)
    every = torch.arange(size, device=device)
    src = torch.stack([every[every != t] for t in target.tolist()])  # (C, n)
    n = size - 1
    gram = grams[:, src[:, :, None], src[:, None, :]]  # (B, C, n, n)
    rhs = grams[:, src, target[:, None]]  # (B, C, n)
    relative = torch.linalg.matrix_norm(gram) / n  # (B, C)
    if sigma is None:
        lam0 = tikhonov * relative
    else:
        noise = torch.as_tensor(sigma, dtype=torch.float64, device=device).reshape(-1).expand(batch)
        lam0 = torch.maximum(tikhonov * windows[:, None] * noise[:, None] ** 2, FLOOR * relative)
    if sigma is None and tikhonov == 0 and bool((windows < n).any()):
        raise ValueError(f"SPIRiT calibration has {int(windows.min())} windows for {n} unknowns per coil; use tikhonov > 0")
    system = gram + torch.diag_embed(lam0[..., None].expand(batch, coils, n).to(gram.dtype))
    factor, info = torch.linalg.cholesky_ex(system)
    if bool((info != 0).any()):
        raise ValueError(f"SPIRiT calibration matrix is singular (tikhonov={tikhonov}); use tikhonov > 0")
    solved = torch.cholesky_solve(rhs[..., None], factor)[..., 0]  # (B, C, n)
    weights = torch.zeros(batch, coils, size, dtype=torch.complex128, device=device)
    weights[:, torch.arange(coils, device=device)[:, None], src] = solved
    weights = weights.reshape(batch, coils, kx, ky, coils).permute(0, 1, 4, 2, 3)
    return SpiritKernel(weights.to(torch.complex64).contiguous(), lam0)


def image_kernel(weights: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """`G_img`: the k-space kernel as per-pixel coil matrices `(B, C, C, H, W)` complex64.

    `fft2c(G_img[:, c] * ifft2c(x)).sum(coil)` equals the circular k-space correlation of the
    module docstring (the weight of offset `(dr, dq)` sits at `(H//2 - dr, W//2 - dq)` before
    the inverse FFT, times `sqrt(H W)`; `tests/test_spirit.py` checks it against `torch.roll`).
    """
    batch, coils, _, kx, ky = weights.shape
    height, width = int(shape[0]), int(shape[1])
    if kx > height or ky > width:
        raise ValueError(f"SPIRiT kernel {kx}x{ky} is larger than the {height}x{width} matrix")
    grid = torch.zeros(batch, coils, coils, height, width, dtype=torch.complex64, device=weights.device)
    rows = (height // 2 - (torch.arange(kx, device=weights.device) - kx // 2)) % height
    cols = (width // 2 - (torch.arange(ky, device=weights.device) - ky // 2)) % width
    grid[..., rows[:, None], cols[None, :]] = weights.to(torch.complex64)
    return ifft2c(grid) * float(height * width) ** 0.5


class SpiritOperator(Linop):
    """`D = G - I` on coil k-space `(B, C, H, W)`, applied per pixel in the image domain.

    Built from a `SpiritKernel` (`from_kernel`) or directly from per-pixel matrices
    `G_img` `(B, C, C, H, W)`. `normal` uses the precomputed `D^H D` (one FFT pair per call).
    """

    def __init__(self, g_img: torch.Tensor) -> None:
        eye = torch.eye(g_img.shape[1], dtype=g_img.dtype, device=g_img.device)[None, :, :, None, None]
        self.d = g_img - eye  # (B, C_out, C_in, H, W)
        self.dhd = torch.einsum("bkihw,bkjhw->bijhw", self.d.conj(), self.d)

    @classmethod
    def from_kernel(cls, kernel: SpiritKernel, shape: tuple[int, int]) -> SpiritOperator:
        """The operator of calibrated weights on an `(H, W)` k-space grid."""
        return cls(image_kernel(kernel.weights, shape))

    @staticmethod
    def pixelwise(mat: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Per-pixel matrices `(B, C, C, H, W)` times coil images `(B, C, H, W)`."""
        return torch.einsum("bijhw,bjhw->bihw", mat, images)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(G - I) x`: coil k-space -> coil k-space."""
        return fft2c(self.pixelwise(self.d, ifft2c(x)))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """`(G - I)^H y`."""
        return fft2c(self.pixelwise(self.d.conj().transpose(1, 2), ifft2c(y)))

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """`(G - I)^H (G - I) x`."""
        return fft2c(self.pixelwise(self.dhd, ifft2c(x)))

    def residual_energy(self, x: torch.Tensor) -> torch.Tensor:
        """`||(G - I) x||^2` per item, `(B,)` float (Parseval: computed in the image domain)."""
        r = self.pixelwise(self.d, ifft2c(x))
        return (r.real**2 + r.imag**2).flatten(1).sum(1)

    def noise_energy(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """`E ||(G - I) n||^2` `(B,)` for white complex noise of std `sigma` per sample and coil:
        `sigma^2 sum_r ||D(r)||_F^2` (the residual a fully sampled noisy k-space leaves)."""
        fro = (self.d.real**2 + self.d.imag**2).flatten(1).sum(1)
        return torch.as_tensor(sigma, dtype=fro.dtype, device=fro.device).reshape(-1) ** 2 * fro

    def lipschitz(self) -> torch.Tensor:
        """`||G - I||^2 = max_r lambda_max(D(r)^H D(r))`, `(B, 1, 1, 1)` (exact)."""
        mats = self.dhd.permute(0, 3, 4, 1, 2)  # (B, H, W, C, C)
        return torch.linalg.eigvalsh(mats).amax(dim=(1, 2, 3)).reshape(-1, 1, 1, 1)
