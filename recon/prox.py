"""Proximal operators of the classical reconstructions, in SigPy's convention.

A proximal operator is called as `prox(alpha, v) = argmin_x 1/2 ||x - v||^2 + alpha g(x)`,
with `alpha` a float or a per-item tensor broadcastable to `v` (e.g. `(B, 1, 1, 1)`).

Step-size facts the algorithms in `recon.alg` rely on:

* `L1Wavelet`, `JointL1Wavelet` (its joint-over-coils form, L1-SPIRiT's regularizer): FISTA on `1/2 ||A x - y||^2 + lam ||W x||_1` converges for a gradient step
  `alpha <= 1 / L`, `L = max_eig(A^H A)`; for SENSE `L <= max_pixel sum_c |S_c|^2`
  (`recon.linops.Sense.lipschitz_bound`, 1 for unit-RSS ESPIRiT maps).
* `TVDual`, `L2DataDual`: TV has no closed-form prox, so TV problems run PDHG on
  `K = [A; G]` with the duals of the data term and of `lam ||.||_1`; PDHG converges for
  `tau * sigma * ||K||^2 <= 1`, with `||K||^2 <= L + ||G||^2 <= L + 8`
  (`recon.linops.FiniteDifference.norm_bound`).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from recon.linops import Coeffs, Wavelet2D, flat_coeffs, map_coeffs

Step = float | torch.Tensor


def soft_threshold(x: torch.Tensor, thresh: Step) -> torch.Tensor:
    """Complex soft thresholding `x * max(0, 1 - t / |x|)`: the prox of `t ||x||_1`."""
    mag = x.abs()
    return x * torch.clamp(1 - thresh / mag.clamp_min(torch.finfo(mag.dtype).tiny), min=0)


def _per_item(alpha: Step, ndim: int) -> Step:
    """A `(B, 1, ...)` step reshaped to broadcast against a `ndim`-dimensional coefficient array."""
    if isinstance(alpha, torch.Tensor) and alpha.ndim > 0:
        return alpha.reshape(-1, *([1] * (ndim - 1)))
    return alpha


class L1Wavelet:
    """`g(x) = lam ||W x||_1` on `(B, 1, H, W)` images, W the db4 wavelet (`linops.Wavelet2D`).

    `prox(alpha, v) = W^H soft(W v, alpha lam)`, the step SigPy's `L1WaveletRecon` takes; it is
    the exact prox when `W` is unitary (with zero extension `W^H W = I` holds, `W W^H = I` only
    up to the boundary coefficients).

    random_shift: where > 0, each call circularly shifts `v` by a random offset in
    `[0, random_shift)` per axis before `W` and back after `W^H` (BART's random wavelet shifts,
    cycle spinning), so that over the iterations no grid alignment of the non-shift-invariant
    transform is preferred; the offsets come from a generator seeded with `seed` (deterministic
    per instance). `value` stays the unshifted `lam ||W x||_1`.
    """

    def __init__(self, shape: tuple[int, int], lam: float, wave_name: str = "db4", random_shift: int = 0, seed: int = 0) -> None:
        if random_shift < 0:
            raise ValueError(f"random_shift must be >= 0, got {random_shift}")
        self.wavelet = Wavelet2D(shape, wave_name)
        self.lam = float(lam)
        self.random_shift = int(random_shift)
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, alpha: Step, v: torch.Tensor) -> torch.Tensor:
        thresh = alpha * self.lam
        shift = (0, 0)
        if self.random_shift > 1:
            shift = tuple(int(s) for s in torch.randint(0, self.random_shift, (2,), generator=self.generator))
            v = torch.roll(v, shift, dims=(-2, -1))
        coeffs: Coeffs = self.wavelet.forward(v[:, 0])
        shrunk = map_coeffs(coeffs, lambda c: soft_threshold(c, _per_item(thresh, c.ndim)))
        out = self.wavelet.adjoint(shrunk).unsqueeze(1)
        return torch.roll(out, (-shift[0], -shift[1]), dims=(-2, -1)) if shift != (0, 0) else out

    def value(self, x: torch.Tensor) -> torch.Tensor:
        """`lam ||W x||_1` per item, `(B,)`."""
        coeffs = flat_coeffs(self.wavelet.forward(x[:, 0]))
        return self.lam * sum(c.abs().flatten(1).sum(1) for c in coeffs)


class JointL1Wavelet:
    """`g(z) = lam sum_k ||(W z_c)_k||_2` over coils `c`, for coil images `(B, C, H, W)`.

    `prox(alpha, v) = W^H groupsoft(W v, alpha lam)`: each wavelet coefficient's coil vector is
    shrunk by its norm (exact prox where `W` is unitary, as `L1Wavelet`).
    """

    def __init__(self, shape: tuple[int, int], lam: float, wave_name: str = "db4") -> None:
        self.wavelet = Wavelet2D(shape, wave_name)
        self.lam = float(lam)

    def __call__(self, alpha: Step, v: torch.Tensor) -> torch.Tensor:
        batch, coils, height, width = v.shape
        thresh = torch.as_tensor(alpha * self.lam, dtype=torch.float32, device=v.device).reshape(-1, 1, 1, 1)

        def shrink(c: torch.Tensor) -> torch.Tensor:
            grouped = c.reshape(batch, coils, *c.shape[-2:])
            norm = (grouped.real**2 + grouped.imag**2).sum(1, keepdim=True).sqrt()
            scale = torch.clamp(1 - thresh / norm.clamp_min(torch.finfo(norm.dtype).tiny), min=0)
            return (grouped * scale).reshape(c.shape)

        coeffs: Coeffs = self.wavelet.forward(v.reshape(batch * coils, height, width))
        return self.wavelet.adjoint(map_coeffs(coeffs, shrink)).reshape(batch, coils, height, width)


class TVDual:
    """Prox of `sigma f^*` for `f = lam ||.||_1` (pointwise complex magnitudes): projection onto
    `{|u| <= lam}`, whatever `sigma`. With `G` (`linops.FiniteDifference`) it is the TV term of
    PDHG; `lam = 0` gives the zero dual."""

    def __init__(self, lam: float) -> None:
        self.lam = float(lam)

    def __call__(self, sigma: Step, v: torch.Tensor) -> torch.Tensor:
        if self.lam <= 0:
            return torch.zeros_like(v)
        return v / torch.clamp(v.abs() / self.lam, min=1)


class L2DataDual:
    """Prox of `sigma f^*` for the data term `f(z) = 1/2 ||z - y||^2`: `(v - sigma y) / (1 + sigma)`."""

    def __init__(self, y: torch.Tensor) -> None:
        self.y = y

    def __call__(self, sigma: Step, v: torch.Tensor) -> torch.Tensor:
        return (v - sigma * self.y) / (1 + sigma)


class Separable:
    """Prox of a separable sum `sum_i g_i(x_i)` on a list of parts (a `linops.Stack`'s range)."""

    def __init__(self, parts: Sequence[Any]) -> None:
        self.parts = list(parts)

    def __call__(self, alpha: Step, v: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        return [p(alpha, x) for p, x in zip(self.parts, v)]
