"""g-factor maps (`recon.calib.gfactor`, `recon reconstruct --gfactor`): analytic SENSE against
`pygrappa.gfactor`, the exact per-row SENSE and the image-domain GRAPPA g-factor against
pseudo-replicas of the reconstructions themselves, `g >= 1`, `R = 1`, and the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from _baseline_data import phantom_kspace
from recon.calib.gfactor import (
    grappa_gfactor,
    grappa_unmixing,
    interior_codes,
    pseudo_replica_std,
    sense_gfactor,
    sense_gfactor_columns,
)
from recon.calib.grappa import GrappaKernels, grappa_apply, grappa_calibrate, pattern_codes
from recon.cli import main
from recon.core import fft2c, ifft2c
from recon.io.fastmri import read_reconstruction
from recon.methods.solvers import cg_sense

pygrappa = pytest.importorskip("pygrappa", reason="pygrappa (the reference) is in the test extra")

#: Pseudo-replica checks: 200 replicas leave ~5% random error per pixel, so the median ratio
#: over the object must be within 3% of 1 and 90% of the pixels within 12%.
MEDIAN_TOL = 0.03
SPREAD_TOL = 0.12
#: CG iterations for the unregularized SENSE solution (converged on these 16-row problems).
ITERS = 60


def _uniform(width: int, step: int, offset: int = 1) -> torch.Tensor:
    cols = torch.zeros(width, dtype=torch.bool)
    cols[offset::step] = True
    return cols


def _agrees(estimate: torch.Tensor, exact: torch.Tensor, inside: torch.Tensor) -> None:
    ratio = (estimate / exact)[inside]
    assert abs(float(ratio.median()) - 1) < MEDIAN_TOL, float(ratio.median())
    assert float(ratio.quantile(0.05)) > 1 - SPREAD_TOL and float(ratio.quantile(0.95)) < 1 + SPREAD_TOL


@pytest.mark.parametrize(("coils", "step"), [(8, 2), (8, 3), (12, 4)])
def test_sense_matches_pygrappa_gfactor(coils: int, step: int) -> None:
    # pygrappa inverts the real part of S^H S (exact for real maps), so the comparison uses real maps
    _, maps, _ = phantom_kspace(coils, 64, 48, seed=1)
    real = np.abs(maps).astype(np.float64)  # pygrappa computes in its input precision
    ref = pygrappa.gfactor(real, 1, step, coil_axis=0)
    ours = sense_gfactor(torch.from_numpy(real)[None], step)[0].numpy()
    assert np.abs(ours - ref).max() <= 2e-4 * ref.max()
    assert ours.min() >= 1 - 1e-5  # unit-RSS maps cover the whole grid: g >= 1 everywhere


def test_sense_exact_rows_equal_alias_groups_and_r1_is_one() -> None:
    _, maps, _ = phantom_kspace(8, 32, 48, seed=2)
    m = torch.from_numpy(maps)[None]
    for step in (2, 3, 4):
        groups = sense_gfactor(m, step)
        rows = sense_gfactor_columns(m, _uniform(48, step))
        assert torch.allclose(rows, groups, rtol=1e-4, atol=0)
        assert float(groups.min()) >= 1 - 1e-5
    assert torch.allclose(sense_gfactor_columns(m, torch.ones(48, dtype=torch.bool)), torch.ones(1, 32, 48), atol=1e-5)
    assert torch.allclose(sense_gfactor(m, 1), torch.ones(1, 32, 48), atol=1e-5)


@pytest.mark.parametrize("width", [48, 46])  # 46: R = 3 does not divide the columns
def test_sense_gfactor_is_cg_sense_noise(width: int) -> None:
    """Complex maps: the analytic map against pseudo-replicas of unregularized CG-SENSE itself."""
    _, maps, _ = phantom_kspace(8, 16, width, seed=1)
    m = torch.from_numpy(maps)[None]
    cols = _uniform(width, 3)
    exact = sense_gfactor(m, 3)[0] if width % 3 == 0 else sense_gfactor_columns(m, cols)[0]
    mask = cols.reshape(1, 1, 1, width)

    def recon(noise: torch.Tensor) -> torch.Tensor:
        return cg_sense(noise, m.expand(noise.shape[0], -1, -1, -1), mask, 0.0, ITERS)[:, 0]

    std = pseudo_replica_std(recon, cols.reshape(1, width).expand(16, width), 8, replicas=200)
    # unit-RSS maps: the fully sampled SENSE noise std is 1 per pixel
    _agrees(std / math.sqrt(width / float(cols.sum())), exact, torch.ones_like(exact, dtype=torch.bool))


def test_sense_whitening_by_noise_covariance() -> None:
    _, maps, _ = phantom_kspace(4, 16, 24, seed=3)
    rng = np.random.default_rng(0)
    mix = rng.standard_normal((4, 4)) + 1j * rng.standard_normal((4, 4)) + 3 * np.eye(4)
    cov = mix @ mix.conj().T
    coloured = np.einsum("ij,jhw->ihw", mix, maps)  # maps seen through correlated receivers
    white = sense_gfactor(torch.from_numpy(maps)[None], 2)
    assert torch.allclose(sense_gfactor(torch.from_numpy(coloured)[None], 2, noise_cov=torch.from_numpy(cov)), white, rtol=1e-4)


def _grappa_setup(step: int, rows: int = 64, cols: int = 48):
    full, _, img = phantom_kspace(8, rows, cols, seed=1, noise=0)
    kspace = torch.from_numpy(full)[None]
    sampled = torch.zeros(1, rows, cols, dtype=torch.bool)
    sampled[..., 1::step] = True
    region = ((cols - 12) // 2, (cols - 12) // 2 + 12)
    return kspace, sampled, torch.from_numpy(np.abs(img) > 0.3), region


def _grappa_kernels(kspace: torch.Tensor, sampled: torch.Tensor, region: tuple[int, int], kernel: tuple[int, int]):
    codes = pattern_codes(sampled, kernel)
    used = torch.unique(codes[~sampled & (codes != 0)])
    return grappa_calibrate(kspace, region, used, kernel), codes


def test_grappa_unmixing_is_the_kspace_kernel() -> None:
    """`W ifft2c(zero-filled)` equals GRAPPA's k-space fill away from the k-space edges."""
    step, kernel = 3, (5, 5)
    kspace, sampled, _, region = _grappa_setup(step)
    zero_filled = kspace * sampled[:, None]
    kernels, codes = _grappa_kernels(kspace, sampled, region, kernel)
    filled = grappa_apply(zero_filled, sampled, kernels, codes)
    interior = grappa_calibrate(kspace, region, interior_codes(step, kernel), kernel)
    coil_images = torch.stack([(grappa_unmixing(interior.weights, step, kernel, (64, 48), c) * ifft2c(zero_filled)).sum(1) for c in range(8)], 1)
    inner = (slice(None), slice(None), slice(3, -3), slice(4, -4))
    assert float((fft2c(coil_images) - filled)[inner].abs().max()) < 1e-5 * float(filled.abs().max())


@pytest.mark.parametrize("step", [2, 3])
def test_grappa_gfactor_is_the_noise_of_its_unmixing(step: int) -> None:
    """Analytic GRAPPA g against pseudo-replicas through the image-domain unmixing (circular
    kernels, linearized RSS weights: the model of `grappa_gfactor`), and `g >= 1` inside."""
    kernel = (5, 5)
    kspace, sampled, inside, region = _grappa_setup(step)
    kernels, codes = _grappa_kernels(kspace, sampled, region, kernel)
    images = ifft2c(grappa_apply(kspace * sampled[:, None], sampled, kernels, codes))
    g = grappa_gfactor(kspace, region, step, kernel, images)[0]
    weights = images / images.abs().square().sum(1, keepdim=True).sqrt()
    interior = grappa_calibrate(kspace, region, interior_codes(step, kernel), kernel)
    unmix = torch.stack([grappa_unmixing(interior.weights, step, kernel, (64, 48), c)[0] for c in range(8)])

    def recon(noise: torch.Tensor) -> torch.Tensor:
        return (weights.conj() * torch.einsum("oihw,nihw->nohw", unmix, ifft2c(noise))).sum(1)

    std = pseudo_replica_std(recon, sampled[0], 8, replicas=200)
    _agrees(std / math.sqrt(step), g, inside)  # full sampling: noise std ||p|| = 1
    assert float(g[inside].min()) >= 1.0


@pytest.mark.parametrize(("step", "excess"), [(2, 0.08), (3, 0.02)])
def test_grappa_gfactor_is_grappa_noise(step: int, excess: float) -> None:
    """Against pseudo-replicas through the GRAPPA fill itself (fixed kernels): equal up to the
    k-space edge kernels the analytic map leaves out (a one-sided kernel fills the unsampled
    edge column; on 96 columns that adds about 6% noise at R = 2, 1% at R = 3)."""
    kernel = (5, 5)
    kspace, sampled, inside, region = _grappa_setup(step, 128, 96)
    kernels, codes = _grappa_kernels(kspace, sampled, region, kernel)
    images = ifft2c(grappa_apply(kspace * sampled[:, None], sampled, kernels, codes))
    g = grappa_gfactor(kspace, region, step, kernel, images)[0]
    weights = images / images.abs().square().sum(1, keepdim=True).sqrt()

    def recon(noise: torch.Tensor) -> torch.Tensor:
        count = noise.shape[0]
        many = GrappaKernels(kernels.codes, kernels.weights.expand(count, *kernels.weights.shape[1:]), kernel)
        return (weights.conj() * ifft2c(grappa_apply(noise, sampled.expand(count, -1, -1), many))).sum(1)

    ratio = (pseudo_replica_std(recon, sampled[0], 8, replicas=200) / math.sqrt(step) / g)[inside]
    assert 1 - MEDIAN_TOL < float(ratio.median()) < 1 + excess + MEDIAN_TOL, float(ratio.median())


def test_grappa_gfactor_r1_is_one() -> None:
    kspace, _, inside, region = _grappa_setup(1)
    g = grappa_gfactor(kspace, region, 1, (5, 5), ifft2c(kspace))[0]
    assert torch.allclose(g[inside], torch.ones(()))


SIM = ["--volumes", "1", "--slices", "1", "--coils", "8", "--preset", "small", "--seed", "3100"]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", str(out), *SIM]) == 0
    return out


@pytest.mark.parametrize(
    ("method", "extra", "floor"),
    [("sense", [], 1.0), ("grappa", [], 1.0), ("grappa", ["--virtual-coils", "6", "--coil-compression", "gcc"], 0.8)],
)
def test_cli_writes_gfactor_beside_the_image(sim_dir: Path, tmp_path: Path, method: str, extra: list[str], floor: float) -> None:
    """SENSE's g is >= 1 by construction; regularized GRAPPA kernels can trade noise for residual
    aliasing (g < 1 in 0.9% of the object here with 6 geometric virtual coils)."""
    out = tmp_path / method
    args = ["reconstruct", str(sim_dir), "--out", str(out), "--method", method, "--mask", "equispaced", "--acceleration", "4", "--gfactor", "--quiet", *extra]
    assert main(args) == 0
    (image_file,) = [p for p in out.glob("*.h5") if not p.name.endswith("_gfactor.h5")]
    gfactor, attrs = read_reconstruction(image_file.with_name(image_file.stem + "_gfactor.h5"))
    image, image_attrs = read_reconstruction(image_file)
    assert gfactor.shape == image.shape and attrs["quantity"] == "gfactor"
    for key in ("acceleration", "center_fraction", "mask_type", "method", "acquisition", "calib_region"):
        assert np.array_equal(np.asarray(attrs[key]), np.asarray(image_attrs[key])), key
    assert np.array_equal(attrs["mask"], image_attrs["mask"])
    inside = image > 0.2 * image.max()
    assert np.isfinite(gfactor).all() and gfactor[inside].min() >= floor and np.median(gfactor[inside]) > 1.5
    # the maps beside the images are not predictions: evaluate scores the images alone
    assert main(["evaluate", "--targets", str(sim_dir), "--predictions", str(out)]) == 0


@pytest.mark.parametrize("method", ["cs", "zero-filled"])
def test_cli_refuses_gfactor_without_one(sim_dir: Path, tmp_path: Path, method: str, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / method
    assert main(["reconstruct", str(sim_dir), "--out", str(out), "--method", method, "--acceleration", "4", "--gfactor", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "g-factor" in err[0] and method in err[0]
    assert not out.exists() or not list(out.glob("*.h5"))


def test_cli_gfactor_refuses_random_masks(sim_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "random"
    assert main(["reconstruct", str(sim_dir), "--out", str(out), "--method", "sense", "--acceleration", "4", "--gfactor", "--quiet"]) == 1
    assert "uniform undersampling" in capsys.readouterr().err
    assert not list(out.glob("*.h5"))
