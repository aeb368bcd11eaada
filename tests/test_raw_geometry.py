"""Raw ISMRMRD scans with known truth, through `recon reconstruct` to NIfTI / DICOM / PNG.

Every file is written here with the `ismrmrd` package from an object defined on the recon pixel
grid over the encoded FOV, so the fully sampled truth is known: the RSS of the coil images of the
encoded k-space, zero-padded to the recon resolution and centre-cropped to reconSpace. Each case
checks the image against that truth (NRMSE bound) and the written geometry against the header,
read back with nibabel and pydicom: spacing = recon FOV / recon matrix (to 1e-4 mm), the extent
(pixels x spacing) = the recon FOV, the orientation and the slice positions.

Cases: 75% phase resolution (and encoded y = 64 in a reconSpace y = 80), a readout shorter
than the recon matrix, 2x readout oversampling (also from Debian's generator; the solvers on the
readout FOV), an asymmetric ACS block, a separate reference scan with another contrast (second
`<encoding>`, and calibration-only lines; through every method), per-slice masks, 2 repetitions,
unsorted and unevenly spaced slices, radiological PNG orientation, fastMRI header spacing.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest

from recon.cli import main
from recon.core import center_crop, fft2c, ifft2c, rss
from recon.io.ismrmrd import read_ismrmrd

nib = pytest.importorskip("nibabel")
pydicom = pytest.importorskip("pydicom")

C = 4
READ = np.array([np.cos(0.3), np.sin(0.3), 0.0])
PHASE = np.array([-np.sin(0.3) * np.cos(0.2), np.cos(0.3) * np.cos(0.2), np.sin(0.2)])
POS0 = np.array([10.0, -20.0, 30.0])
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@dataclass
class Scan:
    """What a test file holds. Imaging lines are encode steps `0..enc_y-1` of the first encoding."""

    recon: tuple[int, int] = (32, 40)  # reconSpace matrix (x = readout, y = phase)
    recon_fov: tuple[float, float, float] = (176.0, 230.0, 4.0)  # 5.5 x 5.75 mm pixels
    oversampling: int = 1  # readout: encoded x = oversampling * recon x over oversampling * FOV x
    enc_y: int | None = None  # encoded phase lines (None = recon y); same FOV y as reconSpace
    enc_x: int | None = None  # encoded readout samples (None = oversampling * recon x); same FOV
    offsets: tuple[float, ...] = (0.0,)  # slice positions along the normal, in slice-index order
    repetitions: tuple[float, ...] = (1.0,)  # object scale per repetition
    lines: np.ndarray | None = None  # sampled encode steps (bool (enc_y,) or per slice (S, enc_y)); None = all
    acs: tuple[int, int] | None = None  # flagged PARALLEL_CALIBRATION_AND_IMAGING steps [a, b)
    cal_only: tuple[int, int] | None = None  # PARALLEL_CALIBRATION-only steps [a, b), other contrast
    reference: tuple[int, int] | None = None  # second <encoding>: steps [a, b) of it, other contrast
    ref_gain: float = 1.0  # the other contrast's scale ...
    ref_phase: float = 0.0  # ... and phase modulation `exp(i ref_phase y)` (y in [-1, 1) over the FOV)
    read_dir: np.ndarray = field(default_factory=lambda: READ)
    phase_dir: np.ndarray = field(default_factory=lambda: PHASE)

    @property
    def grid(self) -> tuple[int, int]:
        """The image grid at the recon pixel size over the encoded FOV."""
        return self.recon[0] * self.oversampling, self.recon[1]

    @property
    def encoded(self) -> tuple[int, int]:
        return self.enc_x or self.recon[0] * self.oversampling, self.enc_y or self.recon[1]

    @property
    def slice_dir(self) -> np.ndarray:
        return np.cross(self.read_dir, self.phase_dir)

    @property
    def spacing(self) -> tuple[float, float]:
        return self.recon_fov[0] / self.recon[0], self.recon_fov[1] / self.recon[1]


def _object(scan: Scan, s: int, contrast: int = 0) -> np.ndarray:
    """(X, Y) complex object on the grid, inside the recon FOV; a bright marker in the low-read,
    low-phase quadrant; slice `s` scaled by `1 + 0.25 s` so slices can be told apart."""
    gx, gy = scan.grid
    x = (np.arange(gx) - gx // 2)[:, None] * scan.spacing[0] / (scan.recon_fov[0] / 2)
    y = (np.arange(gy) - gy // 2)[None, :] * scan.spacing[1] / (scan.recon_fov[1] / 2)
    body = 1.0 / (1.0 + np.exp(((x / 0.7) ** 2 + (y / 0.6) ** 2 - 1.0) * 12.0))
    inner = 1.0 / (1.0 + np.exp(((x / 0.25 - 0.4) ** 2 + (y / 0.3) ** 2 - 1.0) * 8.0))
    marker = np.exp(-(((x + 0.4) / 0.12) ** 2 + ((y + 0.35) / 0.12) ** 2))
    levels = (1.0, -0.5, 1.5) if contrast == 0 else (0.4, 0.8, 0.2)  # another contrast: other weights
    image = levels[0] * body + levels[1] * inner + levels[2] * marker
    if contrast:
        image = scan.ref_gain * image * np.exp(1j * scan.ref_phase * y)
    return (1.0 + 0.25 * s) * image * np.exp(1j * (0.6 * x + 0.3 * y))


def _maps(scan: Scan) -> np.ndarray:
    """(C, X, Y) smooth coil sensitivities around the FOV."""
    gx, gy = scan.grid
    x = np.linspace(-1, 1, gx)[:, None] * scan.oversampling
    y = np.linspace(-1, 1, gy)[None, :]
    centers = [(-1.2, -1.2), (1.2, -1.2), (-1.2, 1.2), (1.2, 1.2)]
    return np.stack([np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 2.0) * np.exp(1j * c) for c, (cx, cy) in enumerate(centers)])


def _kspace(scan: Scan, s: int, scale: float = 1.0, contrast: int = 0) -> np.ndarray:
    """(C, ex, ey) encoded k-space: the grid's k-space centre-cropped to the encoded matrix."""
    full = fft2c(scale * _object(scan, s, contrast)[None] * _maps(scan))
    ex, ey = scan.encoded
    gx, gy = scan.grid
    return full[:, gx // 2 - ex // 2 : gx // 2 - ex // 2 + ex, gy // 2 - ey // 2 : gy // 2 - ey // 2 + ey]


def truth(scan: Scan, s: int, scale: float = 1.0) -> np.ndarray:
    """(rx, ry) fully sampled truth: encoded k-space zero-padded to the grid, RSS, reconSpace crop."""
    k = _kspace(scan, s, scale)
    gx, gy = scan.grid
    ex, ey = k.shape[-2:]
    padded = np.zeros((C, gx, gy), complex)
    padded[:, gx // 2 - ex // 2 : gx // 2 - ex // 2 + ex, gy // 2 - ey // 2 : gy // 2 - ey // 2 + ey] = k
    return center_crop(rss(ifft2c(padded), 0), scan.recon)


def _space(size: tuple[int, int], fov: tuple[float, float, float]) -> str:
    return (f"<matrixSize><x>{size[0]}</x><y>{size[1]}</y><z>1</z></matrixSize>"
            f"<fieldOfView_mm><x>{fov[0]}</x><y>{fov[1]}</y><z>{fov[2]}</z></fieldOfView_mm>")


def _encoding(scan: Scan, lines: int, center: int) -> str:
    ex = scan.encoded[0]
    enc_fov = (scan.recon_fov[0] * scan.oversampling, scan.recon_fov[1], scan.recon_fov[2])
    return (f"<encoding><encodedSpace>{_space((ex, lines), enc_fov)}</encodedSpace>"
            f"<reconSpace>{_space(scan.recon, scan.recon_fov)}</reconSpace>"
            f"<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{lines - 1}</maximum>"
            f"<center>{center}</center></kspace_encoding_step_1></encodingLimits>"
            "<trajectory>cartesian</trajectory></encoding>")


def write_scan(path: Path, scan: Scan) -> Path:
    """Write `scan` as an ISMRMRD file (noise-free, so the truth is exact)."""
    ex, ey = scan.encoded
    ref = "" if scan.reference is None else _encoding(scan, ey, ey // 2)
    xml = ('<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
           "<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>"
           f"{_encoding(scan, ey, ey // 2)}{ref}</ismrmrdHeader>")
    lines = np.ones(ey, bool) if scan.lines is None else np.asarray(scan.lines, bool)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(xml.encode())

        def put(data: np.ndarray, step: int, s: int, rep: int, flag: int | None = None, ref: bool = False) -> None:
            acq = ismrmrd.Acquisition.from_array(
                np.ascontiguousarray(data).astype(np.complex64), center_sample=ex // 2,
                position=tuple(POS0 + scan.offsets[s] * scan.slice_dir), read_dir=tuple(scan.read_dir),
                phase_dir=tuple(scan.phase_dir), slice_dir=tuple(scan.slice_dir),
            )
            acq.idx.kspace_encode_step_1, acq.idx.slice, acq.idx.repetition = step, s, rep
            acq.encoding_space_ref = int(ref)
            if flag is not None:
                acq.set_flag(flag)
            dset.append_acquisition(acq)

        for rep, scale in enumerate(scan.repetitions):
            for s in range(len(scan.offsets)):
                k = _kspace(scan, s, scale)
                other = _kspace(scan, s, scale, contrast=1)
                sampled = lines[s] if lines.ndim == 2 else lines
                for e in range(ey):
                    in_acs = scan.acs is not None and scan.acs[0] <= e < scan.acs[1]
                    if sampled[e] or in_acs:
                        put(k[:, :, e], e, s, rep, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING if in_acs else None)
                    if scan.cal_only is not None and scan.cal_only[0] <= e < scan.cal_only[1]:
                        put(other[:, :, e], e, s, rep, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)
                if scan.reference is not None and rep == 0:
                    for e in range(*scan.reference):
                        put(other[:, :, e], e, s, 0, ref=True)
    return path


def reconstruct(src: Path, out: Path, fmt: str, method: str = "zero-filled") -> int:
    return main(["reconstruct", str(src), "--out", str(out), "--format", fmt, "--method", method, "--quiet"])


def nrmse(image: np.ndarray, ref: np.ndarray) -> float:
    return float(np.linalg.norm(image - ref) / np.linalg.norm(ref))


def sorted_offsets(scan: Scan) -> list[float]:
    return sorted(scan.offsets)


def check_nifti(path: Path, scan: Scan) -> np.ndarray:
    """Geometry of a NIfTI file against the header; returns its (rx, ry, S) data."""
    img = nib.load(str(path))
    data = np.asarray(img.dataobj, dtype=np.float64)
    rx, ry = scan.recon
    assert data.shape[:2] == (rx, ry)
    zooms = img.header.get_zooms()
    np.testing.assert_allclose(zooms[:2], scan.spacing, atol=1e-4)
    np.testing.assert_allclose(np.array(data.shape[:2]) * np.array(zooms[:2]), scan.recon_fov[:2], atol=1e-4)
    affine = img.affine
    np.testing.assert_allclose(affine[:3, 0], LPS_TO_RAS @ scan.read_dir * scan.spacing[0], atol=1e-4)
    np.testing.assert_allclose(affine[:3, 1], LPS_TO_RAS @ scan.phase_dir * scan.spacing[1], atol=1e-4)
    for k, offset in enumerate(sorted_offsets(scan)):
        centre = affine @ np.array([rx // 2, ry // 2, k, 1.0])
        np.testing.assert_allclose(centre[:3], LPS_TO_RAS @ (POS0 + offset * scan.slice_dir), atol=1e-4)
    return data.reshape(rx, ry, -1)


def check_dicom(folder: Path, scan: Scan) -> list[np.ndarray]:
    """Geometry of a DICOM series against the header; returns the slices' pixel values in order."""
    files = sorted(folder.glob("*.dcm"))
    assert len(files) == len(scan.offsets)
    images = []
    for k, (f, offset) in enumerate(zip(files, sorted_offsets(scan))):
        ds = pydicom.dcmread(f)
        assert (ds.Rows, ds.Columns) == scan.recon and int(ds.InstanceNumber) == k + 1
        spacing = [float(v) for v in ds.PixelSpacing]
        np.testing.assert_allclose(spacing, scan.spacing, atol=1e-4)
        np.testing.assert_allclose([ds.Rows * spacing[0], ds.Columns * spacing[1]], scan.recon_fov[:2], atol=1e-4)
        np.testing.assert_allclose([float(v) for v in ds.ImageOrientationPatient], [*scan.phase_dir, *scan.read_dir], atol=1e-5)
        corner = np.array([float(v) for v in ds.ImagePositionPatient])
        centre = corner + (scan.recon[0] // 2) * spacing[0] * scan.read_dir + (scan.recon[1] // 2) * spacing[1] * scan.phase_dir
        np.testing.assert_allclose(centre, POS0 + offset * scan.slice_dir, atol=1e-3)
        np.testing.assert_allclose(float(ds.SliceThickness), scan.recon_fov[2], atol=1e-4)
        images.append(ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return images


def truths(scan: Scan, scale: float = 1.0) -> list[np.ndarray]:
    """Truth per output slice (outputs are in position order)."""
    order = np.argsort(scan.offsets, kind="stable")
    return [truth(scan, int(s), scale) for s in order]


@pytest.mark.parametrize(
    ("recon", "fov", "enc_y"),
    [((32, 40), (176.0, 230.0, 4.0), 30), ((32, 80), (176.0, 375.0, 4.0), 64)],
    ids=["75%", "64-of-80"],
)
def test_phase_resolution_is_zero_padded_to_the_recon_matrix(tmp_path: Path, recon, fov, enc_y) -> None:
    """Encoded y < reconSpace y over the same FOV: 80 columns at 375 / 80 = 4.6875 mm, not 64."""
    scan = Scan(recon=recon, recon_fov=fov, enc_y=enc_y, offsets=(0.0, 4.0))
    src = write_scan(tmp_path / "pres.h5", scan)
    raw = read_ismrmrd(src)
    assert raw.kspace.shape[-1] == recon[1] and raw.acquisition.width == recon[1]
    left = recon[1] // 2 - enc_y // 2
    assert raw.acquisition.acquirable == (left, left + enc_y)  # padded columns are not acquirable
    assert reconstruct(src, tmp_path / "nii", "nii") == 0
    data = check_nifti(tmp_path / "nii" / "pres.nii.gz", scan)
    assert data.shape[1] == recon[1] and scan.spacing[1] == pytest.approx(fov[1] / recon[1])
    for k, ref in enumerate(truths(scan)):
        assert nrmse(data[..., k], ref) < 1e-5
    assert reconstruct(src, tmp_path / "dcm", "dcm") == 0
    for image, ref in zip(check_dicom(tmp_path / "dcm" / "pres_dicom", scan), truths(scan)):
        assert nrmse(image, ref) < 1e-3  # 16-bit quantisation


def test_readout_oversampling_2x(tmp_path: Path) -> None:
    """2x readout oversampling: the recon FOV's 32 rows, at the recon spacing; the hybrid-space
    crop leaves the image inside the FOV as it is on the full grid."""
    scan = Scan(oversampling=2, offsets=(0.0,))
    src = write_scan(tmp_path / "os.h5", scan)
    raw = read_ismrmrd(src)
    assert raw.kspace.shape[-2] == 64 and raw.acquisition.readout_oversampling == pytest.approx(2.0)
    cropped = read_ismrmrd(src, remove_oversampling=True)
    assert cropped.kspace.shape[-2] == 32 and cropped.acquisition.readout_oversampling == 1.0
    np.testing.assert_allclose(ifft2c(cropped.kspace), ifft2c(raw.kspace)[:, :, 16:48], atol=1e-5)
    assert reconstruct(src, tmp_path / "nii", "nii") == 0
    data = check_nifti(tmp_path / "nii" / "os.nii.gz", scan)
    assert nrmse(data[..., 0], truth(scan, 0)) < 1e-5
    assert reconstruct(src, tmp_path / "dcm", "dcm") == 0
    assert nrmse(check_dicom(tmp_path / "dcm" / "os_dicom", scan)[0], truth(scan, 0)) < 1e-3


@pytest.mark.parametrize(("name", "bound"), [("sense", 2e-3), ("cs", 0.02), ("cs-tv", 0.02)])
def test_oversampling_removal_keeps_the_image_inside_the_fov(tmp_path: Path, name: str, bound: float) -> None:
    """SENSE / CS / CS-TV with `readout_crop` solve on the readout FOV (32 of 64 rows, ESPIRiT
    maps from the stored grid; the default of cs and cs-tv): the image is close to the full
    grid's, and both match the truth."""
    import torch

    from recon.io import RawScan
    from recon.pipeline import build_method, run_method

    lines = np.zeros(40, bool)
    lines[::2] = True
    scan = Scan(oversampling=2, lines=lines, acs=(14, 26))
    raw = read_ismrmrd(write_scan(tmp_path / "os.h5", scan))
    data = RawScan(raw.kspace, raw.acquisition, raw.calibration)
    method = build_method(name, {"device": "cpu"})
    solver = method.method
    default = solver.readout_crop
    assert default == (name != "sense")
    seen: list[tuple[int, ...]] = []
    solve = solver.solve
    solver.solve = lambda k, *rest: seen.append(tuple(k.shape)) or solve(k, *rest)  # type: ignore[method-assign]
    try:
        solver.readout_crop = False
        native = run_method(method, data, torch.device("cpu"))[0]
        solver.readout_crop = True
        cropped = run_method(method, data, torch.device("cpu"))[0]
    finally:
        solver.readout_crop = default
        del solver.solve
    assert seen == [(1, C, 64, 40), (1, C, 32, 40)]
    ref = truth(scan, 0)
    assert nrmse(cropped, native) < bound
    assert nrmse(cropped, ref) < 0.05 and nrmse(native, ref) < 0.05


def test_hybrid_sense_is_unchanged_by_the_readout_crop(tmp_path: Path) -> None:
    """`sense --hybrid` (one CG per readout row) solves on the readout FOV by default, and its
    image there is the stored grid's to float precision: the rows are independent problems."""
    import torch

    from recon.io import RawScan
    from recon.pipeline import build_method, run_method

    lines = np.zeros(40, bool)
    lines[::2] = True
    scan = Scan(oversampling=2, lines=lines, acs=(14, 26))
    raw = read_ismrmrd(write_scan(tmp_path / "os.h5", scan))
    data = RawScan(raw.kspace, raw.acquisition, raw.calibration)
    method = build_method("sense", {"device": "cpu", "hybrid": True, "lam": 1e-3})
    solver = method.method
    assert solver.readout_crop
    try:
        cropped = run_method(method, data, torch.device("cpu"))[0]
        solver.readout_crop = False
        native = run_method(method, data, torch.device("cpu"))[0]
    finally:
        solver.readout_crop = True
    assert nrmse(cropped, native) < 1e-5


GENERATOR = shutil.which("ismrmrd_generate_cartesian_shepp_logan")


@pytest.mark.skipif(GENERATOR is None, reason="ismrmrd_generate_cartesian_shepp_logan (Debian ismrmrd-tools) not installed")
def test_independent_generator_oversampled_geometry(tmp_path: Path) -> None:
    """Debian's generator (2x readout oversampling, its own header): NIfTI extent = its recon FOV."""
    src = tmp_path / "in" / "shepp.h5"
    src.parent.mkdir()
    subprocess.run([GENERATOR, "-m", "48", "-c", "4", "-a", "1", "-n", "0", "-o", str(src)], check=True, capture_output=True)
    raw = read_ismrmrd(src)
    fov = raw.acquisition.recon_fov_mm
    with h5py.File(src, "r") as f:
        phantom = np.abs(f["dataset/phantom"][()].view(np.complex64)[0].T)  # stored (y, x)
        csm = np.swapaxes(f["dataset/csm"][()].view(np.complex64)[0], -1, -2)
    expected = phantom * np.sqrt((np.abs(csm) ** 2).sum(0))  # RSS of the coil images
    assert raw.kspace.shape[-2:] == (96, 48) and raw.acquisition.readout_oversampling == pytest.approx(2.0)
    assert reconstruct(src, tmp_path / "nii", "nii") == 0
    img = nib.load(str(tmp_path / "nii" / "shepp.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float64)[..., 0]
    assert data.shape == (48, 48)
    np.testing.assert_allclose(np.array(data.shape) * np.array(img.header.get_zooms()[:2]), fov[:2], atol=1e-4)
    assert nrmse(data, expected) < 1e-3


def test_asymmetric_acs_block(tmp_path: Path) -> None:
    """R = 2 with a fully sampled block [12, 28) off the centre 20: the calibration region is the
    block actually acquired, and SENSE with ESPIRiT maps from it matches the truth."""
    lines = np.zeros(40, bool)
    lines[::2] = True
    lines[12:28] = True
    scan = Scan(lines=lines, acs=(12, 28), offsets=(0.0, 4.0))
    src = write_scan(tmp_path / "acs.h5", scan)
    assert read_ismrmrd(src).acquisition.calib == (12, 28)
    assert reconstruct(src, tmp_path / "nii", "nii", "sense") == 0
    data = check_nifti(tmp_path / "nii" / "acs.nii.gz", scan)
    refs = truths(scan)
    zero_filled = [center_crop(rss(ifft2c(read_ismrmrd(src).kspace[k]), 0), scan.recon) for k in range(2)]
    for k, ref in enumerate(refs):
        assert nrmse(data[..., k], ref) < 0.01  # measured 0.0033 (zero-filled: 0.028)
        assert nrmse(data[..., k], ref) < 0.5 * nrmse(zero_filled[k], ref)


@pytest.mark.parametrize("kind", ["second-encoding", "calibration-lines"])
def test_reference_scan_with_another_contrast_only_calibrates(tmp_path: Path, kind: str) -> None:
    """A reference scan of another contrast (its own <encoding>, or PARALLEL_CALIBRATION lines)
    feeds ESPIRiT only: the image data hold the imaging lines alone, and SENSE reaches the
    truth of the imaging contrast."""
    lines = np.zeros(40, bool)
    lines[::2] = True
    block = (12, 28)
    scan = Scan(lines=lines, offsets=(0.0, 4.0), **({"reference": block} if kind == "second-encoding" else {"cal_only": block}))
    src = write_scan(tmp_path / "ref.h5", scan)
    raw = read_ismrmrd(src)
    assert raw.acquisition.calib == block and raw.calibration is not None
    np.testing.assert_array_equal(raw.acquisition.column_mask, lines)
    for s in range(2):  # image data: the imaging contrast's lines only, nothing averaged in
        expected = np.where(lines, _kspace(scan, s), 0)
        np.testing.assert_allclose(raw.kspace[s], expected, atol=1e-5)
        np.testing.assert_allclose(raw.calibration[s][..., block[0] : block[1]],
                                   _kspace(scan, s, contrast=1)[..., block[0] : block[1]], atol=1e-5)
    assert reconstruct(src, tmp_path / "dcm", "dcm", "sense") == 0
    for image, ref in zip(check_dicom(tmp_path / "dcm" / "ref_dicom", scan), truths(scan)):
        assert nrmse(image, ref) < 0.03  # measured 0.011; averaging the reference in gives 0.58


def test_reference_scan_on_another_k_space_step_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scan = Scan(reference=(12, 28))
    src = write_scan(tmp_path / "ref.h5", scan)
    with h5py.File(src, "r+") as f:
        xml = f["dataset/xml"][0]
        xml = xml.decode() if isinstance(xml, bytes) else str(xml)
        last = xml.rindex("<fieldOfView_mm><x>176.0</x><y>230.0</y>", 0, xml.rindex("<reconSpace>"))
        f["dataset/xml"][0] = (xml[:last] + "<fieldOfView_mm><x>176.0</x><y>200.0</y>" + xml[last + 40 :]).encode()
    assert reconstruct(src, tmp_path / "out", "nii") != 0
    assert "reference scan (encoding 1) has encoded FOV 176x200 mm" in capsys.readouterr().err


def test_two_repetitions_are_separate_outputs(tmp_path: Path) -> None:
    """Each repetition is its own output, its index in the file name and the metadata (NIfTI
    description, DICOM series description, fastMRI-layout attribute); `--repetition N` picks one.
    Averages are averaged (`tests/test_ismrmrd.py`)."""
    scan = Scan(repetitions=(1.0, 1.5), offsets=(0.0, 4.0))
    src = write_scan(tmp_path / "reps.h5", scan)
    assert reconstruct(src, tmp_path / "nii", "nii") == 0
    for rep, scale in enumerate(scan.repetitions):
        path = tmp_path / "nii" / f"reps_rep{rep}.nii.gz"
        data = check_nifti(path, scan)
        for k, ref in enumerate(truths(scan, scale)):
            assert nrmse(data[..., k], ref) < 1e-5
        assert nib.load(str(path)).header["descrip"].tobytes().rstrip(b"\0").decode() == f"zero-filled rep{rep}"
    assert reconstruct(src, tmp_path / "dcm", "dcm") == 0
    for rep in range(2):
        ds = pydicom.dcmread(sorted((tmp_path / "dcm" / f"reps_rep{rep}_dicom").glob("*.dcm"))[0])
        assert ds.SeriesDescription == f"zero-filled rep{rep}"
    assert main(["reconstruct", str(src), "--out", str(tmp_path / "h5"), "--format", "h5", "--repetition", "1", "--quiet"]) == 0
    assert [p.name for p in (tmp_path / "h5").glob("*.h5")] == ["reps_rep1.h5"]
    with h5py.File(tmp_path / "h5" / "reps_rep1.h5", "r") as f:
        assert int(f.attrs["repetition"]) == 1
        for k, ref in enumerate(truths(scan, 1.5)):
            assert nrmse(f["reconstruction"][k], ref) < 1e-5


def test_unsorted_slices_are_written_in_position_order(tmp_path: Path) -> None:
    scan = Scan(offsets=(4.0, -4.0, 8.0, 0.0))  # slice indices 0..3, positions out of order
    src = write_scan(tmp_path / "unsorted.h5", scan)
    assert reconstruct(src, tmp_path / "nii", "nii") == 0
    data = check_nifti(tmp_path / "nii" / "unsorted.nii.gz", scan)
    for k, ref in enumerate(truths(scan)):  # slice-index scale 1 + 0.25 s tells the order
        assert nrmse(data[..., k], ref) < 1e-5
    assert reconstruct(src, tmp_path / "dcm", "dcm") == 0
    for image, ref in zip(check_dicom(tmp_path / "dcm" / "unsorted_dicom", scan), truths(scan)):
        assert nrmse(image, ref) < 1e-3


def test_uneven_slices_refused_for_nifti_written_per_slice_as_dicom(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scan = Scan(offsets=(0.0, 4.0, 10.0))
    src = write_scan(tmp_path / "uneven.h5", scan)
    assert reconstruct(src, tmp_path / "nii", "nii") != 0
    err = capsys.readouterr().err
    assert "uneven.h5" in err and "unevenly spaced" in err and "dcm" in err
    assert not (tmp_path / "nii" / "uneven.nii.gz").exists()
    assert reconstruct(src, tmp_path / "dcm", "dcm") == 0
    for image, ref in zip(check_dicom(tmp_path / "dcm" / "uneven_dicom", scan), truths(scan)):
        assert nrmse(image, ref) < 1e-3


def test_png_in_radiological_orientation(tmp_path: Path) -> None:
    """Axial slice, readout towards the patient's right, phase towards anterior: the marker at
    low read / low phase indices sits at the patient's left-posterior, so on screen at the
    right (patient left) and bottom (posterior)."""
    from PIL import Image

    scan = Scan(read_dir=np.array([-1.0, 0.0, 0.0]), phase_dir=np.array([0.0, -1.0, 0.0]))
    assert np.allclose(scan.slice_dir, [0.0, 0.0, 1.0])
    src = write_scan(tmp_path / "ax.h5", scan)
    assert reconstruct(src, tmp_path / "png", "png") == 0
    shown = np.asarray(Image.open(tmp_path / "png" / "ax.png"), dtype=float)
    assert shown.shape == scan.recon[::-1]  # transposed: rows along the phase (anterior-posterior) axis
    expected = truth(scan, 0).T[::-1, ::-1]
    assert np.corrcoef(shown.ravel(), expected.ravel())[0, 1] > 0.99
    h, w = shown.shape
    row, col = np.unravel_index(np.argmax(shown), shown.shape)
    assert row > h // 2 and col > w // 2


def test_fastmri_spacing_from_header(tmp_path: Path) -> None:
    """fastMRI small preset: reconSpace 160 x 160 over 140 mm, so 0.875 mm pixels (not 0.5)."""
    from recon.io.fastmri import write_fastmri_volume
    from recon.simulate import PRESETS, simulate_volume

    vol = simulate_volume(0, num_slices=2, num_coils=2, config=PRESETS["small"], keep_maps=False)
    src = tmp_path / "in" / "knee.h5"
    src.parent.mkdir()
    write_fastmri_volume(src, vol.kspace, vol.header_xml, vol.target, vol.attrs)
    assert reconstruct(src, tmp_path / "nii", "nii") == 0
    img = nib.load(str(tmp_path / "nii" / "knee.nii.gz"))
    assert img.shape[:2] == (160, 160)
    np.testing.assert_allclose(img.header.get_zooms(), (0.875, 0.875, 3.0), atol=1e-4)
    data = np.asarray(img.dataobj, dtype=np.float64)
    assert nrmse(data[..., 0], vol.target[0]) < 1e-5
    assert reconstruct(src, tmp_path / "h5", "h5") == 0  # the submission layout is fastMRI's
    with h5py.File(tmp_path / "h5" / "knee.h5", "r") as f:
        np.testing.assert_allclose(f["reconstruction"][()], vol.target, rtol=1e-5, atol=1e-6 * float(vol.target.max()))



@pytest.mark.parametrize("lib", ["numpy", "torch"])
def test_crop_readout(lib: str) -> None:
    """The hybrid-space crop keeps the centre image rows exactly."""
    import torch

    from recon.core import crop_readout

    rng = np.random.default_rng(1)
    k = rng.standard_normal((2, 3, 20, 9)) + 1j * rng.standard_normal((2, 3, 20, 9))
    x = k if lib == "numpy" else torch.from_numpy(k)
    cropped = crop_readout(x, 11)
    image = np.asarray(ifft2c(cropped))
    np.testing.assert_allclose(image, np.asarray(ifft2c(x))[..., 4:15, :], atol=1e-12)
    with pytest.raises(ValueError):
        crop_readout(x, 21)


def test_display_transform_per_plane() -> None:
    """Coronal: patient left on the right, inferior down; sagittal: posterior on the right."""
    from recon.geometry import display_transform, make_geometry, stack_problem

    def geo(read, phase, pos=(0.0, 0.0, 0.0)):
        return make_geometry(np.array(pos), np.array(read, float), np.array(phase, float), np.cross(read, phase), (1.0, 1.0, 1.0), (4, 4))

    assert display_transform(geo((0, 0, -1), (1, 0, 0))) == (False, False, False)  # coronal: read down = inferior
    assert display_transform(geo((0, 0, 1), (-1, 0, 0))) == (False, True, True)
    assert display_transform(geo((0, 1, 0), (0, 0, -1))) == (True, False, False)  # sagittal, transposed
    assert display_transform(geo((1, 0, 0), (0, 1, 0))) == (True, False, False)  # axial, read left-right
    even = [geo((1, 0, 0), (0, 1, 0), (0, 0, z)) for z in (0.0, 3.0, 6.0)]
    assert stack_problem(even) is None
    assert "unevenly spaced" in stack_problem([*even[:2], geo((1, 0, 0), (0, 1, 0), (0, 0, 7.0))])
    assert "orientation" in stack_problem([even[0], geo((0, 1, 0), (1, 0, 0), (0, 0, 3.0))])


def _run(raw, name: str, kspace: np.ndarray | None = None, calibration: np.ndarray | None = None) -> np.ndarray:
    """`(S, rx, ry)` images of a read scan by method `name` on the CPU (the pipeline `recon reconstruct` runs)."""
    import torch

    from recon.io import RawScan
    from recon.pipeline import build_method, run_method

    data = RawScan(raw.kspace if kspace is None else kspace, raw.acquisition, raw.calibration if calibration is None else calibration)
    return run_method(build_method(name, {"device": "cpu"}), data, torch.device("cpu"))


@pytest.mark.parametrize(
    ("name", "bound"),
    [("sense", 0.03), ("cs", 0.05), ("grappa", 0.045), ("spirit", 0.02), ("varnet", None)],
)
def test_reference_scan_reaches_every_method_only_as_calibration(tmp_path: Path, name: str, bound: float | None) -> None:
    """A separate reference scan (second `<encoding>`) of another contrast, 3x brighter and
    phase-modulated, calibrates sense / cs / grappa / spirit / varnet, end to end through
    `recon reconstruct`, and never enters their data: each classical image matches the imaging
    contrast's truth, far closer than the same method with the reference averaged into the
    image data. VarNet's shipped weights (knee, 640 x 368) do not reconstruct this 32 x 40
    phantom (NRMSE 0.7), so for it: averaging the reference in changes the image, and its
    sensitivity estimate follows the calibration data (coils of the reference permuted).
    Measured NRMSE: sense 0.011, cs 0.024, grappa 0.030, spirit 0.007; averaged in: 0.57."""
    lines = np.zeros(40, bool)
    lines[::2] = True
    block = (12, 28)
    scan = Scan(lines=lines, reference=block, ref_gain=3.0, ref_phase=2.0)
    src = write_scan(tmp_path / "ref.h5", scan)
    raw = read_ismrmrd(src)
    assert raw.calibration is not None and raw.acquisition.calib == block
    np.testing.assert_array_equal(raw.acquisition.column_mask, lines)
    assert reconstruct(src, tmp_path / "nii", "nii", name) == 0
    image = check_nifti(tmp_path / "nii" / "ref.nii.gz", scan)[..., 0]
    np.testing.assert_allclose(image, _run(raw, name)[0], rtol=1e-4, atol=1e-5 * image.max())
    averaged = raw.kspace.copy()  # the bug this guards against: reference lines averaged into the data
    cols = slice(*block)
    averaged[..., cols] = np.where(lines[cols], 0.5 * (raw.kspace[..., cols] + raw.calibration[..., cols]), raw.calibration[..., cols])
    mixed = _run(raw, name, averaged)[0]
    ref = truth(scan, 0)
    if bound is not None:
        assert nrmse(image, ref) < bound
        assert nrmse(mixed, ref) > 3 * nrmse(image, ref)
    else:
        assert nrmse(mixed, image) > 0.05
        permuted = _run(raw, name, calibration=raw.calibration[:, ::-1].copy())[0]
        assert nrmse(permuted, image) > 1e-3


def test_per_slice_masks_end_to_end(tmp_path: Path) -> None:
    """Each slice with its own sampled columns (even lines on one, odd on the other, a shared
    ACS block): the reader keeps a per-slice mask, and SENSE / GRAPPA fit each slice with its own
    columns through `recon reconstruct` (measured NRMSE 0.003-0.004). One mask for all slices
    (their union: every column) would take the unsampled columns as zero data, which gives
    the zero-filled image (0.025-0.028)."""
    import torch

    from recon.io import RawScan
    from recon.pipeline import build_method, run_method

    lines = np.zeros((2, 40), bool)
    lines[0, ::2] = True
    lines[1, 1::2] = True
    scan = Scan(lines=lines, acs=(12, 28), offsets=(0.0, 4.0))
    src = write_scan(tmp_path / "perslice.h5", scan)
    raw = read_ismrmrd(src)
    expected = lines.copy()
    expected[:, 12:28] = True
    np.testing.assert_array_equal(raw.acquisition.columns, expected)
    for s in range(2):  # unsampled columns hold no data
        assert not raw.kspace[s][..., ~expected[s]].any()
    refs = truths(scan)
    union = read_ismrmrd(write_scan(tmp_path / "union.h5", Scan(lines=lines.any(0), acs=(12, 28), offsets=(0.0, 4.0)))).acquisition
    assert union.columns.ndim == 1 and union.columns.all()
    for name in ("sense", "grappa"):
        out = tmp_path / name
        assert reconstruct(src, out, "nii", name) == 0
        data = check_nifti(out / "perslice.nii.gz", scan)
        wrong = run_method(build_method(name, {"device": "cpu"}), RawScan(raw.kspace, union), torch.device("cpu"))
        for k, ref in enumerate(refs):
            assert nrmse(data[..., k], ref) < 0.01, (name, k)
            assert nrmse(wrong[k], ref) > 3 * nrmse(data[..., k], ref), (name, k)
    assert main(["convert", str(src), str(tmp_path / "conv.h5")]) != 0  # one fastMRI mask per file
    assert not (tmp_path / "conv.h5").exists()


def test_readout_zero_padded_to_the_recon_matrix(tmp_path: Path) -> None:
    """Encoded readout 24 < reconSpace x 32 over the same 176 mm FOV: k-space is zero-padded to
    32 rows, the padded rows are known to be unmeasured, the NIfTI / DICOM extent is the recon FOV."""
    scan = Scan(enc_x=24, offsets=(0.0, 4.0))
    src = write_scan(tmp_path / "rres.h5", scan)
    raw = read_ismrmrd(src)
    assert raw.kspace.shape[-2:] == (32, 40)
    assert raw.acquisition.readout == (4, 28) and not raw.acquisition.partial_fourier
    assert not raw.kspace[:, :, :4].any() and not raw.kspace[:, :, 28:].any()
    assert reconstruct(src, tmp_path / "nii", "nii") == 0
    data = check_nifti(tmp_path / "nii" / "rres.nii.gz", scan)
    for k, ref in enumerate(truths(scan)):
        assert nrmse(data[..., k], ref) < 1e-5
    assert reconstruct(src, tmp_path / "dcm", "dcm", "sense") == 0
    for image, ref in zip(check_dicom(tmp_path / "dcm" / "rres_dicom", scan), truths(scan)):
        assert nrmse(image, ref) < 0.02
