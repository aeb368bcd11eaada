"""recon.core against NumPy's centered FFT and fastMRI's, for even and odd sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon import core, ops


def _np_fft2c(x: np.ndarray) -> np.ndarray:
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=ax), norm="ortho", axes=ax), axes=ax)


def _np_ifft2c(x: np.ndarray) -> np.ndarray:
    ax = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(x, axes=ax), norm="ortho", axes=ax), axes=ax)


def _rand(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)


@pytest.mark.parametrize("shape", [(2, 3, 16, 12), (1, 4, 15, 9), (5, 7), (3, 2, 1, 10, 14), (6, 11)])
def test_fft2c_matches_numpy(shape: tuple[int, ...]) -> None:
    x = _rand(shape, seed=sum(shape))
    got = core.fft2c(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, _np_fft2c(x.astype(np.complex128)), rtol=0, atol=1e-5 * np.abs(x).max() * 4)
    back = core.ifft2c(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(back, _np_ifft2c(x.astype(np.complex128)), rtol=0, atol=1e-5 * np.abs(x).max() * 4)


@pytest.mark.parametrize("shape", [(3, 16, 12), (2, 15, 9)])
def test_roundtrip_and_orthonormal(shape: tuple[int, ...]) -> None:
    x = torch.from_numpy(_rand(shape, 1))
    k = core.fft2c(x)
    assert torch.allclose(core.ifft2c(k), x, atol=1e-5)
    assert torch.allclose(torch.linalg.vector_norm(k), torch.linalg.vector_norm(x), rtol=1e-5)


def test_matches_fastmri_fft_and_rss_and_crop() -> None:
    fm = pytest.importorskip("fastmri")
    from fastmri.data import transforms as T

    x = _rand((2, 4, 20, 18), 3)
    xt = torch.from_numpy(x)
    ours = core.fft2c(xt)
    theirs = torch.view_as_complex(fm.fft2c(torch.view_as_real(xt).contiguous()))
    assert torch.allclose(ours, theirs, atol=1e-5)
    ours_i = core.ifft2c(xt)
    theirs_i = torch.view_as_complex(fm.ifft2c(torch.view_as_real(xt).contiguous()))
    assert torch.allclose(ours_i, theirs_i, atol=1e-5)
    assert torch.allclose(core.rss(xt, 1), fm.rss_complex(torch.view_as_real(xt), 1), atol=1e-5)
    img = torch.rand(3, 20, 18)
    assert torch.equal(core.center_crop(img, (10, 7)), T.center_crop(img, (10, 7)))


def test_ops_torch_backend_definitions() -> None:
    rng = np.random.default_rng(5)
    x = torch.from_numpy(_rand((2, 1, 12, 10), 6))
    maps = torch.from_numpy(_rand((2, 3, 12, 10), 7))
    k0 = torch.from_numpy(_rand((2, 3, 12, 10), 8))
    mask = torch.from_numpy(rng.random((2, 1, 1, 10)) < 0.5)
    k = ops.sens_expand(x, maps)
    assert torch.allclose(k, core.fft2c(maps * x))
    red = ops.sens_reduce(k, maps)
    assert red.shape == (2, 1, 12, 10)
    assert torch.allclose(red, (maps.conj() * core.ifft2c(k)).sum(1, keepdim=True), atol=1e-5)
    soft = ops.soft_dc(k, k0, mask, 0.3)
    assert torch.allclose(soft, k - 0.3 * mask * (k - k0), atol=1e-6)
    assert torch.equal(ops.hard_dc(k, k0, mask), torch.where(mask, k0, k))
    # Adjointness <A x, y> = <x, A^H y> of the masked forward model.
    y = torch.from_numpy(_rand((2, 3, 12, 10), 9)) * mask
    lhs = torch.vdot((mask * ops.sens_expand(x, maps)).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), ops.sens_reduce(y, maps).flatten())
    assert torch.allclose(lhs, rhs, rtol=1e-4)
    assert torch.allclose(ops.normal(x, maps, mask), ops.sens_reduce(mask * k, maps), atol=1e-5)


@pytest.mark.parametrize("shape", [(2, 3, 16, 12), (5, 7)])
def test_numpy_and_torch_agree(shape: tuple[int, ...]) -> None:
    x = _rand(shape, 11)
    np.testing.assert_allclose(core.fft2c(x), core.fft2c(torch.from_numpy(x)).numpy(), atol=1e-4)
    np.testing.assert_allclose(core.ifft2c(x), core.ifft2c(torch.from_numpy(x)).numpy(), atol=1e-4)
    np.testing.assert_allclose(core.rss(x, 0), core.rss(torch.from_numpy(x), 0).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(core.center_crop(x, (4, 3)), core.center_crop(torch.from_numpy(x), (4, 3)).numpy())
    # A 1-D transform along the readout equals the 2-D one composed with the other axis.
    both = core.fftc(core.fftc(x, (-2,)), (-1,))
    np.testing.assert_allclose(both, core.fft2c(x), atol=1e-4)


@pytest.mark.parametrize("crop", [(17, 4), (4, 13), (0, 4)])
def test_center_crop_refuses_larger_or_empty_crops(crop: tuple[int, int]) -> None:
    x = torch.zeros(2, 16, 12)
    with pytest.raises(ValueError, match="cannot center-crop"):
        core.center_crop(x, crop)
    with pytest.raises(ValueError, match="cannot center-crop"):
        core.center_crop(x.numpy(), crop)
