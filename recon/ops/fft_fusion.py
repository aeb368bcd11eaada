"""Prototype: the modulations, coil maps and mask folded into cuFFT's loads and stores (callbacks).

GPU only, opt-in: `RECON_FFT_FUSION=callbacks` with nvmath-python (cuFFT LTO callbacks through
`nvmath.fft.compile_prolog` / `compile_epilog`, which compile these Python functions with
numba-cuda) on a CUDA device. Otherwise, and for any layout the callbacks do not take, the plain
kernels of `cupy_backend` run (the fallback; the op API is the same). Not yet measured on a GPU:
`benchmarks/kernels.md` gives the bytes each variant should move and the check to run.

Callbacks per op (C-contiguous (B,C,H,W), the batched 2-D transform's natural layout, so the
callback `offset` is the flat element index; checked with `FFT.get_input_layout()`):

* sens_expand: the forward FFT's operand is `maps` itself; its prolog returns
  `maps[o] * x[b, p] * pre(h, w)`, its epilog stores `v * post(h, w) / sqrt(HW)`.
* sens_reduce: the inverse FFT's prolog returns `k[o] * pre_inv(h, w)`, its epilog stores
  `v * post_inv(h, w) / sqrt(HW) * conj(maps[b, c, p])`; a separate coil sum follows (atomics in
  the epilog would save that pass but make the sum order, so the result, nondeterministic).
* normal: expand's prolog on the forward FFT, an epilog storing `v * m * c / sqrt(HW)` (c the
  constant phase of `cupy_backend._normal_phase`), then reduce's epilog on the inverse FFT.

The callbacks are ordinary Python functions of scalars and indexable "pointers", so
`emulate_*` below runs the very same functions element by element around a NumPy FFT on the CPU
(tests/test_fft_fusion.py); on the GPU numba-cuda compiles them to LTO-IR.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any, Callable

import numpy as np
import torch

ENV = "RECON_FFT_FUSION"


def cis_halfturns(th: int, n: int, tw: int, m: int, sign: int) -> complex:
    """exp(sign * i*pi * 2*(th/n + tw/m)), exact at multiples of pi/2 (like CUDA's sincospi)."""
    ph = 2.0 * (th / n + tw / m)
    q = ph * 2.0
    if q == math.floor(q):
        k = int(q) % 4
        re = 1.0 if k == 0 else (-1.0 if k == 2 else 0.0)
        im = 1.0 if k == 1 else (-1.0 if k == 3 else 0.0)
    else:
        re = math.cos(math.pi * ph)
        im = math.sin(math.pi * ph)
    return complex(re, sign * im)


def expand_callbacks(shape: tuple[int, int, int, int], xsb: int, cis: Callable[..., complex] = cis_halfturns
                     ) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Prolog (operand: maps, user info: x) and epilog (no user info) of the fused sens_expand."""
    _, c, h, w = shape
    plane, sh, sw = h * w, h // 2, w // 2
    scale = 1.0 / math.sqrt(h * w)

    def prolog(maps_in: Any, offset: int, x: Any, reserved: Any) -> complex:
        p = offset % plane
        b = offset // (plane * c)
        hh = p // w
        ww = p % w
        f = cis((hh * sh) % h, h, (ww * sw) % w, w, 1)
        return maps_in[offset] * x[b * xsb + p] * f

    def epilog(out: Any, offset: int, value: complex, info: Any, reserved: Any) -> None:
        p = offset % plane
        hh = p // w
        ww = p % w
        f = cis(((hh + h - sh) % h) * sh % h, h, ((ww + w - sw) % w) * sw % w, w, 1)
        out[offset] = value * f * scale

    return prolog, epilog


def reduce_callbacks(shape: tuple[int, int, int, int], msb: int, msc: int,
                     cis: Callable[..., complex] = cis_halfturns) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Prolog (operand: k) and epilog (user info: maps) of the fused sens_reduce, before the coil sum."""
    _, c, h, w = shape
    plane, sh, sw = h * w, h // 2, w // 2
    scale = 1.0 / math.sqrt(h * w)

    def prolog(k_in: Any, offset: int, info: Any, reserved: Any) -> complex:
        p = offset % plane
        f = cis(((p // w) * sh) % h, h, ((p % w) * sw) % w, w, -1)
        return k_in[offset] * f

    def epilog(out: Any, offset: int, value: complex, maps: Any, reserved: Any) -> None:
        p = offset % plane
        bc = offset // plane
        hh = p // w
        ww = p % w
        f = cis(((hh + h - sh) % h) * sh % h, h, ((ww + w - sw) % w) * sw % w, w, -1)
        s = maps[(bc // c) * msb + (bc % c) * msc + p]
        out[offset] = value * f * scale * s.conjugate()

    return prolog, epilog


def mask_epilog(shape: tuple[int, int, int, int], strides: tuple[int, int, int, int], phase: complex
                ) -> Callable[..., Any]:
    """Epilog of normal's forward FFT (user info: the one-byte mask): v * m * phase / sqrt(HW), no post-mod."""
    _, c, h, w = shape
    msb, msc, msh, msw = strides
    plane = h * w
    factor = phase / math.sqrt(h * w)

    def epilog(out: Any, offset: int, value: complex, mask: Any, reserved: Any) -> None:
        p = offset % plane
        bc = offset // plane
        m = mask[(bc // c) * msb + (bc % c) * msc + (p // w) * msh + (p % w) * msw]
        out[offset] = value * factor if m != 0 else 0j

    return epilog


# --------------------------------------------------------------------------- CPU emulation


def _run_fft(operand: np.ndarray, prolog: Any, epilog: Any, pro_info: Any, epi_info: Any, inverse: bool) -> np.ndarray:
    """cuFFT with callbacks, element by element: load through the prolog, unnormalized FFT, store through the epilog."""
    flat = operand.reshape(-1)
    loaded = np.array([prolog(flat, o, pro_info, None) if prolog else flat[o] for o in range(flat.size)],
                      dtype=operand.dtype).reshape(operand.shape)
    fn = np.fft.ifft2 if inverse else np.fft.fft2
    res = fn(loaded, axes=(-2, -1), norm="forward" if inverse else "backward").astype(operand.dtype)
    out = np.empty(operand.size, dtype=operand.dtype)
    rflat = res.reshape(-1)
    for o in range(out.size):
        if epilog:
            epilog(out, o, rflat[o], epi_info, None)
        else:
            out[o] = rflat[o]
    return out.reshape(operand.shape)


def emulate_sens_expand(x: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """The fused sens_expand's callbacks around a NumPy FFT (maps (B,C,H,W), x (B|1,1,H,W))."""
    prolog, epilog = expand_callbacks(maps.shape, x.strides[0] // x.itemsize if x.shape[0] > 1 else 0)
    return _run_fft(maps, prolog, epilog, x.reshape(-1), None, inverse=False)


def emulate_sens_reduce(k: np.ndarray, maps: np.ndarray) -> np.ndarray:
    msb = maps.strides[0] // maps.itemsize if maps.shape[0] > 1 else 0
    prolog, epilog = reduce_callbacks(k.shape, msb, maps.strides[1] // maps.itemsize)
    return _run_fft(k, prolog, epilog, None, maps.reshape(-1), inverse=True).sum(axis=1, keepdims=True)


def _mask_strides(mask: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Element strides of the stored mask broadcast to `shape` (0 along broadcast axes)."""
    view = np.broadcast_to(mask, shape)
    return tuple(s // mask.itemsize for s in view.strides)  # type: ignore[return-value]


def emulate_normal(x: np.ndarray, maps: np.ndarray, mask: np.ndarray, phase: complex) -> np.ndarray:
    """The fused normal operator's callbacks (forward: expand prolog + mask epilog; inverse:
    reduce epilog) around NumPy FFTs, then the coil sum."""
    shape = maps.shape
    m = np.ascontiguousarray(mask.astype(np.uint8))
    pro, _ = expand_callbacks(shape, x.strides[0] // x.itemsize if x.shape[0] > 1 else 0)
    epi = mask_epilog(shape, _mask_strides(m, shape), phase)
    ks = _run_fft(maps, pro, epi, x.reshape(-1), m.reshape(-1), inverse=False)
    msb = maps.strides[0] // maps.itemsize if maps.shape[0] > 1 else 0
    _, repi = reduce_callbacks(shape, msb, maps.strides[1] // maps.itemsize)
    return _run_fft(ks, None, repi, None, maps.reshape(-1), inverse=True).sum(axis=1, keepdims=True)


# --------------------------------------------------------------------------- GPU path (unmeasured)


def enabled() -> bool:
    """Whether the callback variant is asked for (RECON_FFT_FUSION=callbacks) and can run here."""
    return os.environ.get(ENV, "").lower() == "callbacks" and available()


def available() -> bool:
    """nvmath-python with numba-cuda, and a CUDA device."""
    try:
        import nvmath.fft  # noqa: F401
        from numba import cuda  # noqa: F401
    except Exception:  # ImportError, or a CUDA library that fails to load
        return False
    return torch.cuda.is_available()


_compiled: dict[tuple[Any, ...], Any] = {}


def _ltoir(kind: str, fn: Callable[..., Any], key: tuple[Any, ...], dtype: str, info_dtype: Any) -> Any:
    """LTO-IR of a callback, compiled once per (op, shape, strides, dtype) key (the first costs seconds)."""
    import nvmath.fft

    full = (kind, *key, dtype)
    if full not in _compiled:
        compile_fn = nvmath.fft.compile_prolog if kind == "prolog" else nvmath.fft.compile_epilog
        _compiled[full] = compile_fn(fn, dtype, info_dtype)
    return _compiled[full]


@functools.lru_cache(maxsize=1)
def _device_cis() -> Callable[..., complex]:
    from numba import cuda

    return cuda.jit(device=True)(cis_halfturns)


def sens_expand(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor | None:
    """fft2c(maps * x) as one FFT with callbacks; None when the layout is not one the prototype takes."""
    import nvmath.fft

    if maps.shape[0] != torch.broadcast_shapes(x.shape, maps.shape)[0] or not maps.is_contiguous() \
            or not x.is_contiguous() or maps.is_conj() or x.is_conj():
        return None
    dtype = "complex64" if maps.dtype == torch.complex64 else "complex128"
    xsb = x.stride(0) if x.shape[0] > 1 else 0
    key = (tuple(maps.shape), xsb)
    pro, epi = expand_callbacks(tuple(maps.shape), xsb, _device_cis())
    prolog = nvmath.fft.DeviceCallable(ltoir=_ltoir("prolog", pro, ("expand", *key), dtype, dtype), data=x.data_ptr())
    epilog = nvmath.fft.DeviceCallable(ltoir=_ltoir("epilog", epi, ("expand", *key), dtype, dtype))
    return nvmath.fft.fft(maps, axes=[-2, -1], prolog=prolog, epilog=epilog,
                          stream=torch.cuda.current_stream())


def sens_reduce(k: torch.Tensor, maps: torch.Tensor) -> torch.Tensor | None:
    """sum_c conj(maps) ifft2c(k): one inverse FFT with callbacks and a coil sum; None to fall back."""
    import nvmath.fft

    if k.shape != torch.broadcast_shapes(k.shape, maps.shape) or not k.is_contiguous() \
            or maps.stride(-1) != 1 or maps.is_conj() or k.is_conj():
        return None
    dtype = "complex64" if k.dtype == torch.complex64 else "complex128"
    msb = maps.stride(0) if maps.shape[0] > 1 else 0
    key = (tuple(k.shape), msb, maps.stride(1))
    pro, epi = reduce_callbacks(tuple(k.shape), msb, maps.stride(1), _device_cis())
    prolog = nvmath.fft.DeviceCallable(ltoir=_ltoir("prolog", pro, ("reduce", *key), dtype, dtype))
    epilog = nvmath.fft.DeviceCallable(ltoir=_ltoir("epilog", epi, ("reduce", *key), dtype, dtype),
                                       data=maps.data_ptr())
    coils = nvmath.fft.ifft(k, axes=[-2, -1], prolog=prolog, epilog=epilog, stream=torch.cuda.current_stream())
    return coils.sum(dim=1, keepdim=True) / _inverse_scale(k)


def _inverse_scale(like: torch.Tensor) -> float:
    """The factor nvmath's ifft applies (1 unnormalized, 1/N normalized), probed once on a 2x2 array."""
    global _IFFT_SCALE
    if _IFFT_SCALE is None:
        import nvmath.fft

        probe = nvmath.fft.ifft(torch.ones(2, 2, dtype=like.dtype, device=like.device), axes=[-2, -1])
        _IFFT_SCALE = float(probe[0, 0].real.item()) / 4.0
    return _IFFT_SCALE


_IFFT_SCALE: float | None = None


def normal(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor, phase: complex) -> torch.Tensor | None:
    """A^H A x as two FFTs with callbacks and a coil sum; None to fall back to the plain kernels."""
    import nvmath.fft

    shape = tuple(maps.shape)
    if maps.shape[0] != torch.broadcast_shapes(x.shape, maps.shape)[0] or not maps.is_contiguous() \
            or not x.is_contiguous() or maps.is_conj() or x.is_conj() or mask.dtype not in (torch.bool, torch.uint8):
        return None
    dtype = "complex64" if maps.dtype == torch.complex64 else "complex128"
    xsb = x.stride(0) if x.shape[0] > 1 else 0
    mstrides = tuple(mask.expand(shape).stride())
    pro, _ = expand_callbacks(shape, xsb, _device_cis())
    mepi = mask_epilog(shape, mstrides, phase)  # type: ignore[arg-type]
    _, repi = reduce_callbacks(shape, maps.stride(0), maps.stride(1), _device_cis())
    from numba import types

    fwd = nvmath.fft.fft(
        maps, axes=[-2, -1], stream=torch.cuda.current_stream(),
        prolog=nvmath.fft.DeviceCallable(ltoir=_ltoir("prolog", pro, ("expand", shape, xsb), dtype, dtype),
                                         data=x.data_ptr()),
        epilog=nvmath.fft.DeviceCallable(ltoir=_ltoir("epilog", mepi, ("mask", shape, mstrides, phase), dtype,
                                                      types.uint8), data=mask.data_ptr()))
    coils = nvmath.fft.ifft(
        fwd, axes=[-2, -1], stream=torch.cuda.current_stream(),
        epilog=nvmath.fft.DeviceCallable(ltoir=_ltoir("epilog", repi, ("reduce", shape, maps.stride(0),
                                                                       maps.stride(1)), dtype, dtype),
                                         data=maps.data_ptr()))
    return coils.sum(dim=1, keepdim=True) / _inverse_scale(maps)
