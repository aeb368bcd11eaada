"""`sense`: CG-SENSE with Tikhonov regularization, an app over `recon.linops` and `recon.alg`.

Solves `min_x 1/2 ||M F S x - y||^2 + lam/2 ||x||^2` per slice by conjugate gradients on the
normal equations `(A^H A + lam I) x = A^H y` from `x = 0` (as SigPy's `SenseRecon`), where
`A = M F S`: maps `S` `(B, C, H, W)`, centered orthonormal FFT `F`, mask `M`. With
`hybrid=True` the same problem runs readout-decoupled (`linops.hybrid_sense`): one CG per
readout row, each with its own coefficients.

Parameters by rule (`DEFAULTS`, `tikhonov_rule`): on data normalized by `classical.data_scale`
(BART's scale: bright tissue ~1) the weight is `lam = sigma_n^2`, the MAP weight of a Gaussian
image prior of unit variance under complex Gaussian noise of std `sigma_n` per k-space sample
(`lam = sigma^2 / s^2`, `s = 1` on this scale). At SNR >= 8 that is <= 0.016, so the solution
is not shrunk (a weight of 0.1 left the object interior at 0.89 of the target).

Stopping rule: CG from `x = 0` runs `ITERS` (10) iterations. CG on an ill-conditioned
`A^H A` fits noise once the well-determined part of the image has converged, and a weight as
small as the noise rule's does not stop that, so the iteration count does (early stopping as
regularization). 10 is the count the tuning-split sweep chose for the former fixed weight
(`benchmarks/results/sweep_baselines_small.md`); at the noise-rule weight on the tuning split
(seeds 2000+) fewer iterations score a higher SSIM (3 iterations: 0.72 / 0.62 at 4x / 8x on the
phantom, against 0.63 / 0.55 at 10) but keep less of the object's intensity (0.96 / 0.93 of the
target inside the object, against 0.97 / 0.96 at 10), and more iterations amplify noise.
`cg_sense(..., sigma=...)` (and `make_sense(discrepancy=True)`) stops instead by the
discrepancy principle, at the first iterate with `||A x - y||^2 <= TAU m sigma^2` (`m` measured
samples). It is not the default: most k-space samples are noise-dominated, so the residual
reaches the noise energy within 1-3 iterations at 4x on the tuning split, and on data whose
outer readout rows hold object signal (analytic phantoms with sharp edges) the noise estimate
measures signal and stops CG after the first iteration.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from recon.alg import Callback, batch_dot, conjugate_gradient
from recon.linops import Sense, hybrid_sense
from recon.methods.classical import ClassicalMethod, normalized
from recon.partial_fourier import DEFAULT_MODE

#: The iteration count of the default stopping rule (module docstring).
ITERS = 10
DEFAULTS: dict[str, float | int] = {"iters": ITERS}

#: Discrepancy factor: stop once the residual energy is `TAU` times the expected noise energy.
TAU = 1.0


def tikhonov_rule(sigma_n: float) -> float:
    """Tikhonov weight `sigma_n^2` from the normalized complex noise std per k-space sample."""
    return float(sigma_n) ** 2


def cg_sense(
    kspace: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    iters: int,
    callback: Callback | None = None,
    tol: float = 0.0,
    hybrid: bool = False,
    sigma: float | None = None,
) -> torch.Tensor:
    """CG-SENSE image `(B, 1, H, W)` complex64 at the scale of `kspace` (no normalization).

    kspace: `(B, C, H, W)` complex64 masked data; maps: `(B, C, H, W)`; mask broadcastable to
    kspace (e.g. `(B, 1, 1, W)` bool); lam: Tikhonov weight; iters, tol, callback: the
    stopping rule of `alg.conjugate_gradient` (with `hybrid`, per row and on row-shaped
    iterates `(B*H, 1, 1, W)`). sigma: complex noise std per sample in `kspace`'s units; when
    given (> 0), CG also stops once the whole batch's data residual satisfies
    `||A x - y||^2 <= TAU m sigma^2` (discrepancy principle, `m` measured samples).
    """
    if hybrid:
        op, y = hybrid_sense(kspace, maps, mask)
    else:
        op, y = Sense(maps, mask), kspace

    def normal_op(x: torch.Tensor) -> torch.Tensor:
        return op.normal(x) + lam * x

    stop = callback
    if sigma is not None and sigma > 0:
        measured = float(mask.bool().expand(kspace.shape).sum())
        level = TAU * measured * float(sigma) ** 2

        def stop(it: int, x: torch.Tensor) -> bool:
            resid = op.forward(x) - y
            reached = float(batch_dot(resid, resid).real.sum()) <= level
            return bool(callback(it, x)) or reached if callback is not None else reached

    x = conjugate_gradient(normal_op, op.adjoint(y), iters, tol, callback=stop)
    return op.to_image(x) if hybrid else x


def sense_recon(
    kspace: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    iters: int,
    hybrid: bool = False,
    sigma: float | None = None,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scale-invariant CG-SENSE: solve on k-space divided by `data_scale` (or `scale`), scale back.

    sigma: the noise std on the normalized scale (`sigma / data_scale`), for the discrepancy stop.
    """
    return normalized(cg_sense, kspace, maps, mask, lam, iters, hybrid=hybrid, sigma=sigma, scale=scale)


class _Sense:
    """`sense_recon` with the readout-decoupled and discrepancy-stop choices fixed (picklable, unlike a lambda)."""

    def __init__(self, hybrid: bool, discrepancy: bool = False) -> None:
        self.hybrid = bool(hybrid)
        self.discrepancy = bool(discrepancy)

    def __call__(
        self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int,
        sigma: float | None = None, scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return sense_recon(kspace, maps, mask, lam, iters, hybrid=self.hybrid, sigma=sigma if self.discrepancy else None, scale=scale)


def make_sense(
    lam: float | None = None,
    iters: int | None = None,
    device: str | torch.device | None = None,
    espirit: Mapping[str, Any] | None = None,
    hybrid: bool = False,
    discrepancy: bool = False,
    partial_fourier: str = DEFAULT_MODE,
    virtual_coils: int | None = None,
    compression: str = "svd",
    combine: str = "rss",
    **_: object,
) -> ClassicalMethod:
    """`sense` method; lam None = `tikhonov_rule` per slice, iters None = `DEFAULTS`; device None = the batch's, hybrid as `cg_sense`.

    discrepancy: also stop each slice by the discrepancy principle at its measured noise level
    (only with the noise rule, lam None; module docstring).
    partial_fourier: pocs | homodyne | zero, on the combined image (`recon.partial_fourier`).
    virtual_coils, compression: coil compression (svd | gcc) before calibration (`methods.coils`; None: all coils).
    combine: rss (default) | sense, how the output magnitude is formed (`recon.methods.classical`).
    """
    method = ClassicalMethod.build(_Sense(hybrid, discrepancy), DEFAULTS, lam, iters, device, espirit, tikhonov_rule, partial_fourier, virtual_coils, compression, combine)
    method.readout_crop = bool(hybrid)  # one CG per row: the same image on the readout FOV (`classical` module docstring)
    return method
