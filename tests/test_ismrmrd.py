"""ISMRMRD reader and ISMRMRD -> fastMRI conversion, on files written by the `ismrmrd` package
from simulated acquisitions with known k-space, and on Debian's independent generator."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest

from recon.core import fft2c as _fft2c
from recon.core import ifft2c as _ifft2c
from recon.io.errors import InputError
from recon.io.ismrmrd import is_ismrmrd, read_ismrmrd

H_RECON, H, W, C, S = 16, 32, 20, 4, 2  # recon readout, encoded readout (2x OS), PE, coils, slices
PF_SKIP, ECHO_SKIP = 4, 6  # partial Fourier: first 4 PE lines; asymmetric echo: first 6 samples
ACS = range(7, 13)  # 6 calibration lines around W // 2 = 10
NOISE_DWELL, DATA_DWELL = 2.0, 4.0
READ = np.array([np.cos(0.3), np.sin(0.3), 0.0])
PHASE = np.array([-np.sin(0.3) * np.cos(0.2), np.cos(0.3) * np.cos(0.2), np.sin(0.2)])
SLICE = np.cross(READ, PHASE)
POS0, SPACING = np.array([10.0, -20.0, 30.0]), 6.0


def _xml(trajectory: str = "cartesian", enc_z: int = 1) -> str:
    return f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
 <subjectInformation><patientName>Doe^Jane</patientName><patientID>PID-123</patientID>
  <patientBirthdate>1970-01-02</patientBirthdate><patientGender>F</patientGender></subjectInformation>
 <measurementInformation><protocolName>SIM_PD</protocolName></measurementInformation>
 <acquisitionSystemInformation><receiverChannels>{C}</receiverChannels></acquisitionSystemInformation>
 <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>
 <encoding>
  <encodedSpace><matrixSize><x>{H}</x><y>{W}</y><z>{enc_z}</z></matrixSize>
   <fieldOfView_mm><x>400</x><y>250</y><z>5</z></fieldOfView_mm></encodedSpace>
  <reconSpace><matrixSize><x>{H_RECON}</x><y>{W}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>200</x><y>250</y><z>5</z></fieldOfView_mm></reconSpace>
  <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{W - 1}</maximum>
   <center>{W // 2}</center></kspace_encoding_step_1></encodingLimits>
  <trajectory>{trajectory}</trajectory>
 </encoding>
</ismrmrdHeader>"""


def _simulate(
    path: Path,
    *,
    signal: float = 1.0,
    averages: int = 2,
    undersample: bool = True,
    noise_cov: np.ndarray | None = None,
    noise_samples: int = 4096,
    trajectory: str = "cartesian",
    enc_z: int = 1,
) -> dict[str, np.ndarray]:
    """Write an ISMRMRD file; return the expected gridded image and calibration k-space and masks.

    With `undersample`, the odd ACS lines are calibration-only (PARALLEL_CALIBRATION): not image
    data, expected in the calibration k-space only.
    """
    rng = np.random.default_rng(0)
    yy, xx = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    obj = np.stack([(xx**2 / 0.5 + yy**2 / 0.2 < 1) * (1.0 + 0.5 * s) for s in range(S)])
    obj = obj * np.exp(1j * 0.5 * xx)  # (S, H, W) on the encoded (oversampled) grid
    maps = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2)) * np.exp(1j * c)
                     for c, (cx, cy) in enumerate([(-1, -1), (1, -1), (-1, 1), (1, 1)])])
    truth = _fft2c(signal * obj[:, None] * maps[None])  # (S, C, H, W)
    cov = noise_cov if noise_cov is not None else 0.01 * np.eye(C)
    chol_data = np.linalg.cholesky(cov * NOISE_DWELL / DATA_DWELL)  # noise at imaging bandwidth

    def cnoise(n: int, chol: np.ndarray) -> np.ndarray:
        z = (rng.standard_normal((C, n)) + 1j * rng.standard_normal((C, n))) / np.sqrt(2)
        return chol @ z

    cols = [e for e in range(W) if e >= PF_SKIP and (not undersample or e % 2 == 0 or e in ACS)]
    expected = np.zeros((S, C, H, W), complex)
    calib = np.zeros((S, C, H, W), complex)
    mask = np.zeros(W, bool)
    cal_only = np.zeros(W, bool)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(_xml(trajectory, enc_z).encode())
        noise = cnoise(noise_samples, np.linalg.cholesky(cov)).astype(np.complex64)
        acq = ismrmrd.Acquisition.from_array(noise, sample_time_us=NOISE_DWELL)
        acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
        dset.append_acquisition(acq)
        for s in range(S):
            for e in cols:
                copies = []
                for a in range(averages):
                    line = truth[s, :, ECHO_SKIP:, e] + cnoise(H - ECHO_SKIP, chol_data)
                    copies.append(line.astype(np.complex64))
                    acq = ismrmrd.Acquisition.from_array(
                        copies[-1], sample_time_us=DATA_DWELL, center_sample=H // 2 - ECHO_SKIP,
                        position=tuple(POS0 + s * SPACING * SLICE), read_dir=tuple(READ),
                        phase_dir=tuple(PHASE), slice_dir=tuple(SLICE),
                    )
                    acq.idx.kspace_encode_step_1 = e
                    acq.idx.slice = s
                    acq.idx.average = a
                    if undersample and e in ACS:
                        acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING if e % 2 == 0
                                     else ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
                    dset.append_acquisition(acq)
                only = undersample and e in ACS and e % 2 == 1
                if undersample and e in ACS:
                    calib[s, :, ECHO_SKIP:, e] = np.mean(copies, axis=0)
                if only:
                    cal_only[e] = True
                    continue
                expected[s, :, ECHO_SKIP:, e] = np.mean(copies, axis=0)
                mask[e] = True
    return {"kspace": expected, "mask": mask, "truth": truth, "calib": calib, "calib_only": cal_only}


def test_placement_averaging_mask_and_acs(tmp_path: Path) -> None:
    path = tmp_path / "sim.h5"
    exp = _simulate(path)
    scan = read_ismrmrd(path, prewhiten=False)
    acq = scan.acquisition
    assert scan.kspace.shape == (S, C, H, W) and scan.kspace.dtype == np.complex64
    np.testing.assert_allclose(scan.kspace, exp["kspace"], atol=1e-5)
    np.testing.assert_array_equal(acq.columns, exp["mask"])
    assert not acq.columns[:PF_SKIP].any()  # partial Fourier side left empty
    assert np.all(scan.kspace[:, :, :ECHO_SKIP] == 0)  # asymmetric echo zero-filled at the start
    assert acq.readout == (ECHO_SKIP, H) and acq.partial_echo  # ... and known to be unmeasured
    assert not acq.sampling(H)[:ECHO_SKIP].any() and acq.sampling(H)[ECHO_SKIP:, 8].all()
    # calibration-only lines are kept apart from the image data, the region is explicit
    assert acq.calib == (ACS.start, ACS.stop) and acq.num_low_frequencies == len(ACS)
    np.testing.assert_array_equal(acq.calibration_only, exp["calib_only"])
    assert scan.calibration is not None
    np.testing.assert_allclose(scan.calibration[..., ACS.start : ACS.stop], exp["calib"][..., ACS.start : ACS.stop], atol=1e-5)
    assert acq.encoded_size == (H, W, 1) and acq.recon_size == (H_RECON, W, 1)
    assert acq.readout_oversampling == pytest.approx(2.0) and acq.provenance.kind == "acquired"
    assert scan.identity["patient_name"] == "Doe^Jane" and scan.meta["protocol_name"] == "SIM_PD"
    assert not acq.prewhitened and acq.noise_cov is not None


def test_oblique_geometry_per_slice(tmp_path: Path) -> None:
    path = tmp_path / "sim.h5"
    _simulate(path, averages=1)
    scan = read_ismrmrd(path, prewhiten=False)
    assert len(scan.acquisition.geometry) == S
    for s, g in enumerate(scan.acquisition.geometry):
        np.testing.assert_allclose(g.position, POS0 + s * SPACING * SLICE, atol=1e-4)
        np.testing.assert_allclose(g.read_dir, READ, atol=1e-6)
        np.testing.assert_allclose(g.phase_dir, PHASE, atol=1e-6)
        np.testing.assert_allclose(g.voxel_mm, (200 / H_RECON, 250 / W, 5.0))


def test_remove_oversampling_keeps_a_partial_echo(tmp_path: Path) -> None:
    """An asymmetric echo leaves readout samples unknown: a hybrid-space crop would mix them into
    every row, so the readout keeps its oversampling (the full-readout crop: test_raw_geometry)."""
    path = tmp_path / "sim.h5"
    _simulate(path, averages=1)
    kept = read_ismrmrd(path, prewhiten=False)
    asked = read_ismrmrd(path, prewhiten=False, remove_oversampling=True)
    assert asked.kspace.shape == kept.kspace.shape == (S, C, H, W)
    assert asked.acquisition.readout_oversampling == pytest.approx(2.0)
    np.testing.assert_array_equal(asked.kspace, kept.kspace)


def test_prewhitening_gives_identity_noise_covariance(tmp_path: Path) -> None:
    """Signal-free acquisition with correlated noise: after reading, coil noise is white."""
    rng = np.random.default_rng(5)
    a = rng.standard_normal((C, C)) + 1j * rng.standard_normal((C, C))
    psi = a @ a.conj().T / C + 0.2 * np.eye(C)
    path = tmp_path / "noise.h5"
    _simulate(path, signal=0.0, averages=1, undersample=False, noise_cov=psi, noise_samples=20000)
    raw = read_ismrmrd(path, prewhiten=False)
    white = read_ismrmrd(path, prewhiten=True)
    assert white.acquisition.prewhitened
    np.testing.assert_allclose(white.acquisition.noise_cov, psi * NOISE_DWELL / DATA_DWELL, atol=0.06)

    def cov(k: np.ndarray) -> np.ndarray:
        x = k[:, :, ECHO_SKIP:, PF_SKIP:].transpose(1, 0, 2, 3).reshape(C, -1)
        return x @ x.conj().T / x.shape[1]

    assert np.abs(cov(raw.kspace) - np.eye(C)).max() > 0.3  # correlated before
    assert np.abs(cov(white.kspace) - np.eye(C)).max() < 0.12  # white, unit variance after


def test_repetition_selection_and_unsupported_inputs(tmp_path: Path) -> None:
    path = tmp_path / "sim.h5"
    _simulate(path, averages=1)
    with pytest.raises(InputError, match="repetition 3"):
        read_ismrmrd(path, repetition=3)
    radial = tmp_path / "radial.h5"
    _simulate(radial, averages=1, trajectory="radial")
    with pytest.raises(InputError, match="radial.*not supported"):
        read_ismrmrd(radial)
    three_d = tmp_path / "3d.h5"
    _simulate(three_d, averages=1, enc_z=8)
    with pytest.raises(InputError, match="3-D"):
        read_ismrmrd(three_d)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["kspace"] = np.zeros((1, 2, 4, 4), np.complex64)
    assert is_ismrmrd(path) and not is_ismrmrd(other) and not is_ismrmrd(tmp_path / "missing.h5")
    with pytest.raises(InputError, match="no ISMRMRD group"):
        read_ismrmrd(other)


def test_convert_to_fastmri_layout(tmp_path: Path) -> None:
    pytest.importorskip("recon.io.fastmri", reason="recon.io.fastmri (other engineer) not landed yet")
    from recon.io.convert import convert_ismrmrd_to_fastmri

    src = tmp_path / "sim.h5"
    _simulate(src, averages=1)
    out = convert_ismrmrd_to_fastmri(src, tmp_path / "out" / "sim_fastmri.h5")
    with h5py.File(out, "r") as f:
        assert f["kspace"].shape == (S, C, H, W)
        np.testing.assert_array_equal(f["mask"][()].astype(bool), read_ismrmrd(src).acquisition.columns)
        assert "reconstruction_rss" not in f
        assert f.attrs["num_low_frequency"] == len(ACS)
        assert "patient_id" not in f.attrs
        xml = f["ismrmrd_header"][()]
        xml = xml.decode() if isinstance(xml, bytes) else str(xml)
        assert "Doe^Jane" not in xml and "PID-123" not in xml
    from fastmri.data.mri_data import SliceDataset  # the real fastMRI reader accepts the file

    sample = SliceDataset(out.parent, challenge="multicoil")[0]
    assert sample[0].shape == (C, H, W) and sample[3]["num_low_frequency"] == len(ACS)
    assert (sample[3]["padding_left"], sample[3]["padding_right"]) == (PF_SKIP, W)  # the never-acquired side is not acquirable
    full = tmp_path / "full.h5"
    _simulate(full, averages=1, undersample=False)
    out = convert_ismrmrd_to_fastmri(full, tmp_path / "full_fastmri.h5", keep_identity=True)
    with h5py.File(out, "r") as f:
        assert f["reconstruction_rss"].shape == (S, H_RECON, W)
        assert f.attrs["patient_id"] == "PID-123"
        assert f.attrs["max"] == pytest.approx(float(f["reconstruction_rss"][()].max()))


GENERATOR = shutil.which("ismrmrd_generate_cartesian_shepp_logan")


def _generate(tmp_path: Path, *args: str) -> tuple[Path, np.ndarray, np.ndarray]:
    """Run Debian's generator; return the file, its phantom and csm in our (row=readout) layout."""
    out = tmp_path / "shepp.h5"
    subprocess.run([GENERATOR, "-m", "64", "-c", "8", *args, "-o", str(out)],
                   check=True, capture_output=True)
    with h5py.File(out, "r") as f:
        phantom = f["dataset/phantom"][()].view(np.complex64)[0].T  # stored (y, x)
        csm = np.swapaxes(f["dataset/csm"][()].view(np.complex64)[0], -1, -2)
    return out, phantom, csm


def _nmse(x: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(x - ref) ** 2 / np.linalg.norm(ref) ** 2)


@pytest.mark.skipif(GENERATOR is None, reason="ismrmrd_generate_cartesian_shepp_logan not installed")
def test_shepp_logan_fully_sampled_matches_phantom(tmp_path: Path) -> None:
    path, phantom, csm = _generate(tmp_path, "-a", "1", "-n", "0")
    scan = read_ismrmrd(path, remove_oversampling=True)
    assert scan.kspace.shape == (1, 8, 64, 64) and scan.acquisition.columns.all()
    coil = _ifft2c(scan.kspace[0])
    combined = (np.conj(csm) * coil).sum(0) / np.maximum((np.abs(csm) ** 2).sum(0), 1e-12)
    assert _nmse(combined, phantom) < 1e-6


@pytest.mark.skipif(GENERATOR is None, reason="ismrmrd_generate_cartesian_shepp_logan not installed")
@pytest.mark.parametrize(("noise", "limit"), [(("-n", "0"), 1e-6), (("-C",), 0.1)])
def test_shepp_logan_undersampled_sense_matches_phantom(
    tmp_path: Path, noise: tuple[str, ...], limit: float
) -> None:
    """-a 2 -w 24: keeps the true sampling; CG-SENSE with the stored csm on the image lines.

    Measured NMSE: 5e-8 noise-free, 0.05 with the generator's default noise (0.05) and -C.
    """
    path, phantom, csm = _generate(tmp_path, "-a", "2", "-w", "24", *noise)
    scan = read_ismrmrd(path, remove_oversampling=True, prewhiten=False, repetition=0)
    acq = scan.acquisition
    assert acq.num_low_frequencies == 24 and acq.calib == (20, 44)
    # the generator flags the odd ACS lines PARALLEL_CALIBRATION only: calibration data, not image
    # data, so the image mask is every 2nd line and the calibration block sits in `calibration`
    assert acq.columns.mean() == 0.5 and acq.calibration_only[21:44:2].all()
    assert scan.calibration is not None and np.abs(scan.calibration[..., 20:44]).min(axis=(0, 1, 2)).all()
    y, m = scan.kspace[0], acq.columns[None, None, :]

    def normal(x: np.ndarray) -> np.ndarray:
        return (np.conj(csm) * _ifft2c(m * _fft2c(csm * x))).sum(0)

    b = (np.conj(csm) * _ifft2c(y)).sum(0)
    x, r = np.zeros_like(b), b.copy()
    p, rs = r.copy(), np.vdot(r, r)
    for _ in range(30):
        ap = normal(p)
        alpha = rs / np.vdot(p, ap)
        x, r = x + alpha * p, r - alpha * ap
        rs_new = np.vdot(r, r)
        p, rs = r + (rs_new / rs) * p, rs_new
    assert _nmse(x, phantom) < limit
