"""Hostile input, containment: an HDF5 input may not make `recon` read anything outside itself.

Each case builds a file whose k-space (or target, or ISMRMRD table) lives in another file that
the test also made (another "patient's" fastMRI file, or raw bytes), through an external link,
external storage, a virtual dataset or a plugin filter. Every command refuses it by name before
reading any data, writes nothing and leaves the inputs as they were. (User-defined links are
refused by their link type code too; h5py cannot create one, so no case here makes one.)
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from _hostile import refused, write_ismrmrd
from fastmri_files import COILS, COLS, ROWS, SLICES, header, write_multicoil
from recon.cli import main
from recon.io import InputError
from recon.io.hdf5 import ALLOWED_FILTERS, open_h5

SHAPE = (SLICES, COILS, ROWS, COLS)


def _shell(path: Path) -> h5py.File:
    """A fastMRI file without its `kspace`, open for the case to add one (header, target, attrs)."""
    f = h5py.File(path, "w")
    f.create_dataset("ismrmrd_header", data=np.bytes_(header().encode()))
    f.create_dataset("reconstruction_rss", data=np.ones((SLICES, 32, 32), np.float32))
    f.attrs.update({"acquisition": "CORPD_FBK", "max": 1.0, "patient_id": "crafted"})
    return f


@pytest.fixture()
def other(tmp_path: Path) -> Path:
    """Another patient's fastMRI file, which the crafted inputs point into."""
    path = tmp_path / "other" / "patient_b.h5"
    path.parent.mkdir()
    write_multicoil(path, seed=7)
    return path


def _external_link(path: Path, other: Path) -> Path:
    with _shell(path) as f:
        f["kspace"] = h5py.ExternalLink(str(other), "/kspace")
    return path


def _external_storage(path: Path, other: Path) -> Path:
    nbytes = int(np.prod(SHAPE)) * 8
    raw = other.parent / "raw.bin"
    raw.write_bytes(np.ones(SHAPE, np.complex64).tobytes())
    assert raw.stat().st_size == nbytes
    with _shell(path) as f:
        f.create_dataset("kspace", shape=SHAPE, dtype=np.complex64, external=[(str(raw), 0, nbytes)])
    return path


def _system_file_storage(path: Path, other: Path) -> Path:
    target = Path("/etc/passwd") if Path("/etc/passwd").is_file() else other
    n = target.stat().st_size // 8
    with _shell(path) as f:
        f.create_dataset("kspace", shape=(1, 1, 1, n), dtype=np.complex64, external=[(str(target), 0, 8 * n)])
    return path


def _virtual(path: Path, other: Path) -> Path:
    layout = h5py.VirtualLayout(shape=SHAPE, dtype=np.complex64)
    layout[:] = h5py.VirtualSource(str(other), "kspace", shape=SHAPE)
    with _shell(path) as f:
        f.create_virtual_dataset("kspace", layout)
    return path


def _plugin_filter(path: Path, other: Path) -> Path:
    """k-space through an (unregistered, optional) filter 32004: reading it would load a plugin."""
    with _shell(path) as f:
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_chunk((1, COILS, ROWS, COLS))
        dcpl.set_filter(32004, h5py.h5z.FLAG_OPTIONAL)
        space = h5py.h5s.create_simple(SHAPE)
        h5py.h5d.create(f.id, b"kspace", h5py.h5t.py_create(np.dtype(np.complex64)), space, dcpl=dcpl)
    return path


def _linked_group(path: Path, other: Path) -> Path:
    """A valid file whose harmless extra group is an external link: refused all the same."""
    write_multicoil(path, seed=1)
    with h5py.File(path, "a") as f:
        f["extra"] = h5py.ExternalLink(str(other), "/")
    return path


CASES = {
    "external-link": (_external_link, "external link"),
    "external-storage": (_external_storage, "external file"),
    "system-file-storage": (_system_file_storage, "external file"),
    "virtual-dataset": (_virtual, "virtual dataset"),
    "plugin-filter": (_plugin_filter, "filter 32004"),
    "linked-extra-group": (_linked_group, "external link"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reconstruct_refuses_data_outside_the_file(case: str, other: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make, needle = CASES[case]
    (tmp_path / "in").mkdir()
    crafted = make(tmp_path / "in" / "crafted.h5", other)
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(crafted), "--out", str(out), "--quiet"], [str(crafted), needle],
            [crafted, other.parent], [out / "crafted.h5"])


@pytest.mark.parametrize("case", ["external-link", "virtual-dataset"])
def test_benchmark_and_train_refuse_it_too(case: str, other: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "in").mkdir()
    crafted = CASES[case][0](tmp_path / "in" / "crafted.h5", other)
    out = tmp_path / "bench"
    code = main(
        ["benchmark", "--data", str(crafted), "--methods", "zero-filled", "--accelerations", "4", "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and str(crafted) in err and CASES[case][1] in err, err


def test_evaluate_refuses_a_linked_target(other: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets, preds = tmp_path / "t", tmp_path / "p"
    targets.mkdir()
    preds.mkdir()
    with h5py.File(targets / "a.h5", "w") as f:
        f["reconstruction_rss"] = h5py.ExternalLink(str(other), "/reconstruction_rss")
    with h5py.File(preds / "a.h5", "w") as f:
        f["reconstruction"] = np.ones((SLICES, 32, 32), np.float32)
    code = main(["evaluate", "--targets", str(targets), "--predictions", str(preds)])
    err = capsys.readouterr().err
    assert code == 1 and "external link" in err and str(targets / "a.h5") in err, err


def test_ismrmrd_file_with_a_linked_table(other: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The ISMRMRD `data` table in another file: refused before `ismrmrd` or the reader opens it."""
    raw = write_ismrmrd(tmp_path / "other" / "raw_b.h5")
    crafted = tmp_path / "in" / "raw.h5"
    crafted.parent.mkdir()
    with h5py.File(raw, "r") as src, h5py.File(crafted, "w") as f:
        group = f.create_group("dataset")
        group.create_dataset("xml", data=src["dataset/xml"][()])
        group["data"] = h5py.ExternalLink(str(raw), "/dataset/data")
    out = tmp_path / "out"
    for argv in (["reconstruct", str(crafted), "--out", str(out), "--quiet"], ["convert", str(crafted), str(out / "x.h5")]):
        refused(capsys, argv, [str(crafted), "external link"], [crafted, raw], [out / "raw.h5", out / "x.h5"])


def test_library_refuses_before_following_the_link(other: Path, tmp_path: Path) -> None:
    """`open_h5` is the one door: it refuses without ever opening the linked file (here a name
    that does not exist, so following it would fail differently)."""
    crafted = tmp_path / "a.h5"
    with _shell(crafted) as f:
        f["kspace"] = h5py.ExternalLink(str(tmp_path / "nowhere.h5"), "/kspace")
    with pytest.raises(InputError, match="external link to .*nowhere.h5"):
        open_h5(crafted)


def test_allowed_filters_still_read(tmp_path: Path) -> None:
    """Compressed files (deflate + shuffle + fletcher32, lzf, scale-offset) stay readable."""
    from recon.io import read_volume

    kspace = write_multicoil(tmp_path / "plain.h5", seed=2)
    for name, options in {"gzip": dict(compression="gzip", shuffle=True, fletcher32=True), "lzf": dict(compression="lzf")}.items():
        path = tmp_path / f"{name}.h5"
        with h5py.File(tmp_path / "plain.h5", "r") as src, h5py.File(path, "w") as f:
            for key in src:
                if key == "kspace":
                    f.create_dataset(key, data=src[key][()], chunks=(1, COILS, ROWS, COLS), **options)
                else:
                    f.create_dataset(key, data=src[key][()])
            f.attrs.update(dict(src.attrs))
        got, _, _ = read_volume(path)
        np.testing.assert_array_equal(got, kspace)
    assert set(ALLOWED_FILTERS) == {1, 2, 3, 5, 6, 32000}


def test_soft_links_inside_the_file_are_fine(tmp_path: Path) -> None:
    from recon.io import read_volume

    path = tmp_path / "soft.h5"
    kspace = write_multicoil(path, seed=3)
    with h5py.File(path, "a") as f:
        f["data"] = f["kspace"]
        del f["kspace"]
        f["kspace"] = h5py.SoftLink("/data")
    got, _, _ = read_volume(path)
    np.testing.assert_array_equal(got, kspace)


def test_soft_links_that_loop_dangle_or_lead_outside(other: Path, tmp_path: Path) -> None:
    """A loop or a dangling soft link is a corrupt file; one through an external link is refused
    as that external link, before the soft link is ever resolved."""
    for name, make, needle in (
        ("loop", lambda f: f.__setitem__("kspace", h5py.SoftLink("/kspace")), "soft link that does not resolve"),
        ("dangling", lambda f: f.__setitem__("kspace", h5py.SoftLink("/nothing")), "soft link that does not resolve"),
        ("through", lambda f: (f.__setitem__("ext", h5py.ExternalLink(str(other), "/")), f.__setitem__("kspace", h5py.SoftLink("/ext/kspace"))),
         "external link"),
    ):
        crafted = tmp_path / f"{name}.h5"
        with _shell(crafted) as f:
            make(f)
        with pytest.raises(InputError, match=needle):
            open_h5(crafted)
