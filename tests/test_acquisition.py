"""The acquisition model: fastMRI's placement reproduced, explicit regions used as given, and an
ISMRMRD file with an asymmetric ACS block calibrated only on lines that were acquired."""

from __future__ import annotations

from pathlib import Path

import ismrmrd
import numpy as np
import pytest
import torch

from recon.acquisition import Acquisition, MaskProvenance, centered_region, retrospective, run_around
from recon.calib.espirit import espirit_calib
from recon.core import fft2c, ifft2c, rss
from recon.io.ismrmrd import read_ismrmrd
from recon.masks import make_mask
from recon.pipeline import slice_batch
from recon.reconstruct import ReconstructJob

W, H, C = 64, 64, 4
CENTER = W // 2
ACS = range(CENTER - 13, CENTER + 12)  # 25 lines, one more left of the center than right


@pytest.mark.parametrize("width", [368, 372, 185])
@pytest.mark.parametrize(("acc", "cf"), [(4, 0.08), (8, 0.04)])
def test_centered_region_is_fastmri_placement(width: int, acc: int, cf: float) -> None:
    fm = pytest.importorskip("fastmri.data.subsample")
    mask, nlow = make_mask("random", width, acc, cf, seed=(1, 2, 3))
    start, stop = centered_region(width, nlow)
    assert start == (width - nlow + 1) // 2 and stop - start == nlow
    assert mask[start:stop].all()
    ref, ref_nlow = fm.RandomMaskFunc([cf], [acc])((1, 1, width, 1), seed=(1, 2, 3))
    assert ref_nlow == nlow
    assert ref.reshape(-1)[start:stop].all()


def test_run_around_and_model_checks() -> None:
    flags = np.zeros(10, bool)
    flags[3:7] = True
    assert run_around(flags, 5) == (3, 7) and run_around(flags, 0) == (0, 0)
    assert run_around(np.ones(4, bool), 2) == (0, 4)
    with pytest.raises(ValueError, match="calib region"):
        Acquisition(np.ones(8, bool), (2, 9), (0, 4), (0, 8), (4, 8, 1), (4, 8, 1))


def test_retrospective_clips_to_the_acquirable_columns() -> None:
    base = Acquisition(np.r_[np.zeros(3, bool), np.ones(13, bool)], (3, 16), (0, 8), (3, 16), (8, 16, 1), (8, 8, 1))
    mask = np.zeros(16, bool)
    mask[[0, 2, 5, 7, 8, 9, 12]] = True
    acq = retrospective(base, mask, 4, MaskProvenance("random", 4.0, 0.25, 7))
    assert not acq.column_mask[:3].any() and acq.column_mask[[5, 7, 8, 9, 12]].all()
    assert acq.calib == centered_region(16, 4) and acq.provenance.seed == 7
    assert acq.attrs()["calib_region"] == [6, 10] and acq.attrs()["mask_type"] == "random"


def _write_asymmetric_acs(path: Path) -> np.ndarray:
    """Every 4th line plus a 25-line ACS block with one extra line on the left of the center.

    ACS lines off the 4x grid are flagged PARALLEL_CALIBRATION (calibration only), those on it
    PARALLEL_CALIBRATION_AND_IMAGING. Returns the fully sampled coil k-space (C, H, W).
    """
    yy, xx = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    obj = (xx**2 / 0.6 + yy**2 / 0.4 < 1) * (1 + 0.3 * np.cos(4 * xx))
    maps = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 1.5) * np.exp(1j * c) for c, (cx, cy) in enumerate([(-1, -1), (1, -1), (-1, 1), (1, 1)])])
    full = fft2c(obj[None] * maps)
    header = f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
 <encoding>
  <encodedSpace><matrixSize><x>{H}</x><y>{W}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>200</x><y>200</y><z>5</z></fieldOfView_mm></encodedSpace>
  <reconSpace><matrixSize><x>{H}</x><y>{W}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>200</x><y>200</y><z>5</z></fieldOfView_mm></reconSpace>
  <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{W - 1}</maximum>
   <center>{CENTER}</center></kspace_encoding_step_1></encodingLimits>
  <trajectory>cartesian</trajectory>
 </encoding>
</ismrmrdHeader>"""
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(header.encode())
        for e in range(W):
            on_grid = e % 4 == 0
            if not on_grid and e not in ACS:
                continue
            acq = ismrmrd.Acquisition.from_array(full[:, :, e].astype(np.complex64), center_sample=H // 2)
            acq.idx.kspace_encode_step_1 = e
            if e in ACS:
                acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING if on_grid else ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
            dset.append_acquisition(acq)
    return full


def test_asymmetric_acs_calibrates_only_on_acquired_lines(tmp_path: Path) -> None:
    path = tmp_path / "asym.h5"
    full = _write_asymmetric_acs(path)
    scan = read_ismrmrd(path, prewhiten=False)
    acq = scan.acquisition
    assert acq.calib == (ACS.start, ACS.stop) == (19, 44)
    # fastMRI's symmetric placement of 25 lines, (W - n + 1) // 2, would start at column 20 and
    # end at 45, a line that was never acquired
    assert centered_region(W, 25) == (20, 45) and 44 not in ACS
    # calibration-only lines are not image data
    assert acq.column_mask.sum() == W // 4 and not acq.column_mask[ACS.start]
    assert acq.calibration_only.sum() == len(ACS) - sum(1 for e in ACS if e % 4 == 0)
    np.testing.assert_allclose(scan.calibration[0][..., ACS.start : ACS.stop], full[..., ACS.start : ACS.stop], atol=1e-5)
    job = ReconstructJob(out_dir=tmp_path / "out")
    data, _, _ = job._load(path)
    batch = slice_batch(data, 0, 1, torch.device("cpu"))
    assert batch.calib.tolist() == [[19, 44]]
    cal = batch.calibration_data
    # every column of the region holds acquired calibration data ...
    assert (cal[0, :, :, 19:44].abs().amax(dim=(0, 1)) > 0).all()
    # ... and ESPIRiT reads nothing else: zeroing everything outside the region changes nothing
    outside = cal.clone()
    outside[..., :19] = 0
    outside[..., 44:] = 0
    maps = espirit_calib(cal, batch.calib)
    assert torch.equal(maps, espirit_calib(outside, batch.calib))
    truth = espirit_calib(torch.from_numpy(full.astype(np.complex64))[None], batch.calib)
    support = (truth.abs().sum(1) > 0) & (maps.abs().sum(1) > 0)
    assert support.float().mean() > 0.5
    assert float((maps.conj() * truth).sum(1).abs()[support].min()) > 0.99


def test_reconstruct_uses_the_calibration_lines(tmp_path: Path) -> None:
    """SENSE on the asymmetric-ACS file: image lines only as data, maps from the calibration lines."""
    from recon.methods import get_method
    from recon.methods.classical import MAPS_CROP
    from recon.pipeline import run_method

    path = tmp_path / "asym.h5"
    full = _write_asymmetric_acs(path)
    data, _, _ = ReconstructJob(out_dir=tmp_path / "out")._load(path)
    assert not np.abs(data.read(0, 1)[0][0][..., ~data.acquisition.column_mask]).any()
    target = rss(ifft2c(full), 0)
    inside = target > 0.2 * target.max()

    def error(name: str, **options: float) -> float:
        image = run_method(get_method(name, **options), data, torch.device("cpu"), backend="torch")[0]
        return float(np.linalg.norm((image - target)[inside]) / np.linalg.norm(target[inside]))

    # the hard crop's support constraint: unregularized SENSE on this small phantom with the
    # soft default's maps (weight 0.3-0.9 just outside the support) errs 0.42 x zero-filled
    sense, zero = error("sense", iters=30, lam=0.0, espirit=MAPS_CROP["hard"]), error("zero-filled")
    assert sense < 0.4 * zero, (sense, zero)
    assert error("sense", iters=30, lam=0.0) < 0.45 * zero
