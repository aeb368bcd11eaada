"""The sense / cs / cs-tv methods vs SigPy at identical settings (CG-SENSE, FISTA L1-wavelet, PDHG TV); method interface."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recon import ops
from recon.acquisition import centered_region
from recon.alg import max_eigenvalue
from recon.calib import espirit_calib
from recon.core import center_crop
from recon.linops import FiniteDifference, Wavelet2D, map_coeffs
from recon.methods import ReconBatch, get_method
from recon.methods.classical import ESPIRIT_DEFAULTS
from recon.methods.solvers import cg_sense, fista_l1_wavelet, l1_wavelet_objective, pdhg_tv, sense_recon, tv_objective
from recon.noise import data_scale

finite_diff = FiniteDifference().forward
finite_diff_adjoint = FiniteDifference().adjoint

sys.path.insert(0, str(Path(__file__).parent))
from _baseline_data import column_mask, phantom_kspace  # noqa: E402

mr = pytest.importorskip("sigpy.mri")
sp = pytest.importorskip("sigpy")


@pytest.fixture(scope="module")
def problem() -> dict:
    """Normalized 4x undersampled 8-coil 64x48 slice with ESPIRiT maps from its ACS."""
    k, _, img = phantom_kspace(8, 64, 48, seed=4, noise=5e-3)
    mask = column_mask(48, 4, 8)
    kspace = torch.from_numpy(k * mask)[None]
    mask_t = torch.from_numpy(mask)[None, None, None]
    maps = espirit_calib(kspace, centered_region(48, 8))
    y = kspace / ops.rss(ops.ifft2c(kspace), 1).max()  # zero-filled peak 1: the settings the SigPy comparisons were set up on
    return {"y": y, "maps": maps, "mask": mask_t, "full": torch.from_numpy(k)[None], "img": img}


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_cg_sense_matches_sigpy(problem: dict) -> None:
    ours = cg_sense(problem["y"], problem["maps"], problem["mask"], 0.01, 30)[0, 0].numpy()
    ref = mr.app.SenseRecon(problem["y"][0].numpy(), problem["maps"][0].numpy(), lamda=0.01, max_iter=30, show_pbar=False).run()
    assert _rel(ours, ref) < 1e-3


def test_wavelet_matches_sigpy_and_is_adjoint() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2, 63, 47, dtype=torch.complex64, generator=gen)
    wav = Wavelet2D((63, 47))
    coeffs = wav.forward(x)
    flat = [coeffs[0].numpy()[0]] + [{"da": d[0][0].numpy(), "ad": d[1][0].numpy(), "dd": d[2][0].numpy()} for d in coeffs[1:]]
    import pywt

    arr, _ = pywt.coeffs_to_array(flat)
    ref = sp.fwt(x[0].numpy(), wave_name="db4")
    assert np.abs(arr - ref).max() < 1e-5
    other = map_coeffs(coeffs, lambda c: torch.randn(c.shape, dtype=c.dtype, generator=gen))
    lhs = sum((a.conj() * b).sum() for a, b in zip(_flatten(coeffs), _flatten(other)))
    rhs = (x.conj() * wav.adjoint(other)).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-5
    assert (wav.adjoint(coeffs) - x).abs().max() < 1e-5


def _flatten(coeffs: list) -> list[torch.Tensor]:
    return [coeffs[0]] + [d for level in coeffs[1:] for d in level]


def test_fista_l1_wavelet_matches_sigpy(problem: dict) -> None:
    y, maps, mask = problem["y"], problem["maps"], problem["mask"]
    step = 1 / max_eigenvalue(lambda x: ops.normal(x, maps, mask), (1, 1, 64, 48), y.device)
    ours = fista_l1_wavelet(y, maps, mask, 0.005, 40, step=step)[0, 0].numpy()
    ref = mr.app.L1WaveletRecon(y[0].numpy(), maps[0].numpy(), lamda=0.005, max_iter=40, alpha=float(step), show_pbar=False).run()
    assert _rel(ours, ref) < 1e-3


def test_fista_converged_objective_matches_sigpy_default_step(problem: dict) -> None:
    y, maps, mask = problem["y"], problem["maps"], problem["mask"]
    ours = fista_l1_wavelet(y, maps, mask, 0.005, 150)
    ref = mr.app.L1WaveletRecon(y[0].numpy(), maps[0].numpy(), lamda=0.005, max_iter=150, show_pbar=False).run()
    ref_t = torch.from_numpy(ref)[None, None]
    f_ours = float(l1_wavelet_objective(ours, y, maps, mask, 0.005))
    f_ref = float(l1_wavelet_objective(ref_t, y, maps, mask, 0.005))
    assert abs(f_ours - f_ref) / f_ref < 1e-3


def test_l1_wavelet_random_shift_is_deterministic_and_shifts_back(problem: dict) -> None:
    from recon.prox import L1Wavelet

    v = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 1, 64, 48)).astype(np.complex64))
    assert (L1Wavelet((64, 48), 0.0, random_shift=8)(1.0, v) - v).abs().max() < 1e-4
    a, b = L1Wavelet((64, 48), 0.5, random_shift=8), L1Wavelet((64, 48), 0.5, random_shift=8)
    outs = [a(1.0, v) for _ in range(3)]
    assert all(torch.equal(o, b(1.0, v)) for o in outs)
    assert not torch.equal(outs[0], outs[1]) or not torch.equal(outs[1], outs[2])
    y, maps, mask = problem["y"], problem["maps"], problem["mask"]
    assert torch.equal(fista_l1_wavelet(y, maps, mask, 0.005, 10, random_shift=8), fista_l1_wavelet(y, maps, mask, 0.005, 10, random_shift=8))
    with pytest.raises(ValueError, match="random_shift"):
        L1Wavelet((64, 48), 0.5, random_shift=-1)


def test_pdhg_tv_matches_sigpy(problem: dict) -> None:
    y, maps, mask = problem["y"], problem["maps"], problem["mask"]
    normal_tv = lambda x: ops.normal(x, maps, mask) + finite_diff_adjoint(finite_diff(x))  # noqa: E731
    tau = 1 / max_eigenvalue(normal_tv, (1, 1, 64, 48), y.device)
    ours = pdhg_tv(y, maps, mask, 0.005, 40, tau=tau, sigma=1.0)[0, 0].numpy()
    ref = mr.app.TotalVariationRecon(y[0].numpy(), maps[0].numpy(), lamda=0.005, max_iter=40, tau=float(tau), sigma=1.0, show_pbar=False).run()
    assert _rel(ours, ref) < 1e-3


def test_pdhg_tv_converged_objective_matches_sigpy(problem: dict) -> None:
    y, maps, mask = problem["y"], problem["maps"], problem["mask"]
    ours = pdhg_tv(y, maps, mask, 0.005, 300)
    ref = mr.app.TotalVariationRecon(y[0].numpy(), maps[0].numpy(), lamda=0.005, max_iter=300, show_pbar=False).run()
    f_ours = float(tv_objective(ours, y, maps, mask, 0.005))
    f_ref = float(tv_objective(torch.from_numpy(ref)[None, None], y, maps, mask, 0.005))
    assert abs(f_ours - f_ref) / f_ref < 1e-3


def test_finite_diff_adjoint() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 1, 9, 7, dtype=torch.complex64, generator=gen)
    u = torch.randn(2, 2, 9, 7, dtype=torch.complex64, generator=gen)
    lhs = (finite_diff(x).conj() * u).sum()
    rhs = (x.conj() * finite_diff_adjoint(u)).sum()
    assert abs(lhs - rhs) / abs(lhs) < 1e-5


def test_batched_equals_per_slice_and_scale_invariant(problem: dict) -> None:
    k2, _, _ = phantom_kspace(8, 64, 48, seed=5, noise=5e-3)
    mask = problem["mask"]
    kspace = torch.cat([problem["y"] * 3.0, torch.from_numpy(k2)[None] * mask * 1e-4])
    maps = torch.cat([problem["maps"], espirit_calib(kspace[1:], centered_region(48, 8))])
    both = sense_recon(kspace, maps, mask, 0.01, 20)
    for b in range(2):
        single = sense_recon(kspace[b : b + 1], maps[b : b + 1], mask, 0.01, 20)
        assert torch.allclose(both[b], single[0], rtol=1e-4, atol=1e-6 * single.abs().max())
    scaled = sense_recon(kspace[:1] * 1e6, maps[:1], mask, 0.01, 20)
    assert torch.allclose(scaled / 1e6, both[:1], rtol=1e-3, atol=1e-5 * both[0].abs().max())


@pytest.mark.parametrize("name", ["sense", "cs", "cs-tv"])
def test_registered_methods_beat_zero_filled_at_target_scale(problem: dict, name: str) -> None:
    full = problem["full"]
    target = center_crop(ops.rss(ops.ifft2c(full), 1), (48, 40))
    mask = torch.from_numpy(column_mask(48, 4, 12))[None, None, None]
    batch = ReconBatch(full * mask, mask, torch.tensor([centered_region(48, 12)]), (48, 40))
    zero = get_method("zero-filled")(batch)
    out = get_method(name, iters=30)(batch)
    assert out.shape == (1, 48, 40) and out.dtype == torch.float32
    err = float((out - target).norm() / target.norm())
    err_zero = float((zero - target).norm() / target.norm())
    assert err < 0.2 and err < err_zero
    with_maps = get_method(name, iters=30)(batch._replace(maps=espirit_calib(full * mask, centered_region(48, 12), **ESPIRIT_DEFAULTS)))
    assert torch.allclose(with_maps, out, atol=1e-4 * float(out.max()))


def _bart_scale(kspace: np.ndarray, work: Path) -> float:
    """The scale `bart pics` applies to `(C, H, W)` k-space (its debug output, `-d4`)."""
    import subprocess

    sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
    from bart_cfl import kspace_to_bart, write_cfl

    write_cfl(work / "k", kspace_to_bart(kspace))
    write_cfl(work / "s", kspace_to_bart(np.ones_like(kspace)))
    out = subprocess.run(["bart", "pics", "-d4", "-i", "1", str(work / "k"), str(work / "s"), str(work / "x")], capture_output=True, text=True, check=True)
    line = next(x for x in (out.stdout + out.stderr).splitlines() if x.startswith("Scaling:"))
    return float(line.split()[1])


@pytest.mark.skipif(__import__("shutil").which("bart") is None, reason="BART (`bart`) is not installed; scripts/_setup.sh installs it")
@pytest.mark.parametrize("nlow", [8, 12, 40])
def test_data_scale_is_barts(tmp_path: Path, nlow: int) -> None:
    k, _, _ = phantom_kspace(8, 64, 48, seed=4, noise=5e-3)
    kspace = (k * column_mask(48, 4, nlow)).astype(np.complex64)
    ours = float(data_scale(torch.from_numpy(kspace)[None]))
    assert ours == pytest.approx(_bart_scale(kspace, tmp_path), rel=1e-3)


def _noisy_slice(accel: int) -> tuple[ReconBatch, torch.Tensor]:
    """One simulated knee slice (2x readout oversampling, 8 coils, noise as `recon simulate`), masked; and its RSS target."""
    from recon.simulate import SimConfig, simulate_volume

    vol = simulate_volume(11, config=SimConfig(rows=128, widths=(72,), coils=8, slices=1, crop=(64, 64), acquired_fraction=(1.0, 1.0)), contrast="CORPD_FBK", keep_maps=False)
    full = torch.from_numpy(vol.kspace)
    mask = torch.from_numpy(column_mask(72, accel, 12))[None, None, None]
    return ReconBatch(full * mask, mask, torch.tensor([centered_region(72, 12)]), (64, 64)), torch.from_numpy(vol.target)


@pytest.mark.parametrize("accel", [4, 8])
def test_sense_keeps_the_interior_intensity(accel: int) -> None:
    batch, target = _noisy_slice(accel)
    inside = target > 0.3 * target.max()
    for combine in ("rss", "sense"):
        out = get_method("sense", combine=combine)(batch)
        ratio = float(out[inside].mean() / target[inside].mean())
        assert abs(ratio - 1) < 0.02, (combine, ratio)
        ratio = float(get_method("sense", discrepancy=True, combine=combine)(batch)[inside].mean() / target[inside].mean())
        assert abs(ratio - 1) < 0.02, (combine, ratio)
    shrunk = get_method("sense", lam=0.1, iters=30, combine="sense")(batch)
    assert float(shrunk[inside].mean() / target[inside].mean()) < 0.98


def test_noise_rule_sets_lam_from_the_measured_noise() -> None:
    from recon.methods.solvers import l1_rule
    from recon.noise import noise_sigma

    batch, _ = _noisy_slice(4)
    sigma_n = float(noise_sigma(batch.masked_kspace, batch.mask)[0]) / float(data_scale(batch.masked_kspace))
    assert 0.005 < sigma_n < 0.2
    by_rule = get_method("cs", iters=20)(batch)
    explicit = get_method("cs", lam=l1_rule(sigma_n), iters=20)(batch)
    assert torch.allclose(by_rule, explicit, atol=1e-5 * float(explicit.max()))
    assert not torch.allclose(by_rule, get_method("cs", lam=10 * l1_rule(sigma_n), iters=20)(batch), atol=1e-3 * float(explicit.max()))


def test_cg_sense_stops_at_the_noise_level() -> None:
    from recon.alg import batch_dot
    from recon.linops import Sense
    from recon.noise import noise_sigma

    batch, _ = _noisy_slice(4)
    y, mask = batch.masked_kspace, batch.mask
    sigma = float(noise_sigma(y, mask)[0])
    maps = espirit_calib(y, centered_region(72, 12))
    level = float(mask.expand(y.shape).sum()) * sigma**2
    seen: list[float] = []

    def residual(it: int, x: torch.Tensor) -> None:
        r = Sense(maps, mask).forward(x) - y
        seen.append(float(batch_dot(r, r).sum()))

    cg_sense(y, maps, mask, 0.0, 50, callback=residual, sigma=sigma)
    assert len(seen) < 50 and seen[-1] <= level < seen[-2]
    seen.clear()
    cg_sense(y, maps, mask, 0.0, 5, callback=residual)
    assert len(seen) == 5
