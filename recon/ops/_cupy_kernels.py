"""Loading and launching the CUDA kernels of `kernels/*.cu` through CuPy, zero-copy with torch.

Everything here needs CuPy; `recon.ops.cupy_backend` imports this module lazily, so importing the
backend on a machine without CuPy works (and `available()` is False there).

* `module(name)`: the compiled `RawModule` of `kernels/<name>.cu` (compiled once per process and
  device, and cached on disk by CuPy keyed on the full source text and options).
* `launch(module, kernel, n, args)`: 1-D grid-stride launch on torch's current stream.
* `fft2_inplace(t, inverse)`: unnormalized cuFFT over the last two axes of a contiguous complex
  tensor, in place, batched over all leading axes (plans come from CuPy's plan cache).
* `torch_stream()`: one op call: CuPy work runs on torch's current CUDA stream (the CuPy stream
  object is cached per torch stream) and each tensor is converted to CuPy (DLPack) at most once.

Per-call overhead is kept to the launches themselves: no new stream objects, no host-to-device
copies (scalars travel as kernel arguments), one DLPack view per tensor per op call, and CuPy's
allocations (cuFFT work areas) come from torch's caching allocator, so torch's memory statistics,
`empty_cache` and CUDA-graph pools see a single pool.
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

# Threads per block. dc.cu sizes its shared reduction buffer with it (RECON_THREADS) and asserts
# at compile time that it is a power of two <= 1024; the kernels trap on a launch with another
# block size.
THREADS = 256
_MAX_BLOCKS = 65535 * 16
_INCLUDE = re.compile(r'^\s*#include\s+"([^"]+)"\s*$', re.MULTILINE)
_cuda: Any = torch.cuda  # device and stream queries (the CPU test harness substitutes a host stand-in)
_views: dict[tuple[Any, ...], Any] | None = None
_streams: dict[int, Any] = {}


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


def compile_options() -> tuple[str, ...]:
    """NVRTC options: C++17 and the block size the launches use (`RECON_THREADS`)."""
    return ("-std=c++17", f"-DRECON_THREADS={THREADS}")


@functools.lru_cache(maxsize=None)
def _module(name: str, device: int, options: tuple[str, ...]) -> Any:
    with cupy.cuda.Device(device):
        mod = cupy.RawModule(code=kernel_source(name), options=options)
        mod.compile()
        return mod


def module(name: str) -> Any:
    """Compiled `RawModule` of `kernels/<name>.cu` for the current CUDA device (cached)."""
    return _module(name, _cuda.current_device(), compile_options())


@functools.lru_cache(maxsize=None)
def _function(mod: Any, kernel: str) -> Any:
    return mod.get_function(kernel)


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


def as_cupy(t: torch.Tensor) -> Any:
    """Zero-copy CuPy view of a CUDA torch tensor (DLPack), made once per tensor inside `torch_stream`.

    A tensor with torch's lazy conjugate or negative bit is refused: DLPack cannot carry the bit,
    and a materialized copy would have other strides than the ones the caller computed.
    """
    if t.is_conj() or t.is_neg():
        raise ValueError("kernel arguments must be resolved (resolve_conj/resolve_neg) before their strides are taken")
    if _views is None:
        return cupy.from_dlpack(t.detach())
    key = (t.data_ptr(), t.dtype, tuple(t.shape), t.stride())
    view = _views.get(key)
    if view is None:
        view = _views[key] = cupy.from_dlpack(t.detach())
    return view


def _stream(ptr: int) -> Any:
    stream = _streams.get(ptr)
    if stream is None:
        stream = _streams[ptr] = cupy.cuda.ExternalStream(ptr)
    return stream


@contextlib.contextmanager
def torch_stream() -> Iterator[None]:
    """One op call: CuPy launches and cuFFT run on torch's current CUDA stream, views are memoized."""
    global _views
    outer = _views
    if outer is None:
        _views = {}
    try:
        with _stream(_cuda.current_stream().cuda_stream):
            yield
    finally:
        if outer is None:
            _views = None


def device_guard(t: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """Make `t`'s GPU current (CuPy follows the CUDA runtime's current device) when it is not."""
    if t.device.index is None or t.device.index == _cuda.current_device():
        return contextlib.nullcontext()
    return _cuda.device(t.device)


def launch(mod: Any, kernel: str, n: int, args: Sequence[Any]) -> None:
    """Launch `kernel` with a 1-D grid covering `n` items (grid-stride loops cover the rest).

    Tensors in `args` are passed as device pointers (as CuPy views); NumPy scalars as is.
    """
    if n == 0:
        return
    blocks = max(1, min((n + THREADS - 1) // THREADS, _MAX_BLOCKS))
    converted = tuple(as_cupy(a) if isinstance(a, torch.Tensor) else a for a in args)
    _function(mod, kernel)((blocks,), (THREADS,), converted)


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


def _torch_malloc(size: int) -> Any:
    """CuPy allocator hook: device memory from torch's caching allocator (kept alive by CuPy)."""
    block = torch.empty(max(size, 1), dtype=torch.uint8, device=f"cuda:{cupy.cuda.runtime.getDevice()}")
    mem = cupy.cuda.UnownedMemory(block.data_ptr(), size, block)
    return cupy.cuda.MemoryPointer(mem, 0)


def use_torch_allocator() -> None:
    """Route CuPy's device allocations (cuFFT work areas, temporaries) through torch's pool."""
    cupy.cuda.set_allocator(_torch_malloc)


def i64(v: int) -> np.int64:
    """A 64-bit kernel argument (`long long`)."""
    return np.int64(v)


def i32(v: int) -> np.int32:
    """A 32-bit kernel argument (`int`)."""
    return np.int32(v)


use_torch_allocator()
