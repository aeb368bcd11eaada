"""SPIRiT's k-space fill as a method (`Spirit`): calibration, CG with a k-space prior, L1-SPIRiT.

Kernels per slice from the batch's calibration region of its calibration data, Tikhonov weight
by the noise rule `lam0 = C_CAL m sigma^2` (`recon.calib.spirit`) or fixed. The default solve
keeps the measured samples and fills the unknown ones by CG on
`||(G - I)(y + u)||^2 + sum_k w_k |u_k|^2`, with the k-space prior `w_k = C_PRIOR sigma_e^2 / P_c(k)`
(`prior_weights`: the MAP weight for white SPIRiT residual and `CN(0, P_c(k))` unknowns) that
keeps noise-only k-space from being filled with amplified noise; CG stops at `TOL` or `ITERS`.
L1-SPIRiT (`lam` > 0 or `l1`) adds a joint L1-wavelet norm of the coil images
(`prox.JointL1Wavelet`) and runs FISTA with penalized data consistency. Unknown = not sampled and
between the first and last sampled non-zero column; the rest stays zero (fastMRI's padding).
The `KspaceMethod` base completes a partial side, takes the RSS and crops. Derivation and
tuning: docs/methods/spirit.md.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from recon import partial_fourier as pf
from recon.alg import conjugate_gradient, fista
from recon.calib.spirit import SpiritOperator, spirit_calibrate
from recon.core import fft2c, ifft2c
from recon.methods.base import Device, KspaceMethod
from recon.methods.batch import ReconBatch
from recon.noise import data_scale, noise_sigma
from recon.prox import JointL1Wavelet

#: Noise factor of the calibration's Tikhonov rule (`recon.calib.spirit`).
C_CAL = 1.0
#: Factor of the k-space prior's noise rule (`prior_weights`; 1 = the MAP weight).
C_PRIOR = 1.0
#: CG iteration cap and relative residual tolerance.
ITERS = 50
TOL = 1e-3
#: Readout rows averaged by the power prior.
PRIOR_ROWS = 9
#: Constant of the L1 noise rule and FISTA iterations of L1-SPIRiT.
C_L1 = 0.3
L1_ITERS = 30


def known_locations(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`(B, 1, H, W)` bool: sampled, or outside the span of sampled non-zero columns (known zeros).

    kspace `(B, C, H, W)`; mask `(B, 1, 1, W)` columns or `(B, 1, H, W)` locations.
    """
    batch, _, height, width = kspace.shape
    sampled = mask.bool().expand(batch, 1, height, width)
    holding = sampled[:, 0].any(1) & (kspace != 0).any(1).any(1)  # (B, W)
    index = torch.arange(width, device=kspace.device)
    first = torch.where(holding, index, width).amin(1, keepdim=True)
    last = torch.where(holding, index, -1).amax(1, keepdim=True)
    outside = ((index < first) | (index > last))[:, None, None, :]
    return sampled | outside


def power_prior(kspace: torch.Tensor, known: torch.Tensor, sigma: torch.Tensor, rows: int = PRIOR_ROWS) -> torch.Tensor:
    """Expected power `E|x_c(k)|^2` `(B, C, H, W)` of the noisy full k-space at every location.

    `|y|^2` of the sampled columns, averaged over `rows` neighbouring readout rows, interpolated
    log-linearly along the phase encodes between the nearest sampled columns on either side
    (constant beyond the outermost), floored at the noise power `sigma^2` `(B,)`.
    """
    batch, coils, height, width = kspace.shape
    power = (kspace.real**2 + kspace.imag**2).reshape(batch * coils, height, width).transpose(1, 2)
    pad = rows // 2
    smooth = torch.nn.functional.avg_pool1d(torch.nn.functional.pad(power, (pad, pad), mode="replicate"), rows, 1)
    smooth = smooth.transpose(1, 2).reshape(batch, coils, height, width)
    floor = (sigma.to(smooth.dtype) ** 2).reshape(-1, 1, 1, 1).clamp_min(torch.finfo(smooth.dtype).tiny)
    logp = torch.log(torch.maximum(smooth, floor))
    columns = (known[:, 0].any(1) & (kspace != 0).any(1).any(1))  # (B, W): sampled columns holding data
    index = torch.arange(width, device=kspace.device).expand(batch, width)
    left = torch.cummax(torch.where(columns, index, -1), 1).values
    right = torch.flip(torch.cummin(torch.flip(torch.where(columns, index, width), [1]), 1).values, [1])
    left_c, right_c = torch.where(left < 0, right, left), torch.where(right >= width, left, right)
    left_c, right_c = left_c.clamp(0, width - 1), right_c.clamp(0, width - 1)
    span = (right_c - left_c).clamp_min(1).to(smooth.dtype)
    t = ((index - left_c).to(smooth.dtype) / span).clamp(0, 1)[:, None, None, :]

    def gather(cols: torch.Tensor) -> torch.Tensor:
        return torch.gather(logp, 3, cols[:, None, None, :].expand(batch, coils, height, width))

    return torch.exp((1 - t) * gather(left_c) + t * gather(right_c))


def spirit_cg(
    kspace: torch.Tensor,
    known: torch.Tensor,
    op: SpiritOperator,
    iters: int,
    weights: torch.Tensor | None = None,
    tol: float = TOL,
) -> torch.Tensor:
    """Filled coil k-space `(B, C, H, W)`: `y + u`, `u` minimizing
    `||(G - I)(y + u)||^2 + sum_k weights_k |u_k|^2` by CG from `u = 0`.

    kspace `y`: zero where not known; known: `(B, 1, H, W)` bool (`u` = 0 there); weights: the
    Tikhonov weight per location, broadcastable to `(B, C, H, W)` (None: 0); iters, tol: the
    stopping rule of `alg.conjugate_gradient` (cap; relative residual of the normal equations).
    """
    unknown = ~known

    def project(u: torch.Tensor) -> torch.Tensor:
        return torch.where(unknown, u, torch.zeros((), dtype=u.dtype, device=u.device))

    def normal_op(u: torch.Tensor) -> torch.Tensor:
        u = project(u)
        out = op.normal(u)
        return project(out if weights is None else out + weights * u)

    u = conjugate_gradient(normal_op, -project(op.normal(kspace)), iters, tol)
    return kspace + project(u)


def prior_weights(kspace: torch.Tensor, known: torch.Tensor, op: SpiritOperator, sigma: torch.Tensor, factor: float = C_PRIOR) -> torch.Tensor | None:
    """The noise rule's Tikhonov weights `(B, C, H, W)`: `factor sigma_e^2 / P_c(k)`, None without noise.

    `sigma_e^2 = E||(G - I) n||^2 / (C H W)` is the SPIRiT residual per sample that white noise
    of std `sigma` `(B,)` leaves (`SpiritOperator.noise_energy`), `P` the `power_prior`.
    """
    if not bool((sigma > 0).all()):
        return None
    per_sample = op.noise_energy(sigma.to(kspace.device)) / kspace[0].numel()
    power = power_prior(kspace, known, sigma.to(kspace.device))
    return (factor * per_sample.reshape(-1, 1, 1, 1) / power).to(kspace.real.dtype)


def default_kernel(calib_width: int) -> tuple[int, int]:
    """`(5, ky)`, `ky` the largest odd width <= 5 and <= half the calibration width (at least 3):
    the fit then sees at least as many window positions along the phase encodes as the kernel
    has columns (5 at 4x, 3 at 8x with fastMRI's 4% centre on ~180 columns)."""
    ky = min(5, max(3, int(calib_width) // 2))
    return 5, ky - (1 - ky % 2)


def spirit_l1(kspace: torch.Tensor, known: torch.Tensor, op: SpiritOperator, lam: float, iters: int, wave_name: str = "db4") -> torch.Tensor:
    """L1-SPIRiT filled coil k-space `(B, C, H, W)` by FISTA (module docstring), at `kspace`'s scale.

    kspace: zero where not known; known: `(B, 1, H, W)` bool; lam: joint L1 weight.
    """
    known_f = known.to(kspace.real.dtype)
    step = 1.0 / (op.lipschitz() + 1.0)
    reg = JointL1Wavelet(tuple(kspace.shape[-2:]), lam, wave_name)

    def gradient(z: torch.Tensor) -> torch.Tensor:
        consistency = SpiritOperator.pixelwise(op.dhd, z)
        return consistency + ifft2c(known_f * (fft2c(z) - kspace))

    z = fista(gradient, reg, ifft2c(kspace), step.to(torch.float32), iters)
    return fft2c(z)


class Spirit(KspaceMethod):
    """SPIRiT (CG, constrained data consistency) or L1-SPIRiT (FISTA); module docstring.

    kernel: `(kx, ky)` odd (None = `default_kernel` of the calibration width); tikhonov: None =
    the calibration's noise rule `C_CAL`, else a fixed relative weight (Lustig's); prior: the
    k-space prior's noise rule (False: plain SPIRiT, stopped by `iters` alone); lam: L1 weight
    on the normalized scale (None/0 = no L1 unless `l1`); l1: the L1 noise rule; iters: CG cap
    (default `ITERS`) or FISTA iterations (`L1_ITERS`); the rest as `KspaceMethod`.
    """

    def __init__(
        self,
        kernel: Sequence[int] | None = None,
        tikhonov: float | None = None,
        prior: bool = True,
        lam: float | None = None,
        l1: bool = False,
        iters: int | None = None,
        partial_fourier: str = pf.DEFAULT_MODE,
        device: Device = None,
        virtual_coils: int | None = None,
        compression: str = "svd",
    ) -> None:
        super().__init__(partial_fourier, device, virtual_coils, compression)
        if kernel is not None:
            if len(kernel) != 2:
                raise ValueError(f"spirit kernel must be (kx, ky), got {kernel!r}")
            kernel = (int(kernel[0]), int(kernel[1]))
            if min(kernel) < 1 or kernel[0] % 2 == 0 or kernel[1] % 2 == 0:
                raise ValueError(f"spirit kernel {kernel} must have odd positive sizes")
        self.kernel = kernel
        if tikhonov is not None and not (math.isfinite(tikhonov) and tikhonov >= 0):
            raise ValueError(f"spirit tikhonov must be finite and >= 0, got {tikhonov}")
        if lam is not None and not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"spirit lam must be finite and >= 0, got {lam}")
        self.tikhonov = tikhonov
        self.prior = bool(prior)
        self.lam = None if lam is None else float(lam)
        self.l1 = bool(l1) or (self.lam is not None and self.lam > 0)
        self.iters = (L1_ITERS if self.l1 else ITERS) if iters is None else int(iters)
        if self.iters < 1:
            raise ValueError(f"spirit iters must be >= 1, got {iters}")

    def fill_slices(
        self, kspace: torch.Tensor, mask: torch.Tensor, calib_kspace: torch.Tensor, calib: torch.Tensor,
        inside: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Filled coil k-space `(B, C, H, W)` complex64 of `(B, C, H, W)` masked data, slice by slice.

        mask: `(B, 1, 1, W)` or `(B, 1, H, W)` bool; calib_kspace: `(B, C, H, W)`; calib: `(B, 2)`;
        inside: `(1, 1, H, W)` bool, the acquired k-space extent (partial Fourier / echo): locations
        outside it stay zero for the partial-Fourier step to complete (None: the whole grid).
        """
        sigma = noise_sigma(kspace, mask).to(torch.float64)
        out = []
        for b in range(kspace.shape[0]):
            y = kspace[b : b + 1]
            m = mask[b : b + 1] if mask.shape[0] == kspace.shape[0] else mask
            noise = sigma[b : b + 1].to(y.device)
            region = calib[b : b + 1]
            kernel = self.kernel or default_kernel(int(region[0, 1] - region[0, 0]))
            if self.tikhonov is None:
                kern = spirit_calibrate(calib_kspace[b : b + 1], region, kernel, C_CAL, noise)
            else:
                kern = spirit_calibrate(calib_kspace[b : b + 1], region, kernel, self.tikhonov)
            op = SpiritOperator.from_kernel(kern, tuple(y.shape[-2:]))
            known = known_locations(y, m)
            if inside is not None:
                known = known | ~inside
            y = torch.where(known, y, torch.zeros((), dtype=y.dtype, device=y.device))
            if self.l1:
                scale = data_scale(y)
                lam = self.lam if self.lam is not None and self.lam > 0 else C_L1 * float(noise[0]) / float(scale.flatten()[0])
                out.append(spirit_l1(y / scale, known, op, lam, self.iters) * scale)
            else:
                weights = prior_weights(y, known, op, noise) if self.prior else None
                out.append(spirit_cg(y, known, op, self.iters, weights))
        return torch.cat(out)

    def fill(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        kspace = batch.masked_kspace.to(device, torch.complex64)
        calib = batch.calib.reshape(-1, 2).expand(kspace.shape[0], 2).cpu()
        inside = None
        if pf.has_partial(batch.extent, kspace.shape[-2:]):
            (r0, r1), (c0, c1) = batch.extent
            inside = torch.zeros((1, 1) + tuple(kspace.shape[-2:]), dtype=torch.bool, device=device)
            inside[..., r0:r1, c0:c1] = True
        return self.fill_slices(kspace, batch.mask.to(device).bool(), batch.calibration_data.to(device, torch.complex64), calib, inside)
