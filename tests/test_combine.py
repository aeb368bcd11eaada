"""How sense / cs / cs-tv form their output: RSS of the data-consistent coil images, or |x|."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recon import ops
from recon.acquisition import centered_region
from recon.calib import espirit_calib
from recon.methods import ReconBatch, get_method
from recon.methods.classical import consistent_rss
from recon.metrics import ssim

sys.path.insert(0, str(Path(__file__).parent))
from _baseline_data import column_mask, phantom_kspace  # noqa: E402


@pytest.fixture(scope="module")
def coil_problem() -> dict:
    """8-coil 64x48 slice, 4x column mask, ESPIRiT maps and an image consistent with them."""
    k, _, _ = phantom_kspace(8, 64, 48, seed=4, noise=0.0)
    full = torch.from_numpy(k)[None]
    mask = torch.from_numpy(column_mask(48, 4, 8))[None, None, None]
    maps = espirit_calib(full * mask, centered_region(48, 8))
    image = ops.sens_reduce(full, maps)
    return {"full": full, "mask": mask, "maps": maps, "image": image}


def test_measured_samples_are_kept_and_the_rest_predicted(coil_problem: dict) -> None:
    full, mask, maps, image = (coil_problem[k] for k in ("full", "mask", "maps", "image"))
    measured = full * mask
    zero_filled = ops.rss(ops.ifft2c(measured), 1)
    assert torch.allclose(consistent_rss(torch.zeros_like(image), maps, measured, mask), zero_filled)
    consistent = ops.fft2c(maps * image)
    out = consistent_rss(image, maps, consistent * mask, mask)
    assert torch.allclose(out, ops.rss(maps * image, 1), atol=1e-5 * float(out.max()))


def test_nothing_is_predicted_outside_the_acquirable_columns(coil_problem: dict) -> None:
    full, mask, maps, image = (coil_problem[k] for k in ("full", "mask", "maps", "image"))
    padded = mask.clone()
    padded[..., :4] = False
    padded[..., -4:] = False
    out = consistent_rss(image, maps, full * padded, padded, extent=((0, 64), (4, 44)))
    coil_kspace = ops.fft2c(ops.ifft2c(torch.where(padded, full, ops.fft2c(maps * image))))
    coil_kspace[..., :4] = 0
    coil_kspace[..., -4:] = 0
    assert torch.allclose(out, ops.rss(ops.ifft2c(coil_kspace), 1), atol=1e-5 * float(out.max()))
    assert not torch.allclose(out, consistent_rss(image, maps, full * padded, padded))


@pytest.fixture(scope="module")
def brain_slice() -> tuple[ReconBatch, np.ndarray]:
    """One real-anatomy slice (MNI152 template, SNR 16, 8 coils), 4x random-like columns, and its RSS target."""
    from recon.simulate.mni152 import MNIConfig, simulate_mni152_volume

    vol = simulate_mni152_volume(4000, 0, MNIConfig(rows=160, widths=(88,), coils=8, slices=1, snr_levels=(16.0,)), num_slices=1)
    full = torch.from_numpy(vol.kspace)
    mask = torch.from_numpy(column_mask(full.shape[-1], 4, 10))[None, None, None]
    batch = ReconBatch(full * mask, mask, torch.tensor([centered_region(full.shape[-1], 10)]), tuple(vol.target.shape[-2:]))
    return batch, vol.target


def test_rss_output_keeps_the_target_noise_floor_and_scores_above_zero_filled(brain_slice: tuple[ReconBatch, np.ndarray]) -> None:
    batch, target = brain_slice
    background = target < 0.1 * target.max()
    assert background.mean() > 0.2  # the brain leaves background, where the RSS target is noise
    zero = ssim(target, get_method("zero-filled")(batch).numpy())
    rss_out = get_method("cs")(batch).numpy()
    sense_out = get_method("cs", combine="sense")(batch).numpy()
    assert 0.5 < rss_out[0][background[0]].mean() / target[0][background[0]].mean() < 1.5
    assert sense_out[0][background[0]].mean() / target[0][background[0]].mean() < 0.5
    assert ssim(target, rss_out) > zero + 0.03
    assert ssim(target, rss_out) > ssim(target, sense_out) + 0.03


def test_combine_is_validated() -> None:
    with pytest.raises(ValueError, match="combine"):
        get_method("sense", combine="mean")


def test_cli_refuses_combine_and_maps_crop_for_other_methods(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recon.cli import main

    for flag, value in (("--combine", "sense"), ("--maps-crop", "hard")):
        assert main(["reconstruct", str(tmp_path), "--out", str(tmp_path / "o"), "--method", "varnet", flag, value]) == 2
        err = capsys.readouterr().err
        assert flag in err and "varnet" in err and "\n" not in err.strip()
