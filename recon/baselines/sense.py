"""CG-SENSE with Tikhonov regularization, batched over slices, on `recon.ops`.

Solves `min_x 1/2 ||M F S x - y||^2 + lam/2 ||x||^2` per slice by conjugate gradients on the
normal equations `(A^H A + lam I) x = A^H y` from `x = 0` (as SigPy's `SenseRecon`), where
`A = M F S`: maps `S` `(B, C, H, W)`, centered orthonormal FFT `F`, column mask `M`.
Also the shared pieces of the iterative baselines: the SENSE operators, the per-slice data
scale (solvers run on normalized k-space so that `lam` is scale-free) and a power method.
"""

from __future__ import annotations

from typing import Callable

import torch

from recon import ops

Operator = Callable[[torch.Tensor], torch.Tensor]


def forward(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`A x = M F S x`: image `(B, 1, H, W)` -> masked coil k-space `(B, C, H, W)`."""
    k = ops.sens_expand(x, maps)
    return torch.where(mask.bool(), k, torch.zeros((), dtype=k.dtype, device=k.device))


def adjoint(k: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`A^H k = S^H F^H M k`: coil k-space `(B, C, H, W)` -> image `(B, 1, H, W)`."""
    k = torch.where(mask.bool(), k, torch.zeros((), dtype=k.dtype, device=k.device))
    return ops.sens_reduce(k, maps)


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of `<a, b>` per batch item, shaped `(B, 1, 1, 1)` to broadcast."""
    return (a.conj() * b).real.sum(dim=tuple(range(1, a.ndim)), keepdim=True)


def data_scale(kspace: torch.Tensor) -> torch.Tensor:
    """Per-slice scale `(B, 1, 1, 1)`: max of the zero-filled RSS image (1 where that is 0).

    The solvers divide k-space by it and multiply the image back, so regularization weights
    are defined on data whose zero-filled image peaks at 1, whatever the scanner's units.
    """
    peak = ops.rss(ops.ifft2c(kspace), 1).flatten(1).amax(1)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return peak.reshape(-1, 1, 1, 1)


def max_eigenvalue(normal_op: Operator, shape: tuple[int, ...], device: torch.device, iters: int = 30, seed: int = 0) -> torch.Tensor:
    """Largest eigenvalue `(B, 1, 1, 1)` of a per-slice Hermitian PSD operator, power method.

    Starts from seeded complex Gaussian noise of `shape` (`(B, 1, H, W)`); `iters` as SigPy's
    `MaxEig` default (30).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.complex64, generator=gen).to(device)
    eig = torch.ones(shape[0], 1, 1, 1, device=device)
    for _ in range(iters):
        y = normal_op(x)
        eig = batch_dot(y, y).sqrt()
        x = y / eig.clamp_min(torch.finfo(torch.float32).tiny)
    return eig


def lipschitz_bound(maps: torch.Tensor) -> torch.Tensor:
    """Upper bound `(B, 1, 1, 1)` of `max_eig(A^H A)`: `max_pixel sum_c |S_c|^2`.

    `F` is unitary and `M` a projection, so `||M F S x|| <= ||S x|| <= sqrt(bound) ||x||`;
    for unit-RSS ESPIRiT maps the bound is 1 (SigPy instead runs 30 power iterations).
    """
    bound = (maps.real**2 + maps.imag**2).sum(1).flatten(1).amax(1)
    return torch.where(bound > 0, bound, torch.ones_like(bound)).reshape(-1, 1, 1, 1)


Callback = Callable[[int, torch.Tensor], None]


def conjugate_gradient(normal_op: Operator, rhs: torch.Tensor, iters: int, callback: Callback | None = None) -> torch.Tensor:
    """`iters` CG steps on `normal_op(x) = rhs` from `x = 0`, each slice with its own steps.

    callback(i, x) is called after iteration i (1-based), e.g. to score intermediate images.
    """
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    p = r.clone()
    rz = batch_dot(r, r)
    tiny = torch.finfo(torch.float32).tiny
    for it in range(iters):
        ap = normal_op(p)
        pap = batch_dot(p, ap)
        alpha = torch.where(pap > tiny, rz / pap.clamp_min(tiny), torch.zeros_like(rz))
        x = x + alpha * p
        r = r - alpha * ap
        rz_new = batch_dot(r, r)
        beta = torch.where(rz > tiny, rz_new / rz.clamp_min(tiny), torch.zeros_like(rz))
        p = r + beta * p
        rz = rz_new
        if callback is not None:
            callback(it + 1, x)
    return x


def cg_sense(
    kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int, callback: Callback | None = None
) -> torch.Tensor:
    """CG-SENSE image `(B, 1, H, W)` complex64 at the scale of `kspace` (no normalization).

    kspace: `(B, C, H, W)` complex64 masked data; maps: `(B, C, H, W)`; mask broadcastable to
    kspace (e.g. `(B, 1, 1, W)` bool); lam: Tikhonov weight; iters: CG iterations.
    """

    def normal_op(x: torch.Tensor) -> torch.Tensor:
        return ops.normal(x, maps, mask) + lam * x

    return conjugate_gradient(normal_op, adjoint(kspace, maps, mask), iters, callback)


def sense_recon(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    """Scale-invariant CG-SENSE: solve on k-space divided by `data_scale`, scale back."""
    scale = data_scale(kspace)
    return cg_sense(kspace / scale, maps, mask, lam, iters) * scale
