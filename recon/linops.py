"""Linear operators of the classical reconstructions, as small objects with forward/adjoint/normal.

Every operator maps batched complex64 tensors and keeps the batch axis first, so that the
algorithms in `recon.alg` treat each batch item as its own problem:

* `Sense(maps, mask)`: `A = M F S`, image `(B, 1, H, W)` -> masked coil k-space `(B, C, H, W)`,
  on `recon.ops` (torch or the CuPy kernels). `normal` is `ops.normal` (one fused call).
* `hybrid_sense(kspace, maps, mask)`: the same model readout-decoupled. With a column mask the
  readout is fully sampled, so one 1-D inverse FFT along it turns the problem into `H`
  independent 1-D problems along the phase-encode axis (rows become batch items).
* `FiniteDifference()`: circular forward differences along rows and columns (TV), `||G||^2 <= 8`.
* `Wavelet2D(shape)`: the db4 wavelet transform as SigPy's `sp.linop.Wavelet`, coefficient lists.
* `CoilExpand(maps)`, `FFT2c()`, `Mask(mask)`: the factors of `Sense`; `Mask @ FFT2c @ CoilExpand`
  composes them (`A @ B` is `A` after `B`) and equals `Sense` (`tests/test_layers.py`).
* `Stack([A, B])`: `[A; B]`, list-valued forward, summed adjoint (PDHG on several terms).
* `NUFFT(trajectory, shape)`: non-Cartesian k-space on finufft (`recon.nufft`; trajectory in
  cycles per FOV, `recon.trajectory`), images `(..., H, W)` -> samples `(..., *S)`, optional
  sample weights, `normal` by Toeplitz embedding. `NufftSense(maps, nufft)`: `A = F_nu S`.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import ptwt
import pywt
import torch

from recon import ops
from recon.core import fft2c, ifft2c, ifftc
from recon.nufft import FinufftPlans, check_weights, nufft, nufft_adjoint, toeplitz_kernel, toeplitz_normal


def _zero_outside(mask: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    return torch.where(mask.bool(), k, torch.zeros((), dtype=k.dtype, device=k.device))


class Linop:
    """A linear operator: `forward(x) = A x`, `adjoint(y) = A^H y`, `normal(x) = A^H A x`."""

    def forward(self, x: Any) -> Any:
        """`A x`."""
        raise NotImplementedError

    def adjoint(self, y: Any) -> Any:
        """`A^H y`."""
        raise NotImplementedError

    def normal(self, x: Any) -> Any:
        """`A^H A x` (subclasses override it where a fused form is cheaper)."""
        return self.adjoint(self.forward(x))

    def __call__(self, x: Any) -> Any:
        return self.forward(x)

    def __matmul__(self, other: Linop) -> Compose:
        return Compose(self, other)


class Compose(Linop):
    """`outer @ inner`: `forward = outer(inner(x))`, `adjoint = inner^H(outer^H(y))`."""

    def __init__(self, outer: Linop, inner: Linop) -> None:
        self.outer, self.inner = outer, inner

    def forward(self, x: Any) -> Any:
        return self.outer.forward(self.inner.forward(x))

    def adjoint(self, y: Any) -> Any:
        return self.inner.adjoint(self.outer.adjoint(y))


class Stack(Linop):
    """Vertical stack `[A_1; ...; A_n]` of operators on one input: forward returns a list."""

    def __init__(self, parts: Sequence[Linop]) -> None:
        self.parts = list(parts)

    def forward(self, x: Any) -> list[Any]:
        return [p.forward(x) for p in self.parts]

    def adjoint(self, y: Sequence[Any]) -> Any:
        out = self.parts[0].adjoint(y[0])
        for p, v in zip(self.parts[1:], y[1:]):
            out = out + p.adjoint(v)
        return out

    def normal(self, x: Any) -> Any:
        out = self.parts[0].normal(x)
        for p in self.parts[1:]:
            out = out + p.normal(x)
        return out


class CoilExpand(Linop):
    """`S`: image `(B, 1, H, W)` -> coil images `maps * x` `(B, C, H, W)`; adjoint sums `conj(maps) y`."""

    def __init__(self, maps: torch.Tensor) -> None:
        self.maps = maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maps * x

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.maps.conj() * y).sum(1, keepdim=True)


class FFT2c(Linop):
    """Centered orthonormal 2-D FFT over the last two axes (unitary: `normal` is the identity)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return ifft2c(y)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Mask(Linop):
    """`M`: zero every sample where `mask` (bool, broadcastable) is False; self-adjoint projection."""

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask.bool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _zero_outside(self.mask, x)

    adjoint = forward
    normal = forward


class Sense(Linop):
    """`A = M F S` on `recon.ops`: maps `(B, C, H, W)`, mask broadcastable to k-space.

    The mask is `(B, 1, 1, W)` sampled columns or `(B, 1, H, W)` sampled locations.
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor) -> None:
        self.maps = maps
        self.mask = mask.bool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image `(B, 1, H, W)` -> masked coil k-space `(B, C, H, W)`."""
        return _zero_outside(self.mask, ops.sens_expand(x, self.maps))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Coil k-space `(B, C, H, W)` -> image `(B, 1, H, W)`."""
        return ops.sens_reduce(_zero_outside(self.mask, y), self.maps)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """`A^H A x` by `ops.normal` (one call; a fused kernel on the CuPy backend)."""
        return ops.normal(x, self.maps, self.mask)

    def lipschitz_bound(self) -> torch.Tensor:
        """Upper bound `(B, 1, 1, 1)` of `max_eig(A^H A)`: `max_pixel sum_c |S_c|^2`.

        `F` is unitary and `M` a projection, so `||M F S x|| <= ||S x|| <= sqrt(bound) ||x||`;
        for unit-RSS ESPIRiT maps the bound is 1 (SigPy instead runs 30 power iterations,
        `recon.alg.max_eigenvalue`). A slice with all-zero maps gets 1.
        """
        bound = (self.maps.real**2 + self.maps.imag**2).sum(1).flatten(1).amax(1)
        return torch.where(bound > 0, bound, torch.ones_like(bound)).reshape(-1, 1, 1, 1)


class HybridSense(Sense):
    """SENSE on readout-decoupled rows: item `b * H + r` is readout row `r` of slice `b`.

    Shapes are `(B*H, 1, 1, W)` images and `(B*H, C, 1, W)` k-space, so `recon.ops`' 2-D FFT
    over `(1, W)` is the 1-D FFT along the phase encodes, and every algorithm in `recon.alg`
    runs one independent problem (own step sizes, own CG coefficients) per row. Built by
    `hybrid_sense`; `to_image` puts rows back as `(B, 1, H, W)`.
    """

    def __init__(self, maps: torch.Tensor, mask: torch.Tensor, rows: int) -> None:
        super().__init__(maps, mask)
        self.rows = int(rows)

    def to_image(self, x: torch.Tensor) -> torch.Tensor:
        """Per-row images `(B*H, 1, 1, W)` -> `(B, 1, H, W)`."""
        return x.reshape(-1, 1, self.rows, x.shape[-1])


def hybrid_sense(kspace: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> tuple[HybridSense, torch.Tensor]:
    """The readout-decoupled SENSE problem of `(B, C, H, W)` k-space: `(operator, row data)`.

    One centered 1-D inverse FFT along the readout (rows) gives hybrid-space data `(x, k_y)`;
    since `F = F_y F_x`, `F_x` is unitary and a column mask does not depend on the readout,
    `||M F S x - y|| = ||M F_y S x - F_x^H y||`: the least-squares problem (and every
    regularizer acting row by row) splits into `H` problems of size `W`. Column masks only
    (`(B or 1, 1, 1, W)`); a sampled-location mask (partial echo) varies along the readout and
    raises ValueError.
    """
    if mask.ndim != 4 or mask.shape[-2] != 1 or mask.shape[1] != 1:
        raise ValueError(f"hybrid-space SENSE needs a column mask (B, 1, 1, W); got shape {tuple(mask.shape)} (sampled locations vary along the readout)")
    batch, coils, rows, width = kspace.shape
    hybrid = ifftc(kspace, (-2,))
    data = hybrid.permute(0, 2, 1, 3).reshape(batch * rows, coils, 1, width)
    row_maps = maps.permute(0, 2, 1, 3).reshape(batch * rows, coils, 1, width)
    row_mask = mask.bool().expand(batch, 1, rows, width).permute(0, 2, 1, 3).reshape(batch * rows, 1, 1, width)
    return HybridSense(row_maps, row_mask, rows), data


class FiniteDifference(Linop):
    """`G`: circular differences `x - roll(x, 1)` along rows and columns, `(B,1,H,W)` -> `(B,2,H,W)`.

    `||G||^2 <= 8` (each of the two difference operators has norm <= 2): the bound the PDHG
    step sizes of TV use.
    """

    norm_bound = 8.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x - torch.roll(x, 1, -2), x - torch.roll(x, 1, -1)], dim=1)

    def adjoint(self, u: torch.Tensor) -> torch.Tensor:
        rows, cols = u[:, :1], u[:, 1:]
        return rows - torch.roll(rows, -1, -2) + cols - torch.roll(cols, -1, -1)


Coeffs = list[Any]


def map_coeffs(coeffs: Coeffs, fn: Callable[[torch.Tensor], torch.Tensor]) -> Coeffs:
    """Apply `fn` to every coefficient array, keeping the pywt structure."""
    out: Coeffs = [fn(coeffs[0])]
    for details in coeffs[1:]:
        out.append(tuple(fn(d) for d in details))
    return out


def flat_coeffs(coeffs: Coeffs) -> list[torch.Tensor]:
    """All coefficient arrays of a pywt-ordered list, approximation first."""
    return [coeffs[0]] + [d for level in coeffs[1:] for d in level]


class Wavelet2D(Linop):
    """db-N (default db4) transform over the last two axes of `(B, H, W)` complex images.

    Matches SigPy's `sp.wavelet.fwt/iwt` (pywt `wavedecn` with `mode="zero"`): odd sizes are
    first padded by one sample at the front (SigPy's centered resize), the level defaults to
    pywt's maximum level for the padded size and the filter length, and the synthesis is the
    exact adjoint of the analysis with zero extension (`W^H W = I`). Real and imaginary parts
    are transformed separately (the filters are real); coefficients come back complex.
    """

    def __init__(self, shape: tuple[int, int], wave_name: str = "db4", level: int | None = None) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.padded = tuple(((n + 1) // 2) * 2 for n in self.shape)
        self.wavelet = pywt.Wavelet(wave_name)
        if level is None:
            level = min(pywt.dwt_max_level(n, self.wavelet.dec_len) for n in self.padded)
        self.level = level

    def forward(self, x: torch.Tensor) -> Coeffs:
        """Analysis `W x`: `(B, H, W)` complex -> pywt-ordered list of complex coefficient arrays."""
        pad_h, pad_w = self.padded[0] - self.shape[0], self.padded[1] - self.shape[1]
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (pad_w, 0, pad_h, 0))
        batch = x.shape[0]
        stacked = torch.cat([x.real, x.imag], 0)
        coeffs = ptwt.wavedec2(stacked, self.wavelet, mode="zero", level=self.level)
        out: Coeffs = [torch.complex(coeffs[0][:batch], coeffs[0][batch:])]
        for details in coeffs[1:]:
            out.append(tuple(torch.complex(d[:batch], d[batch:]) for d in details))
        return out

    def adjoint(self, coeffs: Coeffs) -> torch.Tensor:
        """Synthesis `W^H c` (= inverse, since `W^H W = I`): coefficients -> `(B, H, W)` complex."""
        stacked: list = [torch.cat([coeffs[0].real, coeffs[0].imag], 0)]
        for details in coeffs[1:]:
            stacked.append(tuple(torch.cat([d.real, d.imag], 0) for d in details))
        rec = ptwt.waverec2(stacked, self.wavelet)
        batch = rec.shape[0] // 2
        x = torch.complex(rec[:batch], rec[batch:])
        x = x[..., : self.padded[0], : self.padded[1]]
        return x[..., self.padded[0] - self.shape[0] :, self.padded[1] - self.shape[1] :]

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _real_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 for complex128 / float64 data, float32 otherwise (the weights' and kernel's precision)."""
    return torch.float64 if dtype in (torch.complex128, torch.float64) else torch.float32


class NUFFT(Linop):
    """`F`: images `(..., H, W)` -> samples `(..., *S)` at a non-Cartesian trajectory, on finufft.

    `trajectory` is `(*S, 2)` in cycles per FOV, `(k_row, k_col)` (`recon.trajectory`); the
    transform is `recon.nufft`'s (sign `-i` forward, `(H W)^-1/2` scaling, equal to `FFT2c` on
    an integer trajectory). Leading axes (batch, coils) are finufft's `n_trans` vectors.
    With `weights` `(*S,)` (e.g. density compensation, or inverse noise variances) the operator
    is `W^1/2 F`, so `normal` is `F^H W F` and every algorithm solves the weighted problem;
    without, `normal` is `F^H F`. `normal` uses the Toeplitz embedding (`toeplitz=True`: one FFT
    pair on the 2x grid, kernel computed once per trajectory and weights, exact to `eps`),
    else `adjoint(forward(x))`. Setting `trajectory` or `weights` checks them and drops the
    cached plans or kernel. complex64 and complex128 both; differentiable in the input.
    """

    def __init__(
        self,
        trajectory: np.ndarray | torch.Tensor,
        shape: tuple[int, int],
        weights: np.ndarray | torch.Tensor | None = None,
        eps: float = 1e-6,
        nthreads: int = 0,
        toeplitz: bool = True,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.eps, self.nthreads, self.options = float(eps), int(nthreads), dict(options or {})
        self.toeplitz = bool(toeplitz)
        self._weights: np.ndarray | None = None
        self.trajectory = trajectory
        self.weights = weights

    @property
    def trajectory(self) -> np.ndarray:
        """The checked trajectory `(*S, 2)`, float64 cycles per FOV (a copy owned by the plans)."""
        return self.plans.coord

    @trajectory.setter
    def trajectory(self, trajectory: np.ndarray | torch.Tensor) -> None:
        plans = FinufftPlans(trajectory, self.shape, self.eps, self.nthreads, self.options)
        if self._weights is not None and self._weights.shape != plans.samples:
            raise ValueError(f"the new trajectory has sample shape {plans.samples} but the weights have {self._weights.shape}; set weights first or to None")
        self.plans = plans
        self._clear()

    @property
    def weights(self) -> np.ndarray | None:
        """Per-sample weights `(*S,)` (float64, >= 0) or None."""
        return self._weights

    @weights.setter
    def weights(self, weights: np.ndarray | torch.Tensor | None) -> None:
        self._weights = None if weights is None else check_weights(weights, self.plans.samples)
        self._clear()

    def _clear(self) -> None:
        self._kernel64: torch.Tensor | None = None
        self._cache: dict[tuple[str, torch.dtype, torch.device], torch.Tensor] = {}

    @property
    def samples(self) -> tuple[int, ...]:
        """The trajectory's sample shape `S`."""
        return self.plans.samples

    def _cached(self, name: str, real: torch.dtype, device: torch.device) -> torch.Tensor:
        """`sqrt(weights)` or the Toeplitz kernel in `real` precision on `device`, made once each."""
        key = (name, real, device)
        if key not in self._cache:
            if name == "kernel":
                if self._kernel64 is None:
                    self._kernel64 = toeplitz_kernel(self.plans, self._weights)
                base = self._kernel64
            else:
                base = torch.from_numpy(np.sqrt(self._weights))
            self._cache[key] = base.to(device=device, dtype=real)
        return self._cache[key]

    def kernel(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The Toeplitz transfer function `(2H, 2W)` of `normal` for complex `dtype` on `device`."""
        return self._cached("kernel", _real_dtype(dtype), device)

    def _weighted(self, t: torch.Tensor) -> torch.Tensor:
        if self._weights is None:
            return t
        return t * self._cached("root", _real_dtype(t.dtype), t.device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images `(..., H, W)` -> samples `(..., *S)` (times `sqrt(weights)` when set)."""
        return self._weighted(nufft(x, self.plans))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Samples `(..., *S)` -> images `(..., H, W)` (`sqrt(weights)` applied first when set)."""
        return nufft_adjoint(self._weighted(y), self.plans)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """`F^H W F x` for images `(..., H, W)`: Toeplitz embedding, or `adjoint(forward(x))`."""
        if not self.toeplitz:
            return self.adjoint(self.forward(x))
        if tuple(x.shape[-2:]) != self.shape:
            raise ValueError(f"the NUFFT maps {self.shape[0]}x{self.shape[1]} images; got an input of shape {tuple(x.shape)}")
        if not x.is_complex():
            x = x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        return toeplitz_normal(x, self.kernel(x.dtype, x.device))


class NufftSense(Linop):
    """`A = F_nu S`: image `(B, 1, H, W)` -> coil samples `(B, C, *S)`; maps `(B, C, H, W)`.

    The non-Cartesian `Sense`: `nufft` (a `NUFFT`, shared between batches with the same
    trajectory so its plans and Toeplitz kernel are reused) carries the trajectory and any
    sample weights; `normal` is `sum_c conj(S_c) F^H W F (S_c x)` through the NUFFT's Toeplitz
    normal, all coils in one FFT pair.
    """

    def __init__(self, maps: torch.Tensor, nufft: NUFFT) -> None:
        if maps.ndim != 4 or tuple(maps.shape[-2:]) != nufft.shape:
            raise ValueError(f"coil maps must be (B, C, {nufft.shape[0]}, {nufft.shape[1]}); got {tuple(maps.shape)}")
        self.maps = maps
        self.nufft = nufft

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Image `(B, 1, H, W)` -> coil samples `(B, C, *S)`."""
        return self.nufft.forward(self.maps * x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """Coil samples `(B, C, *S)` -> image `(B, 1, H, W)`."""
        return (self.maps.conj() * self.nufft.adjoint(y)).sum(1, keepdim=True)

    def normal(self, x: torch.Tensor) -> torch.Tensor:
        """`S^H F^H W F S x` (Toeplitz when the NUFFT's `toeplitz` is on)."""
        return (self.maps.conj() * self.nufft.normal(self.maps * x)).sum(1, keepdim=True)
