"""CUDA backend of `recon.ops`: the custom kernels of `kernels/*.cu`, run through CuPy.

Same functions and signatures as `recon.ops.torch_backend` (fft2c, ifft2c, sens_expand,
sens_reduce, soft_dc, hard_dc, normal, rss) plus `available()`. Tensors stay torch tensors:
CuPy sees zero-copy DLPack views and runs on torch's current CUDA stream.

Each kernel-backed step is a PyTorch custom op in the `recon_kernels` namespace
(`torch.library.custom_op`): the CUDA implementation launches the kernels, a CPU implementation
computes the same result with plain torch, a fake (meta) implementation gives shapes, and a
registered autograd formula gives the gradient of every tensor input (data, maps, measured
k-space, the learned weight eta). So `torch.compile` and CUDA graphs treat the kernels as opaque
ops, and `torch.library.opcheck` checks the registrations. Gradients follow torch's convention for
complex tensors (the conjugate Wirtinger derivative): for a linear map `y = A x` the input gradient
is `A^H g`; for `y = conj(S) u` the gradient w.r.t. `S` is `u * conj(g)`; for the real weight eta,
`Re(sum conj(dy/deta) * g)`.

First derivatives only: the backward steps are fused kernels without autograd formulas of their
own, so a second backward through sens_expand, sens_reduce, soft_dc or rss raises (use the torch
backend, `ops.use_backend("torch")`, for double backward, e.g. gradient penalties). fft2c/ifft2c and
hard_dc are closed under differentiation and support it.

The centered FFT is one batched cuFFT between two elementwise modulation passes (see
`recon.ops.modulation`); the pre-modulation is fused into the sensitivity expand, the
post-modulation into the coil reduction, and in `normal` the post-modulation of the forward FFT,
the mask and the pre-modulation of the inverse FFT are one pass (their phase ramps cancel up to a
constant). Calls the kernels cannot take (CPU tensors, real or mixed dtypes, shapes other than the
documented `(B,1,H,W)` / `(B,C,H,W)` layouts, a non-scalar eta, 2^31 elements or more, planes of
65536 or more) fall back to the torch backend, so the backend is always correct. Importing this
module never needs CuPy; `available()` says whether the kernels can run.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numpy as np
import torch

from recon.ops import modulation
from recon.ops import torch_backend as _tb

_POST_FORWARD = +1
_POST_INVERSE = -1
_MAX_ELEMENTS = 2**31 - 1
_MAX_SIDE = 65535
_NS = "recon_kernels"
# The kernel runtime (`_cupy_kernels` when None) and the device types the kernels take. The CPU
# test harness (tests/kernel_harness) sets a host copy of `_cupy_kernels` bound to a CuPy stand-in
# and adds "cpu", so this module's code runs the real kernel source on the host.
_runtime: ModuleType | None = None
_KERNEL_DEVICES: tuple[str, ...] = ("cuda",)


def available() -> bool:
    """True only when CuPy imports and torch and CuPy both see a CUDA device."""
    try:
        import cupy

        return torch.cuda.is_available() and cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDARuntimeError without a driver
        return False


def _k() -> ModuleType:
    """The CuPy kernel helpers (imported on first use: needs CuPy)."""
    if _runtime is not None:
        return _runtime
    from recon.ops import _cupy_kernels

    return _cupy_kernels


def _kernel_ok(*tensors: torch.Tensor) -> bool:
    """Whether all tensors are CUDA tensors of one complex dtype the kernels have, small enough
    for their 32-bit index math."""
    dtype = tensors[0].dtype
    return dtype in (torch.complex64, torch.complex128) and all(
        t.device.type in _KERNEL_DEVICES and t.dtype == dtype and t.numel() <= _MAX_ELEMENTS
        and (t.ndim < 2 or max(t.shape[-2:]) <= _MAX_SIDE)
        for t in tensors
    )


def _dense(t: torch.Tensor) -> torch.Tensor:
    """`t` materialized (conjugate/negative bits resolved) and C-contiguous; no copy when it is."""
    return t.resolve_conj().resolve_neg().contiguous()


def _planes(t: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, int, int]:
    """`t` for a kernel reading it as 4-D `shape` with contiguous (H, W) planes.

    Returns `(base, batch_stride, coil_stride)`: `base` is `t` itself (or a contiguous copy when
    its planes are strided or it carries a lazy conjugate/negative bit), the strides in elements
    are those of `base` broadcast to `shape` (0 along broadcast axes). The kernel gets `base`'s
    pointer, so no broadcast copy is made.
    """
    base = t.resolve_conj().resolve_neg()
    if (base.stride(-1) != 1 or (base.shape[-2] > 1 and base.stride(-2) != shape[-1])
            or base.shape[-2:] != shape[-2:]):
        base = base.expand(shape).contiguous()
    e = base.expand(shape)
    return base, e.stride(0), e.stride(1)


def _mask_args(mask: torch.Tensor, shape: torch.Size) -> tuple[Any, ...]:
    """The one-byte mask as stored and its four element strides when broadcast to 4-D `shape`."""
    k = _k()
    return (mask, *(k.i64(s) for s in mask.expand(shape).stride()))


def _dims(shape: torch.Size) -> tuple[Any, ...]:
    k = _k()
    return tuple(k.i32(s) for s in shape)


def _none_like(t: torch.Tensor) -> torch.Tensor:
    """An empty tensor: what a custom op returns for an output that was not asked for, and the
    pointer a kernel gets for a buffer its flags say it does not touch (the CPU harness maps it
    between guard pages, so touching it faults)."""
    return t.new_empty((0,))


def _real(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype == torch.complex64 else torch.float64


def _normal_phase(h: int, w: int) -> complex:
    """post(forward) * pre(inverse) of the centered FFTs: a constant exp(-2i pi (s_h^2/H + s_w^2/W))."""
    sh, sw = h // 2, w // 2
    ph = -2.0 * ((sh * sh) % h / h + (sw * sw) % w / w)
    return complex(modulation.expi_pi(np.array(ph)))


# --------------------------------------------------------------------------- kernel implementations


def _fft_impl(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    """Centered orthonormal (i)FFT over the last two axes: modulate, cuFFT in place, modulate."""
    k = _k()
    x = _dense(x)
    h, w = x.shape[-2], x.shape[-1]
    sign = _POST_INVERSE if inverse else _POST_FORWARD
    out = torch.empty_like(x)
    n = x.numel()
    mod = k.module("centered_mod")
    name = f"modulate_{k.suffix(x.dtype)}"
    with k.torch_stream():
        k.launch(mod, name, n, (x, out, k.i32(n), k.i32(h), k.i32(w), k.i32(0), k.i32(0), k.i32(sign),
                                k.real_scalar(x.dtype, 1.0)))
        k.fft2_inplace(out, inverse)
        k.launch(mod, name, n, (out, out, k.i32(n), k.i32(h), k.i32(w), k.i32(h // 2), k.i32(w // 2),
                                k.i32(sign), k.real_scalar(x.dtype, 1.0 / math.sqrt(h * w))))
    return out


def _expand_premod(x: torch.Tensor, maps: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """maps * x * pre-modulation, forward FFT, unnormalized: contiguous `shape` = (B,C,H,W), post-mod pending."""
    k = _k()
    b, c, h, w = shape
    xe, xsb, xsc = _planes(x, shape)
    me, msb, msc = _planes(maps, shape)
    out = torch.empty(shape, dtype=maps.dtype, device=maps.device)
    with k.torch_stream():
        k.launch(k.module("sens"), f"expand_premod_{k.suffix(maps.dtype)}", out.numel(),
                 (xe, k.i64(xsb), k.i64(xsc), me, k.i64(msb), k.i64(msc),
                  out, k.i32(b), k.i32(c), k.i32(h), k.i32(w), k.i32(_POST_FORWARD)))
        k.fft2_inplace(out, inverse=False)
    return out


def _expand(x: torch.Tensor, maps: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`fft2c(maps * x)` into a new contiguous `shape` = (B,C,H,W) tensor (fused pre-modulation)."""
    k = _k()
    h, w = shape[-2], shape[-1]
    with k.torch_stream():
        out = _expand_premod(x, maps, shape)
        k.launch(k.module("centered_mod"), f"modulate_{k.suffix(out.dtype)}", out.numel(),
                 (out, out, k.i32(out.numel()), k.i32(h), k.i32(w), k.i32(h // 2), k.i32(w // 2),
                  k.i32(_POST_FORWARD), k.real_scalar(out.dtype, 1.0 / math.sqrt(h * w))))
    return out


def _inverse_unmodulated(kspace: torch.Tensor) -> torch.Tensor:
    """Pre-modulated, unnormalized inverse FFT of (B,C,H,W) k-space (post-modulation pending)."""
    k = _k()
    kspace = _dense(kspace)
    h, w = kspace.shape[-2], kspace.shape[-1]
    img = torch.empty_like(kspace)
    n = kspace.numel()
    with k.torch_stream():
        k.launch(k.module("centered_mod"), f"modulate_{k.suffix(kspace.dtype)}", n,
                 (kspace, img, k.i32(n), k.i32(h), k.i32(w), k.i32(0), k.i32(0), k.i32(_POST_INVERSE),
                  k.real_scalar(kspace.dtype, 1.0)))
        k.fft2_inplace(img, inverse=True)
    return img


def _coil_reduce(
    img: torch.Tensor, maps: torch.Tensor, x: torch.Tensor | None, want_sum: bool, want_maps: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Post-modulate `img` (contiguous (B,C,H,W), from `_inverse_unmodulated`) and combine coils.

    Returns `(sum_c conj(maps_c) * v_c  (B,1,H,W), conj(x) * v  (B,C,H,W))`, v the coil images;
    each only if asked for. `x` is `(B,1,H,W)`-broadcastable, needed only for the second.
    """
    k = _k()
    b, c, h, w = img.shape
    me, msb, msc = _planes(maps, img.shape)
    xe, xsb, _ = _planes(x, torch.Size((b, 1, h, w))) if want_maps and x is not None else (_none_like(img), 0, 0)
    out_sum = img.new_empty((b, 1, h, w)) if want_sum else _none_like(img)
    out_maps = torch.empty_like(img) if want_maps else _none_like(img)
    flags = (1 if want_sum else 0) | (2 if want_maps else 0)
    with k.torch_stream():
        k.launch(k.module("sens"), f"coil_reduce_postmod_{k.suffix(img.dtype)}", b * h * w,
                 (img, me, k.i64(msb), k.i64(msc), xe, k.i64(xsb), out_sum, out_maps,
                  k.i32(b), k.i32(c), k.i32(h), k.i32(w), k.i32(_POST_INVERSE),
                  k.real_scalar(img.dtype, 1.0 / math.sqrt(h * w)), k.i32(flags)))
    return (out_sum if want_sum else None), (out_maps if want_maps else None)


def _fused(name: str, *args: Any) -> torch.Tensor | None:
    """The cuFFT-callback prototype's result (RECON_FFT_FUSION=callbacks on a GPU with
    nvmath-python), or None: the plain kernels run."""
    from recon.ops import fft_fusion

    return getattr(fft_fusion, name)(*args) if fft_fusion.enabled() else None


def _expand_impl(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    fused = _fused("sens_expand", x, maps)
    return fused if fused is not None else _expand(x, maps, torch.broadcast_shapes(x.shape, maps.shape))


def _expand_bwd_impl(g: torch.Tensor, x: torch.Tensor, maps: torch.Tensor, want_x: bool,
                     want_maps: bool) -> tuple[torch.Tensor, torch.Tensor]:
    with _k().torch_stream():
        img = _inverse_unmodulated(g)
        gx, gmaps = _coil_reduce(img, maps, x, want_x, want_maps)
    return (gx if gx is not None else _none_like(g)), (gmaps if gmaps is not None else _none_like(g))


def _reduce_impl(kspace: torch.Tensor, maps: torch.Tensor, keep_img: bool) -> tuple[torch.Tensor, torch.Tensor]:
    fused = None if keep_img else _fused("sens_reduce", kspace, maps)
    if fused is not None:
        return fused, _none_like(fused)
    shape = torch.broadcast_shapes(kspace.shape, maps.shape)
    with _k().torch_stream():
        img = _inverse_unmodulated(kspace.expand(shape))
        out, _ = _coil_reduce(img, maps, None, True, False)
    assert out is not None
    return out, (img if keep_img else _none_like(out))


def _reduce_bwd_impl(g: torch.Tensor, maps: torch.Tensor, img: torch.Tensor, want_k: bool,
                     want_maps: bool) -> tuple[torch.Tensor, torch.Tensor]:
    gk = gmaps = None
    with _k().torch_stream():
        if want_k:
            gk = _expand(g, maps, torch.broadcast_shapes(g.shape[:1] + maps.shape[1:], maps.shape))
        if want_maps:
            _, gmaps = _coil_reduce(img, maps, g, False, True)
    return (gk if gk is not None else _none_like(g)), (gmaps if gmaps is not None else _none_like(g))


def _eta_args(eta: torch.Tensor | None, eta_value: float, like: torch.Tensor) -> tuple[Any, ...]:
    """(pointer, from-pointer flag, value) kernel arguments for eta; a tensor eta stays on the device."""
    k = _k()
    if eta is None:
        return like.new_empty((0,), dtype=_real(like.dtype)), k.i32(0), k.real_scalar(like.dtype, eta_value)
    e = eta.detach().reshape(()).to(_real(like.dtype))  # a no-op when eta already has the real dtype
    return e, k.i32(1), k.real_scalar(like.dtype, 0.0)


def _soft_dc_impl(kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor, eta: torch.Tensor | None,
                  eta_value: float) -> torch.Tensor:
    k = _k()
    kc = _dense(kspace)
    k0c = _dense(k0.expand(kc.shape))
    out = torch.empty_like(kc)
    with k.torch_stream():
        k.launch(k.module("dc"), f"soft_dc_{k.suffix(kc.dtype)}", kc.numel(),
                 (kc, k0c, *_mask_args(mask, kc.shape), *_eta_args(eta, eta_value, kc), out, *_dims(kc.shape)))
    return out


def _soft_dc_bwd_impl(g: torch.Tensor, kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor,
                      eta: torch.Tensor | None, eta_value: float, want_k: bool, want_k0: bool,
                      want_eta: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    k = _k()
    g = _dense(g)
    kc = _dense(kspace) if want_eta else _none_like(g)
    k0c = _dense(k0.expand(g.shape)) if want_eta else _none_like(g)
    gk = torch.empty_like(g) if want_k else _none_like(g)
    gk0 = torch.empty_like(g) if want_k0 else _none_like(g)
    geta = torch.zeros(1, dtype=torch.float64, device=g.device) if want_eta else _none_like(g)
    flags = (1 if want_k else 0) | (2 if want_k0 else 0) | (4 if want_eta else 0)
    with k.torch_stream():
        k.launch(k.module("dc"), f"soft_dc_backward_{k.suffix(g.dtype)}", g.numel(),
                 (g, kc, k0c, *_mask_args(mask, g.shape), *_eta_args(eta, eta_value, g), gk, gk0,
                  geta, *_dims(g.shape), k.i32(flags)))
    return gk, gk0, geta


def _hard_dc_impl(kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    k = _k()
    kc = _dense(kspace)
    k0c = _dense(k0.expand(kc.shape))
    out = torch.empty_like(kc)
    with k.torch_stream():
        k.launch(k.module("dc"), f"hard_dc_{k.suffix(kc.dtype)}", kc.numel(),
                 (kc, k0c, *_mask_args(mask, kc.shape), out, *_dims(kc.shape)))
    return out


def _mask_select_impl(g: torch.Tensor, mask: torch.Tensor, keep: bool, drop: bool) -> tuple[torch.Tensor, torch.Tensor]:
    k = _k()
    g = _dense(g)
    out_keep = torch.empty_like(g) if keep else _none_like(g)
    out_drop = torch.empty_like(g) if drop else _none_like(g)
    flags = (1 if keep else 0) | (2 if drop else 0)
    with k.torch_stream():
        k.launch(k.module("dc"), f"mask_select_{k.suffix(g.dtype)}", g.numel(),
                 (g, *_mask_args(mask, g.shape), out_keep, out_drop, *_dims(g.shape), k.i32(flags)))
    return out_keep, out_drop


def _normal_impl(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fused `A^H A x`: expand+premod, FFT, one mask-and-phase pass, iFFT, postmod+coil sum."""
    k = _k()
    shape = torch.broadcast_shapes(x.shape, maps.shape)
    h, w = shape[-2], shape[-1]
    fused = _fused("normal", x, maps, mask, _normal_phase(h, w))
    if fused is not None:
        return fused
    f = _normal_phase(h, w) / math.sqrt(h * w)
    with k.torch_stream():
        ks = _expand_premod(x, maps, shape)
        k.launch(k.module("dc"), f"mask_scale_{k.suffix(ks.dtype)}", ks.numel(),
                 (ks, *_mask_args(mask, shape), ks, *_dims(shape), k.real_scalar(ks.dtype, f.real),
                  k.real_scalar(ks.dtype, f.imag)))
        k.fft2_inplace(ks, inverse=True)
        out, _ = _coil_reduce(ks, maps, None, True, False)
    assert out is not None
    return out


def _rss_impl(x: torch.Tensor, dim: int) -> torch.Tensor:
    k = _k()
    xc = _dense(x)
    dim = dim % x.ndim
    outer, inner = math.prod(x.shape[:dim]), math.prod(x.shape[dim + 1:])
    out = torch.empty(x.shape[:dim] + x.shape[dim + 1:], dtype=_real(x.dtype), device=x.device)
    with k.torch_stream():
        k.launch(k.module("rss"), f"rss_{k.suffix(x.dtype)}", outer * inner,
                 (xc, out, k.i32(outer), k.i32(x.shape[dim]), k.i32(inner)))
    return out


def _rss_bwd_impl(g: torch.Tensor, x: torch.Tensor, out: torch.Tensor, dim: int) -> torch.Tensor:
    k = _k()
    xc = _dense(x)
    dim = dim % x.ndim
    outer, inner = math.prod(x.shape[:dim]), math.prod(x.shape[dim + 1:])
    gx = torch.empty_like(xc)
    with k.torch_stream():
        k.launch(k.module("rss"), f"rss_backward_{k.suffix(xc.dtype)}", xc.numel(),
                 (_dense(g), xc, _dense(out), gx, k.i32(outer), k.i32(x.shape[dim]), k.i32(inner)))
    return gx


# --------------------------------------------------------------------------- CPU references
# Conjugates are taken with conj_physical: inside a custom op traced by AOTAutograd the lazy
# conjugate bit of `t.conj()` is not honoured by the following multiply (opcheck caught it).


def _pre_inverse(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    f = modulation.factor_2d((h, w), post=False, inverse=True)
    return torch.from_numpy(f).to(device=like.device, dtype=like.dtype)


def _post_inverse(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    f = modulation.factor_2d((h, w), post=True, inverse=True) / math.sqrt(h * w)
    return torch.from_numpy(f).to(device=like.device, dtype=like.dtype)


def _ref_fft(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    return (_tb.ifft2c if inverse else _tb.fft2c)(x).contiguous()


def _ref_expand_bwd(g: torch.Tensor, x: torch.Tensor, maps: torch.Tensor, want_x: bool,
                    want_maps: bool) -> tuple[torch.Tensor, torch.Tensor]:
    img = _tb.ifft2c(g)
    gx = (torch.conj_physical(maps) * img).sum(dim=1, keepdim=True) if want_x else _none_like(g)
    gmaps = (torch.conj_physical(x) * img).contiguous() if want_maps else _none_like(g)
    return gx, gmaps


def _ref_reduce(kspace: torch.Tensor, maps: torch.Tensor, keep_img: bool) -> tuple[torch.Tensor, torch.Tensor]:
    shape = torch.broadcast_shapes(kspace.shape, maps.shape)
    out = (torch.conj_physical(maps) * _tb.ifft2c(kspace)).sum(dim=1, keepdim=True)
    if not keep_img:
        return out, _none_like(out)
    h, w = shape[-2], shape[-1]
    img = torch.fft.ifft2(kspace.expand(shape) * _pre_inverse(h, w, kspace), norm="forward")
    return out, img.contiguous()


def _ref_reduce_bwd(g: torch.Tensor, maps: torch.Tensor, img: torch.Tensor, want_k: bool,
                    want_maps: bool) -> tuple[torch.Tensor, torch.Tensor]:
    gk = _tb.sens_expand(g, maps).contiguous() if want_k else _none_like(g)
    if want_maps:
        h, w = img.shape[-2], img.shape[-1]
        gmaps = (img * _post_inverse(h, w, img) * torch.conj_physical(g)).contiguous()
    else:
        gmaps = _none_like(g)
    return gk, gmaps


def _ref_eta(eta: torch.Tensor | None, eta_value: float, like: torch.Tensor) -> torch.Tensor | float:
    return eta.detach().reshape(()).to(_real(like.dtype)) if eta is not None else eta_value


def _ref_soft_dc(kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor, eta: torch.Tensor | None,
                 eta_value: float) -> torch.Tensor:
    return _tb.soft_dc(kspace, k0, mask, _ref_eta(eta, eta_value, kspace)).contiguous()


def _ref_soft_dc_bwd(g: torch.Tensor, kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor,
                     eta: torch.Tensor | None, eta_value: float, want_k: bool, want_k0: bool,
                     want_eta: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    e = _ref_eta(eta, eta_value, g)
    m = mask.bool().expand(g.shape)
    zero = torch.zeros((), dtype=g.dtype, device=g.device)
    gk = torch.where(m, g - e * g, g).contiguous() if want_k else _none_like(g)
    gk0 = torch.where(m, e * g, zero).contiguous() if want_k0 else _none_like(g)
    if want_eta:
        d = torch.where(m, kspace - k0, zero)
        geta = -(g.real.double() * d.real.double() + g.imag.double() * d.imag.double()).sum().reshape(1)
    else:
        geta = _none_like(g)
    return gk, gk0, geta


def _ref_hard_dc(kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return _tb.hard_dc(kspace, k0, mask).contiguous()


def _ref_mask_select(g: torch.Tensor, mask: torch.Tensor, keep: bool, drop: bool) -> tuple[torch.Tensor, torch.Tensor]:
    m = mask.bool()
    zero = torch.zeros((), dtype=g.dtype, device=g.device)
    return (torch.where(m, g, zero).contiguous() if keep else _none_like(g),
            torch.where(m, zero, g).contiguous() if drop else _none_like(g))


def _ref_normal(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    kspace = _tb.sens_expand(x, maps)
    kspace = torch.where(mask.bool(), kspace, torch.zeros((), dtype=kspace.dtype, device=kspace.device))
    return (torch.conj_physical(maps) * _tb.ifft2c(kspace)).sum(dim=1, keepdim=True)


def _ref_rss(x: torch.Tensor, dim: int) -> torch.Tensor:
    return _tb.rss(x, dim).contiguous()


def _ref_rss_bwd(g: torch.Tensor, x: torch.Tensor, out: torch.Tensor, dim: int) -> torch.Tensor:
    dim = dim % x.ndim
    o = out.unsqueeze(dim)
    s = torch.where(o > 0, g.unsqueeze(dim) / torch.where(o > 0, o, torch.ones_like(o)), torch.zeros_like(o))
    return (x * s).contiguous()


# --------------------------------------------------------------------------- custom ops


def _define(name: str, impl: Any, ref: Any, fake: Any) -> Any:
    """`recon_kernels::name`: kernels by default (CUDA), `ref` on the CPU, `fake` for tracing."""
    op = torch.library.custom_op(f"{_NS}::{name}", impl, mutates_args=())
    op.register_kernel("cpu", ref)
    op.register_fake(fake)
    return op


def _fake_like(t: torch.Tensor, shape: Any = None, dtype: torch.dtype | None = None) -> torch.Tensor:
    return t.new_empty(t.shape if shape is None else shape, dtype=dtype or t.dtype)


def _fake_pair(g: torch.Tensor, a_shape: Any, want_a: bool, b_shape: Any, want_b: bool) -> tuple[torch.Tensor, torch.Tensor]:
    return (g.new_empty(a_shape if want_a else (0,)), g.new_empty(b_shape if want_b else (0,)))


def _bshape(*shapes: Any) -> torch.Size:
    return torch.broadcast_shapes(*shapes)


def fft_op(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    """Centered orthonormal 2-D (i)FFT over the last two axes."""
    return _fft_impl(x, inverse)


def expand_op(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """`fft2c(maps * x)`, (B|1,1,H,W) x (B|1,C,H,W) -> (B,C,H,W)."""
    return _expand_impl(x, maps)


def expand_bwd_op(g: torch.Tensor, x: torch.Tensor, maps: torch.Tensor, want_x: bool,
                  want_maps: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of `expand_op`: sum_c conj(maps) ifft2c(g) (B,1,H,W), conj(x) ifft2c(g) (B,C,H,W)."""
    return _expand_bwd_impl(g, x, maps, want_x, want_maps)


def reduce_op(kspace: torch.Tensor, maps: torch.Tensor, keep_img: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`sum_c conj(maps) ifft2c(k)` (B,1,H,W), and the coil images before post-modulation if kept."""
    return _reduce_impl(kspace, maps, keep_img)


def reduce_bwd_op(g: torch.Tensor, maps: torch.Tensor, img: torch.Tensor, want_k: bool,
                  want_maps: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of `reduce_op`: fft2c(maps g) (B,C,H,W), post(img) conj(g) (B,C,H,W)."""
    return _reduce_bwd_impl(g, maps, img, want_k, want_maps)


def soft_dc_op(kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor, eta: torch.Tensor | None,
               eta_value: float) -> torch.Tensor:
    """`k - eta m (k - k0)`, eta a device scalar tensor or (eta None) the float eta_value."""
    return _soft_dc_impl(kspace, k0, mask, eta, eta_value)


def soft_dc_bwd_op(g: torch.Tensor, kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor,
                   eta: torch.Tensor | None, eta_value: float, want_k: bool, want_k0: bool,
                   want_eta: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of `soft_dc_op` w.r.t. k, k0 (full shape) and eta (float64, shape (1,))."""
    return _soft_dc_bwd_impl(g, kspace, k0, mask, eta, eta_value, want_k, want_k0, want_eta)


def hard_dc_op(kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """`where(m, k0, k)`."""
    return _hard_dc_impl(kspace, k0, mask)


def mask_select_op(g: torch.Tensor, mask: torch.Tensor, keep: bool, drop: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`(where(m, g, 0), where(m, 0, g))`, each only if asked for."""
    return _mask_select_impl(g, mask, keep, drop)


def normal_op(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Fused SENSE normal operator `A^H A x`."""
    return _normal_impl(x, maps, mask)


def rss_op(x: torch.Tensor, dim: int) -> torch.Tensor:
    """Root sum of squares of magnitudes along `dim`."""
    return _rss_impl(x, dim)


def rss_bwd_op(g: torch.Tensor, x: torch.Tensor, out: torch.Tensor, dim: int) -> torch.Tensor:
    """Gradient of `rss_op`: g x / rss (0 where rss is 0)."""
    return _rss_bwd_impl(g, x, out, dim)


def _rss_shape(x: torch.Tensor, dim: int) -> torch.Size:
    dim = dim % x.ndim
    return x.shape[:dim] + x.shape[dim + 1:]


_fft = _define("fft", fft_op, _ref_fft, lambda x, inverse: _fake_like(x))
_expand_bwd = _define(
    "expand_backward", expand_bwd_op, _ref_expand_bwd,
    lambda g, x, maps, want_x, want_maps: _fake_pair(
        g, (g.shape[0], 1, *g.shape[2:]), want_x, g.shape, want_maps))
_expand_op = _define("expand", expand_op, lambda x, maps: _tb.sens_expand(x, maps).contiguous(),
                     lambda x, maps: x.new_empty(_bshape(x.shape, maps.shape)))
_reduce_bwd = _define(
    "reduce_backward", reduce_bwd_op, _ref_reduce_bwd,
    lambda g, maps, img, want_k, want_maps: _fake_pair(
        g, _bshape(g.shape[:1] + maps.shape[1:], maps.shape), want_k, img.shape, want_maps))


def _fake_reduce(kspace: torch.Tensor, maps: torch.Tensor, keep_img: bool) -> tuple[torch.Tensor, torch.Tensor]:
    shape = _bshape(kspace.shape, maps.shape)
    out = kspace.new_empty((shape[0], 1, *shape[2:]))
    return out, kspace.new_empty(shape if keep_img else (0,))


_reduce_op = _define("reduce", reduce_op, _ref_reduce, _fake_reduce)
_soft_dc_bwd = _define(
    "soft_dc_backward", soft_dc_bwd_op, _ref_soft_dc_bwd,
    lambda g, kspace, k0, mask, eta, eta_value, want_k, want_k0, want_eta: (
        g.new_empty(g.shape if want_k else (0,)), g.new_empty(g.shape if want_k0 else (0,)),
        g.new_empty((1,) if want_eta else (0,), dtype=torch.float64 if want_eta else g.dtype)))
_soft_dc_op = _define("soft_dc", soft_dc_op, _ref_soft_dc,
                      lambda kspace, k0, mask, eta, eta_value: _fake_like(kspace))
_mask_select = _define(
    "mask_select", mask_select_op, _ref_mask_select,
    lambda g, mask, keep, drop: _fake_pair(g, g.shape, keep, g.shape, drop))
_hard_dc_op = _define("hard_dc", hard_dc_op, _ref_hard_dc, lambda kspace, k0, mask: _fake_like(kspace))
_normal_op = _define("normal", normal_op, _ref_normal,
                     lambda x, maps, mask: x.new_empty((_bshape(x.shape, maps.shape)[0], 1, *x.shape[2:])))
_rss_bwd = _define("rss_backward", rss_bwd_op, _ref_rss_bwd, lambda g, x, out, dim: _fake_like(x))
_rss_op = _define("rss", rss_op, _ref_rss, lambda x, dim: x.new_empty(_rss_shape(x, dim), dtype=_real(x.dtype)))

KERNEL_OPS = (_fft, _expand_op, _expand_bwd, _reduce_op, _reduce_bwd, _soft_dc_op, _soft_dc_bwd, _hard_dc_op,
              _mask_select, _normal_op, _rss_op, _rss_bwd)


# --------------------------------------------------------------------------- autograd formulas


def _fft_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.inverse = inputs[1]


def _fft_backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
    return _fft(g, not ctx.inverse), None


def _expand_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, maps = inputs
    ctx.save_for_backward(x, maps)


def _expand_backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    x, maps = ctx.saved_tensors
    want_x, want_maps = ctx.needs_input_grad
    gx, gmaps = _expand_bwd(g, x, maps, want_x, want_maps)
    return (gx.sum_to_size(x.shape) if want_x else None, gmaps.sum_to_size(maps.shape) if want_maps else None)


def _reduce_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    kspace, maps, _ = inputs
    ctx.kshape = kspace.shape
    ctx.save_for_backward(maps, output[1])


def _reduce_backward(ctx: Any, g: torch.Tensor, _g_img: Any) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
    maps, img = ctx.saved_tensors
    want_k, want_maps = ctx.needs_input_grad[:2]
    if want_maps and img.numel() == 0:
        raise RuntimeError("recon_kernels::reduce: the maps gradient needs keep_img=True in the forward call")
    gk, gmaps = _reduce_bwd(g, maps, img, want_k, want_maps)
    return (gk.sum_to_size(ctx.kshape) if want_k else None, gmaps.sum_to_size(maps.shape) if want_maps else None,
            None)


def _soft_dc_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    kspace, k0, mask, eta, eta_value = inputs
    ctx.eta_value = eta_value
    ctx.k0shape = k0.shape
    ctx.eta_meta = None if eta is None else (eta.shape, eta.dtype)
    ctx.save_for_backward(kspace, k0, mask, eta)


def _soft_dc_backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
    kspace, k0, mask, eta = ctx.saved_tensors
    want_k, want_k0, _, want_eta, _ = ctx.needs_input_grad
    gk, gk0, geta = _soft_dc_bwd(g, kspace, k0, mask, eta, ctx.eta_value, want_k, want_k0, want_eta)
    geta_out = None
    if want_eta:
        shape, dtype = ctx.eta_meta
        geta_out = geta.to(dtype).reshape(shape)
    return (gk if want_k else None, gk0.sum_to_size(ctx.k0shape) if want_k0 else None, None, geta_out, None)


def _hard_dc_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.k0shape = inputs[1].shape
    ctx.save_for_backward(inputs[2])


def _hard_dc_backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
    (mask,) = ctx.saved_tensors
    want_k, want_k0, _ = ctx.needs_input_grad
    keep, drop = _mask_select(g, mask, want_k0, want_k)
    return (drop if want_k else None, keep.sum_to_size(ctx.k0shape) if want_k0 else None, None)


def _mask_select_setup(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
    ctx.flags = inputs[2:]
    ctx.save_for_backward(inputs[1])


def _mask_select_backward(ctx: Any, g_keep: torch.Tensor | None, g_drop: torch.Tensor | None) -> tuple[Any, ...]:
    (mask,) = ctx.saved_tensors
    keep, drop = ctx.flags
    total = None
    if keep and g_keep is not None and g_keep.numel():
        total = _mask_select(g_keep, mask, True, False)[0]
    if drop and g_drop is not None and g_drop.numel():
        d = _mask_select(g_drop, mask, False, True)[1]
        total = d if total is None else total + d
    return total, None, None, None


def _normal_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, maps, mask = inputs
    ctx.xshape = x.shape
    ctx.save_for_backward(maps, mask)


def _normal_backward(ctx: Any, g: torch.Tensor) -> tuple[Any, ...]:
    maps, mask = ctx.saved_tensors
    if ctx.needs_input_grad[1]:
        raise RuntimeError("recon_kernels::normal has no maps gradient; recon.ops.normal composes "
                           "sens_expand/sens_reduce when maps require grad")
    gx = _normal_op(g, maps, mask).sum_to_size(ctx.xshape) if ctx.needs_input_grad[0] else None
    return gx, None, None  # A^H A is self-adjoint


def _rss_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.dim = inputs[1]
    ctx.save_for_backward(inputs[0], output)


def _rss_backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
    x, out = ctx.saved_tensors
    return _rss_bwd(g, x, out, ctx.dim), None


_fft.register_autograd(_fft_backward, setup_context=_fft_setup)
_expand_op.register_autograd(_expand_backward, setup_context=_expand_setup)
_reduce_op.register_autograd(_reduce_backward, setup_context=_reduce_setup)
_soft_dc_op.register_autograd(_soft_dc_backward, setup_context=_soft_dc_setup)
_hard_dc_op.register_autograd(_hard_dc_backward, setup_context=_hard_dc_setup)
_mask_select.register_autograd(_mask_select_backward, setup_context=_mask_select_setup)
_normal_op.register_autograd(_normal_backward, setup_context=_normal_setup)
_rss_op.register_autograd(_rss_backward, setup_context=_rss_setup)


# --------------------------------------------------------------------------- public API


def _bool_mask(mask: torch.Tensor) -> torch.Tensor:
    """The mask as one byte per element: bool and uint8 masks as they are (no copy), others `!= 0`."""
    return mask if mask.dtype in (torch.bool, torch.uint8) else mask != 0


def _guarded(t: torch.Tensor) -> Any:
    return _k().device_guard(t)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D FFT over the last two axes (any leading axes)."""
    if not (_kernel_ok(x) and x.ndim >= 2):
        return _tb.fft2c(x)
    with _guarded(x):
        return _fft(x, False)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D inverse FFT over the last two axes (any leading axes)."""
    if not (_kernel_ok(k) and k.ndim >= 2):
        return _tb.ifft2c(k)
    with _guarded(k):
        return _fft(k, True)


def _sens_layout_ok(image: torch.Tensor, maps: torch.Tensor) -> bool:
    """Image `(B|1, 1, H, W)` and maps `(B|1, C, H, W)` with matching planes."""
    return (image.ndim == 4 and maps.ndim == 4 and image.shape[1] == 1
            and image.shape[-2:] == maps.shape[-2:] and _kernel_ok(image, maps))


def sens_expand(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil k-space `fft2c(maps * x)`: image `(B,1,H,W)`, maps `(B,C,H,W)` -> `(B,C,H,W)`."""
    if not _sens_layout_ok(x, maps):
        return _tb.sens_expand(x, maps)
    with _guarded(x):
        return _expand_op(x, maps)


def sens_reduce(k: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil combination `sum_c conj(maps) * ifft2c(k)`: `(B,C,H,W)` -> `(B,1,H,W)`."""
    ok = k.ndim == 4 and maps.ndim == 4 and k.shape[-2:] == maps.shape[-2:] and _kernel_ok(k, maps)
    if not ok:
        return _tb.sens_reduce(k, maps)
    with _guarded(k):
        return _reduce_op(k, maps, maps.requires_grad and torch.is_grad_enabled())[0]


def _dc_layout_ok(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> bool:
    """4-D k-space, `k0` and `mask` broadcastable to it, mask on the same device."""
    try:
        same = torch.broadcast_shapes(k.shape, k0.shape, mask.shape) == k.shape
    except RuntimeError:
        return False
    return k.ndim == 4 and same and mask.device == k.device and _kernel_ok(k, k0)


_COMPLEX_OF = {torch.float16: torch.complex32, torch.float32: torch.complex64, torch.float64: torch.complex128}


def _promoted(eta: torch.Tensor, k: torch.Tensor) -> torch.dtype:
    """torch's result dtype of `eta * k` for real `eta` and complex `k`, written out because
    `torch.result_type` returns a dtype, which torch.compile cannot trace: a 0-dim `eta` takes
    `k`'s dtype, a (1,) `eta` widens it to the complex type of `eta`'s precision."""
    wide = _COMPLEX_OF.get(eta.dtype, k.dtype) if eta.ndim else k.dtype
    return wide if wide.itemsize > k.dtype.itemsize else k.dtype


def soft_dc(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor, eta: torch.Tensor | float) -> torch.Tensor:
    """Soft data consistency `k - eta * mask * (k - k0)`; mask (bool or 0/1) broadcasts to `k`.

    `eta` is a Python float (passed to the kernel by value, in the data's precision) or a real
    0-dim / 1-element tensor (read on the device; learned: its gradient is returned). The result
    dtype follows torch's promotion, as in the torch backend (a float64 `(1,)` eta with complex64
    data gives complex128).
    """
    if isinstance(eta, torch.Tensor):
        eta_ok = eta.numel() == 1 and not eta.is_complex() and eta.device == k.device
        if eta_ok and k.is_complex():
            dtype = _promoted(eta, k)
            if dtype != k.dtype and dtype.is_complex and k0.dtype == k.dtype:
                k, k0 = k.to(dtype), k0.to(dtype)
    else:
        eta_ok = True
    if not (eta_ok and _dc_layout_ok(k, k0, mask)):
        return _tb.soft_dc(k, k0, mask, eta)
    with _guarded(k):
        if isinstance(eta, torch.Tensor):
            return _soft_dc_op(k, k0, _bool_mask(mask), eta, 0.0)
        return _soft_dc_op(k, k0, _bool_mask(mask), None, float(eta))


def hard_dc(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard data consistency: measured samples `k0` where sampled, `k` elsewhere."""
    if not _dc_layout_ok(k, k0, mask):
        return _tb.hard_dc(k, k0, mask)
    with _guarded(k):
        return _hard_dc_op(k, k0, _bool_mask(mask))


def normal(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SENSE normal operator `A^H A x = sens_reduce(mask * sens_expand(x, maps), maps)`.

    One fused pipeline (5 passes); when `maps` needs a gradient, the three differentiable ops.
    """
    if not _sens_layout_ok(x, maps):
        return _tb.normal(x, maps, mask)
    shape = torch.broadcast_shapes(x.shape, maps.shape)
    try:
        mask_ok = torch.broadcast_shapes(shape, mask.shape) == shape and mask.device == x.device
    except RuntimeError:
        mask_ok = False
    if not mask_ok:
        return _tb.normal(x, maps, mask)
    m = _bool_mask(mask)
    with _guarded(x):
        if maps.requires_grad and torch.is_grad_enabled():
            kspace = _expand_op(x, maps)
            return _reduce_op(_mask_select(kspace, m, True, False)[0], maps, True)[0]
        return _normal_op(x, maps, m)


def rss(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root sum of squares of magnitudes along `dim`."""
    if not (_kernel_ok(x) and x.ndim >= 1):
        return _tb.rss(x, dim)
    with _guarded(x):
        return _rss_op(x, dim)
