"""NIfTI / DICOM / PNG outputs: open in their standard readers with the right shape, geometry
and (no) patient identity; DICOM validated with dciodvfy where installed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from PIL import Image

from recon.geometry import make_geometry
from recon.io.writers import write_output

S, ROWS, COLS = 3, 24, 20
READ = np.array([np.cos(0.4), np.sin(0.4), 0.0])
PHASE = np.array([-np.sin(0.4) * np.cos(0.3), np.cos(0.4) * np.cos(0.3), np.sin(0.3)])
SLICE = np.cross(READ, PHASE)
POS0, SPACING = np.array([5.0, -12.0, 40.0]), 4.0
FOV = (ROWS * 0.8, COLS * 1.1, 3.0)
IDENTITY = {"patient_name": "Doe^Jane", "patient_id": "PID-123", "patient_birth_date": "19700102",
            "patient_sex": "F"}
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture
def images() -> np.ndarray:
    return (np.random.default_rng(0).random((S, ROWS, COLS)) * 50).astype(np.float32)


@pytest.fixture
def geometry() -> list:
    return [make_geometry(POS0 + s * SPACING * SLICE, READ, PHASE, SLICE, FOV, (ROWS, COLS))
            for s in range(S)]


def _meta() -> dict:
    return {"identity": dict(IDENTITY), "series_description": "varnet 4x", "TE_ms": "3.2"}


def test_nifti_geometry_and_identity(tmp_path: Path, images: np.ndarray, geometry: list) -> None:
    (out,) = write_output(tmp_path / "vol.h5", images, "nii", geometry, _meta())
    assert out.name == "vol.nii.gz"
    img = nib.load(out)
    assert img.shape == (ROWS, COLS, S)
    np.testing.assert_allclose(np.asarray(img.dataobj).transpose(2, 0, 1), images)
    aff = img.affine
    for s in range(S):  # the FOV-centre voxel of each slice is its acquisition position (RAS)
        centre = aff @ np.array([ROWS // 2, COLS // 2, s, 1.0])
        np.testing.assert_allclose(centre[:3], LPS_TO_RAS @ (POS0 + s * SPACING * SLICE), atol=1e-4)
    np.testing.assert_allclose(aff[:3, 0], LPS_TO_RAS @ READ * 0.8, atol=1e-6)
    np.testing.assert_allclose(aff[:3, 1], LPS_TO_RAS @ PHASE * 1.1, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(aff[:3, 2]), SPACING, atol=1e-6)
    assert int(img.header["qform_code"]) == 1 and int(img.header["sform_code"]) == 1
    assert b"Doe" not in out.read_bytes() and not img.header.extensions
    (kept,) = write_output(tmp_path / "kept", images, "nii", geometry, _meta(), keep_identity=True)
    assert "Doe^Jane" in nib.load(kept).header.extensions[0].get_content().decode()


def test_nifti_nominal_geometry_without_header(tmp_path: Path, images: np.ndarray) -> None:
    (out,) = write_output(tmp_path / "fastmri", images, "nii", None, {})
    np.testing.assert_allclose(np.abs(np.diag(nib.load(out).affine))[:3], (0.5, 0.5, 3.0))


def test_dicom_series(tmp_path: Path, images: np.ndarray, geometry: list) -> None:
    files = write_output(tmp_path / "vol", images, "dcm", geometry, _meta())
    assert len(files) == S and all(f.parent.name == "vol_dicom" for f in files)
    dss = [pydicom.dcmread(f) for f in files]
    assert len({d.SeriesInstanceUID for d in dss}) == 1 and len({d.SOPInstanceUID for d in dss}) == S
    for s, d in enumerate(dss):
        assert d.Modality == "MR" and d.BitsAllocated == 16 and d.PixelRepresentation == 0
        assert (d.Rows, d.Columns) == (ROWS, COLS)
        values = d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept)
        np.testing.assert_allclose(values, images[s], atol=float(d.RescaleSlope))
        row_dir, col_dir = np.array(d.ImageOrientationPatient[:3]), np.array(d.ImageOrientationPatient[3:])
        np.testing.assert_allclose(row_dir, PHASE, atol=1e-6)
        np.testing.assert_allclose(col_dir, READ, atol=1e-6)
        spacing = np.array(d.PixelSpacing, float)
        np.testing.assert_allclose(spacing, (0.8, 1.1))
        centre = (np.array(d.ImagePositionPatient, float)
                  + (ROWS // 2) * spacing[0] * col_dir + (COLS // 2) * spacing[1] * row_dir)
        np.testing.assert_allclose(centre, POS0 + s * SPACING * SLICE, atol=1e-4)
        assert str(d.PatientName) == "" and "Doe" not in files[s].read_bytes().decode("latin-1")
    step = np.subtract(dss[1].ImagePositionPatient, dss[0].ImagePositionPatient)
    np.testing.assert_allclose(step, SPACING * SLICE, atol=1e-4)
    kept = write_output(tmp_path / "vol", images, "dcm", geometry, _meta(), keep_identity=True)
    d = pydicom.dcmread(kept[0])
    assert str(d.PatientName) == "Doe^Jane" and d.PatientID == "PID-123" and d.PatientSex == "F"
    assert len(list((tmp_path / "vol_dicom").iterdir())) == S  # replaced, not mixed
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy (dicom3tools) not installed")
def test_dicom_passes_dciodvfy(tmp_path: Path, images: np.ndarray, geometry: list) -> None:
    files = write_output(tmp_path / "vol", images, "dcm", geometry, _meta(), keep_identity=True)
    files += write_output(tmp_path / "anon", images, "dcm", None, {})
    for f in files:
        res = subprocess.run(["dciodvfy", str(f)], capture_output=True, text=True)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        assert errors == [], errors


def test_png_previews(tmp_path: Path, images: np.ndarray) -> None:
    files = write_output(tmp_path / "vol.png", images, "png", None, _meta())
    assert [f.name for f in files] == [f"vol_s{s:03d}.png" for s in range(S)]
    with Image.open(files[0]) as im:
        assert im.size == (COLS, ROWS) and im.mode == "L"
        assert np.asarray(im).max() == 255 and "patient_name" not in im.info
    (montage,) = write_output(tmp_path / "m", images, "png", None, {**_meta(), "montage": True},
                              keep_identity=True)
    with Image.open(montage) as im:
        assert im.size == (2 * COLS, 2 * ROWS) and im.info["patient_name"] == "Doe^Jane"


def test_unknown_format_and_bad_images(tmp_path: Path, images: np.ndarray) -> None:
    with pytest.raises(ValueError, match="unknown output format"):
        write_output(tmp_path / "x", images, "jpg")
    with pytest.raises(ValueError, match="NaN"):
        write_output(tmp_path / "x", np.full((1, 4, 4), np.nan, np.float32), "png")
    assert list(tmp_path.iterdir()) == []


def test_h5_dispatches_to_fastmri_submission(tmp_path: Path, images: np.ndarray) -> None:
    pytest.importorskip("recon.io.fastmri", reason="recon.io.fastmri not available")
    import h5py

    (out,) = write_output(tmp_path / "vol.nii.gz", images, "h5", None, {**_meta(), "method": "sense"})
    assert out.name == "vol.h5"
    with h5py.File(out, "r") as f:
        np.testing.assert_array_equal(f["reconstruction"][()], images)
        assert f.attrs["method"] == "sense" and "Doe" not in str(dict(f.attrs))
