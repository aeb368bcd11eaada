"""Hostile input, ISMRMRD raw data: geometry, noise scans and malformed acquisition tables.

Every file is written here with the `ismrmrd` package (and, for what that package refuses to
write, edited afterwards with h5py). A file whose geometry, noise scan or acquisition table
cannot be trusted is refused with one line naming the file and the problem (`refused`); a
safe default that is assumed (identity axes for unset direction cosines) is said once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import h5py
import ismrmrd
import numpy as np
import pytest

from _hostile import fft2c, refused, smooth_coil_images
from recon.cli import main

ROWS, COLS, COILS = 32, 32, 4
READ, PHASE, SLICE = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _space(matrix: tuple[Any, Any], fov: tuple[Any, Any, Any]) -> str:
    return (f"<matrixSize><x>{matrix[0]}</x><y>{matrix[1]}</y><z>1</z></matrixSize>"
            f"<fieldOfView_mm><x>{fov[0]}</x><y>{fov[1]}</y><z>{fov[2]}</z></fieldOfView_mm>")


def raw_xml(
    enc: tuple[Any, Any] = (ROWS, COLS),
    recon: tuple[Any, Any] = (ROWS, COLS),
    enc_fov: tuple[Any, Any, Any] = (200, 200, 5),
    recon_fov: tuple[Any, Any, Any] = (200, 200, 5),
) -> str:
    """An ISMRMRD header; every value is written as given, so a test can put any text in it."""
    encoding = (f"<encoding><encodedSpace>{_space(enc, enc_fov)}</encodedSpace>"
                f"<reconSpace>{_space(recon, recon_fov)}</reconSpace>"
                f"<encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{COLS - 1}</maximum>"
                f"<center>{COLS // 2}</center></kspace_encoding_step_1></encodingLimits>"
                "<trajectory>cartesian</trajectory></encoding>")
    return ('<?xml version="1.0"?><ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">'
            "<experimentalConditions><H1resonanceFrequency_Hz>63500000</H1resonanceFrequency_Hz></experimentalConditions>"
            f"{encoding}</ismrmrdHeader>")


def write_raw(
    path: Path,
    *,
    xml: str | None = None,
    slices: int = 1,
    position: tuple[float, float, float] = (0.0, 0.0, 0.0),
    read_dir: tuple[float, float, float] = READ,
    phase_dir: tuple[float, float, float] = PHASE,
    slice_dir: tuple[float, float, float] = SLICE,
    noise: np.ndarray | None = None,
    noise_dwell: float = 2.0,
    data_dwell: float = 4.0,
    calibration: tuple[int, int] | None = None,
    calibration_scale: float = 1.0,
) -> Path:
    """A fully sampled Cartesian ISMRMRD file of `slices` slices 5 mm apart along `slice_dir`.

    noise: `(coils, samples)` complex noise scan (ACQ_IS_NOISE_MEASUREMENT) written first, if
    given. calibration: encode steps `[a, b)` also written as calibration-only lines
    (ACQ_IS_PARALLEL_CALIBRATION), their data times `calibration_scale`.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    k = fft2c(smooth_coil_images(ROWS, COLS, COILS)).astype(np.complex64)
    geometry = {"read_dir": read_dir, "phase_dir": phase_dir, "slice_dir": slice_dir}
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header((xml or raw_xml()).encode())
        if noise is not None:
            acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(noise, np.complex64), sample_time_us=noise_dwell)
            acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            dset.append_acquisition(acq)
        for s in range(slices):
            where = tuple(float(p) + 5.0 * s * float(d) for p, d in zip(position, slice_dir))
            for e in range(COLS):
                lines = [(1.0, None)]
                if calibration is not None and calibration[0] <= e < calibration[1]:
                    lines.append((calibration_scale, ismrmrd.ACQ_IS_PARALLEL_CALIBRATION))
                for scale, flag in lines:
                    acq = ismrmrd.Acquisition.from_array(np.ascontiguousarray(scale * k[:, :, e]), center_sample=ROWS // 2,
                                                         sample_time_us=data_dwell, position=where, **geometry)
                    acq.idx.kspace_encode_step_1 = e
                    acq.idx.slice = s
                    if flag is not None:
                        acq.set_flag(flag)
                    dset.append_acquisition(acq)
    return path


def edit_heads(path: Path, edit: Callable[[np.ndarray], None]) -> Path:
    """Change acquisition headers in place (`edit` gets the `head` records of `dataset/data`)."""
    with h5py.File(path, "r+") as f:
        table = f["dataset/data"][()]
        heads = table["head"].copy()
        edit(heads)
        table["head"] = heads
        f["dataset/data"][...] = table
    return path


def retype(path: Path, change: Callable[[np.dtype], np.dtype], edit: Callable[[np.ndarray], None] | None = None) -> Path:
    """Rewrite `dataset/data` with the compound type `change(dtype)` (values cast field by field),
    then apply `edit` to the rewritten records: files the `ismrmrd` package would not write."""
    with h5py.File(path, "r+") as f:
        old = f["dataset/data"][()]
        dtype = change(old.dtype)
        new = np.zeros(old.shape, dtype)
        for name in ("traj", "data"):
            base = h5py.check_vlen_dtype(dtype[name])
            values = np.empty(old.shape, object)
            for i, v in enumerate(old[name]):
                values[i] = np.asarray(v, base)
            new[name] = values
        for name in old.dtype["head"].names:
            inner = old.dtype["head"][name].names or ()
            for part in inner:
                new["head"][name][part] = old["head"][name][part]
            if not inner:
                new["head"][name] = old["head"][name]
        if edit is not None:
            edit(new)
        del f["dataset/data"]
        f.create_dataset("dataset/data", data=new)
    return path


def _noise(coils: int = COILS, samples: int = 256) -> np.ndarray:
    """`(coils, samples)` seeded white complex noise."""
    rng = np.random.default_rng(7)
    return ((rng.standard_normal((coils, samples)) + 1j * rng.standard_normal((coils, samples))) / np.sqrt(2)).astype(np.complex64)


@pytest.mark.parametrize(
    ("options", "fmt", "needles"),
    [
        ({"position": (np.nan, 0.0, 0.0)}, "nii", ["acquisition 0 (slice 0)", "position (nan, 0, 0) is not finite"]),
        ({"read_dir": READ, "phase_dir": READ, "slice_dir": READ}, "nii", ["read_dir and phase_dir are not orthogonal"]),
        ({"read_dir": (np.inf, 0.0, 0.0)}, "dcm", ["read_dir (inf, 0, 0) is not finite"]),
        ({"read_dir": (2.0, 0.0, 0.0)}, "nii", ["read_dir has length 2, not 1"]),
        ({"read_dir": (0.0, 0.0, 0.0)}, "dcm", ["read_dir is zero while the other directions are set"]),
    ],
    ids=["nan-position", "identical-directions", "infinite-direction", "non-unit-direction", "only-read-unset"],
)
def test_geometry_that_cannot_place_the_image(options: dict, fmt: str, needles: list[str], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A NaN position gave a NaN NIfTI affine, identical directions a singular one, an infinite
    direction a NaN DICOM orientation; each is now refused naming the acquisition and field."""
    src = write_raw(tmp_path / "in" / "geo.h5", **options)
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--format", fmt, "--quiet"],
            [str(src), *needles, "cannot be placed"], [src.parent], absent=[out / "geo.nii.gz", out / "geo_dicom"])


@pytest.mark.parametrize(
    ("header", "needles"),
    [
        ({"recon_fov": (0, 0, 5)}, ["reconSpace/fieldOfView_mm/x is 0", "must be a finite number > 0 mm"]),
        ({"enc_fov": (-200, 200, 5), "recon_fov": (-200, 200, 5)}, ["encodedSpace/fieldOfView_mm/x is -200"]),
        ({"recon_fov": (200, 200, 0)}, ["reconSpace/fieldOfView_mm/z is 0"]),
        ({"recon_fov": (200, "nan", 5)}, ["reconSpace/fieldOfView_mm/y is nan"]),
        ({"recon_fov": ("abc", 200, 5)}, ["reconSpace/fieldOfView_mm/x is not a number: 'abc'"]),
    ],
    ids=["zero", "negative", "zero-thickness", "nan", "not-a-number"],
)
def test_field_of_view_must_be_positive(header: dict, needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A recon FOV of 0 gave DICOM PixelSpacing 0\\0, a negative one was silently made positive,
    one that is not a number was dropped (1 mm pixels assumed without a word)."""
    src = write_raw(tmp_path / "in" / "fov.h5", xml=raw_xml(**header))
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--format", "dcm", "--quiet"],
            [str(src), *needles], [src.parent], absent=[out / "fov_dicom"])


def test_field_of_view_of_a_fastmri_header(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """fastMRI files share the header parser: their nominal DICOM spacing comes from the recon FOV."""
    from fastmri_files import CROP, ENC_CENTER, ENC_MAX, random_kspace
    from recon.io import build_header, write_fastmri_volume

    src = tmp_path / "in" / "knee.h5"
    src.parent.mkdir()
    kspace = random_kspace((2, 4, 64, 37), 0)
    write_fastmri_volume(src, kspace, build_header((64, 37, 1), (*CROP, 1), ENC_CENTER, ENC_MAX, recon_fov_mm=(0.0, 0.0, 4.5)),
                         target=np.ones((2, *CROP), np.float32), attrs={"max": 1.0, "acquisition": "CORPD_FBK"})
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--format", "dcm", "--quiet"],
            [str(src), "reconSpace/fieldOfView_mm/x is 0"], [src.parent], absent=[out / "knee_dicom"])


@pytest.mark.parametrize(
    ("options", "warning", "axes"),
    [
        ({"read_dir": (0.0, 0.0, 0.0), "phase_dir": (0.0, 0.0, 0.0), "slice_dir": (0.0, 0.0, 0.0)},
         "read_dir, phase_dir and slice_dir are all zero", np.eye(3)),
        ({"read_dir": (0.0, 0.0, 1.0), "phase_dir": (1.0, 0.0, 0.0), "slice_dir": (0.0, 0.0, 0.0)},
         "slice_dir is zero; assuming the slice normal read_dir x phase_dir", np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])),
    ],
    ids=["all-unset", "slice-unset"],
)
def test_unset_direction_cosines_are_assumed_with_one_warning(options: dict, warning: str, axes: np.ndarray, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Unset directions used to become identity axes without a word; the default stays (simulated
    files carry none), said once per file (two slices), and the NIfTI affine follows it."""
    nib = pytest.importorskip("nibabel")
    src = write_raw(tmp_path / "in" / "unset.h5", slices=2, position=(3.0, -4.0, 5.0), **options)
    out = tmp_path / "out"
    assert main(["reconstruct", str(src), "--out", str(out), "--format", "nii", "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith(f"warning: {src}: ") and warning in lines[0], lines
    affine = nib.load(str(out / "unset.nii.gz")).affine
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    spacing = 200.0 / 32
    np.testing.assert_allclose(affine[:3, 0], lps_to_ras @ axes[0] * spacing, atol=1e-5)
    np.testing.assert_allclose(affine[:3, 1], lps_to_ras @ axes[1] * spacing, atol=1e-5)
    np.testing.assert_allclose(affine[:3, :3] @ [16, 16, 0] + affine[:3, 3], lps_to_ras @ [3.0, -4.0, 5.0], atol=1e-4)


@pytest.mark.parametrize("recon", [(1, 1), (2, 32), (32, 3)], ids=["1x1", "2x32", "32x3"])
def test_recon_matrix_too_small_to_be_an_image(recon: tuple[int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """reconSpace 1x1 wrote a (2, 1, 1) "image"; below 4 pixels per axis it is refused."""
    src = write_raw(tmp_path / "in" / "tiny.h5", xml=raw_xml(recon=recon))
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--format", "nii", "--quiet"],
            [str(src), f"reconSpace {recon[0]}x{recon[1]} is too small to be an image", "at least 4x4"], [src.parent],
            absent=[out / "tiny.nii.gz"])


def test_smallest_recon_matrix_is_read(tmp_path: Path) -> None:
    """The boundary: a 4x4 reconSpace over the encoded FOV is a (coarse) image."""
    nib = pytest.importorskip("nibabel")
    src = write_raw(tmp_path / "in" / "four.h5", xml=raw_xml(recon=(4, 4)))
    assert main(["reconstruct", str(src), "--out", str(tmp_path / "out"), "--format", "nii", "--quiet"]) == 0
    image = nib.load(str(tmp_path / "out" / "four.nii.gz"))
    assert image.shape == (4, 4, 1) and np.allclose(image.header.get_zooms(), (50.0, 50.0, 5.0))


def _dead_coil() -> np.ndarray:
    """Noise with coil 2 silent (a dead channel)."""
    noise = _noise()
    noise[2] = 0
    return noise


def _nan_noise() -> np.ndarray:
    """Noise with one NaN sample."""
    noise = _noise()
    noise[1, 17] = np.nan
    return noise


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        ({"noise": _noise(), "noise_dwell": 0.0}, ["noise scan has dwell time (sample_time_us) 0", "cannot be scaled to the imaging bandwidth"]),
        ({"noise": _noise(), "data_dwell": 0.0}, ["imaging data has dwell time (sample_time_us) 0"]),
        ({"noise": _noise(coils=2)}, ["noise scan (acquisition 0) has 2 coils, the imaging data 4"]),
        ({"noise": _nan_noise()}, ["noise scan (acquisition 0) contains NaN or Inf"]),
        ({"noise": np.zeros((COILS, 256), np.complex64)}, ["noise scan cannot whiten the coils", "noise covariance is all zero"]),
        ({"noise": _dead_coil()}, ["noise scan cannot whiten the coils", "coil(s) 2 have zero noise variance"]),
        ({"noise": _noise(samples=1)}, ["noise scan holds 1 sample(s) per coil"]),
    ],
    ids=["noise-dwell-0", "data-dwell-0", "coil-count", "nan", "all-zero", "dead-coil", "one-sample"],
)
def test_unusable_noise_scan(options: dict, needles: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A dwell time of 0 silently skipped the bandwidth scaling; another coil count gave "need at
    least one array to concatenate"; NaN noise was blamed on the method; all-zero noise gave
    "noise covariance is not positive definite" without saying which scan or why."""
    src = write_raw(tmp_path / "in" / "noise.h5", **options)
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--format", "nii", "--quiet"],
            [str(src), *needles], [src.parent], absent=[out / "noise.nii.gz"])


def _set(field: str, value: Any, index: Any = 3) -> Callable[[np.ndarray], None]:
    """An `edit_heads` edit: header field `field` (`idx.slice` for an index) of acquisitions `index`."""
    def edit(heads: np.ndarray) -> None:
        names = field.split(".")
        target = heads[names[0]] if len(names) == 1 else heads[names[0]][names[1]]
        target[index] = value
    return edit


def _soft_link(where: str, target: str) -> Callable[[h5py.File], None]:
    """Replace `where` by a soft link to `target` (the old object kept under '/moved')."""
    def edit(f: h5py.File) -> None:
        f.move(where, "/moved")
        f[where] = h5py.SoftLink(target)
    return edit


def _heads(edit: Callable[[np.ndarray], None]) -> Callable[[Path], Path]:
    """A file builder: `write_raw`, then `edit_heads` with `edit`."""
    return lambda path: edit_heads(write_raw(path), edit)


def _links(edit: Callable[[h5py.File], None]) -> Callable[[Path], Path]:
    """A file builder: `write_raw`, then `edit` on the open HDF5 file (links)."""
    def build(path: Path) -> Path:
        write_raw(path)
        with h5py.File(path, "r+") as f:
            edit(f)
        return path
    return build


def _widen_slice(value: int, dtype: str) -> Callable[[Path], Path]:
    """idx.slice stored as `dtype` (ISMRMRD: uint16), acquisition 3 at slice `value`."""
    def change(old: np.dtype) -> np.dtype:
        idx = [(n, dtype if n == "slice" else old["head"]["idx"].fields[n][0]) for n in old["head"]["idx"].names]
        head = [(n, np.dtype(idx) if n == "idx" else old["head"].fields[n][0]) for n in old["head"].names]
        return np.dtype([(n, np.dtype(head) if n == "head" else old.fields[n][0]) for n in old.names])

    def set_slice(table: np.ndarray) -> None:
        table["head"]["idx"]["slice"][3] = value
    return lambda path: retype(write_raw(path), change, set_slice)


def _samples_as(base: type) -> Callable[[Path], Path]:
    """Samples stored as variable-length `base` (ISMRMRD: float32)."""
    def change(old: np.dtype) -> np.dtype:
        return np.dtype([(n, h5py.vlen_dtype(base) if n == "data" else old.fields[n][0]) for n in old.names])
    return lambda path: retype(write_raw(path), change)


#: `--max-memory` for the stray-slice cases: their claim (up to 10^6 slices x 4 coils x 32 x 32) passes
#: the memory check, so the slice check, which comes next and before any allocation, refuses them.
ROOMY = ("--max-memory", "1T")
#: Case: (file builder, needles of the refusal, `reconstruct`-only options, options of both commands).
HUNT: dict[str, tuple[Callable[[Path], Path], list[str], tuple[str, ...], tuple[str, ...]]] = {
    "samples-do-not-fill-the-header": (_heads(_set("number_of_samples", 31)),
                                       ["acquisition 3 (slice 0, line 3) holds 128 complex samples",
                                        "active_channels 4 x number_of_samples 31 = 124"], (), ()),
    "no-samples": (_heads(_set("number_of_samples", 0)), ["acquisition 3 has number_of_samples 0"], (), ()),
    "no-channels": (_heads(_set("active_channels", 0, slice(None))), ["imaging acquisitions have active_channels 0"], (), ()),
    "center-sample-beyond-readout": (_heads(_set("center_sample", 40)), ["acquisition 3 falls outside the encoded matrix 32x32"], (), ()),
    "encoding-ref-out-of-range": (_heads(_set("encoding_space_ref", 7)), ["acquisition 3 refers to encoding 7", "header has 1 <encoding>"], (), ()),
    "slice-gap": (_heads(_set("idx.slice", 2, slice(16, None))), ["slice indices run to 2, but slice 1 has no imaging lines"], (), ()),
    "slice-65535": (_heads(_set("idx.slice", 65535)), ["slice indices run to 65535, but slice 1 has no imaging lines"], (), ROOMY),
    "slice-1e6-uint32": (_widen_slice(10**6, "<u4"), ["slice indices run to 1000000, but slice 1 has no imaging lines"], (), ROOMY),
    "signed-slice-index": (_widen_slice(-1, "<i2"), ["acquisition header fields idx.slice are not unsigned integers"], (), ()),
    "integer-samples": (_samples_as(np.int16), ["samples are stored as", "not as variable-length floats"], (), ()),
    "matrix-not-a-number": (lambda p: write_raw(p, xml=raw_xml(enc=("abc", COLS))), ["matrixSize/x is not an integer: 'abc'"], (), ()),
    "dangling-data-link": (_links(_soft_link("/dataset/data", "/nowhere")),
                           ["'/dataset/data' is an HDF5 soft link that does not resolve"], (), ()),
    "looping-xml-link": (_links(_soft_link("/dataset/xml", "/dataset/xml")),
                         ["'/dataset/xml' is an HDF5 soft link that does not resolve"], (), ()),
    "looping-group-link": (_links(_soft_link("/dataset", "/dataset")), ["'/dataset' is an HDF5 soft link that does not resolve"], (), ()),
    "all-zero-calibration-lines": (lambda p: write_raw(p, calibration=(12, 20), calibration_scale=0.0),
                                   ["calibration acquisition 13 (slice 0, line 12) is all zero"], ("--method", "sense"), ()),
}


@pytest.mark.parametrize("case", list(HUNT))
def test_malformed_acquisition_table(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each of these printed a raw exception text ("cannot reshape array", "Special link traversal
    failed", "MKL FFT error", ...), allocated 65536 slices, or read garbage; `reconstruct` and
    `convert` now refuse each with one line naming the file and the problem."""
    build, needles, options, raw_options = HUNT[case]
    src = build(tmp_path / "in" / "bad.h5")
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--format", "nii", "--quiet", *options, *raw_options],
            [str(src), *needles], [src.parent], absent=[out / "bad.nii.gz"])
    converted = tmp_path / "converted.h5"
    refused(capsys, ["convert", str(src), str(converted), *raw_options], [str(src), *needles], [src.parent], absent=[converted])


def test_float64_samples_are_read_as_values(tmp_path: Path) -> None:
    """Samples stored as float64 were viewed as float32 pairs (garbage); they are values."""
    from recon.io.ismrmrd import read_ismrmrd

    plain = read_ismrmrd(write_raw(tmp_path / "plain.h5"))
    wide = read_ismrmrd(_samples_as(np.float64)(tmp_path / "wide.h5"))
    np.testing.assert_array_equal(wide.kspace, plain.kspace)


def test_espirit_without_kernels_gives_no_maps() -> None:
    """All-zero calibration data leave no kernel above the threshold; ESPIRiT failed inside the
    FFT library ("MKL FFT error: Inconsistent configuration parameters") and now gives all-zero
    maps, which the output checks refuse as "no coil sensitivity found"."""
    import torch

    from recon.calib import espirit_calib

    maps = espirit_calib(torch.zeros(1, COILS, 24, 24, dtype=torch.complex64), (8, 16))
    assert maps.shape == (1, COILS, 24, 24) and not maps.any()


def test_writers_refuse_a_geometry_that_cannot_place_the_image(tmp_path: Path) -> None:
    """A SliceGeometry built by hand (not through `make_geometry`) with a NaN position would be
    written as a NaN affine; the writers refuse it and write nothing."""
    from recon.geometry import SliceGeometry
    from recon.io.writers import write_output

    bad = SliceGeometry((np.nan, 0.0, 0.0), READ, PHASE, SLICE, (200.0, 200.0, 5.0), (8, 8))
    zero_fov = SliceGeometry((0.0, 0.0, 0.0), READ, PHASE, SLICE, (0.0, 0.0, 5.0), (8, 8))
    for geometry, needle in ((bad, "position"), (zero_fov, "field of view 0 x 0 x 5 mm")):
        for fmt in ("nii", "dcm"):
            with pytest.raises(ValueError, match=needle):
                write_output(tmp_path / "x", np.ones((1, 8, 8), np.float32), fmt, [geometry])
    assert list(tmp_path.iterdir()) == []


def test_slices_displaced_within_their_plane(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two slices whose positions differ along the readout, not the normal, gave a NIfTI affine
    whose slice column is parallel to its row column (singular); NIfTI is refused, DICOM (each
    slice's own position) is written."""
    src = write_raw(tmp_path / "in" / "flat.h5", slices=2, slice_dir=SLICE, position=(0.0, 0.0, 0.0))
    edit_heads(src, _set("position", (0.0, 0.0, 0.0), slice(None, COLS)))
    edit_heads(src, _set("position", (7.0, 0.0, 0.0), slice(COLS, None)))
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--format", "nii", "--quiet"],
            [str(src), "step 7 mm within the slice plane", "--format dcm"], [src.parent], absent=[out / "flat.nii.gz"])
    assert main(["reconstruct", str(src), "--out", str(out), "--format", "dcm", "--quiet"]) == 0
