"""`recon reconstruct` / `recon convert` on ISMRMRD raw files from an independent generator,
every output format through its standard reader, and out-of-memory batch halving."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest
import torch

from recon.acquisition import Acquisition
from recon.cli import main
from recon.methods import ReconBatch, get
from recon.io import RawScan
from recon.pipeline import run_method

GENERATOR = shutil.which("ismrmrd_generate_cartesian_shepp_logan")
needs_generator = pytest.mark.skipif(GENERATOR is None, reason="ismrmrd_generate_cartesian_shepp_logan (Debian ismrmrd-tools) not installed")
zero_filled = get("zero-filled")


def _generate(folder: Path, name: str, *args: str) -> tuple[Path, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / name
    subprocess.run([GENERATOR, "-m", "64", "-c", "8", *args, "-o", str(out)], check=True, capture_output=True)
    with h5py.File(out, "r") as f:
        phantom = np.abs(f["dataset/phantom"][()].view(np.complex64)[0].T)
    return out, phantom


def _fitted_nmse(image: np.ndarray, ref: np.ndarray) -> float:
    """NMSE after the least-squares scale (methods and the generator normalise coils differently)."""
    scale = float((image * ref).sum() / (image * image).sum())
    return float(np.linalg.norm(scale * image - ref) ** 2 / np.linalg.norm(ref) ** 2)


@needs_generator
def test_sense_on_prospectively_undersampled_ismrmrd(tmp_path: Path) -> None:
    raw, phantom = _generate(tmp_path / "in", "shepp.h5", "-a", "2", "-w", "24", "-n", "0")
    out = tmp_path / "out"
    assert main(["reconstruct", str(raw), "--out", str(out), "--method", "sense", "--quiet"]) == 0
    with h5py.File(out / "shepp_rep0.h5", "r") as f:  # the generator writes one repetition per sampling offset
        image = f["reconstruction"][()][0]
        mask = f["mask"][()]
        assert f.attrs["mask_type"] == "acquired"
        # the generator's off-grid ACS lines are calibration-only: maps, not image data
        assert float(f.attrs["acceleration"]) == 2.0 and list(f.attrs["calib_region"]) == [20, 44]
    assert image.shape == phantom.shape == (64, 64)
    assert mask.mean() == 0.5
    assert _fitted_nmse(image, phantom) < 0.04  # measured 0.031 from the image lines alone
    zf = tmp_path / "zf"
    assert main(["reconstruct", str(raw), "--out", str(zf), "--quiet"]) == 0
    with h5py.File(zf / "shepp_rep0.h5", "r") as f:
        zero_filled_image = f["reconstruction"][()][0]
    assert _fitted_nmse(image, phantom) < _fitted_nmse(zero_filled_image, phantom)


@needs_generator
def test_output_formats_open_in_their_readers(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    pydicom = pytest.importorskip("pydicom")
    from PIL import Image

    raw, phantom = _generate(tmp_path / "in", "scan.h5", "-a", "1", "-n", "0")
    outs = {}
    for fmt in ("nii", "dcm", "png"):
        outs[fmt] = tmp_path / fmt
        assert main(["reconstruct", str(raw), "--out", str(outs[fmt]), "--format", fmt, "--quiet"]) == 0
    img = nib.load(str(outs["nii"] / "scan.nii.gz"))
    data = np.asarray(img.dataobj)
    assert data.shape[:2] == (64, 64) and data.size == 64 * 64
    assert np.isfinite(img.affine).all() and abs(np.linalg.det(img.affine[:3, :3])) > 0
    assert _fitted_nmse(data.reshape(64, 64).astype(np.float64), phantom) < 0.01
    dcms = sorted((outs["dcm"] / "scan_dicom").glob("*.dcm"))
    assert len(dcms) == 1
    ds = pydicom.dcmread(dcms[0])
    assert ds.Modality == "MR" and ds.BitsAllocated == 16 and (ds.Rows, ds.Columns) == (64, 64)
    assert "PatientName" not in ds or not str(ds.PatientName)
    pixels = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert _fitted_nmse(pixels.astype(np.float64), phantom) < 0.01
    pngs = sorted(outs["png"].glob("*.png"))
    assert pngs and Image.open(pngs[0]).size[0] >= 64


@needs_generator
def test_convert_then_benchmark_style_reconstruct(tmp_path: Path) -> None:
    raw, _ = _generate(tmp_path / "in", "raw.h5", "-a", "1", "-n", "0")
    conv = tmp_path / "conv" / "raw_fastmri.h5"
    assert main(["convert", str(raw), str(conv)]) == 0
    with h5py.File(conv, "r") as f:
        assert f["kspace"].ndim == 4 and "reconstruction_rss" in f and "ismrmrd_header" in f
    out = tmp_path / "out"
    assert main(["reconstruct", str(conv), "--out", str(out), "--acceleration", "4", "--quiet"]) == 0
    with h5py.File(out / conv.name, "r") as f:
        assert float(f.attrs["acceleration"]) == 4.0 and f["reconstruction"].shape[1:] == (64, 64)


def test_bad_raw_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "raw.h5"
    with h5py.File(bad, "w") as f:
        f.create_group("dataset").create_dataset("xml", data=b"<ismrmrdHeader></ismrmrdHeader>")
    assert main(["convert", str(bad), str(tmp_path / "x.h5")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0]
    assert not (tmp_path / "x.h5").exists()


def _torch_oom() -> BaseException:
    return torch.cuda.OutOfMemoryError("CUDA out of memory (simulated limit)")


class OutOfMemoryAbove:
    """zero-filled, but raises a device allocation error for batches larger than `limit`."""

    def __init__(self, limit: int, error: Callable[[], BaseException] = _torch_oom) -> None:
        self.limit = limit
        self.error = error
        self.sizes: list[int] = []

    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        self.sizes.append(batch.masked_kspace.shape[0])
        if batch.masked_kspace.shape[0] > self.limit:
            raise self.error()
        return zero_filled(batch)


def _cupy_oom() -> BaseException:
    cupy = pytest.importorskip("cupy", reason="CuPy not installed")
    return cupy.cuda.memory.OutOfMemoryError(1 << 30, 0)


@pytest.mark.parametrize(
    "error",
    [_cupy_oom, lambda: RuntimeError("cuFFT error: CUFFT_ALLOC_FAILED")],
    ids=["cupy-out-of-memory", "cufft-alloc-failed"],
)
def test_cupy_and_cufft_allocation_failures_also_halve_the_batch(error: Callable[[], BaseException]) -> None:
    rng = np.random.default_rng(1)
    k = (rng.standard_normal((5, 2, 8, 6)) + 1j * rng.standard_normal((5, 2, 8, 6))).astype(np.complex64)
    data = RawScan(k, Acquisition(np.ones(6, dtype=bool), (0, 6), (0, 8), (0, 6), (8, 6, 1), (8, 6, 1)))
    error()  # skips here when CuPy is missing
    method = OutOfMemoryAbove(1, error)
    images = run_method(method, data, torch.device("cpu"), batch_size=4)
    assert np.array_equal(images, run_method(zero_filled, data, torch.device("cpu")))
    assert method.sizes[:3] == [4, 2, 1]
    with pytest.raises(ValueError):  # other errors are not retried
        run_method(OutOfMemoryAbove(0, lambda: ValueError("bad input")), data, torch.device("cpu"), batch_size=4)


def test_out_of_memory_halves_the_batch() -> None:
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((7, 2, 8, 6)) + 1j * rng.standard_normal((7, 2, 8, 6))).astype(np.complex64)
    data = RawScan(k, Acquisition(np.ones(6, dtype=bool), (0, 6), (0, 8), (0, 6), (8, 6, 1), (8, 6, 1)))
    method = OutOfMemoryAbove(2)
    images = run_method(method, data, torch.device("cpu"), batch_size=8)
    reference = run_method(zero_filled, data, torch.device("cpu"), batch_size=8)
    assert np.array_equal(images, reference)
    assert method.sizes[:3] == [7, 4, 2] and max(method.sizes[3:]) <= 2
    with pytest.raises(torch.cuda.OutOfMemoryError):
        run_method(OutOfMemoryAbove(0), data, torch.device("cpu"), batch_size=4)


def test_benchmark_takes_fully_sampled_raw_files_like_fastmri_files(tmp_path: Path) -> None:
    """A folder of fully sampled ISMRMRD files (and a fastMRI file beside them) is benchmarked the
    same way: retrospective file-name-seeded masks, the RSS of the full data as the target."""
    import json

    from _hostile import write_ismrmrd
    from recon.cli import main

    data = tmp_path / "data"
    write_ismrmrd(data / "raw_a.h5", rows=64, cols=64, coils=4)
    write_ismrmrd(data / "raw_b.h5", rows=64, cols=48, coils=4)
    write_ismrmrd(tmp_path / "raw_c.h5", rows=64, cols=64, coils=4)
    assert main(["convert", str(tmp_path / "raw_c.h5"), str(data / "fastmri.h5")]) == 0
    out = tmp_path / "bench"
    assert main(["benchmark", "--data", str(data), "--methods", "zero-filled,sense", "--accelerations", "4",
                 "--out", str(out), "--quiet", "--by", "none"]) == 0
    rows = json.loads((out / "results.json").read_text())["rows"]
    by_file = {(r["file"], r["method"]): r for r in rows}
    assert set(by_file) == {(f, m) for f in ("raw_a.h5", "raw_b.h5", "fastmri.h5") for m in ("zero-filled", "sense")}
    for f in ("raw_a.h5", "raw_b.h5"):
        assert 0.3 < by_file[(f, "zero-filled")]["ssim"] < 1 and by_file[(f, "sense")]["acceleration"] == 4.0
    assert main(["reconstruct", str(data / "raw_a.h5"), "--out", str(tmp_path / "rec"), "--acceleration", "4", "--quiet"]) == 0
    with h5py.File(tmp_path / "rec" / "raw_a.h5") as f:
        assert f.attrs["mask_type"] == "random" and f.attrs["acceleration"] == 4.0 and f["mask"][()].sum() < 32
