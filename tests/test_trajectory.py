"""`recon.trajectory`: radial and spiral generators, the cycles-per-FOV convention and the rule
that reads Gadgetron's normalised and BART's cycles-per-FOV files, the checks, BART's layout
(against the real `bart nufft`), and Pipe-Menon density compensation on finufft's
spread/interpolate-only mode against the analytic radial ramp and `sigpy.mri.pipe_menon_dcf`."""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from recon import trajectory as T
from recon.linops import NUFFT
from recon.trajectory import TrajectoryError

GOLDEN_DEGREES = 180.0 / T.GOLDEN_RATIO  # 111.246...


def _angle_steps(coord: np.ndarray) -> np.ndarray:
    """Angle increments (degrees, modulo 180) between consecutive spokes `(spokes, readout, 2)`."""
    last = coord[:, -1]
    theta = np.degrees(np.arctan2(last[:, 0], last[:, 1]))
    return np.mod(np.diff(theta), 180.0)


@pytest.mark.parametrize("scheme,step", [("uniform", 180.0 / 10), ("golden", GOLDEN_DEGREES), ("tiny-golden", 180.0 / (T.GOLDEN_RATIO + 6))])
def test_radial_spokes_step_by_their_angle_and_stay_in_range(scheme: str, step: float) -> None:
    coord = T.radial(10, 64, (32, 32), scheme)  # type: ignore[arg-type]
    assert coord.shape == (10, 64, 2)
    np.testing.assert_allclose(_angle_steps(coord), step, atol=1e-9)
    np.testing.assert_array_equal(coord[:, 32], 0.0)  # sample readout//2 is the centre
    assert np.abs(coord).max() <= 16.0
    np.testing.assert_allclose(np.hypot(coord[..., 0], coord[..., 1])[:, 0], 16.0)
    assert abs(180.0 / (T.GOLDEN_RATIO + 6) - 23.6281) < 1e-3  # the tiny golden angle of order 7


def test_radial_without_a_centre_sample_is_symmetric_like_bart_traj() -> None:
    coord = T.radial(3, 8, (16, 16), "uniform", sample_dc=False)
    radius = np.hypot(coord[0, :, 0], coord[0, :, 1]) * np.sign(coord[0, :, 1] + coord[0, :, 0])
    np.testing.assert_allclose(radius, (np.arange(8) - 3.5) * 2.0, atol=1e-12)


def test_non_square_matrix_scales_each_axis_by_its_size() -> None:
    coord = T.radial(4, 16, (32, 64), "uniform")
    assert np.abs(coord[..., 0]).max() == pytest.approx(16.0)
    assert np.abs(coord[..., 1]).max() == pytest.approx(32.0)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_spiral_interleaves_turns_and_edge_spacing(alpha: float) -> None:
    shape, interleaves = (64, 64), 8
    coord = T.spiral(interleaves, 6400, shape, alpha=alpha)
    assert coord.shape == (8, 6400, 2)
    assert np.abs(coord).max() < 32.0
    np.testing.assert_array_equal(coord[:, 0], 0.0)
    start = np.degrees(np.arctan2(coord[:, 1, 0], coord[:, 1, 1]))
    np.testing.assert_allclose(np.mod(np.diff(start), 360.0), 360.0 / interleaves, atol=1e-6)
    radius = np.hypot(coord[0, :, 0], coord[0, :, 1])
    turns = 0.5 * alpha * 64 / interleaves
    step = int(6400 / turns / interleaves)  # the neighbouring interleave passed this angle `step` samples earlier
    edge_gap = radius[-1] - radius[-1 - step]
    assert edge_gap == pytest.approx(1.0, rel=0.01 * alpha)  # Nyquist: 1 cycle/FOV at the edge
    inner = int(np.argmin(np.abs(radius - 8.0)))
    inner_gap = radius[inner + step // 2] - radius[inner - step // 2]
    assert inner_gap == pytest.approx(edge_gap * (8.0 / 32.0) ** ((alpha - 1) / alpha), rel=0.02)


def test_detect_convention_by_the_largest_radius() -> None:
    shape = (128, 96)
    radial = T.radial(20, 256, shape)
    normalised = T.to_normalized(radial, shape)
    assert np.abs(normalised).max() <= 0.5
    assert T.detect_convention(normalised, shape) == "normalized"
    assert T.detect_convention(radial, shape) == "cycles"
    corners = np.array([[-0.5, -0.5], [0.49, 0.49], [0.0, 0.0]])  # radius 0.707: the per-axis largest decides
    assert T.detect_convention(corners, shape) == "normalized"
    back, convention = T.to_cycles_per_fov(normalised, shape)
    assert convention == "normalized"
    np.testing.assert_allclose(back, radial, atol=1e-12)
    same, convention = T.to_cycles_per_fov(radial, shape)
    assert convention == "cycles"
    np.testing.assert_array_equal(same, radial)
    explicit, _ = T.to_cycles_per_fov(np.array([[0.25, 0.5]]), shape, "cycles")
    np.testing.assert_array_equal(explicit, [[0.25, 0.5]])
    with pytest.raises(TrajectoryError, match="fits neither convention"):
        T.detect_convention(np.array([[70.0, 0.0]]), shape)
    with pytest.raises(TrajectoryError, match="NaN"):
        T.to_cycles_per_fov(np.array([[np.nan, 0.0]]), shape)
    with pytest.raises(TrajectoryError, match="unknown trajectory convention"):
        T.to_cycles_per_fov(radial, shape, "radians")  # type: ignore[arg-type]


def test_float32_normalised_points_round_onto_the_edge() -> None:
    shape = (256, 256)
    edge = np.array([[np.float32(-0.5) * (1 + 2e-7), np.float32(0.25)]], dtype=np.float32)
    coord, convention = T.to_cycles_per_fov(edge, shape)
    assert convention == "normalized" and coord[0, 0] == -128.0


@pytest.mark.parametrize(
    "coord,samples,match",
    [
        (np.array([[1.0, np.nan], [0.0, 0.0], [np.nan, 0.0]]), None, r"2 point\(s\) with NaN .*first at index \(0,\)"),
        (np.array([[0.0, 0.0], [-16.5, 3.0]]), None, r"k_row = -16\.5 cycles/FOV \(point \(1,\)\)"),
        (np.array([[0.0, 0.0], [0.0, 0.4]]), (3,), r"sample shape \(2,\) but the k-space data have \(3,\) samples"),
        (np.zeros((4, 2, 3)), None, r"shape \(\.\.\., 2\)"),
        (np.array([["a", "b"]]), None, "real numbers"),
    ],
)
def test_check_trajectory_refuses_by_name(coord: np.ndarray, samples: tuple[int, ...] | None, match: str) -> None:
    with pytest.raises(TrajectoryError, match=match):
        T.check_trajectory(coord, (32, 32), samples)


def test_check_trajectory_copies_and_accepts_tensors() -> None:
    coord = torch.tensor([[1.0, -2.0], [16.0, -16.0]])
    checked = T.check_trajectory(coord, (32, 32), samples=(2,))
    assert checked.dtype == np.float64
    checked[0, 0] = 5.0
    assert coord[0, 0] == 1.0
    with pytest.raises(TrajectoryError, match="two positive integers"):
        T.check_trajectory(coord, (0, 32))


def test_bart_layout_round_trips() -> None:
    coord = T.radial(5, 12, (16, 16))
    bart = T.to_bart(coord)
    assert bart.shape == (3, 5, 12) and bart.dtype == np.complex64
    np.testing.assert_allclose(T.from_bart(bart), coord, atol=1e-5)
    with pytest.raises(TrajectoryError, match="non-zero z"):
        T.from_bart(np.ones((3, 4)))


@pytest.mark.skipif(shutil.which("bart") is None, reason="BART's `bart` command is not installed (Debian package bart)")
def test_bart_layout_gives_bart_nufft_our_transform(tmp_path: Path) -> None:
    """BART's x is our k_row with images stored as BART `(H, W)` (READ = rows); BART is unitary
    and, with `-P` (periodic k-space, as finufft), about 1e-3 accurate."""
    import sys

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from bart_cfl import read_cfl, write_cfl

    shape = (24, 20)
    coord = T.radial(9, 40, shape, "golden")
    image = np.random.default_rng(3).standard_normal(shape) + 1j * np.random.default_rng(4).standard_normal(shape)
    write_cfl(tmp_path / "traj", T.to_bart(coord).transpose(0, 2, 1))  # BART: (3, readout, spokes)
    write_cfl(tmp_path / "img", image)
    subprocess.run(["bart", "nufft", "-P", str(tmp_path / "traj"), str(tmp_path / "img"), str(tmp_path / "ksp")], check=True, capture_output=True)
    bart = read_cfl(tmp_path / "ksp").reshape(40, 9).T
    ours = NUFFT(coord, shape, eps=1e-10).forward(torch.from_numpy(image)).numpy()
    assert np.linalg.norm(bart - ours) / np.linalg.norm(ours) < 1e-2


def test_pipe_menon_on_a_cartesian_grid_is_one() -> None:
    grid = np.stack(np.meshgrid(np.arange(24) - 12, np.arange(20) - 10, indexing="ij"), -1)
    np.testing.assert_allclose(T.pipe_menon_dcf(grid, (24, 20)), 1.0, rtol=1e-10)


def _annulus(coord: np.ndarray, size: int) -> np.ndarray:
    radius = np.hypot(coord[..., 0], coord[..., 1])
    return (radius > 0.2 * size / 2) & (radius < 0.8 * size / 2)


def test_pipe_menon_equals_the_analytic_radial_ramp_in_an_annulus() -> None:
    """`pi |k| dk / spokes` for uniform spokes, no fitted scale: the weights are areas per sample."""
    size, spokes, readout = 64, 100, 128
    coord = T.radial(spokes, readout, (size, size), "uniform")
    weights = T.pipe_menon_dcf(coord, (size, size))
    ramp = T.radial_ramp(coord, spokes, readout, (size, size))
    ring = _annulus(coord, size)
    assert np.abs(weights[ring] / ramp[ring] - 1).max() < 0.01
    centre = weights[:, readout // 2]  # the ramp is 0 at the centre: one sample shared by all spokes
    assert np.all(centre < ramp[:, readout // 2 + 1])


@pytest.mark.parametrize("kind", ["radial", "spiral"])
def test_pipe_menon_agrees_with_sigpy_after_one_scale(kind: str) -> None:
    """SigPy's weights have another scale (its kernel is not normalised) and its own kernel (KB,
    width 4 on the image grid): one least-squares scale, then a few per cent in the annulus.
    SigPy itself is up to 8 % off the analytic ramp there (ours < 1 %), so that is the bar."""
    sigpy_mri = pytest.importorskip("sigpy.mri")
    size = 64
    coord = T.radial(100, 128, (size, size), "uniform") if kind == "radial" else T.spiral(8, 2000, (size, size), alpha=1.5)
    ours = T.pipe_menon_dcf(coord, (size, size))
    theirs = np.asarray(sigpy_mri.pipe_menon_dcf(coord, (size, size), show_pbar=False))
    ring = _annulus(coord, size)
    scale = (theirs[ring] * ours[ring]).sum() / (theirs[ring] ** 2).sum()
    deviation = np.abs(scale * theirs[ring] / ours[ring] - 1)
    assert deviation.mean() < 0.02 and deviation.max() < 0.1


def test_gridding_with_the_dcf_recovers_a_smooth_image() -> None:
    """`NUFFT.adjoint(w * NUFFT(x))` with area weights is the image itself for a band-limited
    object inside a fully sampled disc (402/256-like spoke count: pi/2 N spokes)."""
    size = 48
    spokes = math.ceil(math.pi / 2 * size)
    coord = T.radial(spokes, 2 * size, (size, size), "golden")
    weights = T.pipe_menon_dcf(coord, (size, size))
    rows, cols = np.meshgrid(np.arange(size) - size // 2, np.arange(size) - size // 2, indexing="ij")
    image = torch.from_numpy(np.exp(-(rows**2 + cols**2) / (2 * 4.0**2)).astype(np.complex128))
    op = NUFFT(coord, (size, size), eps=1e-10)
    gridded = op.adjoint(torch.from_numpy(weights) * op.forward(image))
    assert float((gridded - image).norm() / image.norm()) < 0.03


def test_pipe_menon_refuses_bad_trajectories() -> None:
    with pytest.raises(TrajectoryError, match="NaN"):
        T.pipe_menon_dcf(np.array([[0.0, np.nan]]), (8, 8))
    with pytest.raises(TrajectoryError, match="outside"):
        T.pipe_menon_dcf(np.array([[0.0, 4.5]]), (8, 8))
    with pytest.raises(TrajectoryError, match="at least one iteration"):
        T.pipe_menon_dcf(np.array([[0.0, 1.0]]), (8, 8), iterations=0)


def test_generators_refuse_impossible_sizes() -> None:
    with pytest.raises(TrajectoryError, match="at least one spoke"):
        T.radial(0, 8, (8, 8))
    with pytest.raises(TrajectoryError, match="unknown radial angle scheme"):
        T.radial(4, 8, (8, 8), "random")  # type: ignore[arg-type]
    with pytest.raises(TrajectoryError, match="alpha must be >= 1"):
        T.spiral(4, 100, (8, 8), alpha=0.5)
    with pytest.raises(TrajectoryError, match="square matrix"):
        T.radial_ramp(T.radial(4, 8, (8, 16)), 4, 8, (8, 16))
