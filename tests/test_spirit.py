"""SPIRiT (`recon.calib.spirit`, `--method spirit`): the calibration against a plain NumPy
least-squares reference (Lustig's `calibSPIRiT`), the image-domain operator against an explicit
k-space correlation, adjointness and the closed-form norm, convergence to the truth with an
exact kernel, and the method end to end on random masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from _baseline_data import phantom_kspace
from recon.alg import batch_dot, max_eigenvalue
from recon.calib.spirit import SpiritOperator, image_kernel, spirit_calibrate
from recon.core import center_crop, fft2c, ifft2c, rss
from recon.masks import make_mask
from recon.methods import ReconBatch, get_method
from recon.methods.spirit_fill import default_kernel, known_locations, spirit_cg


def _random(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))


def _reference_weights(calib: np.ndarray, kernel: tuple[int, int], tikhonov: float) -> np.ndarray:
    """Lustig's calibSPIRiT in NumPy: windows inside the block, per coil its own centre left out,
    `(A_s^H A_s + tikhonov ||A_s^H A_s||_F / n I) w = A_s^H a_t`. Returns `(C, C, kx, ky)`."""
    coils, rows, cols = calib.shape
    kx, ky = kernel
    patches = [calib[:, i : i + kx, j : j + ky].transpose(1, 2, 0).reshape(-1) for i in range(rows - kx + 1) for j in range(cols - ky + 1)]
    a = np.array(patches, dtype=np.complex128)
    out = np.zeros((coils, kx * ky * coils), np.complex128)
    for c in range(coils):
        t = ((kx // 2) * ky + ky // 2) * coils + c
        s = [n for n in range(a.shape[1]) if n != t]
        gram = a[:, s].conj().T @ a[:, s]
        lam = tikhonov * np.linalg.norm(gram) / len(s)
        out[c, s] = np.linalg.solve(gram + lam * np.eye(len(s)), a[:, s].conj().T @ a[:, t])
    return out.reshape(coils, kx, ky, coils).transpose(0, 3, 1, 2)


@pytest.mark.parametrize("kernel", [(5, 5), (3, 5), (7, 3)])
def test_calibration_matches_a_numpy_least_squares_reference(kernel: tuple[int, int]) -> None:
    full, _, _ = phantom_kspace(4, 32, 40, noise=1e-2)
    region = (12, 28)
    kern = spirit_calibrate(torch.from_numpy(full)[None], region, kernel, 0.01)
    ref = _reference_weights(full[:, :, region[0] : region[1]].astype(np.complex128), kernel, 0.01)
    ours = kern.weights[0].numpy()
    assert np.linalg.norm(ours - ref) <= 1e-4 * np.linalg.norm(ref)
    centre = (kernel[0] // 2, kernel[1] // 2)
    assert all(ours[c, c, centre[0], centre[1]] == 0 for c in range(4))  # the target never predicts itself


def test_noise_rule_weight_and_refusals() -> None:
    full, _, _ = phantom_kspace(4, 32, 40, noise=1e-2)
    data = torch.from_numpy(full)[None]
    kern = spirit_calibrate(data, (12, 28), (5, 5), 2.0, torch.tensor([0.01]))
    windows = (32 - 4) * (16 - 4)
    assert torch.allclose(kern.lam0, torch.full((1, 4), 2.0 * windows * 1e-4, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"calibration region \[12, 15\) x 32 rows is narrower than the SPIRiT kernel 5x5"):
        spirit_calibrate(data, (12, 15), (5, 5))
    with pytest.raises(ValueError, match="odd positive sizes"):
        spirit_calibrate(data, (12, 28), (4, 5))
    with pytest.raises(ValueError, match="odd positive sizes"):
        get_method("spirit", kernel=(5, 4))
    assert default_kernel(14) == (5, 5) and default_kernel(7) == (5, 3) and default_kernel(40) == (5, 5)


def test_image_domain_kernel_is_the_circular_kspace_correlation() -> None:
    coils, height, width, kx, ky = 3, 12, 9, 3, 5
    weights = _random((1, coils, coils, kx, ky), 1)
    x = _random((1, coils, height, width), 2)
    direct = torch.zeros_like(x)
    for r in range(kx):
        for q in range(ky):
            shifted = torch.roll(x, (-(r - kx // 2), -(q - ky // 2)), (-2, -1))
            direct += torch.einsum("bij,bjhw->bihw", weights[..., r, q], shifted)
    g_img = image_kernel(weights, (height, width))
    via_image = fft2c(torch.einsum("bijhw,bjhw->bihw", g_img, ifft2c(x)))
    assert torch.allclose(via_image, direct, atol=1e-4 * float(direct.abs().max()))
    op = SpiritOperator(g_img)
    assert torch.allclose(op.forward(x), direct - x, atol=1e-4 * float(direct.abs().max()))


def test_operator_adjoint_normal_and_norm() -> None:
    op = SpiritOperator(_random((2, 4, 4, 10, 8), 3) * 0.3)
    x, y = _random((2, 4, 10, 8), 4), _random((2, 4, 10, 8), 5)
    lhs, rhs = batch_dot(op.forward(x), y), batch_dot(x, op.adjoint(y))
    assert torch.allclose(lhs, rhs, rtol=1e-4)
    imag = (op.forward(x).conj() * y).sum((1, 2, 3)).imag - (x.conj() * op.adjoint(y)).sum((1, 2, 3)).imag
    assert float(imag.abs().max()) < 1e-3 * float(lhs.abs().max())
    assert torch.allclose(op.normal(x), op.adjoint(op.forward(x)), atol=1e-4 * float(op.normal(x).abs().max()))
    assert torch.allclose(op.residual_energy(x), batch_dot(op.forward(x), op.forward(x)).flatten(), rtol=1e-4)
    power = max_eigenvalue(op.normal, (2, 4, 10, 8), torch.device("cpu"), iters=300)
    assert torch.allclose(power, op.lipschitz(), rtol=1e-3)
    # E||D n||^2 = sigma^2 ||D||_F^2 for white noise: the mean over 400 draws is within 5 %
    noise = _random((400, 4, 10, 8), 6) / np.sqrt(2)
    measured = SpiritOperator(op.d[:1].expand(400, -1, -1, -1, -1) + torch.eye(4)[None, :, :, None, None]).residual_energy(noise).mean()
    assert abs(float(measured) / float(op.noise_energy(1.0)[0]) - 1) < 0.05


def test_an_exact_kernel_recovers_the_truth() -> None:
    # G(r) = s s^H / |s|^2 with the true maps: noise-free coil k-space of `maps * image` satisfies
    # (G - I) x = 0 exactly, and with 8 coils at R = 2 the sampled columns pin it down
    full, maps, _ = phantom_kspace(8, 32, 24, noise=0.0)
    s = torch.from_numpy(maps)
    g_img = (s[:, None] * s[None].conj() / (s.abs() ** 2).sum(0))[None]
    truth = torch.from_numpy(full)[None]
    mask = torch.zeros(1, 1, 1, 24, dtype=torch.bool)
    mask[..., ::2] = True
    mask[..., 10:14] = True
    mask[..., -1] = True  # both edge columns sampled: nothing lies outside the sampled span
    known = known_locations(truth * mask, mask)
    filled = spirit_cg(truth * mask, known, SpiritOperator(g_img), 300, tol=1e-7)
    zero_err = float((truth * mask - truth).norm() / truth.norm())
    err = float((filled - truth).norm() / truth.norm())
    assert err < 1e-3 < zero_err


def test_calibrated_kernel_is_consistent_with_the_data_it_came_from() -> None:
    full, _, _ = phantom_kspace(8, 48, 40, noise=0.0)
    x = torch.from_numpy(full)[None]
    op = SpiritOperator.from_kernel(spirit_calibrate(x, (8, 32), (5, 5), 1e-4), (48, 40))
    assert float(op.residual_energy(x)[0]) < 1e-3 * float((x.abs() ** 2).sum())


def _batch(kspace: np.ndarray, mask: np.ndarray, nlow: int) -> ReconBatch:
    count, _, _, width = kspace.shape
    start = (width - nlow + 1) // 2
    return ReconBatch(
        masked_kspace=torch.from_numpy(kspace),
        mask=torch.from_numpy(np.broadcast_to(mask, (count, 1, 1, width)).copy()),
        calib=torch.tensor([[start, start + nlow]] * count),
        crop_size=(32, 32),
    )


@pytest.mark.parametrize(("options", "bound"), [({}, 0.6), ({"l1": True}, 0.85)])
def test_method_end_to_end_on_a_random_mask(options: dict, bound: float) -> None:
    # band-limited (apodized) phantom, 2x readout oversampling so the outer rows hold noise only,
    # a fastMRI random mask at 3x with 13 centre columns; scored against the noisy full RSS
    full, _, _ = phantom_kspace(8, 64, 64, noise=0.0)
    ky, kx = np.meshgrid(np.linspace(-1, 1, 64), np.linspace(-1, 1, 64), indexing="ij")
    coil = np.pad(ifft2c(full * np.exp(-(kx**2 + ky**2) / (2 * 0.35**2))), ((0, 0), (32, 32), (0, 0)))
    rng = np.random.default_rng(0)
    full = (fft2c(coil) + 1e-3 * (rng.standard_normal(coil.shape) + 1j * rng.standard_normal(coil.shape))).astype(np.complex64)
    mask, nlow = make_mask("random", 64, 3, 0.2, seed=3)
    assert nlow == 13 and mask.sum() == 19
    under = (full * mask).astype(np.complex64)
    batch = _batch(np.stack([under, under]), mask, int(nlow))
    before = batch.masked_kspace.clone()
    images = get_method("spirit", **options)(batch)
    assert torch.equal(batch.masked_kspace, before)  # inputs never overwritten
    assert images.shape == (2, 32, 32) and images.dtype == torch.float32
    truth = center_crop(rss(ifft2c(full), 0), (32, 32))
    zero = center_crop(rss(ifft2c(under), 0), (32, 32))
    err = np.linalg.norm(images[0].numpy() - truth) / np.linalg.norm(truth)
    zero_err = np.linalg.norm(zero - truth) / np.linalg.norm(truth)
    assert err < bound * zero_err, (err, zero_err)
    assert torch.equal(images[0], images[1])


def test_calibrates_on_ismrmrd_calibration_only_lines(tmp_path: Path) -> None:
    """Every 4th line as image data, the ACS block's other lines flagged calibration-only."""
    from test_acquisition import _write_asymmetric_acs

    from recon.pipeline import run_method
    from recon.reconstruct import ReconstructJob

    path = tmp_path / "asym.h5"
    full = _write_asymmetric_acs(path)
    data, _, _ = ReconstructJob(out_dir=tmp_path / "out")._load(path)
    assert data.scan is not None and data.scan.calibration is not None and not data.acquisition.column_mask[21]
    target = rss(ifft2c(full), 0)
    inside = target > 0.2 * target.max()

    def error(image: np.ndarray) -> float:
        return float(np.linalg.norm((image - target)[inside]) / np.linalg.norm(target[inside]))

    ours = error(run_method(get_method("spirit"), data, torch.device("cpu"), backend="torch")[0])
    zero = error(run_method(get_method("zero-filled"), data, torch.device("cpu"), backend="torch")[0])
    assert ours < 0.6 * zero, (ours, zero)
