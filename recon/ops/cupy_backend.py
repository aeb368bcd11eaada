"""CUDA backend of `recon.ops`: the custom kernels of `kernels/*.cu`, run through CuPy.

Same functions and signatures as `recon.ops.torch_backend` (fft2c, ifft2c, sens_expand,
sens_reduce, soft_dc, hard_dc, normal, rss) plus `available()`. Tensors stay torch tensors:
CuPy sees zero-copy DLPack views and runs on torch's current CUDA stream. Each op is a
`torch.autograd.Function` with a hand-written backward for every tensor input (data, maps,
measured k-space, the learned weight eta), so models train through it.

The centered FFT is one batched cuFFT between two elementwise modulation passes (see
`recon.ops.modulation`); the pre-modulation is fused into the sensitivity expand, the
post-modulation into the coil reduction. Gradients follow torch's convention for complex
tensors (the conjugate Wirtinger derivative): for a linear map `y = A x` the input gradient is
`A^H g`; for `y = conj(S) u` the gradient w.r.t. `S` is `u * conj(g)`; for the real weight eta,
`Re(sum conj(dy/deta) * g)`.

Calls the kernels cannot take (CPU tensors, real or mixed dtypes, shapes other than the
documented `(B,1,H,W)` / `(B,C,H,W)` layouts, a non-scalar eta) fall back to the torch backend,
so the backend is always correct and fast on the VarNet path. Each call runs under a device guard
for its tensors' GPU (the kernels are compiled per device) on that device's current torch stream. Importing this module never needs
CuPy; `available()` says whether the kernels can run.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import torch
from torch.autograd.function import FunctionCtx, once_differentiable

from recon.ops import torch_backend as _tb

_POST_FORWARD = +1
_POST_INVERSE = -1


def available() -> bool:
    """True only when CuPy imports and torch and CuPy both see a CUDA device."""
    try:
        import cupy

        return torch.cuda.is_available() and cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # ImportError, or CUDARuntimeError without a driver
        return False


# The kernel runtime (`_cupy_kernels` when None) and the device types the kernels take. The CPU
# test harness (tests/kernel_harness) sets a host copy of `_cupy_kernels` bound to a CuPy stand-in
# and adds "cpu", so this module's code runs the real kernel source on the host.
_runtime: ModuleType | None = None
_KERNEL_DEVICES: tuple[str, ...] = ("cuda",)


def _k() -> ModuleType:
    """The CuPy kernel helpers (imported on first use: needs CuPy)."""
    if _runtime is not None:
        return _runtime
    from recon.ops import _cupy_kernels

    return _cupy_kernels


def _kernel_ok(*tensors: torch.Tensor) -> bool:
    """Whether all tensors are CUDA tensors of one complex dtype the kernels have."""
    dtype = tensors[0].dtype
    return dtype in (torch.complex64, torch.complex128) and all(
        t.device.type in _KERNEL_DEVICES and t.dtype == dtype for t in tensors
    )


def _planes(t: torch.Tensor, shape: torch.Size) -> tuple[torch.Tensor, int, int]:
    """`t` for a kernel reading it as 4-D `shape` with contiguous (H, W) planes.

    Returns `(base, batch_stride, coil_stride)`: `base` is `t` itself (or a contiguous copy when
    its planes are strided), the strides in elements are those of `base` broadcast to `shape`
    (0 along broadcast axes). The kernel gets `base`'s pointer, so no broadcast copy is made.
    """
    base = t
    if t.stride(-1) != 1 or (t.shape[-2] > 1 and t.stride(-2) != shape[-1]) or t.shape[-2:] != shape[-2:]:
        base = t.expand(shape).contiguous()
    e = base.expand(shape)
    return base, e.stride(0), e.stride(1)


# --------------------------------------------------------------------------- raw (no autograd)


def _centered_fft(x: torch.Tensor, inverse: bool) -> torch.Tensor:
    """Centered orthonormal (i)FFT over the last two axes: modulate, cuFFT in place, modulate."""
    k = _k()
    x = x.contiguous()
    h, w = x.shape[-2], x.shape[-1]
    sign = _POST_INVERSE if inverse else _POST_FORWARD
    out = torch.empty_like(x)
    mod = k.module("centered_mod")
    name = f"modulate_{k.suffix(x.dtype)}"
    n = x.numel()
    with k.torch_stream():
        k.launch(mod, name, n, (x, out, k.i64(n), k.i32(h), k.i32(w), k.i32(0), k.i32(0), k.i32(sign),
                                k.real_scalar(x.dtype, 1.0)))
        k.fft2_inplace(out, inverse)
        k.launch(mod, name, n, (out, out, k.i64(n), k.i32(h), k.i32(w), k.i32(h // 2), k.i32(w // 2),
                                k.i32(sign), k.real_scalar(x.dtype, 1.0 / math.sqrt(h * w))))
    return out


def _expand(x: torch.Tensor, maps: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """`fft2c(maps * x)` into a new contiguous `shape` = (B,C,H,W) tensor (fused pre-modulation)."""
    k = _k()
    b, c, h, w = shape
    xe, xsb, xsc = _planes(x, shape)
    me, msb, msc = _planes(maps, shape)
    out = torch.empty(shape, dtype=maps.dtype, device=maps.device)
    sfx = k.suffix(maps.dtype)
    with k.torch_stream():
        k.launch(k.module("sens"), f"expand_premod_{sfx}", out.numel(),
                 (xe, k.i64(xsb), k.i64(xsc), me, k.i64(msb), k.i64(msc),
                  out, k.i32(b), k.i32(c), k.i32(h), k.i32(w), k.i32(_POST_FORWARD)))
        k.fft2_inplace(out, inverse=False)
        k.launch(k.module("centered_mod"), f"modulate_{sfx}", out.numel(),
                 (out, out, k.i64(out.numel()), k.i32(h), k.i32(w), k.i32(h // 2), k.i32(w // 2),
                  k.i32(_POST_FORWARD), k.real_scalar(out.dtype, 1.0 / math.sqrt(h * w))))
    return out


def _inverse_unmodulated(kspace: torch.Tensor) -> torch.Tensor:
    """Pre-modulated, unnormalized inverse FFT of contiguous (B,C,H,W) k-space (post-mod pending)."""
    k = _k()
    h, w = kspace.shape[-2], kspace.shape[-1]
    img = torch.empty_like(kspace)
    n = kspace.numel()
    with k.torch_stream():
        k.launch(k.module("centered_mod"), f"modulate_{k.suffix(kspace.dtype)}", n,
                 (kspace, img, k.i64(n), k.i32(h), k.i32(w), k.i32(0), k.i32(0), k.i32(_POST_INVERSE),
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
    xe, xsb, _ = _planes(x, torch.Size((b, 1, h, w))) if want_maps and x is not None else (img, 0, 0)
    out_sum = img.new_empty((b, 1, h, w)) if want_sum else img
    out_maps = torch.empty_like(img) if want_maps else img
    flags = (1 if want_sum else 0) | (2 if want_maps else 0)
    with k.torch_stream():
        k.launch(k.module("sens"), f"coil_reduce_postmod_{k.suffix(img.dtype)}", b * h * w,
                 (img, me, k.i64(msb), k.i64(msc), xe, k.i64(xsb), out_sum, out_maps,
                  k.i32(b), k.i32(c), k.i32(h), k.i32(w), k.i32(_POST_INVERSE),
                  k.real_scalar(img.dtype, 1.0 / math.sqrt(h * w)), k.i32(flags)))
    return (out_sum if want_sum else None), (out_maps if want_maps else None)


def _mask_args(mask: torch.Tensor, shape: torch.Size) -> tuple[Any, ...]:
    """uint8 mask (original size) and its four element strides when broadcast to 4-D `shape`."""
    k = _k()
    m = mask.to(torch.uint8).contiguous()
    return (m, *(k.i64(s) for s in m.expand(shape).stride()))


def _dims(shape: torch.Size) -> tuple[Any, ...]:
    k = _k()
    return tuple(k.i32(s) for s in shape)


def _mask_select(g: torch.Tensor, mask: torch.Tensor, keep: bool, drop: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`(where(m, g, 0), where(m, 0, g))` for contiguous 4-D `g`; an output not asked for is junk."""
    k = _k()
    out_keep = torch.empty_like(g) if keep else g
    out_drop = torch.empty_like(g) if drop else g
    flags = (1 if keep else 0) | (2 if drop else 0)
    with k.torch_stream():
        k.launch(k.module("dc"), f"mask_select_{k.suffix(g.dtype)}", g.numel(),
                 (g, *_mask_args(mask, g.shape), out_keep, out_drop, *_dims(g.shape), k.i32(flags)))
    return out_keep, out_drop


# --------------------------------------------------------------------------- autograd functions


class _CenteredFFT(torch.autograd.Function):
    """Centered orthonormal FFT (or inverse); unitary, so the backward is the opposite transform."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, inverse: bool) -> torch.Tensor:
        ctx.inverse = inverse
        return _centered_fft(x, inverse)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _centered_fft(g, not ctx.inverse), None


class _SensExpand(torch.autograd.Function):
    """`y_c = F(S_c x)`; grad_x = sum_c conj(S_c) F^H g_c, grad_S_c = conj(x) F^H g_c."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        shape = torch.broadcast_shapes(x.shape, maps.shape)
        ctx.save_for_backward(x, maps)
        return _expand(x, maps, shape)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        x, maps = ctx.saved_tensors
        want_x, want_maps = ctx.needs_input_grad
        img = _inverse_unmodulated(g.contiguous())
        gx, gmaps = _coil_reduce(img, maps, x, want_x, want_maps)
        return (gx.sum_to_size(x.shape) if want_x else None,
                gmaps.sum_to_size(maps.shape) if want_maps else None)


class _SensReduce(torch.autograd.Function):
    """`y = sum_c conj(S_c) F^H k_c`; grad_k_c = F(S_c g), grad_S_c = (F^H k_c) * conj(g)."""

    @staticmethod
    def forward(ctx: FunctionCtx, kspace: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        shape = torch.broadcast_shapes(kspace.shape, maps.shape)
        img = _inverse_unmodulated(kspace.expand(shape).contiguous())
        out, _ = _coil_reduce(img, maps, None, True, False)
        ctx.kshape = kspace.shape
        ctx.save_for_backward(maps, img if ctx.needs_input_grad[1] else None)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        maps, img = ctx.saved_tensors
        want_k, want_maps = ctx.needs_input_grad
        gk = gmaps = None
        if want_k:
            shape = torch.broadcast_shapes(ctx.kshape, maps.shape)
            gk = _expand(g, maps, shape).sum_to_size(ctx.kshape)
        if want_maps:
            _, gmaps = _coil_reduce(img, maps, g, False, True)
            gmaps = gmaps.sum_to_size(maps.shape)
        return gk, gmaps


class _SoftDC(torch.autograd.Function):
    """`k - eta * m * (k - k0)`; grad_k = (1 - eta m) g, grad_k0 = eta m g,
    grad_eta = -sum m Re(conj(g) (k - k0))."""

    @staticmethod
    def forward(ctx: FunctionCtx, kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor,
                eta: torch.Tensor) -> torch.Tensor:
        k = _k()
        kc = kspace.contiguous()
        k0c = k0.expand(kc.shape).contiguous()
        eta_r = eta.detach().reshape(()).to(kspace.real.dtype).contiguous()
        out = torch.empty_like(kc)
        with k.torch_stream():
            k.launch(k.module("dc"), f"soft_dc_{k.suffix(kc.dtype)}", kc.numel(),
                     (kc, k0c, *_mask_args(mask, kc.shape), eta_r, out, *_dims(kc.shape)))
        ctx.k0shape = k0.shape
        ctx.save_for_backward(kc, k0c, mask, eta_r, eta)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        k = _k()
        kc, k0c, mask, eta_r, eta = ctx.saved_tensors
        want_k, want_k0, _, want_eta = ctx.needs_input_grad
        g = g.contiguous()
        gk = torch.empty_like(g) if want_k else g
        gk0 = torch.empty_like(g) if want_k0 else g
        geta = torch.zeros(1, dtype=torch.float64, device=g.device)
        flags = (1 if want_k else 0) | (2 if want_k0 else 0) | (4 if want_eta else 0)
        with k.torch_stream():
            k.launch(k.module("dc"), f"soft_dc_backward_{k.suffix(g.dtype)}", g.numel(),
                     (g, kc, k0c, *_mask_args(mask, g.shape), eta_r, gk, gk0, geta, *_dims(g.shape), k.i32(flags)))
        return (gk if want_k else None,
                gk0.sum_to_size(ctx.k0shape) if want_k0 else None,
                None,
                geta.to(eta.dtype).reshape(eta.shape) if want_eta else None)


class _HardDC(torch.autograd.Function):
    """`where(m, k0, k)`; grad_k = where(m, 0, g), grad_k0 = where(m, g, 0)."""

    @staticmethod
    def forward(ctx: FunctionCtx, kspace: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        k = _k()
        kc = kspace.contiguous()
        k0c = k0.expand(kc.shape).contiguous()
        out = torch.empty_like(kc)
        with k.torch_stream():
            k.launch(k.module("dc"), f"hard_dc_{k.suffix(kc.dtype)}", kc.numel(),
                     (kc, k0c, *_mask_args(mask, kc.shape), out, *_dims(kc.shape)))
        ctx.k0shape = k0.shape
        ctx.save_for_backward(mask)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        (mask,) = ctx.saved_tensors
        want_k, want_k0, _ = ctx.needs_input_grad
        keep, drop = _mask_select(g.contiguous(), mask, want_k0, want_k)
        return (drop if want_k else None, keep.sum_to_size(ctx.k0shape) if want_k0 else None, None)


class _MaskApply(torch.autograd.Function):
    """`where(m, k, 0)`, self-adjoint: the sampling projection of the SENSE normal operator."""

    @staticmethod
    def forward(ctx: FunctionCtx, kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask)
        return _mask_select(kspace.contiguous(), mask, True, False)[0]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        (mask,) = ctx.saved_tensors
        return _mask_select(g.contiguous(), mask, True, False)[0], None


class _RSS(torch.autograd.Function):
    """`sqrt(sum_dim |x|^2)` (real); grad_x = g * x / rss (0 where rss is 0)."""

    @staticmethod
    def forward(ctx: FunctionCtx, x: torch.Tensor, dim: int) -> torch.Tensor:
        k = _k()
        xc = x.contiguous()
        dim = dim % x.ndim
        outer, inner = math.prod(x.shape[:dim]), math.prod(x.shape[dim + 1:])
        shape = x.shape[:dim] + x.shape[dim + 1:]
        out = torch.empty(shape, dtype=x.real.dtype, device=x.device)
        with k.torch_stream():
            k.launch(k.module("rss"), f"rss_{k.suffix(x.dtype)}", outer * inner,
                     (xc, out, k.i64(outer), k.i32(x.shape[dim]), k.i64(inner)))
        ctx.sizes = (outer, x.shape[dim], inner)
        ctx.save_for_backward(xc, out)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor, None]:
        k = _k()
        xc, out = ctx.saved_tensors
        outer, nc, inner = ctx.sizes
        gx = torch.empty_like(xc)
        with k.torch_stream():
            k.launch(k.module("rss"), f"rss_backward_{k.suffix(xc.dtype)}", xc.numel(),
                     (g.contiguous(), xc, out, gx, k.i64(outer), k.i32(nc), k.i64(inner)))
        return gx, None


# --------------------------------------------------------------------------- public API


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D FFT over the last two axes (any leading axes)."""
    if not (_kernel_ok(x) and x.ndim >= 2):
        return _tb.fft2c(x)
    with _k().device_guard(x):
        return _CenteredFFT.apply(x, False)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D inverse FFT over the last two axes (any leading axes)."""
    if not (_kernel_ok(k) and k.ndim >= 2):
        return _tb.ifft2c(k)
    with _k().device_guard(k):
        return _CenteredFFT.apply(k, True)


def _sens_layout_ok(image: torch.Tensor, maps: torch.Tensor) -> bool:
    """Image `(B|1, 1, H, W)` and maps `(B|1, C, H, W)` with matching planes."""
    return (image.ndim == 4 and maps.ndim == 4 and image.shape[1] == 1
            and image.shape[-2:] == maps.shape[-2:] and _kernel_ok(image, maps))


def sens_expand(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil k-space `fft2c(maps * x)`: image `(B,1,H,W)`, maps `(B,C,H,W)` -> `(B,C,H,W)`."""
    if not _sens_layout_ok(x, maps):
        return _tb.sens_expand(x, maps)
    with _k().device_guard(x):
        return _SensExpand.apply(x, maps)


def sens_reduce(k: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil combination `sum_c conj(maps) * ifft2c(k)`: `(B,C,H,W)` -> `(B,1,H,W)`."""
    ok = k.ndim == 4 and maps.ndim == 4 and k.shape[-2:] == maps.shape[-2:] and _kernel_ok(k, maps)
    if not ok:
        return _tb.sens_reduce(k, maps)
    with _k().device_guard(k):
        return _SensReduce.apply(k, maps)


def _dc_layout_ok(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> bool:
    """4-D k-space, `k0` and `mask` broadcastable to it, mask on the same device."""
    try:
        same = torch.broadcast_shapes(k.shape, k0.shape, mask.shape) == k.shape
    except RuntimeError:
        return False
    return k.ndim == 4 and same and mask.device == k.device and _kernel_ok(k, k0)


def soft_dc(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor, eta: torch.Tensor | float) -> torch.Tensor:
    """Soft data consistency `k - eta * mask * (k - k0)`; mask (bool or 0/1) broadcasts to `k`.

    `eta` is a Python float or a real 0-dim / 1-element tensor (learned: its gradient is returned).
    """
    if not isinstance(eta, torch.Tensor):
        eta = torch.tensor(float(eta), device=k.device)
    eta_ok = eta.numel() == 1 and not eta.is_complex() and eta.device == k.device
    if not (eta_ok and _dc_layout_ok(k, k0, mask)):
        return _tb.soft_dc(k, k0, mask, eta)
    with _k().device_guard(k):
        return _SoftDC.apply(k, k0, mask.bool(), eta)


def hard_dc(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard data consistency: measured samples `k0` where sampled, `k` elsewhere."""
    if not _dc_layout_ok(k, k0, mask):
        return _tb.hard_dc(k, k0, mask)
    with _k().device_guard(k):
        return _HardDC.apply(k, k0, mask.bool())


def normal(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SENSE normal operator `A^H A x = sens_reduce(mask * sens_expand(x, maps), maps)`."""
    if not _sens_layout_ok(x, maps):
        return _tb.normal(x, maps, mask)
    with _k().device_guard(x):
        kspace = _SensExpand.apply(x, maps)
        if not _dc_layout_ok(kspace, kspace, mask):
            return _tb.sens_reduce(_tb.hard_dc(torch.zeros_like(kspace), kspace, mask), maps)
        return _SensReduce.apply(_MaskApply.apply(kspace, mask.bool()), maps)


def rss(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root sum of squares of magnitudes along `dim`."""
    if not _kernel_ok(x):
        return _tb.rss(x, dim)
    with _k().device_guard(x):
        return _RSS.apply(x, dim)
