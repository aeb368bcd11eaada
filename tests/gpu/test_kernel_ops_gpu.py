"""The recon_kernels custom ops on a GPU: opcheck with the kernel implementation, torch.compile
(full graph) and a CUDA graph through them, and no per-call stream objects. Needs CuPy."""

from __future__ import annotations

import pytest
import torch
from torch.library import opcheck

from recon.ops import cupy_backend as cb
from recon.ops import torch_backend as tb

DEV = "cuda"


@pytest.fixture(autouse=True)
def _cupy() -> None:
    if not cb.available():
        pytest.skip("CuPy is not installed or sees no GPU")


def _c(*shape: int, seed: int = 0, grad: bool = False) -> torch.Tensor:
    g = torch.Generator(device=DEV).manual_seed(seed)
    return torch.randn(*shape, dtype=torch.complex64, device=DEV, generator=g).requires_grad_(grad)


def _chain(ops, x, k, k0, maps, mask, eta):  # type: ignore[no-untyped-def]
    return ops.sens_reduce(ops.soft_dc(k, k0, mask, eta) - ops.sens_expand(x, maps), maps)


def _inputs() -> tuple[torch.Tensor, ...]:
    x, maps, k, k0 = _c(2, 1, 32, 24), _c(2, 4, 32, 24, seed=1), _c(2, 4, 32, 24, seed=2), _c(2, 4, 32, 24, seed=3)
    mask = torch.rand(2, 1, 1, 24, device=DEV) < 0.4
    return x, k, k0, maps, mask, torch.tensor(0.3, device=DEV)


def test_opcheck_with_the_kernels() -> None:
    x, k, k0, maps, mask, eta = _inputs()
    opcheck(cb._expand_op, (x.requires_grad_(), maps))
    opcheck(cb._reduce_op, (k.requires_grad_(), maps.requires_grad_(), True))
    opcheck(cb._soft_dc_op, (k, k0, mask, eta.requires_grad_(), 0.0))
    opcheck(cb._normal_op, (x, maps.detach(), mask))


def test_compiled_full_graph_chain_matches_eager() -> None:
    args = _inputs()
    compiled = torch.compile(lambda *a: _chain(cb, *a), fullgraph=True)
    got = compiled(*args)
    ref = _chain(tb, *args)
    assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_cuda_graph_replays_the_chain() -> None:
    args = _inputs()
    _chain(cb, *args)  # plans and modules before capture
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _chain(cb, *args)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = _chain(cb, *args)
    graph.replay()
    torch.cuda.synchronize()
    ref = _chain(tb, *args)
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-5


def test_no_stream_object_per_call() -> None:
    from recon.ops import _cupy_kernels

    args = _inputs()
    _chain(cb, *args)
    before = dict(_cupy_kernels._streams)
    for _ in range(5):
        _chain(cb, *args)
    assert _cupy_kernels._streams == before
