"""The kernel-backed ops as PyTorch custom ops, and their per-call host overhead.

* `torch.library.opcheck` checks every `recon_kernels::` op (schema, autograd registration, fake
  tensor, AOT dispatch) on the CPU, where each op's registered CPU implementation runs.
* Through the CuPy stand-in of tests/kernel_harness, one op call of the real launch code creates no
  stream object, enters no device guard, copies no tensor (no host-to-device copy, no dtype or
  layout conversion for contiguous inputs) and converts each tensor to CuPy at most once.
"""

from __future__ import annotations

import shutil
from typing import Any, Callable

import pytest
import torch
from torch.library import opcheck

from recon.ops import cupy_backend as cb

C64, C128 = torch.complex64, torch.complex128


def _c(*shape: int, dtype: torch.dtype = C64, seed: int = 0, grad: bool = False) -> torch.Tensor:
    t = torch.randn(*shape, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    return t.requires_grad_(grad)


def _samples() -> dict[str, tuple[Any, tuple[Any, ...], bool]]:
    """op name -> (op, sample args, whether the full opcheck incl. AOT dispatch runs)."""
    x, maps, k, k0 = _c(2, 1, 6, 7, grad=True), _c(2, 3, 6, 7, seed=1, grad=True), _c(2, 3, 6, 7, seed=2, grad=True), _c(2, 3, 6, 7, seed=3, grad=True)
    mask = torch.rand(2, 1, 1, 7, generator=torch.Generator().manual_seed(4)) < 0.5
    eta = torch.tensor(0.3, requires_grad=True)
    g_k, g_x = _c(2, 3, 6, 7, seed=5), _c(2, 1, 6, 7, seed=6)
    img = _c(2, 3, 6, 7, seed=7)
    real = torch.rand(2, 6, 7)
    return {
        "fft": (cb._fft, (k, False), True),
        "ifft": (cb._fft, (k, True), True),
        "expand": (cb._expand_op, (x, maps), True),
        "expand_backward": (cb._expand_bwd, (g_k, x.detach(), maps.detach(), True, True), False),
        "reduce": (cb._reduce_op, (k, maps, True), True),
        "reduce_backward": (cb._reduce_bwd, (g_x, maps.detach(), img, True, True), False),
        "soft_dc": (cb._soft_dc_op, (k, k0, mask, eta, 0.0), True),
        "soft_dc_float": (cb._soft_dc_op, (k, k0, mask, None, 0.25), True),
        "soft_dc_backward": (cb._soft_dc_bwd, (g_k, k.detach(), k0.detach(), mask, eta.detach(), 0.0, True, True, True), False),
        "hard_dc": (cb._hard_dc_op, (k, k0, mask), True),
        "mask_select": (cb._mask_select, (k, mask, True, True), True),
        "normal": (cb._normal_op, (x, maps.detach(), mask), True),
        "rss": (cb._rss_op, (k, 1), True),
        "rss_backward": (cb._rss_bwd, (real, k.detach(), real + 1, 1), False),
    }


@pytest.mark.parametrize("name", list(_samples()))
def test_opcheck(name: str) -> None:
    op, args, full = _samples()[name]
    utils = None if full else ("test_schema", "test_autograd_registration", "test_faketensor")
    opcheck(op, args, test_utils=utils) if utils else opcheck(op, args)


def test_every_kernel_op_is_checked() -> None:
    checked = {id(op) for op, _, _ in _samples().values()}
    assert {id(op) for op in cb.KERNEL_OPS} <= checked


def test_cpu_implementations_equal_the_public_torch_path() -> None:
    """On CPU tensors the custom ops run their torch references (what opcheck exercises)."""
    k, maps = _c(1, 2, 6, 8), _c(1, 2, 6, 8, seed=1)
    out, img = cb._reduce_op(k, maps, True)
    torch.testing.assert_close(out, cb._tb.sens_reduce(k, maps))
    post = cb._post_inverse(6, 8, img)
    torch.testing.assert_close((img * post * maps.conj()).sum(1, keepdim=True), out)


# --------------------------------------------------------------------------- overhead per op call


needs_gxx = pytest.mark.skipif(shutil.which("g++") is None, reason="g++ is needed to run the kernels on the host")
_COPY_OPS = ("aten::copy_", "aten::_to_copy", "aten::lift_fresh", "aten::clone", "aten::contiguous")


def _calls() -> dict[str, Callable[[], torch.Tensor]]:
    x, maps, k, k0 = _c(2, 1, 6, 8), _c(2, 3, 6, 8, seed=1), _c(2, 3, 6, 8, seed=2), _c(2, 3, 6, 8, seed=3)
    mask = torch.rand(2, 1, 1, 8, generator=torch.Generator().manual_seed(4)) < 0.5
    eta = torch.tensor(0.3)
    return {
        "fft2c": lambda: cb.fft2c(k),
        "ifft2c": lambda: cb.ifft2c(k),
        "sens_expand": lambda: cb.sens_expand(x, maps),
        "sens_reduce": lambda: cb.sens_reduce(k, maps),
        "soft_dc(float eta)": lambda: cb.soft_dc(k, k0, mask, 0.3),
        "soft_dc(tensor eta)": lambda: cb.soft_dc(k, k0, mask, eta),
        "hard_dc": lambda: cb.hard_dc(k, k0, mask),
        "normal": lambda: cb.normal(x, maps, mask),
        "rss": lambda: cb.rss(k, 1),
    }


@needs_gxx
@pytest.mark.parametrize("name", list(_calls()))
def test_one_op_call_creates_no_stream_copies_nothing_and_converts_each_tensor_once(name: str) -> None:
    from tests.kernel_harness import host_kernels

    call = _calls()[name]
    with host_kernels() as host:
        call()  # warm-up: compiles the kernels, creates the cached stream object
        host.stats.reset()
        with torch.autograd.profiler.profile() as prof:
            call()
        copies = [e.name for e in prof.function_events if e.name in _COPY_OPS]
    assert host.stats.launches, "the kernels did not run"
    assert host.stats.streams_created == 0
    assert host.stats.device_guards == 0
    assert copies == [], f"tensor copies per call: {copies}"
    assert max(host.stats.dlpack_by_tensor.values()) == 1, host.stats.dlpack_by_tensor


@needs_gxx
def test_backward_calls_convert_each_tensor_once_per_op() -> None:
    from tests.kernel_harness import host_kernels

    x, maps = _c(1, 1, 6, 8, grad=True), _c(1, 3, 6, 8, seed=1, grad=True)
    with host_kernels() as host:
        y = cb.sens_reduce(cb.sens_expand(x, maps), maps)
        host.stats.reset()
        y.abs().sum().backward()
    assert host.stats.streams_created == 0
    assert host.stats.launches
    # expand_backward + reduce_backward: two op calls; no tensor is converted more than once in either
    assert max(host.stats.dlpack_by_tensor.values()) <= 2


@needs_gxx
def test_launches_per_op_are_as_designed() -> None:
    """The fusion stays in place: passes per op call (kernels + cuFFT calls), counted without executing."""
    from tests.kernel_harness import Variant, host_kernels

    x, maps, k, k0 = _c(1, 1, 6, 8), _c(1, 3, 6, 8, seed=1), _c(1, 3, 6, 8, seed=2), _c(1, 3, 6, 8, seed=3)
    mask = torch.ones(1, 1, 1, 8, dtype=torch.bool)
    expected = {
        "normal": (lambda: cb.normal(x, maps, mask), ["expand_premod", "mask_scale", "coil_reduce_postmod"], 2),
        "sens_expand": (lambda: cb.sens_expand(x, maps), ["expand_premod", "modulate"], 1),
        "sens_reduce": (lambda: cb.sens_reduce(k, maps), ["modulate", "coil_reduce_postmod"], 1),
        "soft_dc": (lambda: cb.soft_dc(k, k0, mask, 0.5), ["soft_dc"], 0),
    }
    for name, (call, kernels, ffts) in expected.items():
        with host_kernels(Variant(execute=False)) as host:
            call()
        assert [n.rsplit("_", 1)[0] for n, _, _ in host.stats.launches] == kernels, name
        assert len(host.stats.ffts) == ffts, name
