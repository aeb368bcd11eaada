"""The real CUDA kernel source executed on the CPU, through the project's own launch code.

`tests/kernel_harness` compiles the exact text `_cupy_kernels.kernel_source()` returns as host
C++ (g++, after a small shim header) and runs every block and thread of the grids that
`cupy_backend` computes, threads as fibers so `__syncthreads` is a real barrier, buffers between
guard pages, outputs NaN-filled. Every op, forward and backward (all tensor inputs), is compared
with the torch backend over complex64/128, sizes 0 and 2 mod 4 and odd, broadcast batch and coil
axes, strided, offset and conjugate-bit layouts, and forward, reverse and shuffled thread orders;
one variant is built with UBSan. Mutation tests show the harness fails on a deleted barrier, an
off-by-one bound and a wrong stride. It complements the GPU tests in tests/gpu/.
"""

from __future__ import annotations

import itertools
import shutil
from typing import Any, Callable

import pytest
import torch

from recon.ops import cupy_backend as cb
from recon.ops import torch_backend as tb

if shutil.which("g++") is None:  # pragma: no cover - the Debian image and CI have g++
    pytest.skip("g++ is needed to compile the kernels for the host", allow_module_level=True)

from tests.kernel_harness import CompileError, KernelError, Variant, host_kernels  # noqa: E402

SIZES = [(8, 12), (6, 10), (7, 9)]  # 0 mod 4, 2 mod 4, odd
DTYPES = [torch.complex64, torch.complex128]
LAYOUTS = ["contiguous", "strided_coils", "strided_cols", "offset", "conj", "conj_strided", "broadcast"]
ORDERS = ["forward", "reverse", "shuffled"]
B, C = 2, 3


def _tol(dtype: torch.dtype) -> float:
    return 2e-5 if dtype == torch.complex64 else 1e-12


def _rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    scale = ref.abs().max().item() if ref.numel() else 0.0
    return (got - ref).abs().max().item() / max(scale, 1e-30) if ref.numel() else 0.0


# --------------------------------------------------------------------------- inputs in many layouts


class Input:
    """A leaf tensor (gradients are taken w.r.t. it) and the view of it an op receives."""

    def __init__(self, value: torch.Tensor, layout: str, grad: bool = True) -> None:
        self.value, self.grad = value, grad
        v = value
        if layout == "strided_coils" and v.ndim == 4:
            leaf = torch.zeros(v.shape[0], 2 * v.shape[1], *v.shape[2:], dtype=v.dtype)
            leaf[:, ::2] = v
            self.leaf, self.view = leaf, lambda t: t[:, ::2]
        elif layout == "strided_cols":
            leaf = torch.zeros(*v.shape[:-1], 2 * v.shape[-1], dtype=v.dtype)
            leaf[..., ::2] = v
            self.leaf, self.view = leaf, lambda t: t[..., ::2]
        elif layout == "offset":
            leaf = torch.zeros(v.shape[0] + 1, *v.shape[1:], dtype=v.dtype)
            leaf[1:] = v
            self.leaf, self.view = leaf, lambda t: t[1:]
        elif layout == "conj" and v.is_complex():
            self.leaf, self.view = v.conj().resolve_conj(), lambda t: t.conj()
        elif layout == "conj_strided" and v.is_complex() and v.ndim == 4:
            leaf = torch.zeros(v.shape[0], 2 * v.shape[1], *v.shape[2:], dtype=v.dtype)
            leaf[:, ::2] = v.conj()
            self.leaf, self.view = leaf, lambda t: t.conj()[:, ::2]  # the issue's `big.conj()[:, ::2]`
        else:
            self.leaf, self.view = v, lambda t: t

    def make(self, grad: bool) -> tuple[torch.Tensor, torch.Tensor]:
        differentiable = self.leaf.is_floating_point() or self.leaf.is_complex()
        leaf = self.leaf.clone().requires_grad_(grad and self.grad and differentiable)
        return leaf, self.view(leaf)


def _crandn(gen: torch.Generator, *shape: int, dtype: torch.dtype) -> torch.Tensor:
    return torch.randn(*shape, dtype=dtype, generator=gen)


def _mask(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(*shape, generator=gen) < 0.5


def op_case(op: str, dtype: torch.dtype, size: tuple[int, int], layout: str, seed: int = 0
            ) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor], list[Any]]:
    """(kernel-backend fn, torch-backend fn, inputs) for one op; inputs are `Input`s or constants."""
    h, w = size
    g = torch.Generator().manual_seed(seed)
    bc = layout == "broadcast"
    real = torch.float32 if dtype == torch.complex64 else torch.float64

    def inp(*shape: int) -> Input:
        return Input(_crandn(g, *shape, dtype=dtype), layout)

    if op in ("fft2c", "ifft2c"):
        return getattr(cb, op), getattr(tb, op), [inp(B, C, h, w)]
    if op == "sens_expand":
        x = inp(1 if bc else B, 1, h, w)
        maps = inp(B, C, h, w)
        return cb.sens_expand, tb.sens_expand, [x, maps]
    if op == "sens_reduce":
        k = inp(B, C, h, w)
        maps = inp(1 if bc else B, C, h, w)
        return cb.sens_reduce, tb.sens_reduce, [k, maps]
    if op in ("normal", "normal_fixed_maps"):
        x = inp(B, 1, h, w)
        maps = inp(1 if bc else B, C, h, w)
        maps.grad = op == "normal"  # fixed maps take the fused kernel pipeline
        mask = Input(_mask(g, 1 if bc else B, 1, 1 if bc else h, w), "contiguous")
        return cb.normal, tb.normal, [x, maps, mask]
    if op.startswith("soft_dc") or op == "hard_dc":
        k = inp(B, C, h, w)
        k0 = inp(1 if bc else B, C, h, w)
        mask = Input(_mask(g, *((1, 1, 1, w) if bc else (B, 1, 1, w))), "contiguous")
        if op == "hard_dc":
            return cb.hard_dc, tb.hard_dc, [k, k0, mask]
        eta: Any
        if op == "soft_dc_float":
            eta = 0.37
        elif op == "soft_dc_tensor1":
            eta = Input(torch.full((1,), 0.37, dtype=torch.float64), "contiguous")
        else:
            eta = Input(torch.tensor(0.37, dtype=real), "contiguous")
        return cb.soft_dc, tb.soft_dc, [k, k0, mask, eta]
    if op.startswith("rss"):
        dim = int(op.split("_")[1])
        fwd = lambda x: cb.rss(x, dim)  # noqa: E731
        ref = lambda x: tb.rss(x, dim)  # noqa: E731
        return fwd, ref, [inp(B, C, h, w)]
    raise ValueError(op)


OPS = ["fft2c", "ifft2c", "sens_expand", "sens_reduce", "normal", "normal_fixed_maps", "soft_dc", "soft_dc_float",
       "soft_dc_tensor1", "hard_dc", "rss_1", "rss_0", "rss_-1"]


def run_both(op: str, dtype: torch.dtype, size: tuple[int, int], layout: str, seed: int = 0,
             grads: bool = True) -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """Outputs and every input gradient of the kernel backend (host) and the torch backend."""
    fwd, ref, inputs = op_case(op, dtype, size, layout, seed)
    results: list[list[torch.Tensor]] = []
    cot = None
    for fn in (fwd, ref):
        leaves, args = [], []
        for a in inputs:
            if isinstance(a, Input):
                leaf, view = a.make(grads)
                leaves.append(leaf)
                args.append(view)
            else:
                args.append(a)
        out = fn(*args)
        if cot is None:
            cot = torch.randn(out.shape, dtype=out.dtype, generator=torch.Generator().manual_seed(seed + 99))
        outs = [out]
        if grads:
            diff = [t for t in leaves if t.requires_grad]
            outs += list(torch.autograd.grad(out, diff, cot.to(out.dtype)))
        results.append([o.detach().resolve_conj() for o in outs])
    names = ["out"] + [f"grad{i}" for i in range(len(results[0]) - 1)]
    return list(zip(names, results[0], results[1]))


def check(op: str, dtype: torch.dtype, size: tuple[int, int], layout: str, seed: int = 0,
          grads: bool = True) -> None:
    for name, got, ref in run_both(op, dtype, size, layout, seed, grads):
        assert got.dtype == ref.dtype and got.shape == ref.shape, f"{op} {name}: {got.dtype}{tuple(got.shape)} vs {ref.dtype}{tuple(ref.shape)}"
        assert torch.isfinite(got).all(), f"{op} {name}: non-finite values (an output element never written?)"
        err = _rel_err(got, ref)
        assert err <= _tol(dtype), f"{op} {name}: relative error {err:.3g}"


# --------------------------------------------------------------------------- the matrix


CASES = list(itertools.product(OPS, DTYPES, SIZES, LAYOUTS))


@pytest.mark.parametrize("op", OPS)
def test_every_op_and_gradient_matches_torch_backend(op: str) -> None:
    """All dtypes x sizes x layouts for one op; thread order and guard placement rotate per case."""
    cases = [c for c in CASES if c[0] == op]
    for i, (_, dtype, size, layout) in enumerate(cases):
        order = ORDERS[i % 3]
        with host_kernels(Variant(order=order, seed=i)) as host:
            try:
                check(op, dtype, size, layout, seed=i)
            except (AssertionError, KernelError) as exc:
                raise AssertionError(f"{op} {dtype} {size} {layout} {order}: {exc}") from exc
            assert host.stats.launches, f"{op} {layout}: the kernels did not run (fell back to torch)"


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_block_reduction_under_every_thread_order(order: str, dtype: torch.dtype) -> None:
    """soft_dc's eta gradient is a shared-memory tree reduction with barriers: many blocks, three orders."""
    for seed in range(2):
        with host_kernels(Variant(order=order, seed=seed)) as host:
            check("soft_dc", dtype, (40, 36), "contiguous", seed=seed)
        assert any(k.startswith("soft_dc_backward") for k, _, _ in host.stats.launches)


def test_ubsan_variant_runs_every_kernel() -> None:
    ran: set[str] = set()
    for op, dtype in itertools.product(OPS, DTYPES):
        with host_kernels(Variant(order="shuffled", seed=7, ubsan=True)) as host:
            check(op, dtype, (6, 7), "broadcast")
        ran |= {k for k, _, _ in host.stats.launches}
    kernels = {f"{k}_{s}" for k in ["modulate", "expand_premod", "coil_reduce_postmod", "soft_dc",
                                      "soft_dc_backward", "hard_dc", "mask_select", "mask_scale", "rss", "rss_backward"]
               for s in ["c64", "c128"]}
    assert kernels <= ran, kernels - ran


# --------------------------------------------------------------------------- mutation tests


MUTATIONS = {
    "deleted __syncthreads": ("partial[threadIdx.x] = local;\n        __syncthreads();", "partial[threadIdx.x] = local;\n"),
    "off-by-one loop bound": ("i < (n); i +=", "i <= (n); i +="),
    "off-by-one output index": ("out[i] = c_mul(v, f);", "out[i + 1] = c_mul(v, f);"),
    "wrong coil stride of maps": ("maps[b * msb + c * msc + p], x[", "maps[b * msb + c * msb + p], x["),
    "wrong column stride of the mask": ("* msw", "* msh"),
}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_harness_catches_mutated_kernels(name: str) -> None:
    old, new = MUTATIONS[name]
    applied: list[bool] = []

    def mutate(code: str) -> str:
        applied.append(old in code)
        return code.replace(old, new)

    failures = 0
    for op, order in [("soft_dc", "forward"), ("soft_dc", "shuffled"), ("sens_expand", "forward"),
                      ("hard_dc", "forward")]:
        with host_kernels(Variant(order=order, seed=1, mutate=mutate)):
            try:
                check(op, torch.complex64, (6, 10), "contiguous")
            except (AssertionError, KernelError):
                failures += 1
    assert any(applied), f"mutation {name!r} did not apply to any kernel source"
    assert failures > 0, f"the harness did not notice the mutation {name!r}"


def test_mutated_barrier_is_caught_in_forward_and_shuffled_order() -> None:
    old, new = MUTATIONS["deleted __syncthreads"]
    for order in ["forward", "shuffled"]:
        with host_kernels(Variant(order=order, seed=3, mutate=lambda c: c.replace(old, new))):
            with pytest.raises(AssertionError, match="grad2|non-finite"):
                check("soft_dc", torch.complex64, (40, 36), "contiguous")


def test_unmutated_source_passes_the_mutation_workload() -> None:
    for op in ["soft_dc", "sens_expand", "hard_dc"]:
        with host_kernels(Variant(order="forward", seed=1)):
            check(op, torch.complex64, (6, 10), "contiguous")


# --------------------------------------------------------------------------- the findings


def test_conjugate_strided_inputs_stay_in_bounds() -> None:
    """Issue 19: `maps = big.conj()[:, ::2]`, `x = img.conj()[:, :1]` were read past their buffers."""
    g = torch.Generator().manual_seed(4)
    big = torch.randn(2, 6, 8, 10, dtype=torch.complex64, generator=g)
    img = torch.randn(2, 3, 8, 10, dtype=torch.complex64, generator=g)
    kspace = torch.randn(2, 3, 8, 10, dtype=torch.complex64, generator=g)
    maps, x = big.conj()[:, ::2], img.conj()[:, :1]
    for order in ORDERS:
        with host_kernels(Variant(order=order)):
            got_e = cb.sens_expand(x, maps)
            got_r = cb.sens_reduce(kspace, maps)
        assert _rel_err(got_e, tb.sens_expand(x, maps)) < 2e-5
        assert _rel_err(got_r, tb.sens_reduce(kspace, maps)) < 2e-5


def test_float_eta_keeps_complex128_precision() -> None:
    """Issue 19: a Python-float eta was rounded to float32 for complex128 data (error 1.9e-9)."""
    g = torch.Generator().manual_seed(5)
    k, k0 = (torch.randn(1, 2, 6, 8, dtype=torch.complex128, generator=g) for _ in range(2))
    mask = torch.rand(1, 1, 1, 8, generator=g) < 0.5
    eta = 0.1234567890123
    with host_kernels():
        got = cb.soft_dc(k, k0, mask, eta)
    assert _rel_err(got, tb.soft_dc(k, k0, mask, eta)) < 1e-15


@pytest.mark.parametrize("eta_shape, want", [((1,), torch.complex128), ((), torch.complex64)])
def test_soft_dc_output_dtype_follows_torch_promotion(eta_shape: tuple[int, ...], want: torch.dtype) -> None:
    """Issue 19: a (1,) float64 eta with complex64 data gave complex64; torch promotes to complex128."""
    g = torch.Generator().manual_seed(6)
    k, k0 = (torch.randn(1, 2, 6, 8, dtype=torch.complex64, generator=g) for _ in range(2))
    mask = torch.rand(1, 1, 1, 8, generator=g) < 0.5
    eta = torch.full(eta_shape, 0.3, dtype=torch.float64, requires_grad=True)
    ref = tb.soft_dc(k, k0, mask, eta)
    assert ref.dtype == want
    with host_kernels() as host:
        got = cb.soft_dc(k, k0, mask, eta)
        (geta,) = torch.autograd.grad(got.real.sum(), eta)
    assert host.stats.launches and got.dtype == want
    assert _rel_err(got, ref.detach()) < 1e-6  # torch forms k - k0 in complex64 before promoting
    (geta_ref,) = torch.autograd.grad(ref.real.sum(), eta)
    assert geta.dtype == eta.dtype and geta.shape == eta.shape
    assert _rel_err(geta, geta_ref) < 1e-5


@pytest.mark.parametrize("threads", [512, 1024, 64])
def test_other_power_of_two_block_sizes_give_the_same_eta_gradient(threads: int) -> None:
    """Issue 19: the shared reduction buffer was fixed at 256 doubles; 512 threads overflowed it."""
    with host_kernels(Variant(ubsan=True)) as host:
        cb._runtime.THREADS = threads  # type: ignore[union-attr]
        check("soft_dc", torch.complex64, (40, 36), "contiguous")
    assert host.stats.launches


def test_block_size_that_breaks_the_reduction_is_a_compile_error() -> None:
    """A non-power-of-two RECON_THREADS (the halving loop would drop partial sums) does not compile."""
    with host_kernels() as host:
        cb._runtime.THREADS = 96  # type: ignore[union-attr]
        with pytest.raises(CompileError, match="power of two"):
            cb.soft_dc(*[torch.ones(1, 1, 2, 2, dtype=torch.complex64)] * 2, torch.ones(1, 1, 1, 2, dtype=torch.bool), 0.5)
    assert not host.stats.launches


def test_a_launch_with_another_block_size_traps() -> None:
    """The kernels check blockDim against RECON_THREADS, so a launcher/kernel mismatch cannot pass silently."""
    with host_kernels():
        rt = cb._runtime
        assert rt is not None
        fn = rt.module("dc").get_function("hard_dc_c64")
        k = torch.zeros(1, 1, 2, 2, dtype=torch.complex64)
        mask = torch.ones(1, 1, 2, 2, dtype=torch.bool)
        out = torch.empty_like(k)
        args = tuple(rt.as_cupy(t) for t in (k, k)) + (rt.as_cupy(mask), *(rt.i64(s) for s in mask.stride()),
                                                       rt.as_cupy(out), *(rt.i32(s) for s in k.shape))
        fn((1,), (rt.THREADS,), args)
        with pytest.raises(KernelError, match="trap"):
            fn((1,), (rt.THREADS // 2,), args)


def test_double_backward_is_supported_or_refused_clearly() -> None:
    """fft2c/hard_dc differentiate twice; the fused backward steps refuse a second backward, by name."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(1, 1, 6, 7, dtype=torch.complex128, generator=g)
    maps = torch.randn(1, 2, 6, 7, dtype=torch.complex128, generator=g)
    results = []
    for fn in (cb.fft2c, tb.fft2c):
        xx = x.clone().requires_grad_()
        with host_kernels():
            (gx,) = torch.autograd.grad(fn(xx).abs().pow(2).sum(), xx, create_graph=True)
            (ggx,) = torch.autograd.grad(gx.abs().sum(), xx)
        results.append(ggx)
    assert _rel_err(results[0], results[1]) < 1e-12
    xx = x.clone().requires_grad_()
    with host_kernels():
        (gx,) = torch.autograd.grad(cb.sens_expand(xx, maps).abs().sum(), xx, create_graph=True)
        with pytest.raises(RuntimeError, match="expand_backward.*no autograd formula"):
            gx.abs().sum().backward()
