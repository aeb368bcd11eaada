"""Tests of the real-anatomy source (recon.simulate.mni152), the realism bands and the noise estimator."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.noise import estimate_noise_sigma, estimate_snr
from recon.simulate import ACCEPT_SEED, PRESETS, REPORT_SEED, TRAIN_SEED, TUNE_SEED, simulate_volume
from recon.simulate.mni152 import (
    MNI_PRESETS,
    ORIENTATIONS,
    SPLIT_SLABS,
    TEMPLATE_SHAPE,
    MNIConfig,
    Template,
    load_template,
    simulate_mni152_dataset,
    simulate_mni152_volume,
    template_split,
    tissue_signal,
)
from recon.simulate.realism import REALISM_BANDS, check_bands, realism_metrics

TINY = MNIConfig(rows=96, widths=(56, 60), coils=3, slices=2)
SMALL = MNI_PRESETS["small"]


def test_template_ships_and_tissue_classes_partition_the_brain() -> None:
    t = load_template()
    for a in (t.gm, t.wm, t.csf, t.mask):
        assert a.shape == TEMPLATE_SHAPE and a.dtype == np.float32
        assert a.min() >= 0.0 and a.max() <= 1.0
    total = t.gm + t.wm + t.csf
    inside = t.mask > 0.99
    assert np.all(total[inside] > 0.99)
    np.testing.assert_allclose(total, t.mask, atol=1e-5)
    assert t.gm[inside].mean() > 0.4 and t.wm[inside].mean() > 0.25 and 0.05 < t.csf[inside].mean() < 0.25
    assert t.mask[t.t1 == 0].max() < 1.0


def test_template_checksum_is_enforced(tmp_path: Path) -> None:
    from recon.simulate import mni152

    for key, (name, _) in mni152.TEMPLATE_FILES.items():
        data = bytearray((mni152.DATA_DIR / name).read_bytes())
        if key == "gm":
            data[100] ^= 0xFF
        (tmp_path / name).write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256"):
        load_template.__wrapped__(str(tmp_path))


def test_contrasts_follow_tissue_physics() -> None:
    t1 = tissue_signal("T1", 500.0, 10.0)
    t2 = tissue_signal("T2", 4000.0, 100.0)
    pd = tissue_signal("PD", 3000.0, 15.0)
    assert t1["wm"] > t1["gm"] > t1["csf"]
    assert t2["csf"] > t2["gm"] > t2["wm"]
    assert pd["gm"] > pd["wm"] and max(pd.values()) / min(pd.values()) < 1.3  # low contrast, GM above WM
    assert max(t1.values()) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        tissue_signal("FLAIR", 9000.0, 100.0)


def test_splits_are_frozen_disjoint_slabs_with_gaps() -> None:
    spans = sorted((lo, hi, name) for name, slabs in SPLIT_SLABS.items() for lo, hi in slabs)
    for (_, hi_a, a), (lo_b, _, b) in zip(spans, spans[1:]):
        assert a != b and lo_b - hi_a >= 8
    assert ORIENTATIONS["accept"] == {"AX": 1.0} and ORIENTATIONS["tune"] == {"AX": 1.0}
    assert set(ORIENTATIONS["train"]) == {"AX", "COR", "SAG"}
    assert (template_split(TRAIN_SEED), template_split(TUNE_SEED), template_split(ACCEPT_SEED)) == ("train", "tune", "accept")
    with pytest.raises(ValueError, match="no MNI152 split"):
        template_split(REPORT_SEED)


def _scrambled_outside(split: str) -> Template:
    """The shipped template with every voxel outside `split`'s slabs replaced by noise."""
    t = load_template()
    keep = np.zeros(TEMPLATE_SHAPE[2], bool)
    for lo, hi in SPLIT_SLABS[split]:
        keep[lo:hi] = True
    rng = np.random.default_rng(0)
    out = {"mask": t.mask, "t1": t.t1}
    for name in ("gm", "wm", "csf"):
        a = getattr(t, name).copy()
        a[:, :, ~keep] = rng.random((TEMPLATE_SHAPE[0], TEMPLATE_SHAPE[1], int((~keep).sum())), dtype=np.float32)
        out[name] = a
    return Template(**out)


@pytest.mark.parametrize(
    ("seed", "orientation"), [(ACCEPT_SEED, "AX"), (TRAIN_SEED, "COR"), (TRAIN_SEED, "SAG")]
)
def test_a_volume_reads_only_its_own_splits_slab(seed: int, orientation: str) -> None:
    split = template_split(seed)
    cfg = replace(TINY, orientations={**ORIENTATIONS, split: {orientation: 1.0}})
    a = simulate_mni152_volume(seed, 0, cfg)
    b = simulate_mni152_volume(seed, 0, cfg, template=_scrambled_outside(split))
    assert a.attrs["orientation"] == orientation
    np.testing.assert_array_equal(a.kspace, b.kspace)
    c = simulate_mni152_volume(seed, 0, cfg, template=_scrambled_outside("tune"))
    assert not np.array_equal(a.kspace, c.kspace)


def test_deterministic_and_distinct() -> None:
    a = simulate_mni152_volume(ACCEPT_SEED, 1, TINY)
    b = simulate_mni152_volume(ACCEPT_SEED, 1, TINY)
    c = simulate_mni152_volume(ACCEPT_SEED, 2, TINY)
    np.testing.assert_array_equal(a.kspace, b.kspace)
    assert a.attrs["patient_id"] == b.attrs["patient_id"] != c.attrs["patient_id"]
    assert a.kspace.shape != c.kspace.shape or not np.allclose(a.kspace, c.kspace)


def test_band_limit_keeps_the_central_coefficients_of_the_fine_grid() -> None:
    import torch

    from recon.core import fft2c, ifft2c
    from recon.simulate.mni152 import band_limited_kspace

    rng = np.random.default_rng(3)
    k = (rng.standard_normal((2, 12, 10)) + 1j * rng.standard_normal((2, 12, 10))).astype(np.complex64)
    padded = np.zeros((2, 24, 20), np.complex64)
    padded[:, 6:18, 5:15] = k
    fine = ifft2c(torch.from_numpy(padded)) * 2.0  # band-limited image on the 2x finer grid
    np.testing.assert_allclose(band_limited_kspace(fine, (12, 10), 2), k, atol=1e-5)
    coarse = ifft2c(torch.from_numpy(k)).numpy()
    np.testing.assert_allclose(fine.numpy()[:, ::2, ::2], coarse, atol=1e-5)  # same object, same scale
    # Content beyond the coarse band is dropped, not folded back as sampling the fine image would.
    sharp = torch.zeros((1, 24, 20), dtype=torch.complex64)
    sharp[0, 8:16, 7:13] = 1.0
    decimated = fft2c(sharp[:, ::2, ::2]).numpy()
    assert not np.allclose(band_limited_kspace(sharp, (12, 10), 2), decimated, atol=1e-3)


def test_plane_sampling_equals_scipy_3d_spline_interpolation() -> None:
    from scipy import ndimage

    from recon.simulate.mni152 import spline_plane_sample

    rng = np.random.default_rng(0)
    coeffs = ndimage.spline_filter(rng.random((20, 22, 9)), order=3, mode="mirror")
    for normal, pos in [(2, 0.3), (2, 7.9), (1, 0.0), (0, 19.0), (2, -0.5), (2, 8.6), (1, 21.2)]:
        pts = rng.uniform(-2.0, 24.0, (3, 50))
        pts[normal] = pos
        ref = ndimage.map_coordinates(coeffs, pts, order=3, mode="mirror", prefilter=False)
        np.testing.assert_allclose(spline_plane_sample(coeffs, normal, pts), ref, atol=1e-12)


def test_config_rejects_a_synthesis_grid_no_finer_than_kspace() -> None:
    with pytest.raises(ValueError, match="upsample"):
        MNIConfig(upsample=1)


def test_fastmri_reads_the_files_and_they_are_inside_the_realism_bands(tmp_path: Path) -> None:
    fastmri_data = pytest.importorskip("fastmri.data")
    from fastmri.data.subsample import RandomMaskFunc
    from fastmri.data.transforms import VarNetDataTransform

    paths = simulate_mni152_dataset(tmp_path, volumes=2, slices=2, coils=4, seed=ACCEPT_SEED, config=SMALL)
    raw = fastmri_data.SliceDataset(tmp_path, challenge="multicoil", transform=None)
    assert len(raw) == 4
    kspace, mask, target, attrs, fname, slice_num = raw[1]
    assert mask is None and kspace.dtype == np.complex64 and kspace.shape[:2] == (4, 320)
    assert attrs["recon_size"] == (160, 160, 1) and attrs["encoding_size"] == (320, kspace.shape[-1], 1)
    left, right = attrs["padding_left"], attrs["padding_right"]
    assert np.all(kspace[..., :left] == 0) and np.all(kspace[..., right:] == 0) and np.any(kspace[..., left] != 0)
    assert attrs["acquisition"].startswith("AX") and attrs["split"] == "accept"

    ds = fastmri_data.SliceDataset(
        tmp_path, challenge="multicoil", transform=VarNetDataTransform(RandomMaskFunc([0.08], [4], seed=0), use_seed=True)
    )
    sample = ds[0]
    assert sample.masked_kspace.shape[:3] == (4, 320, kspace.shape[-1]) and sample.target.shape == (160, 160)
    assert float(sample.max_value) == pytest.approx(float(h5py.File(tmp_path / sample.fname, "r").attrs["max"]))
    assert 3.0 < 1.0 / sample.mask.float().mean().item() < 5.0

    for path in paths:
        with h5py.File(path, "r") as f:
            metrics = realism_metrics(f["kspace"][()], f["reconstruction_rss"][()])
            stated = float(f.attrs["snr"])
        assert check_bands(metrics) == {name: True for name in REALISM_BANDS}, (path.name, metrics)
        assert 0.75 * stated < metrics["snr"] < 1.25 * stated


def _knee_sigma_and_kspace(seed: int) -> tuple[float, np.ndarray]:
    cfg = PRESETS["small"]
    vol = simulate_volume((seed, 0), config=cfg, keep_maps=False)
    return cfg.noise * cfg.scale, vol.kspace


@pytest.mark.parametrize("source", ["knee", "mni152"])
def test_noise_estimate_is_within_3_percent_of_the_true_sigma(source: str) -> None:
    for i in range(2):
        if source == "knee":
            sigma, kspace = _knee_sigma_and_kspace(REPORT_SEED + i)
        else:
            vol = simulate_mni152_volume(ACCEPT_SEED, i, replace(SMALL, snr_levels=(32.0,)), num_slices=2)
            sigma, kspace = vol.sigma, vol.kspace
        assert estimate_noise_sigma(kspace) == pytest.approx(sigma, rel=0.03)
        per_coil = estimate_noise_sigma(kspace, per_coil=True)
        assert isinstance(per_coil, np.ndarray) and per_coil.shape == (kspace.shape[1],)
        np.testing.assert_allclose(per_coil, sigma, rtol=0.08)
        # Undersampled (zero-filled) columns carry no noise and are ignored.
        mask = np.zeros(kspace.shape[-1], bool)
        mask[::4] = True
        under = kspace * mask
        assert estimate_noise_sigma(under) == pytest.approx(sigma, rel=0.04)
        assert estimate_noise_sigma(kspace, mask=mask) == pytest.approx(sigma, rel=0.04)


@pytest.mark.parametrize(("snr", "rel"), [(8.0, 0.12), (32.0, 0.03)])
def test_snr_estimate_recovers_the_stated_snr(snr: float, rel: float) -> None:
    """`estimate_snr` of the noisy target over the k-space noise estimate lands on the level the
    source states (defined the same way on the clean image; the noise bias of RSS removed, which
    leaves it 4-12% low at SNR 8); the benchmark bins by it."""
    vol = simulate_mni152_volume(ACCEPT_SEED, 0, replace(SMALL, snr_levels=(snr,)), num_slices=2)
    coils = vol.kspace.shape[1]
    for s in range(2):
        est = estimate_snr(vol.target[s], float(estimate_noise_sigma(vol.kspace[s])), coils)
        assert est == pytest.approx(snr, rel=rel)
    with pytest.raises(ValueError):
        estimate_snr(vol.target[0], 0.0, coils)


def test_noise_estimator_rejects_noiseless_or_real_input() -> None:
    with pytest.raises(ValueError):
        estimate_noise_sigma(np.zeros((2, 64, 32), np.complex64))
    with pytest.raises(ValueError):
        estimate_noise_sigma(np.ones((2, 64, 32), np.float32))


def test_cli_simulate_source_mni152(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recon.cli import main

    args = ["simulate", str(tmp_path / "d"), "--source", "mni152", "--volumes", "1", "--slices", "1", "--coils", "2"]
    assert main(args) == 0
    path = Path(capsys.readouterr().out.strip().splitlines()[-1])
    assert path.name == f"file_mni152_{ACCEPT_SEED}_0000.h5" and path.is_file()
    with h5py.File(path, "r") as f:
        assert f.attrs["source"] == "mni152" and f["kspace"].shape[:2] == (1, 2)
    assert main([*args[:1], str(tmp_path / "e"), *args[2:], "--seed", str(REPORT_SEED)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no MNI152 split" in err[0]
