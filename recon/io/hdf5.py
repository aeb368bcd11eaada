"""Opening HDF5 inputs so that nothing outside the file is ever read.

HDF5 lets a file reach outside itself: an external link names another file, a dataset's raw
data can live in other files ("external storage"), a virtual dataset maps other files' data,
and a filter other than the built-in ones loads plugin code from `HDF5_PLUGIN_PATH` at the
first read. A crafted input could thus make `recon` build an image from another patient's file
or from a system file. `open_h5` walks every link and dataset of a file before any data (or any
name behind a link) is read and refuses such a file by name; `chunk_bytes` tells readers how
much one read of a compressed chunk inflates to, for their memory estimates.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from recon.io.errors import InputError
from recon.io.guard import finishes

PathLike = str | os.PathLike[str]

#: HDF5 filters that are built into libhdf5 or h5py (no plugin is loaded to read them).
ALLOWED_FILTERS: dict[int, str] = {1: "deflate", 2: "shuffle", 3: "fletcher32", 5: "n-bit", 6: "scale-offset", 32000: "lzf"}
#: Links and datasets a file may hold; a file with more is refused (walking it would be the attack).
MAX_OBJECTS = 100_000
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _has_hdf5_signature(path: Path) -> bool:
    """True if the HDF5 signature sits at offset 0, 512, 1024, ... (the places HDF5 allows)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            f.seek(offset)
            if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _dataset_problem(ds: h5py.Dataset) -> str | None:
    """Why reading `ds` would reach outside the file or load plugin code, or None."""
    plist = ds.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        return "is a virtual dataset (its data map other files)"
    if plist.get_external_count() > 0:
        name = plist.get_external(0)[0].decode("utf-8", "replace")
        return f"stores its data in an external file ({name})"
    for i in range(plist.get_nfilters()):
        code, _, _, label = plist.get_filter(i)
        if code not in ALLOWED_FILTERS:
            text = label.decode("utf-8", "replace") if isinstance(label, bytes) else str(label)
            allowed = ", ".join(ALLOWED_FILTERS.values())
            return f"uses HDF5 filter {code} ({text or 'unnamed'}), which would load plugin code; allowed: {allowed}"
    return None


def check_contained(f: h5py.File, path: PathLike) -> None:
    """InputError unless every object of `f` lives inside it and reads without plugins.

    Walks the links of every group (hard links followed once per object, soft links resolved
    but not walked: they point inside the file), refusing external and user-defined links, soft
    links that do not resolve (loops, missing targets), virtual datasets, datasets with
    external storage and filters outside `ALLOWED_FILTERS`. Only metadata is read; metadata too
    damaged to walk is refused as a corrupt file.
    """
    try:
        _walk(f, path)
    except InputError:
        raise
    except (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError) as err:
        raise InputError(path, f"corrupt HDF5 metadata ({' '.join(str(err).split()) or type(err).__name__})") from err


def _walk(f: h5py.File, path: PathLike) -> None:
    """Hard links first (refusing anything outside the file), then the soft links: only once no
    external link exists anywhere may resolving one be allowed to traverse the file."""
    seen: set[int] = set()
    soft: list[tuple[h5py.Group, str, str]] = []
    stack: list[tuple[h5py.Group, str]] = [(f, "")]
    count = 0
    while stack:
        group, prefix = stack.pop()
        for name in group.id:
            count += 1
            if count > MAX_OBJECTS:
                raise InputError(path, f"holds more than {MAX_OBJECTS} HDF5 links; not a raw-data file")
            text = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            where = f"{prefix}/{text}"
            kind = group.id.links.get_info(name if isinstance(name, bytes) else name.encode()).type
            if kind == h5py.h5l.TYPE_EXTERNAL:
                target = group.get(text, getlink=True)
                raise InputError(path, f"'{where}' is an HDF5 external link to {target.filename}:{target.path}; "
                                       "refusing to read another file (copy the data into this file)")
            if kind == h5py.h5l.TYPE_SOFT:
                soft.append((group, text, where))
                continue
            if kind != h5py.h5l.TYPE_HARD:
                raise InputError(path, f"'{where}' is a user-defined HDF5 link (type {kind}); refusing to follow it")
            obj = group.get(text)
            if obj is None:
                raise InputError(path, f"'{where}' cannot be opened (corrupt HDF5 metadata)")
            key = hash(obj.id)
            if key in seen:
                continue
            seen.add(key)
            if isinstance(obj, h5py.Group):
                stack.append((obj, where))
            elif isinstance(obj, h5py.Dataset):
                problem = _dataset_problem(obj)
                if problem is not None:
                    raise InputError(path, f"dataset '{where}' {problem}; refusing to read outside the input file")
    for group, text, where in soft:
        try:
            resolved = group.get(text)
        except (KeyError, RuntimeError, OSError):
            resolved = None
        if resolved is None:
            raise InputError(path, f"'{where}' is an HDF5 soft link that does not resolve (a loop or a missing target)")


def open_h5(path: PathLike) -> h5py.File:
    """Open an HDF5 input read-only, after `check_contained`.

    InputError for a missing path, a folder or device, a non-HDF5 or truncated file, and a file
    that reaches outside itself.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file" if not p.exists() else "not a regular file")
    try:
        f = h5py.File(p, "r")
    except OSError as err:
        if not _has_hdf5_signature(p):
            raise InputError(p, "not an HDF5 file") from err
        raise InputError(p, f"truncated or corrupt HDF5 file ({err})") from err
    try:
        check_contained(f, p)
    except BaseException:
        f.close()
        raise
    return f


def chunk_bytes(ds: h5py.Dataset) -> int:
    """Bytes one chunk of `ds` takes once decompressed (0 for a contiguous dataset).

    HDF5 decompresses a whole chunk to read any element of it, so a chunk spanning many slices
    costs its full size on every per-slice read that misses the chunk cache.
    """
    if ds.chunks is None:
        return 0
    return int(np.prod(ds.chunks, dtype=np.int64)) * int(ds.dtype.itemsize)


def is_compressed(ds: h5py.Dataset) -> bool:
    """Whether `ds` passes through a filter pipeline (chunked with at least one filter)."""
    return ds.chunks is not None and ds.id.get_create_plist().get_nfilters() > 0


def read_finishes(path: PathLike, read: Callable[[h5py.File], object], what: str) -> None:
    """InputError unless `read(file)` on `path` finishes in time, tried first in a forked child.

    Some damaged HDF5 files (a zeroed global heap under variable-length data) make the HDF5
    library loop forever inside one read call, where no Python-level timeout can stop it. The
    child (`recon.io.guard.finishes`) runs the same read and is killed after
    `guard.READ_FLOOR_S` plus the file's size at `guard.READ_RATE_BYTES_S`; an exception in the
    child is left for the real read to report.
    """
    p = Path(path)

    def work() -> None:
        with h5py.File(p, "r") as f:
            read(f)

    finishes(p, work, what, "the HDF5 file is corrupt")
