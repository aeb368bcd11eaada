"""GRAPPA (`recon.calib.grappa`, `--method grappa`): equal to pygrappa's `mdgrappa`/`cgrappa` in
the compatibility mode, close to the fully sampled truth, calibrated on ISMRMRD calibration-only
lines, and refusing what it cannot fill (narrow ACS, random masks, holes out of reach)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _baseline_data import column_mask, phantom_kspace
from recon.calib.grappa import grappa, uniform_spacing
from recon.core import center_crop, ifft2c, rss
from recon.masks import make_mask
from recon.methods import ReconBatch, get_method

pygrappa = pytest.importorskip("pygrappa", reason="pygrappa (the reference) is in the test extra")

#: Agreement with pygrappa (float32 data and Gram matrix here, complex128 in pygrappa):
#: relative L2 error of the filled k-space and of the RSS image, and max error / max value.
RTOL_L2 = 2e-5
RTOL_MAX = 1e-5


def _undersample(coils: int, rows: int, cols: int, step: int, nlow: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, int]]:
    full, _, _ = phantom_kspace(coils, rows, cols)
    mask = column_mask(cols, step, nlow)
    start = (cols - nlow + 1) // 2
    return full, full * mask, mask, (start, start + nlow)


def _ours(kspace: np.ndarray, full: np.ndarray, region: tuple[int, int], kernel: tuple[int, int]) -> np.ndarray:
    out = grappa(torch.from_numpy(kspace)[None], None, torch.from_numpy(full)[None], region, kernel, 0.01, pygrappa_compat=True)
    return out[0].numpy()


def _close(ours: np.ndarray, ref: np.ndarray) -> None:
    assert np.linalg.norm(ours - ref) <= RTOL_L2 * np.linalg.norm(ref)
    assert np.abs(ours - ref).max() <= RTOL_MAX * np.abs(ref).max()


@pytest.mark.parametrize(("step", "kernel"), [(2, (5, 5)), (3, (5, 5)), (4, (5, 5)), (3, (4, 6)), (4, (3, 7))])
def test_matches_mdgrappa(step: int, kernel: tuple[int, int]) -> None:
    full, under, _, (start, stop) = _undersample(8, 64, 48, step, 14)
    ref = pygrappa.mdgrappa(under.astype(np.complex128), full[..., start:stop].astype(np.complex128), kernel_size=kernel, coil_axis=0, lamda=0.01)
    ours = _ours(under, full, (start, stop), kernel)
    _close(ours, ref)
    _close(rss(ifft2c(ours), 0), rss(ifft2c(ref), 0))
    # the sampled data are kept bit for bit and the holes were filled
    sampled = np.abs(under[0]) > 0
    assert np.array_equal(ours[:, sampled], under[:, sampled])
    assert (np.abs(ours[0]) > 0).mean() > 0.95


def test_matches_cgrappa_on_a_square_matrix() -> None:
    # cgrappa indexes its mask as if kx == ky, so it is compared on a square matrix only
    full, under, _, (start, stop) = _undersample(8, 48, 48, 3, 12)
    ref = pygrappa.cgrappa(under.astype(np.complex128), full[..., start:stop].astype(np.complex128), kernel_size=(5, 5), coil_axis=0, lamda=0.01)
    _close(_ours(under, full, (start, stop), (5, 5)), ref)


def _batch(under: np.ndarray, mask: np.ndarray, region: tuple[int, int], calib_kspace: np.ndarray | None = None) -> ReconBatch:
    count = under.shape[0]
    return ReconBatch(
        masked_kspace=torch.from_numpy(under),
        mask=torch.from_numpy(np.broadcast_to(mask, (count, 1, 1, mask.size)).copy()),
        calib=torch.tensor([region] * count),
        crop_size=(under.shape[-2] // 2, under.shape[-1] // 2),
        calib_kspace=None if calib_kspace is None else torch.from_numpy(calib_kspace),
    )


@pytest.mark.parametrize(("step", "bound"), [(2, 0.01), (3, 0.03)])
def test_close_to_the_fully_sampled_truth(step: int, bound: float) -> None:
    """Simulated ellipse phantom (`tests/_baseline_data.py`), 8 coils, 128 x 96, 24 ACS columns."""
    full, under, mask, region = _undersample(8, 128, 96, step, 24)
    batch = _batch(np.stack([under, under]), mask, region)
    before = batch.masked_kspace.clone()
    images = get_method("grappa")(batch)
    assert torch.equal(batch.masked_kspace, before)  # inputs never overwritten
    truth = center_crop(rss(ifft2c(full), 0), batch.crop_size)
    zero = center_crop(rss(ifft2c(under), 0), batch.crop_size)
    error = np.linalg.norm(images[0].numpy() - truth) / np.linalg.norm(truth)
    zero_error = np.linalg.norm(zero - truth) / np.linalg.norm(truth)
    assert error < bound and error < zero_error / 2, (error, zero_error)
    assert torch.equal(images[0], images[1])


def test_refuses_an_acs_narrower_than_the_kernel() -> None:
    mask, nlow = make_mask("equispaced", 186, 8, 0.04, seed=0)
    assert nlow == 7
    full, _, _ = phantom_kspace(4, 32, 186)
    start = (186 - nlow + 1) // 2
    with pytest.raises(ValueError, match=r"7 columns wide on a 186-column matrix.*extent of 9 columns"):
        get_method("grappa")(_batch((full * mask)[None], mask, (start, start + nlow)))


def test_refuses_random_masks_and_unreachable_holes() -> None:
    full, _, _ = phantom_kspace(4, 32, 96)
    mask, nlow = make_mask("random", 96, 4, 0.16, seed=3)
    start = (96 - nlow + 1) // 2
    with pytest.raises(ValueError, match="uniform undersampling.*SPIRiT"):
        get_method("grappa")(_batch((full * mask)[None], mask, (start, start + nlow)))
    # the definition: one constant spacing outside the calibration region, either side
    assert uniform_spacing(torch.from_numpy(column_mask(96, 4, 16)), ((96 - 15) // 2, (96 - 15) // 2 + 16)) == 4
    assert uniform_spacing(torch.ones(10, dtype=torch.bool), (4, 6)) == 1
    # an 8x spacing is out of reach of a 5-wide kernel: refused, not left as zeros
    mask8 = column_mask(96, 8, 16)
    with pytest.raises(ValueError, match="reaches no sampled point"):
        get_method("grappa", kernel=(5, 5))(_batch((full * mask8)[None], mask8, ((96 - 15) // 2, (96 - 15) // 2 + 16)))


def test_calibrates_on_ismrmrd_calibration_only_lines(tmp_path: Path) -> None:
    """Every 4th line as image data, the ACS block's other lines flagged calibration-only."""
    from test_acquisition import _write_asymmetric_acs

    from recon.pipeline import run_method, slice_batch
    from recon.reconstruct import ReconstructJob

    path = tmp_path / "asym.h5"
    full = _write_asymmetric_acs(path)
    data, _, _ = ReconstructJob(out_dir=tmp_path / "out")._load(path)
    assert data.scan is not None and data.scan.calibration is not None and not data.acquisition.column_mask[21]
    target = rss(ifft2c(full), 0)
    inside = target > 0.2 * target.max()

    def error(image: np.ndarray) -> float:
        return float(np.linalg.norm((image - target)[inside]) / np.linalg.norm(target[inside]))

    ours = error(run_method(get_method("grappa"), data, torch.device("cpu"), backend="torch")[0])
    zero = error(run_method(get_method("zero-filled"), data, torch.device("cpu"), backend="torch")[0])
    # 4 coils at 4x (R = C): GRAPPA halves the zero-filled error inside the object
    assert ours < 0.6 * zero, (ours, zero)
    # the kernels came from the calibration-only lines: the image lines alone (holes inside the
    # region) give another, worse image
    batch = slice_batch(data, 0, 1, torch.device("cpu"))
    alone = get_method("grappa")(batch._replace(calib_kspace=None))[0].numpy()
    assert error(alone) > 1.5 * ours, (error(alone), ours)
