"""Siemens TWIX input (issue 31): the real `gre.dat` / `epi.dat` of twixtools 0.24 against BART's
independent reader, damaged copies of it, and synthetic files written with `twixtools.write_twix`
from it, each with a known answer (`twix_files`).

Every test that needs the example files skips, saying why, when they cannot be fetched; the
BART comparison skips without Debian's `bart`. No test can hang: each has a timeout.
"""

from __future__ import annotations

import gzip
import json
import math
import shutil
import struct
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest

import twix_files as tf
from twix_files import epi_dat, gre_dat  # noqa: F401 - fixtures

from recon.cli import main
from recon.core import center_crop, ifft2c, rss
from recon.io.errors import InputError
from recon.io.scan import image_choices, open_scan, sniff
from recon.io.twix import BITS, RELATIVE_NOISE_BANDWIDTH, read_twix, walk

pytestmark = pytest.mark.timeout(120)

#: Identity in gre.dat's headers (institution, address, device serial, UIDs with the
#: acquisition date, Siemens LOIDs); none may reach an output without --keep-identity.
IDENTITY_MARKERS = (b"DZNE", b"Sigmund", b"45385", b"20210622", b"66327770", b"xxxxxxx")


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    """`recon ARGS` in-process: exit code and the stderr lines that are errors."""
    capsys.readouterr()
    rc = main(args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and not line.startswith(("warning:", "note:"))]
    return rc, err


def _zero_filled(kspace: np.ndarray, crop: tuple[int, int] = (160, 160)) -> np.ndarray:
    """RSS of the centred inverse FFT of (coils, rows, cols) k-space, centre-cropped."""
    return center_crop(rss(ifft2c(kspace), 0), crop)


def _relative(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a / np.linalg.norm(a) - b / np.linalg.norm(b)))


def _readcfl(stem: Path) -> np.ndarray:
    dims = [int(v) for v in stem.with_suffix(".hdr").read_text().splitlines()[1].split()]
    return np.fromfile(stem.with_suffix(".cfl"), np.complex64).reshape(dims, order="F")


# ---------------------------------------------------------------------------------------------
# The real file


@pytest.mark.skipif(shutil.which("bart") is None, reason="needs Debian's bart (apt-get install bart) for the independent reader")
def test_zero_filled_equals_bart_twixread(gre_dat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`recon reconstruct gre.dat` = BART `twixread -A`, `fft -u -i 3`, `rss 8`, rows 80-240."""
    for cmd in (["twixread", "-A", str(gre_dat), "k"], ["fft", "-u", "-i", "3", "k", "img"], ["rss", "8", "img", "r"]):
        subprocess.run(["bart", *cmd], cwd=tmp_path, check=True, capture_output=True, timeout=60)
    bart = np.abs(_readcfl(tmp_path / "r")).reshape(320, 160)[80:240]
    rc, err = _run(["reconstruct", str(gre_dat), "--out", str(tmp_path / "out"), "--method", "zero-filled", "--quiet"], capsys)
    assert rc == 0 and not err
    with h5py.File(tmp_path / "out" / "gre.h5") as f:
        ours = f["reconstruction"][()]
        assert ours.shape == (1, 160, 160)
        assert list(f.attrs["pixel_spacing_mm"]) == [1.25, 1.25]
    assert _relative(ours[0], bart) < 1e-5


def test_reader_fields(gre_dat: Path) -> None:
    """gre.dat: 2 coils, 320 x 160 (2x readout oversampling), 200 mm FOV, fully sampled, no
    noise scan; identity kept apart from meta."""
    raw = read_twix(gre_dat)
    acq = raw.acquisition
    assert raw.kspace.shape == (1, 2, 320, 160) and raw.calibration is None
    assert acq.encoded_size == (320, 160, 1) and acq.recon_size == (160, 160, 1)
    assert acq.encoded_fov_mm == (400.0, 200.0, 4.0) and acq.recon_fov_mm == (200.0, 200.0, 4.0)
    assert acq.readout == (0, 320) and acq.acquirable == (0, 160) and acq.readout_oversampling == 2.0
    assert acq.column_mask.all() and not acq.prewhitened and acq.noise_cov is None and not acq.partial_fourier
    assert raw.identity["institution_name"] == "DZNE_Bonn-Venusberg" and "45385" in raw.identity["device_serial_number"]
    assert not any(marker.decode() in json.dumps(raw.meta) for marker in IDENTITY_MARKERS)
    assert raw.meta["protocol_name"] == "gre" and raw.meta["TE_ms"] == 3.0
    assert sniff(gre_dat) == "twix" and image_choices(gre_dat) == [{}]


def test_geometry_is_the_quaternions(gre_dat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """NIfTI affine of gre.dat: 1.25 mm pixels over 200 mm, 4 mm slices, the header's slice normal
    (sNormal, parsed by twixtools) and its MDH position; read / phase from the quaternion by the
    Rodrigues formula (rotation matrix columns phase, read, slice)."""
    import nibabel
    import twixtools

    scan = twixtools.read_twix(str(gre_dat), verbose=False, parse_geometry=False)[-1]
    mdh = scan["mdb"][0].mdh
    w, x, y, z = (float(v) for v in mdh.SliceData.Quaternion)
    angle, axis = 2 * math.acos(w), np.array([x, y, z]) / math.sqrt(x * x + y * y + z * z)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    phase, read, normal = rotation.T
    position = np.array([mdh.SliceData.SlicePos.Sag, mdh.SliceData.SlicePos.Cor, mdh.SliceData.SlicePos.Tra], float)
    prot_normal = np.array([scan["hdr"]["MeasYaps"]["sSliceArray"]["asSlice"][0]["sNormal"].get(a, 0.0) for a in ("dSag", "dCor", "dTra")])
    assert np.allclose(normal, prot_normal, atol=1e-6)
    assert math.degrees(math.acos(normal[2])) == pytest.approx(2.2, abs=0.05)  # the 2.2-degree tilt
    rc, err = _run(["reconstruct", str(gre_dat), "--out", str(tmp_path), "--method", "zero-filled", "--format", "nii", "--quiet"], capsys)
    assert rc == 0 and not err
    affine = nibabel.load(tmp_path / "gre.nii.gz").affine
    flip = np.diag([-1.0, -1.0, 1.0])
    assert np.allclose(affine[:3, 0], flip @ read * 1.25, atol=1e-5)
    assert np.allclose(affine[:3, 1], flip @ phase * 1.25, atol=1e-5)
    assert np.allclose(affine[:3, 2], flip @ normal * 4.0, atol=1e-5)
    assert np.allclose(affine[:3, 3], flip @ (position - 80 * 1.25 * read - 80 * 1.25 * phase), atol=1e-4)
    assert np.linalg.norm(affine[:3, :2], axis=0) * 160 == pytest.approx([200.0, 200.0])


@pytest.mark.parametrize("method", ["sense", "cs"])
def test_classical_methods_run(gre_dat: Path, tmp_path: Path, method: str, capsys: pytest.CaptureFixture[str]) -> None:
    """sense and cs on the real file: finite images close to the zero-filled RSS (fully sampled)."""
    rc, err = _run(["reconstruct", str(gre_dat), "--out", str(tmp_path), "--method", method, "--iters", "5", "--quiet"], capsys)
    assert rc == 0 and not err
    with h5py.File(tmp_path / "gre.h5") as f:
        image = f["reconstruction"][0]
    reference = _zero_filled(read_twix(gre_dat).kspace[0])
    assert np.isfinite(image).all()
    assert np.corrcoef(image.ravel(), reference.ravel())[0, 1] > 0.95


def test_epi_refused_naming_epi(epi_dat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, err = _run(["reconstruct", str(epi_dat), "--out", str(tmp_path), "--quiet"], capsys)
    assert rc == 1 and len(err) == 1
    assert str(epi_dat) in err[0] and "EPI is not supported" in err[0] and "PHASCOR" in err[0]


@pytest.mark.parametrize("fmt", ["h5", "nii", "dcm", "png"])
def test_identity_never_in_outputs(gre_dat: Path, tmp_path: Path, fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    """No institution, address, device serial, UID time stamp or patient field in any output."""
    rc, err = _run(["reconstruct", str(gre_dat), "--out", str(tmp_path / "out"), "--method", "zero-filled", "--format", fmt, "--quiet"], capsys)
    assert rc == 0 and not err
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert len(files) >= 2
    for p in files:
        data = p.read_bytes()
        data = gzip.decompress(data) if p.suffix == ".gz" else data
        assert not [m for m in IDENTITY_MARKERS if m in data], p


def test_keep_identity_keeps_it(gre_dat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _ = _run(["reconstruct", str(gre_dat), "--out", str(tmp_path), "--method", "zero-filled", "--keep-identity", "--quiet"], capsys)
    assert rc == 0
    assert b"DZNE" in (tmp_path / "gre.h5").read_bytes()


def test_convert_to_fastmri(gre_dat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`recon convert gre.dat out.h5`: the fastMRI layout, its target the zero-filled RSS."""
    rc, err = _run(["convert", str(gre_dat), str(tmp_path / "gre_fastmri.h5")], capsys)
    assert rc == 0 and not err
    with h5py.File(tmp_path / "gre_fastmri.h5") as f:
        assert f["kspace"].shape == (1, 2, 320, 160)
        target = f["reconstruction_rss"][0]
        assert f.attrs["acquisition"] == "gre" and "patient_id" not in f.attrs
    assert _relative(target, _zero_filled(read_twix(gre_dat).kspace[0])) < 1e-5
    assert not [m for m in IDENTITY_MARKERS if m in (tmp_path / "gre_fastmri.h5").read_bytes()]


def test_folder_mixing_formats(gre_dat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A folder of a .dat, an ISMRMRD and a fastMRI file: one output each."""
    from _hostile import write_ismrmrd
    from fastmri_files import write_multicoil

    scans = tmp_path / "scans"
    scans.mkdir()
    shutil.copy(gre_dat, scans / "gre.dat")
    write_ismrmrd(scans / "raw.h5")
    write_multicoil(scans / "knee.h5")
    for inputs in ([str(scans)], [str(scans / "*")]):
        out = tmp_path / f"out{len(inputs[0])}"
        rc, err = _run(["reconstruct", *inputs, "--out", str(out), "--method", "zero-filled", "--quiet"], capsys)
        assert rc == 0 and not err
        assert sorted(p.name for p in out.iterdir()) == ["gre.h5", "knee.h5", "raw.h5", "summary.json"]


# ---------------------------------------------------------------------------------------------
# Damaged files: one line, no hang


def _refused(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], words: str) -> None:
    rc, err = _run(["reconstruct", str(path), "--out", str(tmp_path / f"out_{path.stem}"), "--quiet"], capsys)
    assert rc == 1 and len(err) == 1, err
    assert err[0].startswith(f"error: {path}: ") and words in err[0], err[0]
    assert "Traceback" not in err[0]


@pytest.mark.parametrize("keep", [6, 5000, 400_000, 1_000_000, 1_656_800])
def test_truncated_refused(gre_dat: Path, tmp_path: Path, keep: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Cut in the RAID header, the protocol, the data, the ACQEND block (gre.dat's measurement
    ends at byte 1656864, then padding): one line, never twixtools' empty blocks."""
    path = tmp_path / f"cut{keep}.dat"
    path.write_bytes(gre_dat.read_bytes()[:keep])
    _refused(path, tmp_path, capsys, "too short" if keep < 8 else "truncated")


def test_zero_dma_sync_block_refused(gre_dat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A SYNCDATA block of DMA length 0 (twixtools loops forever on it) is refused by the walk."""
    data = bytearray(gre_dat.read_bytes())
    first, length_at = tf.first_readout(data)
    sync = bytearray(192)
    struct.pack_into("<Q", sync, 40, BITS["SYNCDATA"])
    data[first:first] = sync
    struct.pack_into("<Q", data, length_at, struct.unpack_from("<Q", data, length_at)[0] + 192)
    path = tmp_path / "sync.dat"
    path.write_bytes(bytes(data))
    _refused(path, tmp_path, capsys, "DMA length 0")


def test_flipped_acqend_refused(gre_dat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An ACQEND bit on readout 50 (twixtools silently drops lines 50-159) is refused."""
    offsets = walk(gre_dat).measurements[-1].offsets
    data = bytearray(gre_dat.read_bytes())
    data[int(offsets[50]) + 40] |= 1
    path = tmp_path / "acqend.dat"
    path.write_bytes(bytes(data))
    _refused(path, tmp_path, capsys, "ACQEND")


def test_missing_line_refused(gre_dat: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line counter changed to its neighbour's: the protocol has no undersampling, so the hole
    and the double line are refused instead of looking like undersampling."""
    offsets = walk(gre_dat).measurements[-1].offsets
    data = bytearray(gre_dat.read_bytes())
    struct.pack_into("<H", data, int(offsets[70]) + 52, 71)
    path = tmp_path / "line.dat"
    path.write_bytes(bytes(data))
    _refused(path, tmp_path, capsys, "line 71 was acquired 2 times")


def test_guard_kills_a_read_that_never_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The forked, time-limited child (`recon.io.guard`) that every TWIX read passes first."""
    import time

    from recon.io import guard

    path = tmp_path / "x.dat"
    path.write_bytes(b"x")
    monkeypatch.setattr(guard, "READ_FLOOR_S", 0.5)
    start = time.monotonic()
    with pytest.raises(InputError, match="did not finish within 1 s; the file is damaged"):
        guard.finishes(path, lambda: time.sleep(60), "the test", "the file is damaged")
    assert time.monotonic() - start < 10
    guard.finishes(path, lambda: None, "the test", "the file is damaged")


def test_not_twix_named_dat(tmp_path: Path) -> None:
    path = tmp_path / "notes.dat"
    path.write_bytes(b"this is not raw data\n" * 10)
    with pytest.raises(InputError, match="not a Siemens TWIX file"):
        sniff(path)


# ---------------------------------------------------------------------------------------------
# Synthetic files with known answers


@pytest.fixture(scope="module")
def tpl(gre_dat: Path) -> tf.Template:
    return tf.template(gre_dat)


SLICE_YAPS = {
    "sSliceArray.lSize": "3",
    **{f"sSliceArray.asSlice[{s}].{k}": v for s in (1, 2) for k, v in
       (("dThickness", "4.0"), ("dPhaseFOV", "200.0"), ("dReadoutFOV", "200.0"))},
}


def test_interleaved_slices_and_averages(tpl: tf.Template, tmp_path: Path) -> None:
    """3 slices acquired in the order 0, 2, 1 at +5, 0, -5 mm along the normal (slice s scaled by
    s + 1), each line twice (averages d + e and d - e): the images come out sorted by position,
    each the zero-filled gre image times its scale, 5 mm apart."""
    raw0 = read_twix(tpl.path)
    g = raw0.acquisition.geometry[0]
    normal, base = np.asarray(g.slice_dir), np.asarray(g.position)
    offsets = {0: 5.0, 1: -5.0, 2: 0.0}
    yaps = {**SLICE_YAPS, "lAverages": "2"}
    for s, off in offsets.items():
        for axis, value in zip(("dSag", "dCor", "dTra"), base + off * normal):
            yaps[f"sSliceArray.asSlice[{s}].sPosition.{axis}"] = repr(float(value))
        for axis, value in zip(("dSag", "dCor", "dTra"), normal):
            yaps[f"sSliceArray.asSlice[{s}].sNormal.{axis}"] = repr(float(value))
    rng = np.random.default_rng(0)
    lines = []
    for lin in range(160):
        for s in (0, 2, 1):
            extra = 1e-4 * (rng.standard_normal((2, 320)) + 1j * rng.standard_normal((2, 320)))
            for ave, sign in ((0, 1), (1, -1)):
                lines.append(tf.Line(tpl.kspace[:, lin] * (s + 1) + sign * extra, lin, sli=s, ave=ave,
                                     position=tuple(float(v) for v in base + offsets[s] * normal)))
    path = tf.write(tmp_path / "slices.dat", tpl, lines, yaps=yaps)
    raw = read_twix(path)
    reference = _zero_filled(raw0.kspace[0])
    scales = [2.0, 3.0, 1.0]  # positions -5, 0, +5: slices 1, 2, 0
    for image, scale in zip(raw.kspace, scales):
        ours = _zero_filled(image)
        assert np.linalg.norm(ours - scale * reference) / np.linalg.norm(scale * reference) < 1e-5
    steps = np.diff([np.dot(np.asarray(h.position) - base, normal) for h in raw.acquisition.geometry])
    assert steps == pytest.approx([5.0, 5.0], abs=1e-3)


def test_noise_scan_of_an_earlier_measurement_prewhitens(tpl: tf.Template, tmp_path: Path) -> None:
    """A multi-RAID file: measurement 0 a noise adjustment scan (NOISEADJSCAN, dwell 5800 ns),
    measurement 1 gre (dwell 11600 ns). Known answer: k-space whitened with L^-1, L the Cholesky
    factor of cov(noise) x 5800 / 11600 / 0.793."""
    rng = np.random.default_rng(1)
    mix = np.array([[1.0, 0.0], [0.6, 0.8j]]) * 3e-5
    noise = [mix @ (rng.standard_normal((2, 256)) + 1j * rng.standard_normal((2, 256))) for _ in range(8)]
    noise_header = tf.header(tpl, {"sRXSPEC.alDwellTime[0]": "5800"})
    path = tf.write(tmp_path / "noise.dat", tpl, list(tf.gre_lines(tpl)),
                    before=[(noise_header, [tf.Line(n, 0, flags=("NOISEADJSCAN",)) for n in noise])])
    raw = read_twix(path)
    samples = np.concatenate(noise, axis=1).astype(np.complex64).astype(np.complex128)
    samples -= samples.mean(axis=1, keepdims=True)
    cov = samples @ samples.conj().T / (samples.shape[1] - 1) * (5800 / 11600) / RELATIVE_NOISE_BANDWIDTH
    whiten = np.linalg.inv(np.linalg.cholesky(cov))
    expected = np.einsum("cd,dhw->chw", whiten, read_twix(tpl.path).kspace[0])
    assert raw.acquisition.prewhitened and np.allclose(raw.acquisition.noise_cov, cov, rtol=1e-5)
    assert np.linalg.norm(raw.kspace[0] - expected) / np.linalg.norm(expected) < 1e-5


def test_pat_reference_lines_calibrate_only(tpl: tf.Template, tmp_path: Path) -> None:
    """R = 2 with 24 reference lines: PATREFSCAN-only lines (odd, data x 2) are calibration data
    and never image data; PATREFANDIMASCAN lines (even) are both."""
    lines = []
    for lin in range(160):
        ref = 68 <= lin < 92
        if lin % 2 == 0:
            lines.append(tf.Line(tpl.kspace[:, lin], lin, flags=("PATREFSCAN", "PATREFANDIMASCAN") if ref else ()))
        elif ref:
            lines.append(tf.Line(tpl.kspace[:, lin] * 2, lin, flags=("PATREFSCAN",)))
    yaps = {"sPat.lAccelFactPE": "2", "sPat.ucPATMode": "2", "sPat.lRefLinesPE": "24"}
    raw = read_twix(tf.write(tmp_path / "pat.dat", tpl, lines, yaps=yaps))
    acq, full = raw.acquisition, read_twix(tpl.path).kspace[0]
    columns = np.arange(160)
    assert (acq.column_mask == (columns % 2 == 0)).all()
    assert acq.calib == (68, 92)
    assert (acq.calibration_only == ((columns % 2 == 1) & (columns >= 68) & (columns < 92))).all()
    assert np.array_equal(raw.kspace[0][..., columns % 2 == 1], np.zeros_like(raw.kspace[0][..., columns % 2 == 1]))
    assert np.allclose(raw.kspace[0][..., ::2], full[..., ::2])
    assert np.allclose(raw.calibration[0][..., 69:92:2], 2 * full[..., 69:92:2])
    assert np.allclose(raw.calibration[0][..., 68:92:2], full[..., 68:92:2])


def test_partial_fourier_and_asymmetric_echo(tpl: tf.Template, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """6/8 phase partial Fourier (lines 0-39 never acquired) and an asymmetric echo (the first 64
    of 320 samples not acquired: 256 samples, echo at sample 96): the acquirable columns and the
    readout extent say so, and `--partial-fourier zero` gives the zero-filled image."""
    lines = [tf.Line(tpl.kspace[:, lin, 64:], lin, centre_col=96) for lin in range(40, 160)]
    path = tf.write(tmp_path / "pf.dat", tpl, lines, yaps={"sKSpace.ucPhasePartialFourier": "4", "sKSpace.ucAsymmetricEchoMode": "2"})
    raw = read_twix(path)
    assert raw.acquisition.acquirable == (40, 160) and raw.acquisition.readout == (64, 320) and raw.acquisition.partial_fourier
    known = read_twix(tpl.path).kspace[0].copy()
    known[..., :40] = 0
    known[:, :64] = 0
    assert np.allclose(raw.kspace[0], known)
    rc, err = _run(["reconstruct", str(path), "--out", str(tmp_path / "out"), "--method", "zero-filled",
                    "--partial-fourier", "zero", "--quiet"], capsys)
    assert rc == 0 and not err
    with h5py.File(tmp_path / "out" / "pf.h5") as f:
        assert _relative(f["reconstruction"][0], _zero_filled(known)) < 1e-5


def test_oblique_rotated_slice(tpl: tf.Template, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A slice rotated 40 degrees about (1, 2, 2) / 3 at (10, -20, 30) mm: the NIfTI affine is the
    one derived by hand from the axis and angle (rotation matrix columns phase, read, slice)."""
    angle, axis = math.radians(40.0), np.array([1.0, 2.0, 2.0]) / 3.0
    quaternion = (math.cos(angle / 2), *(math.sin(angle / 2) * axis))
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    rotation = np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * k @ k
    phase, read, normal = rotation.T
    position = np.array([10.0, -20.0, 30.0])
    yaps = {f"sSliceArray.asSlice[0].sPosition.{a}": repr(float(v)) for a, v in zip(("dSag", "dCor", "dTra"), position)}
    yaps |= {f"sSliceArray.asSlice[0].sNormal.{a}": repr(float(v)) for a, v in zip(("dSag", "dCor", "dTra"), normal)}
    lines = [tf.Line(tpl.kspace[:, lin], lin, position=tuple(position), quaternion=quaternion) for lin in range(160)]
    path = tf.write(tmp_path / "oblique.dat", tpl, lines, yaps=yaps)
    rc, err = _run(["reconstruct", str(path), "--out", str(tmp_path), "--method", "zero-filled", "--format", "nii", "--quiet"], capsys)
    assert rc == 0 and not err
    import nibabel

    affine = nibabel.load(tmp_path / "oblique.nii.gz").affine
    flip = np.diag([-1.0, -1.0, 1.0])
    expected = np.column_stack([flip @ read * 1.25, flip @ phase * 1.25, flip @ normal * 4.0,
                                flip @ (position - 100 * read - 100 * phase)])
    assert np.allclose(affine[:3], expected, atol=1e-4)
    wrong = {**yaps, "sSliceArray.asSlice[0].sNormal.dSag": "0.0", "sSliceArray.asSlice[0].sNormal.dCor": "0.0",
             "sSliceArray.asSlice[0].sNormal.dTra": "1.0"}
    with pytest.raises(InputError, match="degrees from the protocol's sSliceArray normal"):
        read_twix(tf.write(tmp_path / "wrong.dat", tpl, lines, yaps=wrong))


def test_repetitions_are_separate_images(tpl: tf.Template, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two repetitions (the second x 2): two outputs, `_rep0` and `_rep1`, the second twice the first."""
    lines = [*tf.gre_lines(tpl, rep=0), *tf.gre_lines(tpl, 2.0, rep=1)]
    path = tf.write(tmp_path / "reps.dat", tpl, lines, yaps={"lRepetitions": "1"})
    assert image_choices(path) == [{"repetition": 0}, {"repetition": 1}]
    rc, err = _run(["reconstruct", str(path), "--out", str(tmp_path / "out"), "--method", "zero-filled", "--quiet"], capsys)
    assert rc == 0 and not err
    images = []
    for name in ("reps_rep0.h5", "reps_rep1.h5"):
        with h5py.File(tmp_path / "out" / name) as f:
            images.append(f["reconstruction"][0])
    assert np.allclose(images[1], 2 * images[0], rtol=1e-4)
    with pytest.raises(InputError, match="repetition 1 of the protocol's 2"):
        read_twix(tf.write(tmp_path / "short.dat", tpl, list(tf.gre_lines(tpl)), yaps={"lRepetitions": "1"}))


def test_vb_layout_reads_like_vd(tpl: tf.Template, tmp_path: Path) -> None:
    """A VB file of the same lines (synthetic: no real VB sample is available) grids to the same
    k-space and geometry as gre.dat itself."""
    vb = read_twix(tf.write_vb(tmp_path / "vb.dat", tpl))
    vd = read_twix(tpl.path)
    assert vb.meta["format"] == "Siemens TWIX VB"
    assert np.array_equal(vb.kspace, vd.kspace) and vb.acquisition.geometry == vd.acquisition.geometry


def test_open_scan_and_memory_limit(gre_dat: Path) -> None:
    """The one front door serves TWIX like ISMRMRD; --max-memory is honoured before reading."""
    with open_scan(gre_dat) as scan:
        assert scan.format == "twix" and scan.num_slices == 1 and scan.shape == (2, 320, 160)
        assert scan.target().shape == (1, 160, 160) and "patient_name" in scan.identity
    with pytest.raises(InputError, match="--max-memory"):
        read_twix(gre_dat, max_memory=1 << 20)
