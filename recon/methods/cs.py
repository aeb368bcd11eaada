"""`cs`: L1-wavelet compressed sensing on the SENSE model by FISTA, an app over the layers.

`min_x 1/2 ||A x - y||^2 + lam ||W x||_1`, `A = M F S` (`linops.Sense`), W the db4 wavelet
(`prox.L1Wavelet`), by `alg.fista`: the same iteration as SigPy's `L1WaveletRecon`
(GradientMethod, accelerate=True) when `restart` is None.

Step: SigPy estimates `max_eig(A^H A)` by 30 power iterations (30 extra normal operators);
here the default is the closed-form bound `Sense.lipschitz_bound` (1 for ESPIRiT maps). Pass
`step` (e.g. from `alg.max_eigenvalue`) to reproduce SigPy's rule exactly.
"""

from __future__ import annotations

from typing import Any, Literal, Mapping

import torch

from recon.alg import Callback, batch_dot, fista
from recon.linops import Sense
from recon.methods.classical import ClassicalMethod, normalized
from recon.prox import L1Wavelet

#: lam on the normalized scale; 10 iterations on purpose (early stopping regularizes), see
#: `benchmarks/sweep_baselines.py` and `benchmarks/results/`.
DEFAULTS: dict[str, float | int] = {"lam": 0.003, "iters": 10}

Restart = Literal["gradient", "function"] | None


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
) -> torch.Tensor:
    """FISTA L1-wavelet image `(B, 1, H, W)` complex64 at the scale of `kspace`.

    kspace, maps: `(B, C, H, W)`; mask broadcastable (e.g. `(B, 1, 1, W)` bool). step: the
    gradient step (default `1 / Sense.lipschitz_bound()`), per slice. iters, tol, restart,
    callback: as `alg.fista`.
    """
    op = Sense(maps, mask)
    if step is None:
        step = 1 / op.lipschitz_bound()
    step_t = torch.as_tensor(step, dtype=torch.float32, device=kspace.device).reshape(-1, 1, 1, 1)
    reg = L1Wavelet(tuple(kspace.shape[-2:]), lam, wave_name)
    aty = op.adjoint(kspace)

    def gradient(z: torch.Tensor) -> torch.Tensor:
        return op.normal(z) - aty

    def objective(x: torch.Tensor) -> torch.Tensor:
        return l1_wavelet_objective(x, kspace, maps, mask, lam, wave_name)

    return fista(gradient, reg, torch.zeros_like(aty), step_t, iters, tol, restart, objective, callback)


class _L1Wavelet:
    """`fista_l1_wavelet` on normalized data with a fixed restart rule (picklable)."""

    def __init__(self, restart: Restart) -> None:
        self.restart = restart

    def __call__(self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
        return normalized(fista_l1_wavelet, kspace, maps, mask, lam, iters, restart=self.restart)


def l1_wavelet_recon(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    """Scale-invariant FISTA L1-wavelet: solve on k-space / `data_scale`, scale back."""
    return _L1Wavelet(None)(kspace, maps, mask, lam, iters)


def make_cs(
    lam: float | None = None,
    iters: int | None = None,
    device: str | torch.device | None = None,
    espirit: Mapping[str, Any] | None = None,
    restart: Restart = None,
    **_: object,
) -> ClassicalMethod:
    """`cs` method; lam/iters default to `DEFAULTS`, device None = the batch's, restart as `alg.fista`."""
    return ClassicalMethod.build(_L1Wavelet(restart), DEFAULTS, lam, iters, device, espirit)
