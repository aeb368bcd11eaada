"""finufft behind torch: the 2-D NUFFT pair with autograd, cached plans and the Toeplitz kernel.

The transform (trajectory in cycles per FOV, `recon.trajectory`; `(H, W)` image, centred
pixel indices `n`):

    forward   y_j = (H W)^(-1/2) sum_n x[n] exp(-i omega_j . n),   omega_j = 2 pi k_j / (H, W)
    adjoint   x[n] = (H W)^(-1/2) sum_j y_j exp(+i omega_j . n)

finufft's type 2 with `isign = -1` and its adjoint (type 1, `isign = +1`, one plan for both,
finufft >= 2.5), modes centred (`modeord = 0`, mode `-N//2` first): on an integer trajectory
the forward equals `recon.core.fft2c` exactly, and like SigPy's and BART's NUFFT it is unitary
in that sense. Leading axes (batch, coils) go through finufft's many-vector interface
(`n_trans`), so one `execute` transforms all of them.

This module is the wrapper below `recon.linops.NUFFT` / `NufftSense`: `FinufftPlans` (one
trajectory's plans, built on first use per dtype and vector count), `nufft` / `nufft_adjoint`
(torch autograd functions, each the other's backward), `toeplitz_kernel` / `toeplitz_normal`
(the normal operator `A^H W A` as an FFT convolution on the 2x grid, exact up to the kernel's
tolerance). It computes on the CPU; tensors elsewhere are moved there and back. finufft is
imported when the first plan is built, so the Cartesian path never depends on it loading.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch

from recon.trajectory import SMALL_WORK, TrajectoryError, check_trajectory, radians

if TYPE_CHECKING:
    import finufft

# The finest tolerance a complex64 (float32) plan is asked for: finufft cannot reach below float32
# rounding (it warns and raises the tolerance itself); requests below this are raised to it.
SINGLE_EPS = 1e-6
# Plans kept per trajectory: one per (precision, number of vectors). Iterative methods use one
# or two vector counts, so a few suffice; each plan holds its own sorted copy of the points,
# so the cache is bounded.
MAX_PLANS = 4

_REAL = {torch.complex64: np.float32, torch.complex128: np.float64}


def _complex_input(x: torch.Tensor, name: str) -> torch.Tensor:
    """`x` as complex64 / complex128 (real float32/float64 input promoted; anything else refused)."""
    if x.dtype in _REAL:
        return x
    if x.dtype in (torch.float32, torch.float64, torch.float16, torch.bfloat16):
        return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
    raise TypeError(f"the NUFFT {name} must be complex64 or complex128 (or real float); got {x.dtype}")


class FinufftPlans:
    """One trajectory's finufft plans: type 2 (forward) whose `execute_adjoint` is the adjoint.

    `coord` is a cycles-per-FOV trajectory `(*S, 2)` for an `(H, W)` image, checked here
    (`recon.trajectory.check_trajectory`) and copied, so later changes to the caller's array
    cannot reach the plans; a new trajectory needs a new `FinufftPlans` (`recon.linops.NUFFT`
    builds one when its trajectory is set). Plans are built on first use for each
    `(precision, vectors)` pair, at most `MAX_PLANS` kept (least recently used dropped), and
    calls are serialised by a lock (a finufft plan is not re-entrant). `eps` is finufft's
    requested relative tolerance (complex64 plans at least `SINGLE_EPS`, float32's limit);
    `nthreads=0` lets finufft use every core (one thread below `SMALL_WORK` point-vectors);
    `options` go to finufft as they are (e.g. `upsampfac`, `spread_sort`). Pickling drops the
    plans.
    """

    def __init__(
        self,
        coord: np.ndarray | torch.Tensor,
        shape: Sequence[int],
        eps: float = 1e-6,
        nthreads: int = 0,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if not (1e-15 < float(eps) < 1.0):
            raise ValueError(f"the NUFFT tolerance eps must be in (1e-15, 1); got {eps}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.coord = check_trajectory(coord, self.shape)
        self.samples: tuple[int, ...] = self.coord.shape[:-1]
        self.eps = float(eps)
        self.nthreads = int(nthreads)
        self.options = dict(options or {})
        self.scale = 1.0 / math.sqrt(self.shape[0] * self.shape[1])
        omega = radians(self.coord, self.shape)
        self._omega: dict[type, tuple[np.ndarray, np.ndarray]] = {np.float64: omega, np.float32: (omega[0].astype(np.float32), omega[1].astype(np.float32))}
        self._plans: OrderedDict[tuple[type, int], finufft.Plan] = OrderedDict()
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plans"], state["_lock"] = OrderedDict(), None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    def threads(self, vectors: int) -> int:
        """finufft's `nthreads` for `vectors` transforms: as given, or for 0 one thread on small work."""
        if self.nthreads > 0:
            return self.nthreads
        return 1 if vectors * self.points < SMALL_WORK else 0

    def radians(self) -> tuple[np.ndarray, np.ndarray]:
        """finufft's float64 points `(omega_row, omega_col)`, flattened `(M,)` each."""
        return self._omega[np.float64]

    @property
    def points(self) -> int:
        """Number of k-space samples `M = prod(S)`."""
        return int(np.prod(self.samples))

    def _plan(self, real: type, vectors: int) -> finufft.Plan:
        key = (real, vectors)
        plan = self._plans.get(key)
        if plan is None:
            import finufft

            single = real is np.float32
            eps = max(self.eps, SINGLE_EPS) if single else self.eps
            dtype = "complex64" if single else "complex128"
            plan = finufft.Plan(2, self.shape, n_trans=vectors, eps=eps, isign=-1, dtype=dtype, nthreads=self.threads(vectors), modeord=0, **self.options)
            plan.setpts(*self._omega[real])
            self._plans[key] = plan
            while len(self._plans) > MAX_PLANS:
                self._plans.popitem(last=False)
        else:
            self._plans.move_to_end(key)
        return plan

    def forward_array(self, image: np.ndarray) -> np.ndarray:
        """`(V, H, W)` complex64/complex128 C-contiguous images -> `(V, M)` samples."""
        with self._lock:
            out = self._plan(_real_of(image), image.shape[0]).execute(image)
        out *= self.scale
        return out.reshape(image.shape[0], self.points)

    def adjoint_array(self, samples: np.ndarray) -> np.ndarray:
        """`(V, M)` complex64/complex128 C-contiguous samples -> `(V, H, W)` images."""
        with self._lock:
            out = self._plan(_real_of(samples), samples.shape[0]).execute_adjoint(samples)
        out *= self.scale
        return out.reshape(samples.shape[0], *self.shape)


def _real_of(array: np.ndarray) -> type:
    return np.float32 if array.dtype == np.complex64 else np.float64


def _lead(shape: torch.Size, trailing: int) -> tuple[int, ...]:
    return tuple(shape[: len(shape) - trailing])


class _Forward(torch.autograd.Function):
    """`y = A x` on finufft; the backward of a C-linear map is its adjoint, `A^H g`."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, plans: FinufftPlans) -> torch.Tensor:  # type: ignore[override]
        ctx.plans = plans
        lead = _lead(x.shape, 2)
        flat = x.detach().reshape(-1, *plans.shape)
        vectors = flat.shape[0]
        if vectors == 0:
            return torch.zeros(*lead, *plans.samples, dtype=x.dtype, device=x.device)
        out = plans.forward_array(flat.cpu().resolve_conj().resolve_neg().contiguous().numpy())
        return torch.from_numpy(out).reshape(*lead, *plans.samples).to(x.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return _Adjoint.apply(grad, ctx.plans), None


class _Adjoint(torch.autograd.Function):
    """`x = A^H y` on finufft; its backward is the forward, `A g`."""

    @staticmethod
    def forward(ctx: Any, y: torch.Tensor, plans: FinufftPlans) -> torch.Tensor:  # type: ignore[override]
        ctx.plans = plans
        lead = _lead(y.shape, len(plans.samples))
        flat = y.detach().reshape(-1, plans.points)
        if flat.shape[0] == 0:
            return torch.zeros(*lead, *plans.shape, dtype=y.dtype, device=y.device)
        out = plans.adjoint_array(flat.cpu().resolve_conj().resolve_neg().contiguous().numpy())
        return torch.from_numpy(out).reshape(*lead, *plans.shape).to(y.device)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return _Forward.apply(grad, ctx.plans), None


def nufft(x: torch.Tensor, plans: FinufftPlans) -> torch.Tensor:
    """Forward NUFFT: images `(..., H, W)` -> samples `(..., *S)`; differentiable in `x`."""
    x = _complex_input(x, "image")
    if tuple(x.shape[-2:]) != plans.shape or x.ndim < 2:
        raise ValueError(f"the NUFFT maps {plans.shape[0]}x{plans.shape[1]} images; got an input of shape {tuple(x.shape)}")
    return _Forward.apply(x, plans)


def nufft_adjoint(y: torch.Tensor, plans: FinufftPlans) -> torch.Tensor:
    """Adjoint NUFFT: samples `(..., *S)` -> images `(..., H, W)`; differentiable in `y`."""
    y = _complex_input(y, "k-space")
    count = len(plans.samples)
    if y.ndim < count or tuple(y.shape[y.ndim - count :]) != plans.samples:
        raise TrajectoryError(f"k-space of shape {tuple(y.shape)} does not end in the trajectory's sample shape {plans.samples}")
    return _Adjoint.apply(y, plans)


def check_weights(weights: np.ndarray | torch.Tensor, samples: Sequence[int]) -> np.ndarray:
    """Per-sample weights `(*S,)` as float64: finite, non-negative, one per trajectory point."""
    values = weights.detach().cpu().numpy() if isinstance(weights, torch.Tensor) else np.asarray(weights)
    if np.iscomplexobj(values) or not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise ValueError(f"sample weights must be real numbers; got dtype {values.dtype}")
    if tuple(values.shape) != tuple(samples):
        raise ValueError(f"sample weights have shape {tuple(values.shape)} but the trajectory has {tuple(samples)} samples")
    values = values.astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(f"sample weights hold {int((~np.isfinite(values)).sum())} NaN or infinite value(s)")
    if (values < 0).any():
        raise ValueError(f"sample weights hold {int((values < 0).sum())} negative value(s); weights are areas or variances' inverses, >= 0")
    return values


def toeplitz_kernel(plans: FinufftPlans, weights: np.ndarray | None = None) -> torch.Tensor:
    """The transfer function `(2H, 2W)` (real, float64) of `A^H W A` on the zero-padded 2x grid.

    `A^H W A x [n] = sum_m T[n - m] x[m]` with the point-spread function
    `T[d] = (H W)^-1 sum_j w_j exp(+i omega_j . d)`, `d` in `[-(N-1), N-1]`: one type-1 NUFFT of
    the weights onto `2H x 2W` modes in FFT order (`modeord = 1`, complex128, the plans' `eps`).
    The unused entries `d = -H`, `d = -W` are zeroed, which makes `T` Hermitian on the circle
    and its FFT real. Computed once per trajectory and weights.
    """
    import finufft

    rows, cols = plans.shape
    w = np.ones(plans.points) if weights is None else check_weights(weights, plans.samples).ravel()
    plan = finufft.Plan(1, (2 * rows, 2 * cols), n_trans=1, eps=plans.eps, isign=1, dtype="complex128", nthreads=plans.threads(1), modeord=1)
    plan.setpts(*plans.radians())
    psf = plan.execute(w.astype(np.complex128)) / (rows * cols)
    psf[rows, :] = 0.0
    psf[:, cols] = 0.0
    return torch.fft.fft2(torch.from_numpy(psf)).real.contiguous()


def toeplitz_normal(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """`A^H W A x` for images `(..., H, W)` by FFT convolution with `toeplitz_kernel`'s output.

    Pure torch (differentiable, any device): zero-pad to `(2H, 2W)`, FFT, multiply by the real
    transfer function, inverse FFT, keep the first `H x W`. `kernel` must already have the
    real dtype and device that go with `x`.
    """
    rows, cols = x.shape[-2], x.shape[-1]
    padded = torch.fft.fft2(x, s=(2 * rows, 2 * cols))
    return torch.fft.ifft2(padded * kernel)[..., :rows, :cols]
