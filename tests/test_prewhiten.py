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
