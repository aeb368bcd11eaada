"""The cuFFT-callback prototype on a GPU (RECON_FFT_FUSION=callbacks, nvmath-python): equal to the
torch backend, and the operand it loads from (maps) is left as it was. Skipped without nvmath-python."""

from __future__ import annotations

import pytest
import torch

from recon.ops import cupy_backend as cb
from recon.ops import fft_fusion
from recon.ops import torch_backend as tb

DEV = "cuda"


@pytest.fixture(autouse=True)
def _nvmath(monkeypatch: pytest.MonkeyPatch) -> None:
    if not fft_fusion.available():
        pytest.skip("nvmath-python with numba-cuda is not installed (the GPU image lacks it; see benchmarks/kernels.md)")
    monkeypatch.setenv(fft_fusion.ENV, "callbacks")


def _rel(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got - ref).abs().max() / ref.abs().max()).item()


@pytest.mark.parametrize("shape", [(32, 24), (30, 22), (33, 21), (640, 368)])
def test_fused_ops_match_torch(shape: tuple[int, int]) -> None:
    g = torch.Generator(device=DEV).manual_seed(0)
    x = torch.randn(2, 1, *shape, dtype=torch.complex64, device=DEV, generator=g)
    maps = torch.randn(2, 15, *shape, dtype=torch.complex64, device=DEV, generator=g)
    k = torch.randn(2, 15, *shape, dtype=torch.complex64, device=DEV, generator=g)
    mask = torch.rand(2, 1, 1, shape[1], device=DEV, generator=g) < 0.4
    maps_before = maps.clone()
    got = fft_fusion.sens_expand(x, maps)
    assert got is not None and _rel(got, tb.sens_expand(x, maps)) < 1e-5
    assert torch.equal(maps, maps_before), "the forward FFT overwrote its operand (maps)"
    got = fft_fusion.sens_reduce(k, maps)
    assert got is not None and _rel(got, tb.sens_reduce(k, maps)) < 1e-5
    got = fft_fusion.normal(x, maps, mask, cb._normal_phase(*shape))
    assert got is not None and _rel(got, tb.normal(x, maps, mask)) < 1e-5
    assert _rel(cb.normal(x, maps, mask), tb.normal(x, maps, mask)) < 1e-5  # through the op API
