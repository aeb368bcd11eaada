"""The cuFFT-callback prototype (recon.ops.fft_fusion) without a GPU: its callback functions run
element by element around a NumPy FFT and must give the ops of the torch backend; the variant is
off unless asked for and runnable. The GPU check is tests/gpu/test_fft_fusion_gpu.py."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.ops import cupy_backend as cb
from recon.ops import fft_fusion
from recon.ops import torch_backend as tb

SHAPES = [(8, 12), (6, 10), (7, 9)]  # 0 mod 4, 2 mod 4, odd


def _c(rng: np.random.Generator, *shape: int, dtype: type = np.complex128) -> np.ndarray:
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)


def _tol(dtype: type) -> float:
    return 1e-5 if dtype == np.complex64 else 1e-12


def _close(got: np.ndarray, ref: torch.Tensor, dtype: type) -> None:
    ref_np = ref.numpy()
    assert got.shape == ref_np.shape
    assert np.abs(got - ref_np).max() <= _tol(dtype) * np.abs(ref_np).max()


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
@pytest.mark.parametrize("shape", SHAPES)
def test_callbacks_compute_sens_expand_reduce_and_normal(shape: tuple[int, int], dtype: type) -> None:
    rng = np.random.default_rng(sum(shape))
    h, w = shape
    x, maps, k = _c(rng, 2, 1, h, w, dtype=dtype), _c(rng, 2, 3, h, w, dtype=dtype), _c(rng, 2, 3, h, w, dtype=dtype)
    mask = rng.random((2, 1, 1, w)) < 0.5
    t = torch.from_numpy
    _close(fft_fusion.emulate_sens_expand(x, maps), tb.sens_expand(t(x), t(maps)), dtype)
    _close(fft_fusion.emulate_sens_reduce(k, maps), tb.sens_reduce(t(k), t(maps)), dtype)
    got = fft_fusion.emulate_normal(x, maps, mask, cb._normal_phase(h, w))
    _close(got, tb.normal(t(x), t(maps), t(mask)), dtype)


def test_callbacks_take_a_batch_broadcast_image_and_maps() -> None:
    rng = np.random.default_rng(3)
    x, maps, k = _c(rng, 1, 1, 6, 7), _c(rng, 2, 3, 6, 7), _c(rng, 2, 3, 6, 7)
    t = torch.from_numpy
    _close(fft_fusion.emulate_sens_expand(x, maps), tb.sens_expand(t(x), t(maps)), np.complex128)
    _close(fft_fusion.emulate_sens_reduce(k, maps[:1]), tb.sens_reduce(t(k), t(maps[:1])), np.complex128)


def test_even_size_factors_are_exact() -> None:
    assert fft_fusion.cis_halfturns(3, 6, 0, 8, 1) == -1 + 0j  # half a turn
    assert fft_fusion.cis_halfturns(0, 6, 2, 8, -1) == complex(0.0, -1.0)  # a quarter turn, inverse sign


def test_off_unless_asked_for_and_runnable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fft_fusion.ENV, raising=False)
    assert fft_fusion.enabled() is False
    monkeypatch.setenv(fft_fusion.ENV, "callbacks")
    assert fft_fusion.enabled() is fft_fusion.available()
    if not torch.cuda.is_available():
        assert fft_fusion.available() is False
