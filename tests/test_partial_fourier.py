"""Partial Fourier and partial echo: homodyne / POCS on a phantom with known phase, the sampling
seen by the methods (unacquired samples are unknown, not zero data), `recon reconstruct` on
ISMRMRD files written with the `ismrmrd` package, and the absolute prewhitening noise scale."""

from __future__ import annotations

from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from recon import partial_fourier as pf
from recon.acquisition import acquired_extent, is_partial_fourier, symmetric_band
from recon.cli import main
from recon.core import fft2c, ifft2c, rss
from recon.io.errors import InputError
from recon.io.ismrmrd import read_ismrmrd
from recon.noise import noise_sigma

N = 128
FRACTION = 5 / 8
START = N - round(N * FRACTION)  # 5/8 partial Fourier: columns [48, 128) of 128
EXTENT = ((0, N), (START, N))
EDGE_ROW, EDGE_COL = N // 2 - 10, round((0.4 + 1) / 2 * (N - 1))  # a row through the rectangle, its right edge

_y, _x = np.meshgrid(np.linspace(-1, 1, N), np.linspace(-1, 1, N), indexing="ij")
MAGNITUDE = gaussian_filter(
    ((_x**2 / 0.7 + _y**2 / 0.85) < 1) * 0.6
    + ((np.abs(_x - 0.1) < 0.3) & (np.abs(_y + 0.1) < 0.35)) * 0.8
    + (((_x + 0.4) ** 2 + (_y - 0.35) ** 2) < 0.02) * 0.5,
    0.8,
)
SMOOTH_PHASE = 1.5 * (0.8 * _x + 0.5 * _y**2 + 0.4 * _x * _y + 0.3 * _x**2)  # ~1 rad across the object
FAST_PHASE = np.sin(2 * np.pi * 8 * _x)  # 8 cycles across the FOV along the partial axis


def _kspace(phase: np.ndarray, noise: float = 1e-3, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    k = fft2c(MAGNITUDE * np.exp(1j * phase))
    return k + noise * (rng.standard_normal(k.shape) + 1j * rng.standard_normal(k.shape))


def _nrmse(image: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(image - truth) / np.linalg.norm(truth))


def _edge_width(image: np.ndarray) -> float:
    """10-90% rise distance (pixels, linear interpolation) across the rectangle's right edge, along the columns."""
    seg = image[EDGE_ROW, EDGE_COL - 12 : EDGE_COL + 12][::-1]
    low, high = seg[:4].mean(), seg[-4:].mean()

    def crossing(level: float) -> float:
        value = low + level * (high - low)
        i = int(np.argmax(seg >= value))
        return i - 1 + (value - seg[i - 1]) / (seg[i] - seg[i - 1])

    return crossing(0.9) - crossing(0.1)


def _pf_images(phase: np.ndarray) -> dict[str, np.ndarray]:
    k = _kspace(phase)
    out = {mode: np.abs(pf.reconstruct(k, EXTENT, mode)) for mode in pf.MODES}
    out["full"] = np.abs(ifft2c(k))
    return out


def test_homodyne_and_pocs_halve_the_error_and_keep_the_edge_at_smooth_phase() -> None:
    """5/8 partial Fourier, known smooth phase: NRMSE <= 0.5x zero-filling, edge within 10% of full."""
    images = _pf_images(SMOOTH_PHASE)
    err = {m: _nrmse(im, MAGNITUDE) for m, im in images.items()}
    width = {m: _edge_width(im) for m, im in images.items()}
    # measured: full 0.0019, pocs 0.0023, homodyne 0.0070, zero 0.0231 (docs/partial_fourier.md)
    assert err["pocs"] <= 0.5 * err["zero"] and err["homodyne"] <= 0.5 * err["zero"]
    # measured widths: full 2.31, pocs 2.30, homodyne 2.21, zero 2.93 pixels
    for mode in ("pocs", "homodyne"):
        assert abs(width[mode] - width["full"]) <= 0.1 * width["full"], (mode, width)
    assert width["zero"] > 1.15 * width["full"]  # the missing side blurs the edge along the partial axis


def test_fast_phase_degrades_as_documented() -> None:
    """Phase with 8 cycles across the FOV: the low-pass phase estimate misses it (numbers in the docs)."""
    images = _pf_images(FAST_PHASE)
    err = {m: _nrmse(im, MAGNITUDE) for m, im in images.items()}
    # measured: pocs 0.26, homodyne 0.64, zero 0.19: no phase-constrained gain left
    assert err["homodyne"] > 0.4 and err["pocs"] > 0.15
    assert err["homodyne"] > err["zero"] and err["pocs"] > err["zero"]


def test_numpy_and_torch_agree_and_coils_are_independent() -> None:
    k = np.stack([_kspace(SMOOTH_PHASE, seed=1), _kspace(SMOOTH_PHASE + 1.0, seed=2)])[None]  # (1, 2, N, N)
    for mode in pf.MODES:
        a = pf.reconstruct(k, EXTENT, mode)
        b = pf.reconstruct(torch.from_numpy(k), EXTENT, mode)
        assert isinstance(a, np.ndarray) and isinstance(b, torch.Tensor)
        np.testing.assert_allclose(a, b.numpy(), atol=1e-10)
        single = pf.reconstruct(k[0, 1], EXTENT, mode)
        np.testing.assert_allclose(a[0, 1], single, atol=1e-10)  # one phase per coil
    assert np.abs(pf.reconstruct(k, EXTENT, "homodyne").imag).max() == 0  # homodyne keeps the real part


def test_symmetric_data_are_untouched_and_too_little_kspace_is_refused() -> None:
    k = _kspace(SMOOTH_PHASE)
    for mode in pf.MODES:  # symmetric extent (fastMRI-style padding): the plain inverse FFT
        np.testing.assert_allclose(pf.reconstruct(k, ((0, N), (3, N - 3)), mode), ifft2c(k))
    with pytest.raises(ValueError, match="more than half of k-space"):
        pf.reconstruct(k, ((0, N), (N // 2, N)), "pocs")  # half Fourier
    with pytest.raises(ValueError, match="symmetric centre of 5 samples"):
        pf.homodyne(k, ((0, N), (N // 2 - 2, N)))  # half + 2 lines: no phase estimate
    pf.reconstruct(k, ((0, N), (N // 2, N)), "zero")  # zero needs no phase
    with pytest.raises(ValueError, match="unknown partial-Fourier mode"):
        pf.check_mode("margosian")


def test_partial_fourier_detection_and_acquirable_columns() -> None:
    assert not is_partial_fourier((19, 349), 368)  # fastMRI knee padding
    assert not is_partial_fourier((3, 126), 128)  # edge gaps of uniform undersampling
    assert is_partial_fourier((16, 128), 128)  # 7/8
    assert symmetric_band((48, 128), 128) == (48, 81)
    columns = np.zeros(128, bool)
    columns[48:127:2] = True  # 5/8 partial Fourier, 2x undersampled, header declaring all 128
    assert acquired_extent(columns, (0, 128)) == (48, 128)  # short side narrowed, long side kept
    columns[:] = False
    columns[2:127:4] = True
    assert acquired_extent(columns, (0, 128)) == (0, 128)


def test_partial_echo_rows_are_not_noise_samples() -> None:
    """The noise level of the noise rules comes from acquired rows, not the unacquired zeros."""
    rng = np.random.default_rng(3)
    k = (rng.standard_normal((1, 4, 64, 32)) + 1j * rng.standard_normal((1, 4, 64, 32))) / np.sqrt(2)
    k[..., :20, :] = 0  # asymmetric echo: the first 20 readout samples not acquired
    mask = torch.zeros(1, 1, 64, 32, dtype=torch.bool)
    mask[..., 20:, :] = True
    sigma = float(noise_sigma(torch.from_numpy(k.astype(np.complex64)), mask)[0])
    assert sigma == pytest.approx(1.0, rel=0.1)


def test_varnet_sensitivities_use_the_symmetric_centre_only() -> None:
    from recon.models.varnet import SensitivityModel, detect_num_low_frequencies

    torch.manual_seed(0)
    model = SensitivityModel(4, 2).eval()
    k = torch.randn(1, 2, 32, 32, dtype=torch.complex64)
    mask = torch.zeros(1, 1, 32, 32, dtype=torch.bool)
    mask[..., 8:, :] = True  # partial echo: rows [8, 32), symmetric centre [8, 25)
    k = k * mask
    calib = torch.tensor([[12, 20]])
    changed = k.clone()
    changed[..., 26:, :] += 5.0  # unpaired rows
    with torch.no_grad():
        np.testing.assert_allclose(model(k, mask, calib=calib), model(changed, mask, calib=calib), atol=1e-6)
        columns = torch.zeros(1, 1, 1, 32, dtype=torch.bool)
        columns[..., 10:22] = True
        assert int(detect_num_low_frequencies(columns & mask)) == int(detect_num_low_frequencies(columns))


# ---------------------------------------------------------------- ISMRMRD through `recon reconstruct`

H, W, C = 64, 64, 4
NOISE_DWELL, DATA_DWELL = 2.0, 5.0


def _coil_kspace() -> tuple[np.ndarray, np.ndarray]:
    """Fully sampled (1, C, H, W) k-space of a phantom with smooth phase and smooth coil maps, and its RSS truth."""
    y, x = np.meshgrid(np.linspace(-1, 1, H), np.linspace(-1, 1, W), indexing="ij")
    obj = gaussian_filter(((x**2 / 0.6 + y**2 / 0.8) < 1) * 0.6 + ((np.abs(x - 0.1) < 0.3) & (np.abs(y) < 0.3)) * 0.8, 0.7)
    obj = obj * np.exp(1j * (0.8 * x + 0.6 * y**2 + 0.3 * x * y))
    centres = [(-1, -1), (1, -1), (-1, 1), (1, 1)]
    maps = np.stack([np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 2) * np.exp(1j * (0.5 * c + 0.3 * x)) for c, (cx, cy) in enumerate(centres)])
    coils = obj[None] * maps
    return fft2c(coils)[None], rss(coils, 0)[None]


def _xml(rnbw: float | None = None) -> str:
    system = f"<acquisitionSystemInformation><receiverChannels>{C}</receiverChannels>" + (
        f"<relativeReceiverNoiseBandwidth>{rnbw}</relativeReceiverNoiseBandwidth>" if rnbw is not None else "") + "</acquisitionSystemInformation>"
    return f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">{system}
 <experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>
 <encoding>
  <encodedSpace><matrixSize><x>{H}</x><y>{W}</y><z>1</z></matrixSize><fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></encodedSpace>
  <reconSpace><matrixSize><x>{H}</x><y>{W}</y><z>1</z></matrixSize><fieldOfView_mm><x>256</x><y>256</y><z>5</z></fieldOfView_mm></reconSpace>
  <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{W - 1}</maximum><center>{W // 2}</center></kspace_encoding_step_1></encodingLimits>
  <trajectory>cartesian</trajectory>
 </encoding>
</ismrmrdHeader>"""


def _write(path: Path, kspace: np.ndarray, lines: range, first_sample: int = 0, *, rnbw: float | None = None,
           noise: np.ndarray | None = None, acs: range = range(0)) -> None:
    """An ISMRMRD file (numbered on the full grid, Siemens-style) holding `lines` of `kspace[0]`,
    each from readout sample `first_sample` on; `noise` (C, n) is written as a noise scan."""
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(_xml(rnbw).encode())
        if noise is not None:
            acq = ismrmrd.Acquisition.from_array(noise.astype(np.complex64), sample_time_us=NOISE_DWELL)
            acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            dset.append_acquisition(acq)
        for e in lines:
            data = np.ascontiguousarray(kspace[0, :, first_sample:, e]).astype(np.complex64)
            acq = ismrmrd.Acquisition.from_array(data, sample_time_us=DATA_DWELL, center_sample=H // 2 - first_sample,
                                                 read_dir=(1.0, 0.0, 0.0), phase_dir=(0.0, 1.0, 0.0), slice_dir=(0.0, 0.0, 1.0))
            acq.idx.kspace_encode_step_1 = e
            if e in acs:
                acq.set_flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)
            dset.append_acquisition(acq)


def _reconstruct(raw: Path, out: Path, *args: str) -> np.ndarray:
    assert main(["reconstruct", str(raw), "--out", str(out), "--quiet", *args]) == 0
    with h5py.File(out / raw.name, "r") as f:
        return f["reconstruction"][()][0]


PF_START = W - round(W * FRACTION)  # 5/8 partial Fourier: lines [24, 64)
ECHO_START = H - round(H * FRACTION)  # 5/8 asymmetric echo: samples [24, 64)


def test_partial_fourier_ismrmrd_through_reconstruct(tmp_path: Path) -> None:
    kspace, truth = _coil_kspace()
    raw = tmp_path / "pf.h5"
    _write(raw, kspace, range(PF_START, W))
    acq = read_ismrmrd(raw).acquisition
    assert acq.acquirable == (PF_START, W) and acq.partial_fourier  # the unacquired side is not acquirable
    err = {mode: _nrmse(_reconstruct(raw, tmp_path / mode, "--partial-fourier", mode), truth[0]) for mode in pf.MODES}
    # measured: pocs 0.0033, homodyne 0.0163, zero 0.0369 (default method zero-filled)
    assert err["pocs"] < 0.01 and err["homodyne"] <= 0.5 * err["zero"] and err["zero"] > 0.03
    sense = _nrmse(_reconstruct(raw, tmp_path / "sense", "--method", "sense"), truth[0])
    assert sense < 0.01  # measured 0.0036 (ESPIRiT maps, POCS on the combined image; 0.037 with zero)


def test_asymmetric_echo_ismrmrd_through_reconstruct(tmp_path: Path) -> None:
    kspace, truth = _coil_kspace()
    raw = tmp_path / "echo.h5"
    _write(raw, kspace, range(W), first_sample=ECHO_START)
    acq = read_ismrmrd(raw).acquisition
    assert acq.readout == (ECHO_START, H) and acq.partial_fourier
    err = {mode: _nrmse(_reconstruct(raw, tmp_path / mode, "--partial-fourier", mode), truth[0]) for mode in ("pocs", "zero")}
    # measured: pocs 0.0019, zero 0.0364
    assert err["pocs"] < 0.01 and err["zero"] > 0.03
    for method, bound in (("sense", 0.01), ("cs", 0.03)):  # measured 0.0025, 0.0178
        assert _nrmse(_reconstruct(raw, tmp_path / method, "--method", method), truth[0]) < bound, method


def test_partial_fourier_with_grappa_through_reconstruct(tmp_path: Path) -> None:
    """5/8 partial Fourier, 2x uniform undersampling with 12 ACS lines and an asymmetric echo:
    GRAPPA fills the acquired side on the acquired rows, POCS the rest."""
    kspace, truth = _coil_kspace()
    raw = tmp_path / "grappa.h5"
    acs = range(W // 2 - 6, W // 2 + 6)
    _write(raw, kspace, [e for e in range(PF_START, W) if e % 2 == 0 or e in acs], first_sample=ECHO_START // 2, acs=acs)
    grappa = _nrmse(_reconstruct(raw, tmp_path / "grappa", "--method", "grappa"), truth[0])
    zero = _nrmse(_reconstruct(raw, tmp_path / "zero", "--method", "grappa", "--partial-fourier", "zero"), truth[0])
    assert grappa < 0.03 and zero > 1.8 * grappa  # measured: 0.0173 and 0.0407


def test_prewhitening_absolute_noise_scale(tmp_path: Path) -> None:
    """Correlated coil noise and relativeReceiverNoiseBandwidth 0.79: the covariance is the
    hand-computed one of the noise scan, scaled by the dwell times and divided by 0.79, and
    whitened imaging noise has variance 0.79 per coil (unit variance in the pass band)."""
    rng = np.random.default_rng(7)
    a = rng.standard_normal((C, C)) + 1j * rng.standard_normal((C, C))
    psi = a @ a.conj().T / C + 0.2 * np.eye(C)
    chol = np.linalg.cholesky(psi)

    def noise(n: int, scale: float = 1.0) -> np.ndarray:
        return np.sqrt(scale) * chol @ ((rng.standard_normal((C, n)) + 1j * rng.standard_normal((C, n))) / np.sqrt(2))

    scan = noise(8192).astype(np.complex64)
    data = noise(H * W, NOISE_DWELL / DATA_DWELL).reshape(C, H, W)[None]  # noise at the imaging bandwidth, no signal
    raw = tmp_path / "noise.h5"
    _write(raw, data, range(W), rnbw=0.79, noise=scan)
    x = scan.astype(np.complex128)
    x = x - x.mean(1, keepdims=True)
    hand = x @ x.conj().T / (x.shape[1] - 1) * (NOISE_DWELL / DATA_DWELL) / 0.79
    white = read_ismrmrd(raw)
    np.testing.assert_allclose(white.acquisition.noise_cov, hand, rtol=1e-6, atol=1e-9)
    flat = white.kspace[0].reshape(C, -1)
    cov = flat @ flat.conj().T / flat.shape[1]
    np.testing.assert_allclose(cov, 0.79 * np.eye(C), atol=0.05)
    plain = tmp_path / "plain.h5"
    _write(plain, data, range(W), noise=scan)
    flat = read_ismrmrd(plain).kspace[0].reshape(C, -1)
    np.testing.assert_allclose(flat @ flat.conj().T / flat.shape[1], np.eye(C), atol=0.06)
    bad = tmp_path / "bad.h5"
    _write(bad, data, range(W), rnbw=0.0, noise=scan)
    with pytest.raises(InputError, match="relativeReceiverNoiseBandwidth 0 is outside"):
        read_ismrmrd(bad)


def test_convert_keeps_the_unacquired_side_unknown(tmp_path: Path) -> None:
    """`recon convert` of 5/8 partial Fourier with an asymmetric echo: the never-acquired columns
    are padding in the written header, the echo is recorded, the target is the POCS image, and a
    retrospective mask of the converted file samples no never-acquired column."""
    from fastmri.data.mri_data import SliceDataset

    kspace, truth = _coil_kspace()
    raw = tmp_path / "raw.h5"
    _write(raw, kspace, range(PF_START, W), first_sample=ECHO_START)
    conv = tmp_path / "conv" / "conv.h5"
    assert main(["convert", str(raw), str(conv)]) == 0
    with h5py.File(conv, "r") as f:
        assert list(f.attrs["readout_extent"]) == [ECHO_START, H] and "mask" not in f
        target = f["reconstruction_rss"][()][0]
    assert _nrmse(target, truth[0]) < 0.02  # POCS per coil, both axes 5/8: measured 0.0103 (zero-filled 0.052)
    sample = SliceDataset(conv.parent, challenge="multicoil")[0]  # fastMRI's own reader
    assert (sample[3]["padding_left"], sample[3]["padding_right"]) == (PF_START, W)
    out = tmp_path / "out"
    assert main(["reconstruct", str(conv), "--out", str(out), "--acceleration", "2", "--quiet"]) == 0
    with h5py.File(out / "conv.h5", "r") as f:
        mask = f["mask"][()].astype(bool)
        image = f["reconstruction"][()][0]
    assert mask[PF_START:].any() and not mask[:PF_START].any()
    assert np.isfinite(image).all() and _nrmse(image, truth[0]) < 0.3


def test_half_fourier_is_refused_in_one_line_unless_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kspace, _ = _coil_kspace()
    raw = tmp_path / "half.h5"
    _write(raw, kspace, range(W // 2 - 2, W))  # half Fourier + 2 lines: no symmetric centre to estimate the phase from
    assert main(["reconstruct", str(raw), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "half.h5" in err and "symmetric centre of 5 samples" in err and "--partial-fourier zero" in err
    assert main(["reconstruct", str(raw), "--out", str(tmp_path / "zero"), "--quiet", "--partial-fourier", "zero"]) == 0


@pytest.mark.parametrize("method", ["cs-tv", "spirit", "varnet", "unet"])
def test_every_method_completes_the_partial_side(tmp_path: Path, method: str) -> None:
    """The remaining methods on 5/8 partial Fourier with an asymmetric echo: finite images, and
    the partial-Fourier step acts (pocs differs from zero; cs-tv, a fit to the truth's scale, improves)."""
    kspace, truth = _coil_kspace()
    raw = tmp_path / "raw.h5"
    _write(raw, kspace, range(PF_START, W), first_sample=ECHO_START)
    images = {mode: _reconstruct(raw, tmp_path / mode, "--method", method, "--partial-fourier", mode) for mode in ("pocs", "zero")}
    assert all(np.isfinite(im).all() for im in images.values())
    assert _nrmse(images["pocs"], images["zero"]) > 0.005
    if method in ("cs-tv", "spirit"):
        assert _nrmse(images["pocs"], truth[0]) < 0.7 * _nrmse(images["zero"], truth[0])
