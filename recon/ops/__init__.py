"""Reconstruction operators, one API over two backends.

All tensors are complex64 torch tensors, coil axis before the two spatial axes
(B batch, C coils, H rows, W cols):

* `fft2c(x)`, `ifft2c(k)`: centered orthonormal 2-D FFT over the last two axes.
* `sens_expand(x, maps)`: `fft2c(maps * x)`, `(B,1,H,W)`, `(B,C,H,W)` -> `(B,C,H,W)`.
* `sens_reduce(k, maps)`: `sum_c conj(maps) * ifft2c(k)`, -> `(B,1,H,W)`.
* `soft_dc(k, k0, mask, eta)`: `k - eta * mask * (k - k0)`, mask broadcast over coils and rows.
* `hard_dc(k, k0, mask)`: `where(mask, k0, k)`.
* `normal(x, maps, mask)`: `sens_reduce(mask * sens_expand(x, maps), maps)`, the SENSE normal operator.
* `rss(x, dim)`: root sum of squares of magnitudes.

Backend per call: `cupy` for CUDA tensors when CuPy is importable, `torch` otherwise;
`use_backend("torch"|"cupy")` forces one for the calls inside a block (of this thread or task:
the choice travels with the job that makes it, e.g. `recon.pipeline.run_method(backend=...)`,
never as process-global state). Every op is differentiable with respect to all of its tensor inputs.
"""

from __future__ import annotations

import contextlib
import contextvars
from typing import Callable, Iterator

import torch

from recon.ops import torch_backend as _tb

BACKENDS = ("auto", "torch", "cupy")

_forced: contextvars.ContextVar[str | None] = contextvars.ContextVar("recon_ops_backend", default=None)


@contextlib.contextmanager
def use_backend(name: str | None) -> Iterator[None]:
    """Force a backend (`"torch"`, `"cupy"`) for the calls inside the block; None or `"auto"`: automatic."""
    if name not in (None, *BACKENDS):
        raise ValueError(f"unknown backend {name!r}; expected auto, torch or cupy")
    token = _forced.set(None if name == "auto" else name)
    try:
        yield
    finally:
        _forced.reset(token)


def _cupy_usable() -> bool:
    try:
        from recon.ops import cupy_backend  # noqa: F401
    except ImportError:
        return False
    return cupy_backend.available()


def backend_for(x: torch.Tensor) -> str:
    """Name of the backend that a call on tensor `x` uses."""
    name = _forced.get()
    if name == "torch":
        return "torch"
    if name == "cupy":
        if not x.is_cuda:
            raise RuntimeError("backend cupy needs CUDA tensors")
        if not _cupy_usable():
            raise RuntimeError("backend cupy but CuPy is not installed or has no CUDA device")
        return "cupy"
    return "cupy" if x.is_cuda and _cupy_usable() else "torch"


def _dispatch(name: str) -> Callable[..., torch.Tensor]:
    torch_fn = getattr(_tb, name)

    def op(x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        if backend_for(x) == "cupy":
            from recon.ops import cupy_backend

            return getattr(cupy_backend, name)(x, *args, **kwargs)
        return torch_fn(x, *args, **kwargs)

    op.__name__ = name
    op.__doc__ = torch_fn.__doc__
    return op


fft2c = _dispatch("fft2c")
ifft2c = _dispatch("ifft2c")
sens_expand = _dispatch("sens_expand")
sens_reduce = _dispatch("sens_reduce")
soft_dc = _dispatch("soft_dc")
hard_dc = _dispatch("hard_dc")
normal = _dispatch("normal")
rss = _dispatch("rss")

__all__ = [
    "fft2c",
    "ifft2c",
    "sens_expand",
    "sens_reduce",
    "soft_dc",
    "hard_dc",
    "normal",
    "rss",
    "use_backend",
    "backend_for",
]
