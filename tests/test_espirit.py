"""ESPIRiT maps in torch vs SigPy's EspiritCalib (same square region) and BART's ecalib."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recon import ops
from recon.acquisition import centered_region
from recon.calib.espirit import calibration_kernels, espirit_calib, espirit_maps_from_kernels

sys.path.insert(0, str(Path(__file__).parent))
from _baseline_data import bart_cfl, column_mask, phantom_kspace  # noqa: E402


def test_calibration_region_is_taken_as_given() -> None:
    """ESPIRiT calibrates on exactly the acquisition model's region; an empty one is refused."""
    k, _, _ = phantom_kspace(seed=2)
    kt = torch.from_numpy(k)[None]
    region = centered_region(48, 10)
    assert region == (19, 29)
    shifted = kt.clone()
    shifted[..., : region[0]] = 0
    shifted[..., region[1] :] = 0
    assert torch.equal(espirit_calib(kt, region), espirit_calib(shifted, region))
    for bad in ((20, 20), (40, 50)):
        with pytest.raises(ValueError, match="calibration region"):
            espirit_calib(kt, bad)


def test_matches_sigpy_on_square_region() -> None:
    mr = pytest.importorskip("sigpy.mri")
    k, _, _ = phantom_kspace()
    ref = mr.app.EspiritCalib(k, calib_width=24, max_iter=100, show_pbar=False).run()
    kt = torch.from_numpy(k)
    calib = kt[:, 32 - 12 : 32 + 12, 24 - 12 : 24 + 12]
    ours, _ = espirit_maps_from_kernels(calibration_kernels(calib, 6, 0.02), (64, 48), 0.95, 100, coarse=1)
    assert np.abs(ours.numpy() - ref).max() < 1e-4


def test_coarse_start_matches_full_power_iteration() -> None:
    k, _, _ = phantom_kspace(seed=1)
    kernels = calibration_kernels(torch.from_numpy(k)[:, :, 19:29], 6, 0.02)
    full, _ = espirit_maps_from_kernels(kernels, (64, 48), 0.95, 100, coarse=1)
    fast, _ = espirit_maps_from_kernels(kernels, (64, 48), 0.95, 30, refine_iter=6, coarse=4)
    support = (full.abs().sum(0) > 0) & (fast.abs().sum(0) > 0)
    assert support.float().mean() > 0.4
    assert (full - fast).abs()[:, support].max() < 0.05


def test_maps_span_true_sensitivities_from_undersampled_data() -> None:
    k, maps, img = phantom_kspace(seed=2)
    mask = column_mask(48, 4, 10)
    est = espirit_calib(torch.from_numpy(k * mask)[None], torch.tensor([centered_region(48, 10)]))[0].numpy()
    inside = np.abs(img) > 0.3
    inner = np.abs((est * maps.conj()).sum(0))
    assert np.median(inner[inside]) > 0.99
    assert np.allclose(np.sqrt((np.abs(est) ** 2).sum(0))[np.abs(est).sum(0) > 0], 1, atol=1e-4)


@pytest.mark.skipif(shutil.which("bart") is None, reason="bart command not installed")
def test_matches_bart_ecalib_up_to_phase(tmp_path: Path) -> None:
    cfl = bart_cfl()
    k, _, _ = phantom_kspace(seed=3)
    mask = column_mask(48, 3, 12)
    ku = k * mask
    ours = espirit_calib(torch.from_numpy(ku)[None], centered_region(48, 12), max_iter=100, coarse=1)[0].numpy()
    cfl.write_cfl(tmp_path / "k", cfl.kspace_to_bart(ku))
    cfl.run_bart("ecalib", "-m1", "-k6", "-t", "0.001", "-c", "0.95", "-r", "64:12", str(tmp_path / "k"), str(tmp_path / "s"))
    ref = cfl.maps_from_bart(cfl.read_cfl(tmp_path / "s"))
    ours_support, ref_support = np.abs(ours).sum(0) > 0, np.abs(ref).sum(0) > 0
    both = ours_support & ref_support
    assert both.sum() / (ours_support | ref_support).sum() > 0.9
    inner = np.abs((ours * ref.conj()).sum(0))[both]
    assert inner.min() > 0.99


def test_narrow_acs_keeps_the_object_covered(tmp_path: Path) -> None:
    """8x on the small simulated preset leaves 7 ACS columns; the maps must still cover the knee."""
    from recon.calib.espirit import fitted_kernel_width
    from recon.io.fastmri import read_volume
    from recon.masks import make_mask
    from recon.simulate import PRESETS, simulate_dataset

    assert fitted_kernel_width(6, 7) == 4 and fitted_kernel_width(6, 15) == 6 and fitted_kernel_width(6, 4) == 3
    path = simulate_dataset(tmp_path, 1, 1, 8, 3000, config=PRESETS["small"])[0]
    kspace = torch.from_numpy(read_volume(path)[0])
    mask, nlow = make_mask("random", kspace.shape[-1], 8, 0.04, 0)
    assert nlow <= 8
    mask_t = torch.from_numpy(mask.astype(bool)).reshape(1, 1, 1, -1)
    maps = espirit_calib(kspace * mask_t, centered_region(kspace.shape[-1], nlow))
    image = ops.rss(ops.ifft2c(kspace), 1)[0].numpy()
    covered = (maps[0].abs() ** 2).sum(0).numpy() > 0.5
    tissue = image > 0.2 * image.max()
    assert covered[tissue].mean() > 0.9


def test_noise_rule_keeps_noise_out_of_the_kernels() -> None:
    """Low SNR: the noise bulk reaches 0.02 s_max; the noise rule keeps only signal kernels."""
    k, maps, img = phantom_kspace(seed=4, noise=0.0)
    rng = np.random.default_rng(0)
    level = 0.05 * np.abs(k).max()
    noisy = k + level * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape)).astype(np.complex64)
    calib = torch.from_numpy(noisy)[:, :, 19:29]
    plain = calibration_kernels(calib, 6, 0.02)
    ruled = calibration_kernels(calib, 6, 0.02, noise_factor=1.3)
    assert ruled.shape[0] < plain.shape[0]
    # pure noise in a calibration region shaped like 8x on the small preset (8 coils, 320 rows,
    # 7 ACS columns, kernel 4: a tall 1268 x 128 matrix): no kernel survives the rule
    pure = torch.from_numpy((rng.standard_normal((8, 320, 7)) + 1j * rng.standard_normal((8, 320, 7))).astype(np.complex64))
    assert calibration_kernels(pure, 4, 0.02).shape[0] > 100
    assert calibration_kernels(pure, 4, 0.02, noise_factor=1.3).shape[0] == 0
    mask = column_mask(48, 4, 10)
    inside = np.abs(img) > 0.3
    est = espirit_calib(torch.from_numpy(noisy * mask)[None], centered_region(48, 10), noise_factor=1.3)[0].numpy()
    assert np.median(np.abs((est * maps.conj()).sum(0))[inside]) > 0.95
