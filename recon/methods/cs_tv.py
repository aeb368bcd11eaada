"""`cs-tv`: total-variation compressed sensing on the SENSE model by PDHG, an app over the layers.

`min_x 1/2 ||A x - y||^2 + lam ||G x||_1`, `A = M F S` (`linops.Sense`), G circular forward
differences along rows and columns (`linops.FiniteDifference`; anisotropic TV on complex
magnitudes), by `alg.pdhg` on `K = [A; G]` with the duals `prox.L2DataDual` and
`prox.TVDual`: the same iteration as SigPy's `TotalVariationRecon` at `sigma = 1`.

Parameters by rule (`tv_rule`): on data normalized by `classical.data_scale` (BART's scale),
`lam = C_TV sigma_n`, with `sigma_n` the slice's complex noise std per k-space sample
(`recon.noise.estimate_noise_sigma` over the scale). The TV weight trades the data misfit,
whose size is set by the noise (`||A x - y|| ~ sqrt(m) sigma_n` at the true image), against
the image's edges (Rudin-Osher-Fatemi: the weight is the Lagrange multiplier of the
noise-level constraint); a weight proportional to the noise level gives the same balance at
every SNR and data scale. `C_TV = 0.1` was fixed on the tuning split only (seeds 2000+, simulated
phantom and MNI152 template, 4x and 8x; `benchmarks/tune_rules.py`,
`benchmarks/results/tune_rules_*.md`).

Stopping rule: PDHG from zero runs `ITERS` (100) iterations, fixed with `C_TV` on the tuning
split; there SSIM still rises from 50 to 100 iterations at `C_TV` on both sources (the
iteration approaches the minimizer; the noise-level weight, not the count, regularizes). An
explicit `iters` runs exactly that many.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from recon.alg import Callback, batch_dot, pdhg
from recon.linops import FiniteDifference, Sense, Stack
from recon.methods.classical import ClassicalMethod, normalized
from recon.partial_fourier import DEFAULT_MODE
from recon.prox import L2DataDual, Separable, TVDual

#: The constant of the noise rule (module docstring), fixed on the tuning split.
C_TV = 0.1
ITERS = 100

#: The iteration count of the default stopping rule (module docstring).
DEFAULTS: dict[str, float | int] = {"iters": ITERS}


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


def tv_rule(sigma_n: float) -> float:
    """TV weight `C_TV sigma_n` from the normalized complex noise std per k-space sample."""
    return C_TV * float(sigma_n)


def tv_recon(
    kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int,
    sigma: float | None = None, scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Scale-invariant PDHG TV: solve on k-space / `data_scale` (or `scale`), scale back (sigma: unused, the stop is the iteration count)."""
    return normalized(pdhg_tv, kspace, maps, mask, lam, iters, scale=scale)


def make_cs_tv(
    lam: float | None = None,
    iters: int | None = None,
    device: str | torch.device | None = None,
    espirit: Mapping[str, Any] | None = None,
    partial_fourier: str = DEFAULT_MODE,
    virtual_coils: int | None = None,
    compression: str = "svd",
    combine: str = "rss",
    **_: object,
) -> ClassicalMethod:
    """`cs-tv` method; lam None = `tv_rule` per slice, iters None = `DEFAULTS`; device None = the batch's.

    partial_fourier: pocs | homodyne | zero, on the combined image (`recon.partial_fourier`).
    virtual_coils, compression: coil compression (svd | gcc) before calibration (`methods.coils`; None: all coils).
    combine: rss (default) | sense, how the output magnitude is formed (`recon.methods.classical`).
    """
    method = ClassicalMethod.build(tv_recon, DEFAULTS, lam, iters, device, espirit, tv_rule, partial_fourier, virtual_coils, compression, combine)
    method.readout_crop = True  # solve on the readout FOV (`classical` module docstring)
    return method
