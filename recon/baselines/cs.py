"""Compressed sensing on the SENSE model, batched over slices, on `recon.ops` (CPU/GPU).

* `fista_l1_wavelet`: `min_x 1/2 ||A x - y||^2 + lam ||W x||_1`, W the db4 wavelet, by FISTA
  with prox `W^H soft(W x)`, the same iteration as SigPy's `L1WaveletRecon`
  (GradientMethod, accelerate=True).
* `pdhg_tv`: `min_x 1/2 ||A x - y||^2 + lam ||G x||_1`, G circular forward differences along
  rows and columns (anisotropic TV, complex magnitudes), by PDHG on `[A; G]` with
  `sigma = 1`, the same iteration as SigPy's `TotalVariationRecon`.

Step sizes: SigPy estimates `max_eig` by 30 power iterations (30 extra normal operators);
here the default is the closed-form Lipschitz bound `max_pixel sum_c |S_c|^2` (1 for
ESPIRiT maps), plus `||G||^2 <= 8` for TV. Pass `step`/`tau` (e.g. from `max_eigenvalue`)
to reproduce SigPy's rule exactly.

`A = M F S` (see `recon.baselines.sense`). The `*_recon` wrappers normalize k-space by
`data_scale` first, so `lam` is defined on data whose zero-filled image peaks at 1.
"""

from __future__ import annotations

import torch

from recon import ops
from recon.baselines.sense import Callback, adjoint, batch_dot, data_scale, forward, lipschitz_bound
from recon.baselines.wavelet import Wavelet2D, map_coeffs, soft_threshold


def fista_l1_wavelet(
    kspace: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    iters: int,
    step: torch.Tensor | float | None = None,
    wave_name: str = "db4",
    callback: Callback | None = None,
) -> torch.Tensor:
    """FISTA L1-wavelet image `(B, 1, H, W)` complex64 at the scale of `kspace`.

    kspace, maps: `(B, C, H, W)`; mask broadcastable (e.g. `(B, 1, 1, W)` bool). step: the
    gradient step (default `1 / lipschitz_bound(maps)`), per slice. callback(i, x) after
    iteration i.
    """
    wavelet = Wavelet2D(tuple(kspace.shape[-2:]), wave_name)

    def normal_op(x: torch.Tensor) -> torch.Tensor:
        return ops.normal(x, maps, mask)

    if step is None:
        step = 1 / lipschitz_bound(maps)
    step_t = torch.as_tensor(step, dtype=torch.float32, device=kspace.device).reshape(-1, 1, 1, 1)
    thresh = (lam * step_t).reshape(-1, 1, 1)
    aty = adjoint(kspace, maps, mask)
    x = torch.zeros_like(aty)
    z = x
    t = 1.0
    for it in range(iters):
        x_old = x
        v = z - step_t * (normal_op(z) - aty)
        coeffs = wavelet.forward(v[:, 0])
        x = wavelet.adjoint(map_coeffs(coeffs, lambda c: soft_threshold(c, thresh.reshape(-1, *([1] * (c.ndim - 1)))))).unsqueeze(1)
        t_old = t
        t = (1 + (1 + 4 * t_old**2) ** 0.5) / 2
        z = x + ((t_old - 1) / t) * (x - x_old)
        if callback is not None:
            callback(it + 1, x)
    return x


def finite_diff(x: torch.Tensor) -> torch.Tensor:
    """`G x`: circular differences `x - roll(x, 1)` along rows and cols, `(B,1,H,W)` -> `(B,2,H,W)`."""
    return torch.cat([x - torch.roll(x, 1, -2), x - torch.roll(x, 1, -1)], dim=1)


def finite_diff_adjoint(u: torch.Tensor) -> torch.Tensor:
    """`G^H u`: `(B,2,H,W)` -> `(B,1,H,W)`."""
    rows, cols = u[:, :1], u[:, 1:]
    return rows - torch.roll(rows, -1, -2) + cols - torch.roll(cols, -1, -1)


def tv_objective(x: torch.Tensor, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """`1/2 ||A x - y||^2 + lam ||G x||_1` per slice, `(B,)` float."""
    resid = forward(x, maps, mask) - kspace
    data = 0.5 * batch_dot(resid, resid).flatten()
    return data + lam * finite_diff(x).abs().flatten(1).sum(1)


def l1_wavelet_objective(x: torch.Tensor, kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float) -> torch.Tensor:
    """`1/2 ||A x - y||^2 + lam ||W x||_1` per slice, `(B,)` float."""
    resid = forward(x, maps, mask) - kspace
    coeffs = Wavelet2D(tuple(x.shape[-2:])).forward(x[:, 0])
    flat = [coeffs[0]] + [d for level in coeffs[1:] for d in level]
    l1 = sum(c.abs().flatten(1).sum(1) for c in flat)
    return 0.5 * batch_dot(resid, resid).flatten() + lam * l1


def pdhg_tv(
    kspace: torch.Tensor,
    maps: torch.Tensor,
    mask: torch.Tensor,
    lam: float,
    iters: int,
    tau: torch.Tensor | float | None = None,
    sigma: float = 0.03,
    callback: Callback | None = None,
) -> torch.Tensor:
    """PDHG total-variation image `(B, 1, H, W)` complex64 at the scale of `kspace`.

    Dual variables: `u1` in k-space (data term, prox of the conjugate of `1/2||. - y||^2`),
    `u2` on the gradient (projection onto `|u2| <= lam`). tau default: `1 / (sigma *
    (lipschitz_bound(maps) + 8))`, per slice. callback(i, x) after iteration i.
    sigma 0.03 balances the primal and dual steps for data normalized by `data_scale` (unit
    k-space scale, so the dual step on the data term is small against the gradient term);
    pass `sigma=1.0` to reproduce SigPy. Measurements: `benchmarks/results/`.
    """
    batch, _, height, width = kspace.shape
    if tau is None:
        tau = 1 / (sigma * (lipschitz_bound(maps) + 8))
    tau_t = torch.as_tensor(tau, dtype=torch.float32, device=kspace.device).reshape(-1, 1, 1, 1)
    x = torch.zeros(batch, 1, height, width, dtype=kspace.dtype, device=kspace.device)
    x_ext = x
    u1 = torch.zeros_like(kspace)
    u2 = torch.zeros(batch, 2, height, width, dtype=kspace.dtype, device=kspace.device)
    for it in range(iters):
        u1 = (u1 + sigma * forward(x_ext, maps, mask) - sigma * kspace) / (1 + sigma)
        u2 = u2 + sigma * finite_diff(x_ext)
        u2 = u2 / torch.clamp(u2.abs() / lam, min=1) if lam > 0 else torch.zeros_like(u2)
        x_old = x
        x = x - tau_t * (adjoint(u1, maps, mask) + finite_diff_adjoint(u2))
        x_ext = 2 * x - x_old
        if callback is not None:
            callback(it + 1, x)
    return x


def l1_wavelet_recon(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    """Scale-invariant FISTA L1-wavelet: solve on k-space / `data_scale`, scale back."""
    scale = data_scale(kspace)
    return fista_l1_wavelet(kspace / scale, maps, mask, lam, iters) * scale


def tv_recon(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    """Scale-invariant PDHG TV: solve on k-space / `data_scale`, scale back."""
    scale = data_scale(kspace)
    return pdhg_tv(kspace / scale, maps, mask, lam, iters) * scale
