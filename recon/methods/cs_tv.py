"""`cs-tv`: total-variation compressed sensing on the SENSE model by PDHG, an app over the layers.

`min_x 1/2 ||A x - y||^2 + lam ||G x||_1`, `A = M F S` (`linops.Sense`), G circular forward
differences along rows and columns (`linops.FiniteDifference`; anisotropic TV on complex
magnitudes), by `alg.pdhg` on `K = [A; G]` with the duals `prox.L2DataDual` and
`prox.TVDual`: the same iteration as SigPy's `TotalVariationRecon` at `sigma = 1`.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from recon.alg import Callback, batch_dot, pdhg
from recon.linops import FiniteDifference, Sense, Stack
from recon.methods.classical import ClassicalMethod, normalized
from recon.prox import L2DataDual, Separable, TVDual

#: lam on the normalized scale; TV runs until its PDHG has converged (100 iterations), see
#: `benchmarks/sweep_baselines.py` and `benchmarks/results/`.
DEFAULTS: dict[str, float | int] = {"lam": 0.003, "iters": 100}


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


def tv_recon(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    """Scale-invariant PDHG TV: solve on k-space / `data_scale`, scale back."""
    return normalized(pdhg_tv, kspace, maps, mask, lam, iters)


def make_cs_tv(
    lam: float | None = None,
    iters: int | None = None,
    device: str | torch.device | None = None,
    espirit: Mapping[str, Any] | None = None,
    **_: object,
) -> ClassicalMethod:
    """`cs-tv` method; lam/iters default to `DEFAULTS`, device None = the batch's."""
    return ClassicalMethod.build(tv_recon, DEFAULTS, lam, iters, device, espirit)
