"""The solvers of the model-based methods on the SENSE model `A = M F S`, with their noise rules.

* `cg_sense` (sense): `min_x 1/2 ||A x - y||^2 + lam/2 ||x||^2` by conjugate gradients on the
  normal equations from `x = 0` (SigPy's `SenseRecon`); `hybrid=True` runs it readout-decoupled
  (`linops.hybrid_sense`), `sigma` adds the discrepancy-principle stop. Rule: `lam = sigma_n^2`.
* `fista_l1_wavelet` (cs): `min_x 1/2 ||A x - y||^2 + lam ||W x||_1`, W the db4 wavelet, by
  FISTA (SigPy's `L1WaveletRecon` when `restart` is None and `random_shift` 0; the method uses
  BART's random shifts, `RANDOM_SHIFT`). Rule: `lam = C_L1 sigma_n`.
* `pdhg_tv` (cs-tv): `min_x 1/2 ||A x - y||^2 + lam ||G x||_1` (anisotropic TV) by PDHG on
  `K = [A; G]` (SigPy's `TotalVariationRecon` at `sigma = 1`). Rule: `lam = C_TV sigma_n`.

`sigma_n` is a slice's complex noise std per k-space sample on data normalized by
`recon.noise.data_scale`. How the rules, their constants and the iteration counts were chosen
(tuning split only): docs/methods/model_based.md.
"""

from __future__ import annotations

from typing import Literal

import torch

from recon.alg import Callback, batch_dot, conjugate_gradient, fista, pdhg
from recon.linops import FiniteDifference, Sense, Stack, hybrid_sense
from recon.methods.classical import normalized
from recon.prox import L1Wavelet, L2DataDual, Separable, TVDual

#: Discrepancy factor: stop once the residual energy is `TAU` times the expected noise energy.
TAU = 1.0
#: The constant of cs's noise rule, fixed on the tuning split.
C_L1 = 0.3
#: Random wavelet shifts per FISTA iteration of cs, in [0, 8) per axis (BART `pics -l1`'s cycle spinning).
RANDOM_SHIFT = 8
#: The constant of cs-tv's noise rule, fixed on the tuning split.
C_TV = 0.1

Restart = Literal["gradient", "function"] | None


def tikhonov_rule(sigma_n: float) -> float:
    """Tikhonov weight `sigma_n^2` from the normalized complex noise std per k-space sample."""
    return float(sigma_n) ** 2


def l1_rule(sigma_n: float) -> float:
    """L1-wavelet weight `C_L1 sigma_n` from the normalized complex noise std per k-space sample."""
    return C_L1 * float(sigma_n)


def tv_rule(sigma_n: float) -> float:
    """TV weight `C_TV sigma_n` from the normalized complex noise std per k-space sample."""
    return C_TV * float(sigma_n)


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


class SenseSolver:
    """`sense_recon` with the readout-decoupled and discrepancy-stop choices fixed (a `classical.Solver`)."""

    def __init__(self, hybrid: bool, discrepancy: bool = False) -> None:
        self.hybrid = bool(hybrid)
        self.discrepancy = bool(discrepancy)

    def __call__(
        self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int,
        sigma: float | None = None, scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return sense_recon(kspace, maps, mask, lam, iters, hybrid=self.hybrid, sigma=sigma if self.discrepancy else None, scale=scale)


def l1_wavelet_objective(x: torch.Tensor, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, wave_name: str = "db4") -> torch.Tensor:
    """`1/2 ||A x - y||^2 + lam ||W x||_1` per slice, `(B,)` float."""
    resid = Sense(maps, mask).forward(x) - kspace
    return 0.5 * batch_dot(resid, resid).flatten() + L1Wavelet(tuple(x.shape[-2:]), lam, wave_name).value(x)


def fista_l1_wavelet(
    kspace: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    iters: int,
    step: torch.Tensor | float | None = None,
    wave_name: str = "db4",
    callback: Callback | None = None,
    tol: float = 0.0,
    restart: Restart = None,
    random_shift: int = 0,
) -> torch.Tensor:
    """FISTA L1-wavelet image `(B, 1, H, W)` complex64 at the scale of `kspace`.

    kspace, maps: `(B, C, H, W)`; mask broadcastable (e.g. `(B, 1, 1, W)` bool). step: the
    gradient step (default `1 / Sense.lipschitz_bound()`, 1 for ESPIRiT maps; SigPy estimates
    `max_eig(A^H A)` instead, pass `alg.max_eigenvalue` to reproduce it), per slice. iters, tol,
    restart, callback: as `alg.fista`. random_shift: random circular wavelet shifts per
    iteration (`prox.L1Wavelet`; 0: none, SigPy's iteration; the method uses `RANDOM_SHIFT`).
    """
    op = Sense(maps, mask)
    if step is None:
        step = 1 / op.lipschitz_bound()
    step_t = torch.as_tensor(step, dtype=torch.float32, device=kspace.device).reshape(-1, 1, 1, 1)
    reg = L1Wavelet(tuple(kspace.shape[-2:]), lam, wave_name, random_shift)
    aty = op.adjoint(kspace)

    def gradient(z: torch.Tensor) -> torch.Tensor:
        return op.normal(z) - aty

    def objective(x: torch.Tensor) -> torch.Tensor:
        return l1_wavelet_objective(x, kspace, maps, mask, lam, wave_name)

    return fista(gradient, reg, torch.zeros_like(aty), step_t, iters, tol, restart, objective, callback)


class L1WaveletSolver:
    """`fista_l1_wavelet` on normalized data with a fixed restart rule and `RANDOM_SHIFT` (a `classical.Solver`)."""

    def __init__(self, restart: Restart) -> None:
        self.restart = restart

    def __call__(
        self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int,
        sigma: float | None = None, scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return normalized(fista_l1_wavelet, kspace, maps, mask, lam, iters, restart=self.restart, random_shift=RANDOM_SHIFT, scale=scale)


def l1_wavelet_recon(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    """Scale-invariant FISTA L1-wavelet: solve on k-space / `data_scale`, scale back."""
    return L1WaveletSolver(None)(kspace, maps, mask, lam, iters)


def tv_objective(x: torch.Tensor, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """`1/2 ||A x - y||^2 + lam ||G x||_1` per slice, `(B,)` float."""
    resid = Sense(maps, mask).forward(x) - kspace
    data = 0.5 * batch_dot(resid, resid).flatten()
    return data + lam * FiniteDifference().forward(x).abs().flatten(1).sum(1)


def pdhg_tv(
    kspace: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    iters: int,
    tau: torch.Tensor | float | None = None,
    sigma: float = 0.03,
    callback: Callback | None = None,
    tol: float = 0.0,
) -> torch.Tensor:
    """PDHG total-variation image `(B, 1, H, W)` complex64 at the scale of `kspace`.

    tau default: `1 / (sigma (Sense.lipschitz_bound() + FiniteDifference.norm_bound))` per
    slice, so `tau sigma ||K||^2 <= 1`. sigma 0.03 balances the primal and dual steps for data
    normalized by `data_scale` (unit k-space scale, so the dual step on the data term is small
    against the gradient term); `sigma=1.0` reproduces SigPy. Measurements:
    `benchmarks/results/`. iters, tol, callback: as `alg.pdhg`.
    """
    batch, _, height, width = kspace.shape
    sense, grad = Sense(maps, mask), FiniteDifference()
    if tau is None:
        tau = 1 / (sigma * (sense.lipschitz_bound() + grad.norm_bound))
    tau_t = torch.as_tensor(tau, dtype=torch.float32, device=kspace.device).reshape(-1, 1, 1, 1)
    x0 = torch.zeros(batch, 1, height, width, dtype=kspace.dtype, device=kspace.device)
    u0 = [torch.zeros_like(kspace), torch.zeros(batch, 2, height, width, dtype=kspace.dtype, device=kspace.device)]
    dual = Separable([L2DataDual(kspace), TVDual(lam)])
    return pdhg(Stack([sense, grad]), dual, x0, u0, tau_t, sigma, iters, tol=tol, callback=callback)


def tv_recon(
    kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int,
    sigma: float | None = None, scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scale-invariant PDHG TV: solve on k-space / `data_scale` (or `scale`), scale back (sigma: unused, the stop is the iteration count)."""
    return normalized(pdhg_tv, kspace, maps, mask, lam, iters, scale=scale)
