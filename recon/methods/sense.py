"""`sense`: CG-SENSE with Tikhonov regularization, an app over `recon.linops` and `recon.alg`.

Solves `min_x 1/2 ||M F S x - y||^2 + lam/2 ||x||^2` per slice by conjugate gradients on the
normal equations `(A^H A + lam I) x = A^H y` from `x = 0` (as SigPy's `SenseRecon`), where
`A = M F S`: maps `S` `(B, C, H, W)`, centered orthonormal FFT `F`, mask `M`. With
`hybrid=True` the same problem runs readout-decoupled (`linops.hybrid_sense`): one CG per
readout row, each with its own coefficients.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch

from recon.alg import Callback, conjugate_gradient
from recon.linops import Sense, hybrid_sense
from recon.methods.classical import ClassicalMethod, normalized

#: lam on the normalized scale (`classical.data_scale`); 10 iterations on purpose: the iteration
#: count regularizes (more iterations amplify noise at high acceleration). How they were
#: chosen: `benchmarks/sweep_baselines.py` and `benchmarks/results/`.
DEFAULTS: dict[str, float | int] = {"lam": 0.1, "iters": 10}


def cg_sense(
    kspace: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    iters: int,
    callback: Callback | None = None,
    tol: float = 0.0,
    hybrid: bool = False,
) -> torch.Tensor:
    """CG-SENSE image `(B, 1, H, W)` complex64 at the scale of `kspace` (no normalization).

    kspace: `(B, C, H, W)` complex64 masked data; maps: `(B, C, H, W)`; mask broadcastable to
    kspace (e.g. `(B, 1, 1, W)` bool); lam: Tikhonov weight; iters, tol, callback: the
    stopping rule of `alg.conjugate_gradient` (with `hybrid`, per row and on row-shaped
    iterates `(B*H, 1, 1, W)`).
    """
    if hybrid:
        op, y = hybrid_sense(kspace, maps, mask)
    else:
        op, y = Sense(maps, mask), kspace

    def normal_op(x: torch.Tensor) -> torch.Tensor:
        return op.normal(x) + lam * x

    x = conjugate_gradient(normal_op, op.adjoint(y), iters, tol, callback=callback)
    return op.to_image(x) if hybrid else x


def sense_recon(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int, hybrid: bool = False) -> torch.Tensor:
    """Scale-invariant CG-SENSE: solve on k-space divided by `data_scale`, scale back."""
    return normalized(cg_sense, kspace, maps, mask, lam, iters, hybrid=hybrid)


class _Sense:
    """`sense_recon` with the readout-decoupled choice fixed (picklable, unlike a lambda)."""

    def __init__(self, hybrid: bool) -> None:
        self.hybrid = bool(hybrid)

    def __call__(self, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
        return sense_recon(kspace, maps, mask, lam, iters, hybrid=self.hybrid)


def make_sense(
    lam: float | None = None,
    iters: int | None = None,
    device: str | torch.device | None = None,
    espirit: Mapping[str, Any] | None = None,
    hybrid: bool = False,
    **_: object,
) -> ClassicalMethod:
    """`sense` method; lam/iters default to `DEFAULTS`, device None = the batch's, hybrid as `cg_sense`."""
    return ClassicalMethod.build(_Sense(hybrid), DEFAULTS, lam, iters, device, espirit)
