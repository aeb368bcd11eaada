"""The finufft NUFFT operator (`recon.linops.NUFFT`, `NufftSense`, `recon.nufft`): against a
direct non-uniform DFT, SigPy's NUFFT and our centered `fft2c`; adjointness, autograd, the
Toeplitz normal operator, the many-vector (batch x coil) path, plan caching and the
trajectory checks that finufft itself does not make."""

from __future__ import annotations

import pickle
import warnings
from typing import Iterator

import numpy as np
import pytest
import torch

from recon import trajectory
from recon.core import fft2c, ifft2c
from recon.linops import NUFFT, Linop, NufftSense
from recon.nufft import FinufftPlans, nufft, toeplitz_kernel
from recon.trajectory import TrajectoryError


def _points(count: int, shape: tuple[int, int], seed: int) -> np.ndarray:
    """`count` uniformly random cycles-per-FOV points covering all of `[-N/2, N/2)`."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(-shape[0] / 2, shape[0] / 2, count), rng.uniform(-shape[1] / 2, shape[1] / 2, count)], -1)


def _random(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.complex128) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=gen, dtype=torch.float64), torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)


def _dft_matrix(coord: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The direct non-uniform DFT `(M, H*W)`: `exp(-2 pi i k.n / N) / sqrt(H W)`, centred `n`."""
    rows, cols = shape
    n_row = np.arange(rows) - rows // 2
    n_col = np.arange(cols) - cols // 2
    k = coord.reshape(-1, 2)
    phase = k[:, 0, None, None] * n_row[None, :, None] / rows + k[:, 1, None, None] * n_col[None, None, :] / cols
    return (np.exp(-2j * np.pi * phase) / np.sqrt(rows * cols)).reshape(k.shape[0], rows * cols)


def _rel(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("shape", [(12, 10), (9, 7)])
@pytest.mark.parametrize("eps", [1e-3, 1e-6, 1e-10])
def test_nufft_equals_the_direct_nonuniform_dft_at_the_requested_tolerance(shape: tuple[int, int], eps: float) -> None:
    coord = _points(300, shape, seed=1)
    op = NUFFT(coord, shape, eps=eps)
    matrix = _dft_matrix(coord, shape)
    x = _random((2, 3, *shape), seed=2)
    y = _random((2, 3, 300), seed=3)
    direct_forward = x.reshape(6, -1).numpy() @ matrix.T
    direct_adjoint = y.reshape(6, -1).numpy() @ matrix.conj()
    assert _rel(op.forward(x).reshape(6, -1), direct_forward) < 2 * eps
    assert _rel(op.adjoint(y).reshape(6, -1), direct_adjoint) < 2 * eps


def test_complex64_is_float32_accurate_and_keeps_its_dtype() -> None:
    shape = (16, 16)
    coord = _points(400, shape, seed=4)
    op = NUFFT(coord, shape, eps=1e-12)  # raised to SINGLE_EPS for the complex64 plan, no finufft warning
    x = _random((1, 2, *shape), seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y32 = op.forward(x.to(torch.complex64))
        back = op.adjoint(y32)
    assert y32.dtype == torch.complex64 and back.dtype == torch.complex64
    assert _rel(y32.to(torch.complex128), op.forward(x)) < 1e-5


def test_adjoint_passes_the_dot_product_test_in_complex128() -> None:
    shape = (20, 18)
    coord = trajectory.radial(16, 40, shape, "golden")
    op = NUFFT(coord, shape, eps=1e-6)
    x = _random((2, 4, *shape), seed=6)
    y = _random((2, 4, 16, 40), seed=7)
    lhs = torch.vdot(op.forward(x).flatten(), y.flatten())
    rhs = torch.vdot(x.flatten(), op.adjoint(y).flatten())
    assert abs(lhs - rhs) / abs(rhs) < 1e-10


def test_matches_sigpy_nufft_and_adjoint_with_unit_scaling() -> None:
    """SigPy's NUFFT is unitary like ours (scaling 1, same sign, same axis order); at its defaults
    (oversampling 1.25, width 4) it is only about 1e-2 accurate, at oversampling 2 / width 8 about 1e-7."""
    sigpy = pytest.importorskip("sigpy")
    shape = (32, 24)
    coord = trajectory.radial(30, 64, shape, "golden")
    op = NUFFT(coord, shape, eps=1e-10)
    x = _random((3, *shape), seed=8)
    y = _random((3, 30, 64), seed=9)
    ours_forward, ours_adjoint = op.forward(x).numpy(), op.adjoint(y).numpy()
    assert _rel(sigpy.nufft(x.numpy(), coord), ours_forward) < 2e-2
    assert _rel(sigpy.nufft_adjoint(y.numpy(), coord, (3, *shape)), ours_adjoint) < 2e-2
    assert _rel(sigpy.nufft(x.numpy(), coord, oversamp=2.0, width=8), ours_forward) < 1e-5
    assert _rel(sigpy.nufft_adjoint(y.numpy(), coord, (3, *shape), oversamp=2.0, width=8), ours_adjoint) < 1e-5


@pytest.mark.parametrize("shape", [(8, 6), (9, 7)])
def test_cartesian_trajectory_is_the_centered_orthonormal_fft(shape: tuple[int, int]) -> None:
    rows, cols = shape
    grid = np.stack(np.meshgrid(np.arange(rows) - rows // 2, np.arange(cols) - cols // 2, indexing="ij"), -1)
    op = NUFFT(grid, shape, eps=1e-12)
    x = _random((2, 3, *shape), seed=10)
    k = _random((2, 3, *shape), seed=11)
    torch.testing.assert_close(op.forward(x), fft2c(x), rtol=0, atol=1e-10)
    torch.testing.assert_close(op.adjoint(k), ifft2c(k), rtol=0, atol=1e-10)
    torch.testing.assert_close(op.normal(x), x, rtol=0, atol=1e-10)


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """gradcheck runs thousands of tiny ops: on shared cores, torch's thread pool makes each one
    wait for a descheduled thread (tens of seconds instead of one); one thread for the test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_gradcheck_forward_adjoint_and_toeplitz_normal_in_complex128(one_torch_thread: None) -> None:
    shape = (6, 5)
    coord = _points(40, shape, seed=12)
    weights = np.random.default_rng(13).uniform(0.5, 2.0, 40)
    op = NUFFT(coord, shape, weights=weights, eps=1e-12)
    x = _random((2, *shape), seed=14).requires_grad_()
    y = _random((2, 40), seed=15).requires_grad_()
    assert torch.autograd.gradcheck(op.forward, (x,))
    assert torch.autograd.gradcheck(op.adjoint, (y,))
    assert torch.autograd.gradcheck(op.normal, (x,))
    assert torch.autograd.gradgradcheck(op.forward, (x,))
    maps = _random((1, 3, *shape), seed=16)
    sense = NufftSense(maps, op)
    image = _random((1, 1, *shape), seed=17).requires_grad_()
    assert torch.autograd.gradcheck(sense.forward, (image,))
    assert torch.autograd.gradcheck(sense.normal, (image,))


@pytest.mark.parametrize("dtype,tol", [(torch.complex128, 1e-8), (torch.complex64, 1e-5)])
def test_toeplitz_normal_equals_adjoint_of_forward(dtype: torch.dtype, tol: float) -> None:
    shape = (24, 20)
    coord = trajectory.spiral(4, 400, shape, alpha=1.5)
    weights = trajectory.pipe_menon_dcf(coord, shape, iterations=5)
    for w in (None, weights):
        op = NUFFT(coord, shape, weights=w, eps=1e-10)
        x = _random((2, 3, *shape), seed=18, dtype=dtype)
        toeplitz = op.normal(x)
        assert toeplitz.dtype == dtype
        assert _rel(toeplitz, op.adjoint(op.forward(x))) < tol
        assert _rel(toeplitz, NUFFT(coord, shape, weights=w, eps=1e-10, toeplitz=False).normal(x)) < tol


def test_toeplitz_kernel_is_the_weighted_point_spread_function() -> None:
    """Its inverse FFT at lag d is `(H W)^-1 sum_j w_j exp(+i omega_j . d)` (FFT order)."""
    shape = (6, 8)
    coord = _points(25, shape, seed=19)
    weights = np.random.default_rng(20).uniform(0.0, 1.0, 25)
    plans = FinufftPlans(coord, shape, eps=1e-12)
    psf = torch.fft.ifft2(toeplitz_kernel(plans, weights).to(torch.complex128)).numpy()
    for d_row, d_col in [(0, 0), (1, -3), (-5, 7), (5, 2)]:
        expected = (weights * np.exp(2j * np.pi * (coord[:, 0] * d_row / 6 + coord[:, 1] * d_col / 8))).sum() / 48
        assert abs(psf[d_row % 12, d_col % 16] - expected) < 1e-10


def test_nufft_sense_is_the_composition_and_its_normal_is_toeplitz() -> None:
    shape = (16, 14)
    coord = trajectory.radial(12, 32, shape, "tiny-golden")
    op = NUFFT(coord, shape, weights=trajectory.radial_ramp(coord, 12, 32, (16, 16)) + 0.1, eps=1e-10)
    maps = _random((2, 4, *shape), seed=21)
    sense = NufftSense(maps, op)
    assert isinstance(sense, Linop)
    x = _random((2, 1, *shape), seed=22)
    y = _random((2, 4, 12, 32), seed=23)
    torch.testing.assert_close(sense.forward(x), op.forward(maps * x))
    torch.testing.assert_close(sense.adjoint(y), (maps.conj() * op.adjoint(y)).sum(1, keepdim=True))
    assert _rel(sense.normal(x), sense.adjoint(sense.forward(x))) < 1e-8
    lhs = torch.vdot(sense.forward(x).flatten(), y.flatten())
    assert abs(lhs - torch.vdot(x.flatten(), sense.adjoint(y).flatten())) / abs(lhs) < 1e-10


def test_batch_and_coils_in_one_call_equal_one_transform_each() -> None:
    shape = (10, 12)
    coord = _points(150, shape, seed=24)
    op = NUFFT(coord, shape, eps=1e-9)
    x = _random((3, 5, *shape), seed=25)
    y = op.forward(x)
    assert y.shape == (3, 5, 150)
    for b in range(3):
        for c in range(5):
            torch.testing.assert_close(y[b, c], op.forward(x[b, c]), rtol=0, atol=1e-12)
    assert op.forward(x[:0]).shape == (0, 5, 150)
    assert op.forward(x.real).dtype == torch.complex128


def test_plans_follow_the_trajectory_and_survive_pickling() -> None:
    shape = (10, 10)
    first, second = _points(60, shape, seed=26), _points(60, shape, seed=27)
    mine = first.copy()
    op = NUFFT(mine, shape, eps=1e-10)
    x = _random((2, *shape), seed=28)
    y_first = op.forward(x)
    mine[:] = second  # the caller's array changing later does not reach the cached plans
    torch.testing.assert_close(op.forward(x), y_first, rtol=0, atol=0)
    kernel_first = op.kernel(torch.complex128, torch.device("cpu"))
    op.trajectory = second
    torch.testing.assert_close(op.forward(x), NUFFT(second, shape, eps=1e-10).forward(x), rtol=0, atol=1e-14)
    assert not torch.equal(op.kernel(torch.complex128, torch.device("cpu")), kernel_first)
    clone = pickle.loads(pickle.dumps(op))
    torch.testing.assert_close(clone.forward(x), op.forward(x), rtol=0, atol=1e-14)


def test_edge_of_kspace_is_periodic_and_accepted() -> None:
    """`+N/2` and `-N/2` are one frequency on an N-pixel grid: both allowed, same samples."""
    shape = (8, 8)
    op = NUFFT(np.array([[4.0, 1.0], [-4.0, 1.0], [2.0, -4.0], [2.0, 4.0]]), shape, eps=1e-12)
    y = op.forward(_random((*shape,), seed=29))
    assert abs(y[0] - y[1]) < 1e-10 and abs(y[2] - y[3]) < 1e-10


@pytest.mark.parametrize(
    "coord,match",
    [
        (np.array([[0.0, 1.0], [np.nan, 2.0]]), "NaN or infinite"),
        (np.array([[0.0, np.inf], [1.0, 2.0]]), "NaN or infinite"),
        (np.array([[0.0, 1.0], [8.5, 2.0]]), r"k_row = 8\.5 cycles/FOV .*outside \[-8, 8\]"),
        (np.array([[0.0, -6.01], [1.0, 2.0]]), r"k_column = -6\.01 cycles/FOV .*outside \[-6, 6\]"),
        (np.zeros((5, 3)), r"shape \(\.\.\., 2\)"),
        (np.zeros((5, 2), dtype=complex), "real numbers"),
        (np.zeros((0, 2)), "no points"),
    ],
)
def test_bad_trajectories_are_refused_before_any_transform(coord: np.ndarray, match: str) -> None:
    with pytest.raises(TrajectoryError, match=match):
        NUFFT(coord, (16, 12))


def test_data_and_weights_that_do_not_match_the_trajectory_are_refused() -> None:
    shape = (16, 16)
    coord = trajectory.radial(8, 32, shape)
    op = NUFFT(coord, shape)
    with pytest.raises(ValueError, match=r"does not end in the trajectory's sample shape \(8, 32\)"):
        op.adjoint(_random((2, 8, 31), seed=30))
    with pytest.raises(ValueError, match=r"maps 16x16 images"):
        op.forward(_random((2, 16, 15), seed=31))
    with pytest.raises(ValueError, match=r"weights have shape \(8, 31\)"):
        NUFFT(coord, shape, weights=np.ones((8, 31)))
    with pytest.raises(ValueError, match="negative"):
        op.weights = -np.ones((8, 32))
    with pytest.raises(ValueError, match="NaN"):
        op.weights = np.full((8, 32), np.nan)
    with pytest.raises(ValueError, match="tolerance eps"):
        NUFFT(coord, shape, eps=0.0)
    with pytest.raises(TypeError, match="complex64 or complex128"):
        nufft(torch.zeros(16, 16, dtype=torch.int64), op.plans)
