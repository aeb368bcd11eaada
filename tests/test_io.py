"""recon.io: fastMRI HDF5 reading (lazy, validated), writing (atomic), ISMRMRD header parsing."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from fastmri.data.mri_data import SliceDataset as FastMRISliceDataset

from recon.io import (
    FastMRIVolume,
    InputError,
    build_header,
    parse_header,
    read_info,
    read_reconstruction,
    read_volume,
    write_fastmri_volume,
    write_reconstruction,
)
from tests.fastmri_files import COILS, COLS, CROP, PADDING, ROWS, SLICES, header, random_kspace, write_multicoil

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol9 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
]>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD"><encoding><trajectory>&lol9;</trajectory></encoding></ismrmrdHeader>
"""


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def _assert_one_line(err: InputError, path: Path, *words: str) -> None:
    text = str(err)
    assert "\n" not in text
    assert text.startswith(f"{path}: ")
    for word in words:
        assert word.lower() in text.lower(), text


# --- header -------------------------------------------------------------------------------------


def test_header_padding_matches_fastmri_retrieve_metadata(tmp_path: Path) -> None:
    path = tmp_path / "a.h5"
    write_multicoil(path)
    meta, num_slices = FastMRISliceDataset._retrieve_metadata(None, path)
    info = parse_header(header())
    assert (info.padding_left, info.padding_right) == (meta["padding_left"], meta["padding_right"]) == PADDING
    assert info.encoded_size == tuple(meta["encoding_size"]) == (ROWS, COLS, 1)
    assert info.recon_size == tuple(meta["recon_size"]) == (*CROP, 1)
    assert info.fov_mm == (280.0, 160.0, 4.5)
    assert num_slices == SLICES


def test_header_odd_and_even_widths() -> None:
    for width, center, maximum in [(368, 185, 369 - 1 - 6), (372, 174, 347), (356, 178, 355)]:
        info = parse_header(build_header((640, width, 1), (320, 320, 1), center, maximum).encode())
        assert info.padding_left == width // 2 - center
        assert info.padding_right == width // 2 - center + maximum + 1


def test_header_extra_fields_are_escaped_and_parse() -> None:
    xml = build_header((64, 37, 1), (32, 32, 1), 16, 32, extra={"measurementInformation/protocolName": "a<b&c"})
    assert "a&lt;b&amp;c" in xml
    assert parse_header(xml).padding_left == PADDING[0]


@pytest.mark.parametrize("drop", ["reconSpace", "kspace_encoding_step_1", "<center>16</center>"])
def test_header_missing_fields(drop: str) -> None:
    xml = header()
    if drop.startswith("<"):
        xml = xml.replace(drop, "")
    else:
        start, end = xml.index(f"<{drop}>"), xml.index(f"</{drop}>") + len(drop) + 3
        xml = xml[:start] + xml[end:]
    with pytest.raises(InputError, match="lacks"):
        parse_header(xml, "f.h5")


def test_header_entity_bomb_refused() -> None:
    with pytest.raises(InputError, match="unsafe") as exc:
        parse_header(BILLION_LAUGHS, "bomb.h5")
    assert str(exc.value).startswith("bomb.h5: ")


def test_header_not_xml() -> None:
    with pytest.raises(InputError, match="not well-formed"):
        parse_header(b"<ismrmrdHeader><encoding>", "f.h5")


# --- reading ------------------------------------------------------------------------------------


def test_read_multicoil(tmp_path: Path) -> None:
    path = tmp_path / "file1000001.h5"
    kspace = write_multicoil(path, seed=3)
    info = read_info(path)
    assert info.path == path and info.multicoil and info.num_slices == SLICES and info.num_coils == COILS
    assert info.shape == (COILS, ROWS, COLS)
    assert info.crop_size == CROP and info.padding == PADDING
    assert info.target_key == "reconstruction_rss" and info.mask is None
    assert info.attrs == {"acquisition": "CORPD_FBK", "max": 4.5, "norm": 3.0, "patient_id": "p3"}
    with FastMRIVolume(path) as vol:
        assert len(vol) == SLICES
        for i in range(SLICES):
            got = vol.kspace(i)
            assert got.dtype == np.complex64 and got.shape == (COILS, ROWS, COLS)
            np.testing.assert_array_equal(got, kspace[i])
            assert vol.target(i).shape == CROP and vol.target(i).dtype == np.float32
        np.testing.assert_array_equal(vol.kspace(-1), kspace[-1])
        with pytest.raises(IndexError):
            vol.kspace(SLICES)
        with h5py.File(path) as hf:
            np.testing.assert_array_equal(vol.target_all(), hf["reconstruction_rss"][()])
    full, target, info2 = read_volume(path)
    np.testing.assert_array_equal(full, kspace)
    assert target.shape == (SLICES, *CROP) and info2.num_slices == SLICES


def _rchar() -> int:
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("rchar:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/self/io read counters")
def test_one_slice_read_reads_only_that_slice(tmp_path: Path) -> None:
    """Bytes read from the OS for one slice are about one slice, not the whole volume."""
    path = tmp_path / "big.h5"
    slices, coils = 8, 8
    write_fastmri_volume(path, random_kspace((slices, coils, ROWS, COLS), 0), header())
    slice_bytes = coils * ROWS * COLS * 8
    with FastMRIVolume(path) as vol:
        vol.kspace(0)
        before = _rchar()
        vol.kspace(5)
        read = _rchar() - before
    assert slice_bytes <= read < 1.25 * slice_bytes, (read, slice_bytes, slices * slice_bytes)


def test_read_singlecoil(tmp_path: Path) -> None:
    path = tmp_path / "sc.h5"
    kspace = random_kspace((SLICES, ROWS, COLS), 1)
    target = np.ones((SLICES, *CROP), np.float32)
    write_fastmri_volume(path, kspace, header(), target=target, attrs={"max": 1.0})
    with h5py.File(path) as hf:
        assert set(hf) == {"ismrmrd_header", "kspace", "reconstruction_esc"}
    with FastMRIVolume(path) as vol:
        assert not vol.info.multicoil and vol.info.num_coils == 1 and vol.info.shape == (ROWS, COLS)
        assert vol.info.target_key == "reconstruction_esc"
        np.testing.assert_array_equal(vol.kspace(2), kspace[2])
        assert vol.kspace_all().shape == (SLICES, 1, ROWS, COLS)


def test_read_challenge_file_with_mask(tmp_path: Path) -> None:
    path = tmp_path / "file1000002_v2.h5"
    mask = np.zeros(COLS, bool)
    mask[::4] = True
    mask[16:21] = True
    write_multicoil(path, mask=mask)
    info = read_info(path)
    assert info.target_key is None and info.acceleration == 4.0 and info.num_low_frequency == 3
    assert info.mask is not None and info.mask.dtype == bool
    np.testing.assert_array_equal(info.mask, mask)
    with FastMRIVolume(path) as vol:
        assert vol.target(0) is None and vol.target_all() is None


# --- writing ------------------------------------------------------------------------------------


def test_write_fastmri_volume_layout_like_fastmri(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    write_multicoil(path)
    with h5py.File(path) as hf:
        assert hf["kspace"].dtype == np.complex64
        assert hf["reconstruction_rss"].dtype == np.float32
        assert isinstance(hf["ismrmrd_header"][()], bytes)
        assert hf.attrs["acquisition"] == "CORPD_FBK"
    assert _leftovers(tmp_path) == []


def test_write_reconstruction_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "out" / "file1.h5"
    recon = np.random.default_rng(0).random((SLICES, 320, 320)).astype(np.float32)
    mask = np.arange(COLS) % 4 == 0
    write_reconstruction(
        path, recon, mask=mask, acceleration=4, center_fraction=0.08, mask_type="random",
        method="varnet", acquisition="CORPD_FBK", extra_attrs={"patient_id": "p"},
    )
    got, attrs = read_reconstruction(path)
    np.testing.assert_array_equal(got, recon)
    with h5py.File(path) as hf:
        assert hf["reconstruction"].dtype == np.float32 and hf["reconstruction"].shape == (SLICES, 320, 320)
    np.testing.assert_array_equal(attrs.pop("mask"), mask)
    assert attrs == {"acceleration": 4.0, "center_fraction": 0.08, "mask_type": "random", "method": "varnet",
                     "acquisition": "CORPD_FBK", "patient_id": "p"}
    write_reconstruction(path, recon)  # None attrs are omitted, the file is replaced
    assert read_reconstruction(path)[1] == {}


def test_failed_writes_leave_no_temp_and_keep_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "file1.h5"
    recon = np.zeros((2, 8, 8), np.float32)
    write_reconstruction(path, recon, method="first")
    before = path.read_bytes()
    with pytest.raises(TypeError):  # fails after the dataset was written: attrs cannot hold an object
        write_reconstruction(path, recon + 1, method="second", extra_attrs={"bad": object()})
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    with pytest.raises(TypeError):
        write_fastmri_volume(path, random_kspace((1, 2, 8, 8), 0), header(), attrs={"bad": object()})
    assert path.read_bytes() == before and _leftovers(tmp_path) == []
    fresh = tmp_path / "never.h5"
    with pytest.raises(TypeError):
        write_reconstruction(fresh, recon, extra_attrs={"bad": object()})
    assert not fresh.exists() and _leftovers(tmp_path) == []


# --- bad input ----------------------------------------------------------------------------------


def _raw_file(path: Path, kspace: np.ndarray | None, xml: bytes | str | None = None) -> Path:
    with h5py.File(path, "w") as hf:
        if kspace is not None:
            hf["kspace"] = kspace
        hf["ismrmrd_header"] = np.bytes_(header().encode() if xml is None else xml)
    return path


def test_bad_not_hdf5(tmp_path: Path) -> None:
    path = tmp_path / "notes.h5"
    path.write_text("just text\n" * 100)
    with pytest.raises(InputError) as exc:
        read_info(path)
    _assert_one_line(exc.value, path, "not an HDF5 file")


def test_bad_truncated(tmp_path: Path) -> None:
    path = tmp_path / "cut.h5"
    write_multicoil(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError) as exc:
        read_info(path)
    _assert_one_line(exc.value, path, "truncated")


def test_bad_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_info(tmp_path / "absent.h5")


def test_bad_missing_kspace(tmp_path: Path) -> None:
    path = _raw_file(tmp_path / "nok.h5", None)
    with pytest.raises(InputError) as exc:
        FastMRIVolume(path)
    _assert_one_line(exc.value, path, "no 'kspace'")


def test_bad_rank(tmp_path: Path) -> None:
    path = _raw_file(tmp_path / "rank.h5", random_kspace((ROWS, COLS), 0))
    with pytest.raises(InputError) as exc:
        read_info(path)
    _assert_one_line(exc.value, path, "rank 2")


def test_bad_dtype(tmp_path: Path) -> None:
    path = _raw_file(tmp_path / "dtype.h5", np.abs(random_kspace((2, ROWS, COLS), 0)))
    with pytest.raises(InputError) as exc:
        read_info(path)
    _assert_one_line(exc.value, path, "dtype float32")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_bad_nonfinite_detected_on_slice_read(tmp_path: Path, bad: float) -> None:
    path = tmp_path / "nan.h5"
    kspace = random_kspace((SLICES, COILS, ROWS, COLS), 0)
    kspace[1, 2, 5, 7] = complex(0.0, bad)
    write_fastmri_volume(path, kspace, header())
    read_info(path)  # structure is fine; values are checked when slices are read
    with FastMRIVolume(path) as vol:
        vol.kspace(0)
        with pytest.raises(InputError) as exc:
            vol.kspace(1)
    _assert_one_line(exc.value, path, "slice 1", "NaN or Inf")
    with pytest.raises(InputError):
        read_volume(path)


def test_bad_header_missing_fields(tmp_path: Path) -> None:
    xml = header().replace("<maximum>32</maximum>", "")
    path = _raw_file(tmp_path / "hdr.h5", random_kspace((2, COILS, ROWS, COLS), 0), xml)
    with pytest.raises(InputError) as exc:
        read_info(path)
    _assert_one_line(exc.value, path, "kspace_encoding_step_1/maximum")


def test_bad_header_absent(tmp_path: Path) -> None:
    path = tmp_path / "nohdr.h5"
    with h5py.File(path, "w") as hf:
        hf["kspace"] = random_kspace((2, COILS, ROWS, COLS), 0)
    with pytest.raises(InputError) as exc:
        read_info(path)
    _assert_one_line(exc.value, path, "ismrmrd_header")


def test_bad_header_entity_bomb(tmp_path: Path) -> None:
    path = _raw_file(tmp_path / "bomb.h5", random_kspace((2, COILS, ROWS, COLS), 0), BILLION_LAUGHS)
    with pytest.raises(InputError) as exc:
        FastMRIVolume(path)
    _assert_one_line(exc.value, path, "unsafe")


def test_bad_mask_and_target_shapes(tmp_path: Path) -> None:
    path = _raw_file(tmp_path / "m.h5", random_kspace((2, COILS, ROWS, COLS), 0))
    with h5py.File(path, "a") as hf:
        hf["mask"] = np.ones(COLS + 1, bool)
    with pytest.raises(InputError, match="'mask' has shape"):
        read_info(path)
    path = _raw_file(tmp_path / "t.h5", random_kspace((2, COILS, ROWS, COLS), 0))
    with h5py.File(path, "a") as hf:
        hf["reconstruction_rss"] = np.ones((3, *CROP), np.float32)
    with pytest.raises(InputError, match="'reconstruction_rss' has shape"):
        read_info(path)


def test_bad_submission_file(tmp_path: Path) -> None:
    path = tmp_path / "sub.h5"
    write_multicoil(path)
    with pytest.raises(InputError, match="no 'reconstruction'"):
        read_reconstruction(path)
