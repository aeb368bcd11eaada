"""ISMRMRD raw data (Cartesian 2-D, multi-slice) -> `(slices, coils, rows, cols)` k-space.

This module reads ISMRMRD files: the header (`recon.io.header`) and the acquisition table;
`recon.io.gridding` places the acquisitions on the grid (placement, averaging, calibration
lines, reference scans, FOV and grid fitting, noise prewhitening, slice order, geometry: see
its docstring), the one gridding shared with the Siemens TWIX reader.

Headers and acquisitions are read in bulk with h5py using the `ismrmrd` package's on-disk
layout and flag constants (one read per dataset, not per acquisition, which matters for
files with tens of thousands of lines).

What would make a mis-placed or mis-scaled image is refused with an `InputError` naming the
file and the field, never patched over: a position or direction cosines that are not finite or
not orthonormal, a field of view that is not > 0 (`recon.io.header`), a missing slice, samples
that do not fill `active_channels x number_of_samples`, and a noise scan that cannot whiten the
data (another coil count, NaN, no dwell time, all zero). Direction cosines left unset (all zero,
as simulators write them) are read as the identity axes, and `RawScan.warnings` says so once.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np

from recon.io.errors import InputError
from recon.io.gridding import (
    CALIBRATION,
    CALIBRATION_ONLY,
    COUNTERS,
    GRID_MEMORY_FACTOR,
    NOISE,
    REVERSE,
    RawScan,
    grid_acquisitions,
    image_acquisitions,
)
from recon.io.hdf5 import open_h5, read_finishes
from recon.io.header import parse_encodings, parse_header

__all__ = ["CALIBRATION", "CALIBRATION_ONLY", "GRID_MEMORY_FACTOR", "NOISE", "REVERSE", "RawScan", "counter_values",
           "is_ismrmrd", "read_ismrmrd"]

#: Acquisition-header fields the reader relies on.
_HEAD_FIELDS = ("flags", "idx", "encoding_space_ref", "active_channels", "number_of_samples", "center_sample",
                "trajectory_dimensions", "sample_time_us", "position", "read_dir", "phase_dir", "slice_dir")
#: Header fields read as counts and flags, and `idx` fields read as indices: unsigned integers in
#: ISMRMRD. A signed or floating type could hold a negative count or index (a negative slice
#: index would silently address the last slice), so such a table is refused.
_UNSIGNED_FIELDS = ("flags", "encoding_space_ref", "active_channels", "number_of_samples", "center_sample",
                    "trajectory_dimensions")
_INDEX_FIELDS = ("kspace_encode_step_1", "kspace_encode_step_2", "slice", "phase", *COUNTERS)
#: Floating-point header fields and their shapes.
_FLOAT_FIELDS: dict[str, tuple[int, ...]] = {"sample_time_us": (), "position": (3,), "read_dir": (3,), "phase_dir": (3,),
                                             "slice_dir": (3,)}


def _link(group: h5py.Group, name: str) -> tuple[bool, h5py.Group | h5py.Dataset | None]:
    """Whether `group` has a link `name`, and the object behind it: None when the link does not
    resolve (a soft link to a missing target, or a loop of soft links that HDF5 gives up on)."""
    try:
        if not group.id.links.exists(name.encode()):
            return False, None
    except (RuntimeError, KeyError, ValueError):
        return False, None
    try:
        return True, group.get(name)
    except (RuntimeError, KeyError, OSError):
        return True, None


def is_ismrmrd(path: str | os.PathLike[str]) -> bool:
    """True if `path` is an HDF5 file holding an ISMRMRD group `dataset` with `xml` and `data`
    and no fastMRI `kspace` dataset (a fastMRI file with a stray `/dataset/xml` stays fastMRI).

    A `dataset` link that does not resolve counts as ISMRMRD when there is no `kspace` link, so
    the ISMRMRD reader says what is wrong with it. Files that are not HDF5 or that reach outside
    themselves give False; the fastMRI reader then refuses them with the reason."""
    try:
        with open_h5(path) as f:
            has_kspace, kspace = _link(f, "kspace")
            if isinstance(kspace, h5py.Dataset):
                return False
            exists, group = _link(f, "dataset")
            if exists and group is None:
                return not has_kspace
            return isinstance(group, h5py.Group) and _link(group, "data")[0] and _link(group, "xml")[0]
    except (InputError, OSError, ValueError, TypeError):
        return False


def _member(group: h5py.Group, name: str, path: Path, where: str) -> h5py.Group | h5py.Dataset | None:
    """`group[name]`, None when there is no such link; InputError when the link does not resolve."""
    exists, obj = _link(group, name)
    if exists and obj is None:
        raise InputError(path, f"'{where}' is an HDF5 soft link that does not resolve (missing target or a loop of links)")
    return obj


def _table_problem(data: h5py.Dataset) -> str | None:
    """Why the compound type of an acquisition table is not ISMRMRD's, or None."""
    head = data.dtype["head"]
    missing = [name for name in _HEAD_FIELDS if name not in (head.names or ())]
    if missing:
        return f"acquisition headers lack {', '.join(missing)}"
    index = head["idx"]
    missing = [f"idx.{name}" for name in _INDEX_FIELDS if name not in (index.names or ())]
    if missing:
        return f"acquisition headers lack {', '.join(missing)}"
    wrong = [name for name in _UNSIGNED_FIELDS if head[name].kind != "u" or head[name].shape != ()]
    wrong += [f"idx.{name}" for name in _INDEX_FIELDS if index[name].kind != "u" or index[name].shape != ()]
    if wrong:
        return f"acquisition header fields {', '.join(wrong)} are not unsigned integers"
    wrong = [name for name, shape in _FLOAT_FIELDS.items() if head[name].base.kind != "f" or head[name].shape != shape]
    if wrong:
        return f"acquisition header fields {', '.join(wrong)} are not floating-point values of ISMRMRD's shape (3-vectors, a scalar dwell time)"
    samples = h5py.check_vlen_dtype(data.dtype["data"])
    if samples is None or samples.kind != "f":
        return f"samples are stored as {data.dtype['data']}, not as variable-length floats"
    return None


def _ismrmrd_datasets(f: h5py.File, path: Path, dataset: str) -> tuple[h5py.Dataset, h5py.Dataset]:
    """The `xml` and `data` datasets of ISMRMRD group `dataset`, checked for kind and layout."""
    group = _member(f, dataset, path, dataset)
    if not isinstance(group, h5py.Group):
        raise InputError(path, f"no ISMRMRD group '{dataset}' with 'xml' and 'data'")
    xml, data = (_member(group, name, path, f"{dataset}/{name}") for name in ("xml", "data"))
    if xml is None or data is None:
        raise InputError(path, f"no ISMRMRD group '{dataset}' with 'xml' and 'data'")
    if not isinstance(xml, h5py.Dataset) or xml.ndim != 1 or xml.shape[0] < 1:
        raise InputError(path, f"'{dataset}/xml' is not a text dataset holding the ISMRMRD header")
    if not isinstance(data, h5py.Dataset) or data.ndim != 1 or data.dtype.names is None or not {"head", "data"} <= set(data.dtype.names):
        raise InputError(path, f"'{dataset}/data' is not an ISMRMRD acquisition table (fields head, traj, data)")
    problem = _table_problem(data)
    if problem is not None:
        raise InputError(path, f"'{dataset}/data' {problem}; not an ISMRMRD file")
    return xml, data


#: Files whose acquisition table was read in a guarded child, by (path, size, mtime): None when
#: the read finished, else the refusal (so a second look at the file does not wait again).
_TABLES_READ: dict[tuple[str, int, int], InputError | None] = {}


def _read_table(path: Path, data: h5py.Dataset, field: str) -> np.ndarray:
    """Column `field` ("head" or "data") of the acquisition table `data`.

    The first time a file is read, the whole table is read once in a forked child with a time
    limit (`recon.io.hdf5.read_finishes`): damaged variable-length storage can hang the HDF5
    library inside one call. HDF5 errors become an InputError naming the file.
    """
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _TABLES_READ:
        name = data.name

        def read_all(f: h5py.File) -> None:
            table = f[name]
            for start in range(0, table.shape[0], 4096):
                table[start : start + 4096]

        try:
            read_finishes(path, read_all, "the ISMRMRD acquisition table")
            _TABLES_READ[key] = None
        except InputError as err:
            _TABLES_READ[key] = err
    if _TABLES_READ[key] is not None:
        raise _TABLES_READ[key]
    try:
        return data[field]
    except (OSError, RuntimeError, ValueError) as err:
        raise InputError(path, f"cannot read the ISMRMRD acquisition table ({' '.join(str(err).split())}); the file is damaged") from err


def counter_values(path: str | os.PathLike[str], dataset: str = "dataset") -> dict[str, list[int]]:
    """The repetition / contrast / set indices of a file's imaging acquisitions (sorted)."""
    p = Path(path)
    with open_h5(p) as f:
        _, data = _ismrmrd_datasets(f, p, dataset)
        heads = _read_table(p, data, "head")
        is_image = image_acquisitions(heads)
        idx = heads["idx"]
        return {c: np.unique(idx[c][is_image]).astype(int).tolist() for c in COUNTERS}


def read_ismrmrd(
    path: str | os.PathLike[str],
    *,
    dataset: str = "dataset",
    repetition: int | None = None,
    contrast: int | None = None,
    set_index: int | None = None,
    prewhiten: bool = True,
    remove_oversampling: bool = False,
    max_memory: int | None = None,
) -> RawScan:
    """Read a Cartesian 2-D (multi-slice) ISMRMRD file into a RawScan.

    Args:
        path: the ISMRMRD HDF5 file.
        dataset: name of the ISMRMRD group in the file.
        repetition, contrast, set_index: which repetition / contrast / set to grid. None
            means the file's only one; a file holding several is refused, naming them, so
            none is dropped silently.
        prewhiten: whiten coil noise with the file's noise scan (ACQ_IS_NOISE_MEASUREMENT),
            scaled by the noise vs imaging dwell times; a file without a noise scan is read
            as is (`RawScan.acquisition.prewhitened` says which).
        remove_oversampling: crop the readout to the recon FOV (see module docstring).
        max_memory: bytes the gridding may use (default: the available memory); a header
            claiming more (about 4x the complex64 k-space size) is refused before allocating.

    Raises:
        InputError: not an ISMRMRD file (links that do not resolve, header fields of the wrong
            type), non-Cartesian trajectory, 3-D encoding, no imaging data for the chosen
            repetition/contrast/set, several of them and none chosen, NaN/Inf samples, samples
            that do not fill `active_channels x number_of_samples`, a missing slice, an empty
            or too small (< `MIN_RECON_MATRIX`) reconSpace, an encodedSpace the data do not
            fill, too much memory, lines outside the matrix, a position or direction cosines
            that cannot place the image (not finite, not orthonormal), or a noise scan that
            cannot whiten the data (another coil count, NaN, no dwell time, all zero).

    Direction cosines that are all zero are read as the identity axes; `RawScan.warnings` says so.
    """
    path = Path(path)
    with open_h5(path) as f:
        xml_ds, data_ds = _ismrmrd_datasets(f, path, dataset)
        xml = xml_ds[0]
        xml = xml if isinstance(xml, (bytes, str)) else str(xml)
        hdr = parse_header(xml, str(path), require_limits=False)
        encodings = parse_encodings(xml, str(path))
        if hdr.trajectory != "cartesian":
            raise InputError(path, f"trajectory '{hdr.trajectory}' is not supported (Cartesian only)")
        if hdr.encoded_size[2] > 1:
            raise InputError(path, f"3-D encoding (encoded z = {hdr.encoded_size[2]}) is not supported")
        heads = _read_table(path, data_ds, "head")
        payload = _read_table(path, data_ds, "data")
        choice = {"repetition": repetition, "contrast": contrast, "set": set_index}
        return grid_acquisitions(path, hdr, heads, payload, choice, prewhiten, remove_oversampling, max_memory, encodings)
