"""Loading and launching the CUDA kernels of `kernels/*.cu` through CuPy, zero-copy with torch.

Everything here needs CuPy; `recon.ops.cupy_backend` imports this module lazily, so importing the
backend on a machine without CuPy works (and `available()` is False there).

* `module(name)`: the compiled `RawModule` of `kernels/<name>.cu` (compiled once per process and
  device, and cached on disk by CuPy keyed on the full source text).
* `as_cupy(t)`: a CuPy view of a CUDA torch tensor (DLPack, no copy).
* `launch(module, kernel, n, args)`: 1-D grid-stride launch on the current CuPy stream.
* `fft2_inplace(t, inverse)`: unnormalized cuFFT over the last two axes of a contiguous complex
  tensor, in place, batched over all leading axes (plans come from CuPy's plan cache).
* `torch_stream()`: context manager running CuPy work on torch's current CUDA stream.
"""

from __future__ import annotations

import contextlib
import functools
import re
from typing import Any, Iterator, Sequence

import cupy
import cupyx.scipy.fft as cufft
import numpy as np
import torch

from recon import kernels_dir

THREADS = 256
_MAX_BLOCKS = 65535 * 16
_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$', re.MULTILINE)


def kernel_source(name: str) -> str:
    """Source of `kernels/<name>.cu` with local `#include "..."` headers inlined.

    Inlining makes the text self-contained, so CuPy's compile cache (keyed on the source text)
    is invalidated when a shared header changes.
    """
    root = kernels_dir()
    text = (root / f"{name}.cu").read_text()

    def inline(match: re.Match[str]) -> str:
        return (root / match.group(1)).read_text().replace("#pragma once", "")

    return _INCLUDE.sub(inline, text)


@functools.lru_cache(maxsize=None)
def _module(name: str, device: int) -> cupy.RawModule:
    with cupy.cuda.Device(device):
        mod = cupy.RawModule(code=kernel_source(name), options=("-std=c++17",))
        mod.compile()
        return mod


def module(name: str) -> cupy.RawModule:
    """Compiled `RawModule` of `kernels/<name>.cu` for the current CUDA device (cached)."""
    return _module(name, torch.cuda.current_device())


def suffix(dtype: torch.dtype) -> str:
    """Kernel name suffix for a complex torch dtype (`c64` or `c128`)."""
    if dtype == torch.complex64:
        return "c64"
    if dtype == torch.complex128:
        return "c128"
    raise TypeError(f"the CuPy kernels take complex64 or complex128, got {dtype}")


def real_scalar(dtype: torch.dtype, value: float) -> np.floating:
    """`value` as the NumPy real scalar matching a complex torch dtype (kernel `R` argument)."""
    return np.float32(value) if dtype == torch.complex64 else np.float64(value)


def as_cupy(t: torch.Tensor) -> cupy.ndarray:
    """Zero-copy CuPy view of a CUDA torch tensor (via DLPack).

    A tensor with torch's lazy conjugate/negative bit is materialized first (DLPack cannot carry
    the bit); outputs are always freshly allocated tensors without it, so they stay views.
    """
    return cupy.from_dlpack(t.detach().resolve_conj().resolve_neg())


@contextlib.contextmanager
def torch_stream() -> Iterator[None]:
    """Run the enclosed CuPy launches and cuFFT calls on torch's current CUDA stream."""
    stream = cupy.cuda.ExternalStream(torch.cuda.current_stream().cuda_stream)
    with cupy.cuda.Device(torch.cuda.current_device()), stream:
        yield


def launch(mod: cupy.RawModule, kernel: str, n: int, args: Sequence[Any]) -> None:
    """Launch `kernel` with a 1-D grid covering `n` items (grid-stride loops cover the rest).

    Tensors in `args` are passed as device pointers (as CuPy views); ints and NumPy scalars as is.
    """
    if n == 0:
        return
    blocks = max(1, min((n + THREADS - 1) // THREADS, _MAX_BLOCKS))
    converted = tuple(as_cupy(a) if isinstance(a, torch.Tensor) else a for a in args)
    mod.get_function(kernel)((blocks,), (THREADS,), converted)


def fft2_inplace(t: torch.Tensor, inverse: bool) -> None:
    """Unnormalized 2-D cuFFT (inverse: without the 1/N) over the last two axes of `t`, in place.

    `t` must be a C-contiguous complex CUDA tensor; all leading axes form one batched plan.
    """
    a = as_cupy(t)
    if inverse:
        res = cufft.ifft2(a, axes=(-2, -1), norm="forward", overwrite_x=True)
    else:
        res = cufft.fft2(a, axes=(-2, -1), norm="backward", overwrite_x=True)
    if res.data.ptr != a.data.ptr:
        a[...] = res


def i64(v: int) -> np.int64:
    """A 64-bit kernel argument (`long long`)."""
    return np.int64(v)


def i32(v: int) -> np.int32:
    """A 32-bit kernel argument (`int`)."""
    return np.int32(v)
