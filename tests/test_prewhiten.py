"""Noise prewhitening: covariance estimate, Cholesky whitening, bandwidth scaling."""

from __future__ import annotations

import numpy as np
import pytest

from recon.io.prewhiten import noise_covariance, prewhiten, prewhitening_matrix


def _correlated_noise(rng: np.random.Generator, coils: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(C, n) complex noise with a known random Hermitian positive-definite covariance."""
    a = rng.standard_normal((coils, coils)) + 1j * rng.standard_normal((coils, coils))
    cov = a @ a.conj().T / coils + 0.1 * np.eye(coils)
    white = (rng.standard_normal((coils, n)) + 1j * rng.standard_normal((coils, n))) / np.sqrt(2)
    return np.linalg.cholesky(cov) @ white, cov


def test_covariance_estimate_matches_truth() -> None:
    rng = np.random.default_rng(0)
    noise, cov = _correlated_noise(rng, 6, 200_000)
    est = noise_covariance(noise)
    assert np.abs(est - cov).max() < 0.03 * np.abs(cov).max()


def test_whitened_noise_has_identity_covariance() -> None:
    rng = np.random.default_rng(1)
    noise, _ = _correlated_noise(rng, 8, 100_000)
    w = prewhitening_matrix(noise_covariance(noise))
    assert w.shape == (8, 8) and w.dtype == np.complex64
    fresh, _ = _correlated_noise(np.random.default_rng(1), 8, 100_000)
    data = fresh.T.reshape(100, 1000, 8).transpose(0, 2, 1)  # (slices, coils, samples)
    out = prewhiten(data.astype(np.complex64), w, coil_axis=1)
    assert out.shape == data.shape and out.dtype == np.complex64
    flat = out.transpose(1, 0, 2).reshape(8, -1)
    assert np.abs(noise_covariance(flat) - np.eye(8)).max() < 0.03


def test_dwell_time_scaling() -> None:
    """Noise sampled with half the dwell time (twice the bandwidth) has twice the variance."""
    rng = np.random.default_rng(2)
    noise, _ = _correlated_noise(rng, 4, 1000)
    base = noise_covariance(noise)
    scaled = noise_covariance(noise, noise_dwell_us=2.0, data_dwell_us=4.0)
    np.testing.assert_allclose(scaled, base * 0.5, rtol=1e-12)


def test_singular_covariance_is_rejected() -> None:
    cov = np.ones((3, 3), complex)
    with pytest.raises(ValueError, match="positive definite"):
        prewhitening_matrix(cov)


def test_coil_count_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="coils"):
        prewhiten(np.zeros((2, 3, 4, 4), np.complex64), np.eye(5, dtype=np.complex64))


@pytest.mark.parametrize("bandwidth", [0.79, None])
def test_absolute_noise_scale_of_a_file_with_correlated_coil_noise(tmp_path, bandwidth: float | None) -> None:
    """An ISMRMRD file (written with the `ismrmrd` package) whose noise scan (NOISE_MEASUREMENT,
    dwell 2 us) and signal-free imaging lines (dwell 4 us, so half the noise variance) carry a
    known coil covariance `Psi`. By hand: the imaging noise covariance is `Psi * 2 / 4`, the
    reader's covariance that divided by `relativeReceiverNoiseBandwidth` `b` (when the header has
    it), and whitening with it leaves imaging noise of covariance `b I` (`I` without `b`): unit
    variance in the receiver's pass band, as `recon.io.prewhiten` documents."""
    ismrmrd = pytest.importorskip("ismrmrd")
    from recon.io.ismrmrd import read_ismrmrd

    coils, rows, cols = 4, 64, 64
    rng = np.random.default_rng(11)
    a = rng.standard_normal((coils, coils)) + 1j * rng.standard_normal((coils, coils))
    psi = a @ a.conj().T / coils + 0.2 * np.eye(coils)  # at the noise scan's dwell time
    system = f"<receiverChannels>{coils}</receiverChannels>" + (
        "" if bandwidth is None else f"<relativeReceiverNoiseBandwidth>{bandwidth}</relativeReceiverNoiseBandwidth>")
    space = f"<matrixSize><x>{rows}</x><y>{cols}</y><z>1</z></matrixSize><fieldOfView_mm><x>200</x><y>200</y><z>5</z></fieldOfView_mm>"
    xml = ('<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
           f"<acquisitionSystemInformation>{system}</acquisitionSystemInformation>"
           "<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>"
           f"<encoding><encodedSpace>{space}</encodedSpace><reconSpace>{space}</reconSpace>"
           f"<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{cols - 1}</maximum>"
           f"<center>{cols // 2}</center></kspace_encoding_step_1></encodingLimits>"
           "<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>")

    def noise(cov: np.ndarray, n: int) -> np.ndarray:
        white = (rng.standard_normal((coils, n)) + 1j * rng.standard_normal((coils, n))) / np.sqrt(2)
        return (np.linalg.cholesky(cov) @ white).astype(np.complex64)

    path = tmp_path / "noise.h5"
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(xml.encode())
        for _ in range(8):  # 8 noise acquisitions of 4096 samples
            acq = ismrmrd.Acquisition.from_array(noise(psi, 4096), sample_time_us=2.0)
            acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            dset.append_acquisition(acq)
        for e in range(cols):
            acq = ismrmrd.Acquisition.from_array(noise(psi * 2.0 / 4.0, rows), sample_time_us=4.0, center_sample=rows // 2)
            acq.idx.kspace_encode_step_1 = e
            dset.append_acquisition(acq)

    factor = 1.0 if bandwidth is None else bandwidth
    raw = read_ismrmrd(path, prewhiten=False)
    white = read_ismrmrd(path)
    expected_cov = psi * 2.0 / 4.0 / factor
    assert white.acquisition.prewhitened
    assert np.abs(white.acquisition.noise_cov - expected_cov).max() < 0.05 * np.abs(expected_cov).max()

    def sample_cov(k: np.ndarray) -> np.ndarray:
        x = k[0].reshape(coils, -1).astype(np.complex128)
        return x @ x.conj().T / x.shape[1]

    np.testing.assert_allclose(sample_cov(raw.kspace), psi * 2.0 / 4.0, atol=0.05 * np.abs(psi).max())
    np.testing.assert_allclose(sample_cov(white.kspace), factor * np.eye(coils), atol=0.05)
