"""`spirit`: SPIRiT for any Cartesian mask, an app over `recon.calib.spirit` and `recon.alg`.

Calibration: a SPIRiT kernel per slice from the batch's calibration region (`batch.calib`) of
its calibration data (`batch.calibration_data`: the ISMRMRD calibration-only lines when the
file has them), Tikhonov weight by the noise rule (`recon.calib.spirit`:
`lam0 = C_CAL m sigma^2`, `sigma` from `classical.noise_sigma`, i.e.
`recon.noise.estimate_noise_sigma`), or a fixed relative weight (`tikhonov=`, Lustig's
convention).

Reconstruction (default): data consistency as a constraint, over the values `u` at the
unknown locations, with a k-space prior set by the noise rule:
`min_u ||(G - I)(y + u)||^2 + sum_k w_k |u_k|^2`, `w_k = C_PRIOR sigma_e^2 / P_c(k)`
(`prior_weights`), by conjugate gradients on its normal equations (`alg.conjugate_gradient`)
from `u = 0` (zero-filled). This is the MAP estimate when the SPIRiT residual is white with the
variance `sigma_e^2` that receiver noise of std `sigma` leaves per sample
(`SpiritOperator.noise_energy / (C H W)`) and each unknown sample is `CN(0, P_c(k))`, with `P`
the power of the noisy full k-space, estimated from the sampled columns (`power_prior`). Where
the data carry signal (`P >> sigma^2`) the weight vanishes and this is plain SPIRiT; where the
k-space holds noise only, the weight is about `||D||^2` per sample and keeps the unknowns from
being filled with amplified noise (SPIRiT's g-factor, which at 8x drives plain SPIRiT run to
convergence far below zero-filled). `C_PRIOR = 1` is that MAP weight, and `C_CAL = 1` the
calibration's noise floor; on the tuning split only (seeds 2000+, phantom and MNI152, 4x and
8x, `benchmarks/tune_spirit.py`, `benchmarks/results/tune_spirit.md`) both beat zero-filled
by 0.05-0.07 SSIM, 0.3 times the prior scores up to 0.012 higher except at 8x on the phantom,
and 0.1 times the calibration weight scores the same or lower. Unknown = not sampled and between the first and last
sampled non-zero column of the slice; columns outside that span stay zero (fastMRI's zero
padding, as the target has it).

Stopping rule of CG: the prior makes the system well posed, so CG runs towards its solution
and stops when the normal-equation residual falls to `TOL` of its initial value, or after
`ITERS` iterations. Without measurable noise (`sigma` = 0) there is no prior and `ITERS`
alone stops it; `prior=False` (plain SPIRiT) likewise stops after `iters` iterations, and its
iteration count is then the only regularization.

L1-SPIRiT (`lam` > 0 fixed, or `l1=True` for the noise rule `lam = C_L1 sigma_n` on data
normalized by `classical.data_scale`): `min_z 1/2 ||D z||^2 + 1/2 ||M F z - y||^2 +
lam sum ||W z||_{2,1}` over the coil images `z`, with a joint (across coils) L1 norm of the db4
wavelet coefficients, by FISTA (`alg.fista`) from the zero-filled coil images with the exact
step `1 / (||D||^2 + 1)`; data consistency penalized, not constrained. `C_L1` is `cs`'s
constant, not tuned for SPIRiT (the joint threshold removes background noise that the
fastMRI RSS target keeps, as `cs`'s threshold does): on two volumes per source of the tuning
split it scores below plain SPIRiT (SSIM 0.725 / 0.611 against 0.779 / 0.671 at 4x / 8x on
MNI152, 0.772 / 0.662 against 0.784 / 0.665 on the phantom), so it is not the default.
Stopping rule: `iters` (default `L1_ITERS`) FISTA iterations.

Output: root-sum-of-squares of the filled coil k-space's orthonormal inverse FFT, centre
cropped: the fastMRI target's scale.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from recon import ops
from recon import partial_fourier as pf
from recon.alg import conjugate_gradient, fista
from recon.calib.spirit import SpiritOperator, spirit_calibrate
from recon.core import center_crop, fft2c, ifft2c
from recon.linops import Coeffs, Wavelet2D, map_coeffs
from recon.methods.batch import ReconBatch
from recon.methods.coils import check_virtual_coils, compress_batch
from recon.methods.classical import data_scale, noise_sigma

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


class JointL1Wavelet:
    """`g(z) = lam sum_k ||(W z_c)_k||_2` over coils `c`, for coil images `(B, C, H, W)`.

    `prox(alpha, v) = W^H groupsoft(W v, alpha lam)`: each wavelet coefficient's coil vector is
    shrunk by its norm (exact prox where `W` is unitary, as `prox.L1Wavelet`).
    """

    def __init__(self, shape: tuple[int, int], lam: float, wave_name: str = "db4") -> None:
        self.wavelet = Wavelet2D(shape, wave_name)
        self.lam = float(lam)

    def __call__(self, alpha: float | torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        batch, coils, height, width = v.shape
        thresh = torch.as_tensor(alpha * self.lam, dtype=torch.float32, device=v.device).reshape(-1, 1, 1, 1)

        def shrink(c: torch.Tensor) -> torch.Tensor:
            grouped = c.reshape(batch, coils, *c.shape[-2:])
            norm = (grouped.real**2 + grouped.imag**2).sum(1, keepdim=True).sqrt()
            scale = torch.clamp(1 - thresh / norm.clamp_min(torch.finfo(norm.dtype).tiny), min=0)
            return (grouped * scale).reshape(c.shape)

        coeffs: Coeffs = self.wavelet.forward(v.reshape(batch * coils, height, width))
        return self.wavelet.adjoint(map_coeffs(coeffs, shrink)).reshape(batch, coils, height, width)


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


class Spirit:
    """SPIRiT (CG, constrained data consistency) or L1-SPIRiT (FISTA); module docstring.

    kernel: `(kx, ky)` odd (None = `default_kernel` of the calibration width); tikhonov: None =
    the calibration's noise rule `C_CAL`, else a fixed relative weight (Lustig's); prior: the
    k-space prior's noise rule (False: plain SPIRiT, stopped by `iters` alone); lam: L1 weight
    on the normalized scale (None/0 = no L1 unless `l1`); l1: the L1 noise rule; iters: CG cap
    (default `ITERS`) or FISTA iterations (`L1_ITERS`); virtual_coils, compression: coil
    compression (svd | gcc) before calibration (`methods.coils`; None: all coils).
    """

    def __init__(
        self,
        kernel: Sequence[int] | None = None,
        tikhonov: float | None = None,
        prior: bool = True,
        lam: float | None = None,
        l1: bool = False,
        iters: int | None = None,
        device: str | torch.device | None = None,
        partial_fourier: str = pf.DEFAULT_MODE,
        virtual_coils: int | None = None,
        compression: str = "svd",
    ) -> None:
        self.partial_fourier = pf.check_mode(partial_fourier)
        self.virtual_coils = check_virtual_coils(virtual_coils, compression)
        self.compression = compression
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
        self.device = None if device is None else torch.device(device)

    def fill(
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

    @torch.no_grad()
    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        """`ReconBatch` -> `(B, h, w)` float32 on the batch's device."""
        home = batch.masked_kspace.device
        device = self.device or home
        batch = compress_batch(batch, self.virtual_coils, self.compression)
        kspace = batch.masked_kspace.to(device, torch.complex64)
        mask = batch.mask.to(device).bool()
        calib = batch.calib.reshape(-1, 2).expand(kspace.shape[0], 2).cpu()
        inside = None
        if pf.has_partial(batch.extent, kspace.shape[-2:]):
            (r0, r1), (c0, c1) = batch.extent
            inside = torch.zeros((1, 1) + tuple(kspace.shape[-2:]), dtype=torch.bool, device=device)
            inside[..., r0:r1, c0:c1] = True
        filled = self.fill(kspace, mask, batch.calibration_data.to(device, torch.complex64), calib, inside)
        if inside is not None:
            image = ops.rss(pf.batch_images(filled, batch.extent, self.partial_fourier), 1)
        else:
            image = ops.rss(ops.ifft2c(filled), 1)
        return center_crop(image, batch.crop_size).float().to(home)


def make_spirit(
    kernel: Sequence[int] | None = None,
    tikhonov: float | None = None,
    prior: bool = True,
    lam: float | None = None,
    l1: bool = False,
    iters: int | None = None,
    device: str | torch.device | None = None,
    partial_fourier: str = pf.DEFAULT_MODE,
    virtual_coils: int | None = None,
    compression: str = "svd",
    **_: object,
) -> Spirit:
    """`spirit` method (module docstring); defaults: `default_kernel`, the noise rules, CG;
    a partial-Fourier / partial-echo side is completed per coil after the fill (`recon.partial_fourier`)."""
    return Spirit(kernel, tikhonov, prior, lam, l1, iters, device, partial_fourier, virtual_coils, compression)
