"""The CuPy kernels on a GPU: equal to the torch backend, gradcheck through every input, VarNet alike.

Run with `pytest -m gpu tests/gpu` on a machine with CUDA and CuPy (skipped elsewhere, see conftest).
"""

from __future__ import annotations

from typing import Callable

import pytest
import torch

from recon import ops
from recon.ops import cupy_backend as cb
from recon.ops import torch_backend as tb

DEV = "cuda"
SHAPES = [(32, 24), (30, 22), (33, 21), (640, 368)]  # 0 mod 4, 2 mod 4, odd, fastMRI knee


def _crandn(*shape: int, dtype: torch.dtype = torch.complex64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator(device=DEV).manual_seed(seed)
    return torch.randn(*shape, dtype=dtype, device=DEV, generator=g)


def _mask(b: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator(device=DEV).manual_seed(seed)
    m = torch.rand(b, 1, 1, w, device=DEV, generator=g) < 0.4
    m[..., w // 2 - 2 : w // 2 + 2] = True
    return m


def _assert_rel(got: torch.Tensor, ref: torch.Tensor, tol: float = 1e-5) -> None:
    """Relative error in the max norm: max|got - ref| <= tol * max|ref|."""
    assert got.shape == ref.shape and got.dtype == ref.dtype
    err = (got - ref).abs().max().item()
    scale = ref.abs().max().item()
    assert err <= tol * max(scale, 1e-30), f"relative error {err / max(scale, 1e-30):.3g} > {tol}"


def test_dispatch_picks_cupy_for_cuda_tensors() -> None:
    x = _crandn(1, 1, 8, 8)
    assert ops.backend_for(x) == "cupy"
    assert ops.backend_for(x.cpu()) == "torch"
    with ops.use_backend("torch"):
        assert ops.backend_for(x) == "torch"
    assert ops.backend_for(x) == "cupy"


@pytest.mark.parametrize("shape", SHAPES)
def test_fft_pair_matches_torch(shape: tuple[int, int]) -> None:
    x = _crandn(2, 3, *shape)
    _assert_rel(cb.fft2c(x), tb.fft2c(x))
    _assert_rel(cb.ifft2c(x), tb.ifft2c(x))
    _assert_rel(cb.ifft2c(cb.fft2c(x)), x)


@pytest.mark.parametrize("shape", SHAPES)
def test_sens_ops_match_torch(shape: tuple[int, int]) -> None:
    b, c = 2, 15 if shape == (640, 368) else 4
    x, maps, k = _crandn(b, 1, *shape, seed=1), _crandn(b, c, *shape, seed=2), _crandn(b, c, *shape, seed=3)
    mask = _mask(b, shape[1])
    _assert_rel(cb.sens_expand(x, maps), tb.sens_expand(x, maps))
    _assert_rel(cb.sens_reduce(k, maps), tb.sens_reduce(k, maps))
    _assert_rel(cb.normal(x, maps, mask), tb.normal(x, maps, mask))
    _assert_rel(cb.sens_expand(x[:1], maps), tb.sens_expand(x[:1], maps))  # image broadcast over batch


@pytest.mark.parametrize("eta", [0.3, torch.tensor(0.7), torch.tensor([1.0])])
def test_dc_and_rss_match_torch(eta: float | torch.Tensor) -> None:
    k, k0 = _crandn(2, 4, 30, 22, seed=4), _crandn(2, 4, 30, 22, seed=5)
    mask = _mask(2, 22)
    eta = eta.to(DEV) if isinstance(eta, torch.Tensor) else eta
    _assert_rel(cb.soft_dc(k, k0, mask, eta), tb.soft_dc(k, k0, mask, eta))
    assert torch.equal(cb.hard_dc(k, k0, mask), tb.hard_dc(k, k0, mask))
    assert torch.equal(cb.hard_dc(k, k0, mask[:1].float()), tb.hard_dc(k, k0, mask[:1].float()))
    for dim in (1, 0, -1):
        _assert_rel(cb.rss(k, dim), tb.rss(k, dim))


def _grads(fn: Callable[..., torch.Tensor], inputs: list[torch.Tensor], g: torch.Tensor) -> list[torch.Tensor]:
    leaves = [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]
    out = fn(*leaves)
    return list(torch.autograd.grad(out, [t for t in leaves if t.requires_grad], g))


def test_backward_matches_torch_complex64() -> None:
    b, c, h, w = 2, 4, 30, 22
    x = _crandn(b, 1, h, w, seed=1).requires_grad_()
    maps = _crandn(b, c, h, w, seed=2).requires_grad_()
    k = _crandn(b, c, h, w, seed=3).requires_grad_()
    k0 = _crandn(b, c, h, w, seed=6).requires_grad_()
    eta = torch.tensor([0.6], device=DEV, requires_grad=True)
    mask = _mask(b, w)
    g_k, g_img = _crandn(b, c, h, w, seed=7), _crandn(b, 1, h, w, seed=8)
    cases: list[tuple[str, list[torch.Tensor], torch.Tensor]] = [
        ("sens_expand", [x, maps], g_k),
        ("sens_reduce", [k, maps], g_img),
        ("normal", [x, maps], g_img),
        ("fft2c", [k], g_k),
        ("ifft2c", [k], g_k),
    ]
    for name, inputs, g in cases:
        extra = [mask] if name == "normal" else []
        ours = _grads(lambda *t: getattr(cb, name)(*t, *extra), inputs, g)
        ref = _grads(lambda *t: getattr(tb, name)(*t, *extra), inputs, g)
        for a, r in zip(ours, ref):
            _assert_rel(a, r.resolve_conj(), 1e-4)
    ours = _grads(lambda a, b_, e: cb.soft_dc(a, b_, mask, e), [k, k0, eta], g_k)
    ref = _grads(lambda a, b_, e: tb.soft_dc(a, b_, mask, e), [k, k0, eta], g_k)
    for a, r in zip(ours, ref):
        _assert_rel(a, r, 1e-4)


def _gc(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> None:
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("shape", [(8, 6), (6, 10), (7, 5)])
def test_gradcheck_every_input_complex128(shape: tuple[int, int]) -> None:
    b, c = 2, 3
    cd = torch.complex128
    x = _crandn(b, 1, *shape, dtype=cd, seed=1).requires_grad_()
    maps = _crandn(b, c, *shape, dtype=cd, seed=2).requires_grad_()
    k = _crandn(b, c, *shape, dtype=cd, seed=3).requires_grad_()
    k0 = _crandn(b, c, *shape, dtype=cd, seed=4).requires_grad_()
    mask = _mask(b, shape[1])
    _gc(cb.fft2c, k)
    _gc(cb.ifft2c, k)
    _gc(cb.sens_expand, x, maps)
    _gc(cb.sens_reduce, k, maps)
    _gc(lambda a, s: cb.normal(a, s, mask), x, maps)
    for eta_shape in [(), (1,)]:
        eta = torch.full(eta_shape, 0.4, dtype=torch.float64, device=DEV, requires_grad=True)
        _gc(lambda a, b_, e: cb.soft_dc(a, b_, mask, e), k, k0, eta)
    _gc(lambda a, b_: cb.hard_dc(a, b_, mask), k, k0)
    _gc(lambda a: cb.rss(a, 1), k)
    # the kernels really ran (no silent fallback): the graph holds recon's custom ops
    assert "recon_kernels_expand" in type(cb.sens_expand(x, maps).grad_fn).__name__
    assert "recon_kernels_soft_dc" in type(cb.soft_dc(k, k0, mask, 0.4).grad_fn).__name__


def test_varnet_same_output_and_gradients_with_either_backend() -> None:
    from recon.models import VarNet

    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.manual_seed(0)
    model = VarNet(num_cascades=2, chans=4, pools=2, sens_chans=4, sens_pools=2).to(DEV)
    b, c, h, w = 2, 4, 64, 48
    mask = _mask(b, w)
    kspace = _crandn(b, c, h, w, seed=9) * mask
    results = {}
    for backend in ("torch", "cupy"):
        model.zero_grad()
        with ops.use_backend(backend):
            out = model(kspace, mask, 4)
            out.square().mean().backward()
        results[backend] = (out.detach(), {n: p.grad.detach().clone() for n, p in model.named_parameters()})
    out_t, grads_t = results["torch"]
    out_c, grads_c = results["cupy"]
    _assert_rel(out_c, out_t, 1e-4)
    for name, g in grads_t.items():
        _assert_rel(grads_c[name], g, 1e-3)
    assert any("dc_weight" in n and g.abs().max() > 0 for n, g in grads_c.items())
