"""Seeded fuzzing of `recon reconstruct`: mutants of tiny raw-data files, and the contract each must meet.

Why: a reader that trusts a file ends in a traceback, a hang, a huge allocation or a silently wrong
image. Every mutant here is run as `recon --debug reconstruct FILE --out DIR --quiet --max-memory
256M --method M` (`zero-filled`, and `sense` on a subset), and must end in one of two ways:

* refused: non-zero exit, exactly one stderr line `error: FILE: problem` (a problem text, not a raw
  `SomeError: ...` exception), no traceback, refused inside the batch runner (so `summary.json`
  is written and a folder run goes on), and no other file in the output folder;
* reconstructed: exit 0, nothing but `warning:` / `note:` lines on stderr, and the outputs a valid
  file of that content gives (`Format.expected_outputs`), each with a `reconstruction` dataset of
  shape (slices, recon rows, recon cols) that is finite with no all-zero slice.

Each mutant also says which of the two it needs (`Expect`): "refuse" (NaN samples, a header that
disagrees with the data, ...), "image" (a harmless change) or "either". Inputs must be
byte-identical afterwards, and a case may not grow the process's peak RSS by more than
`PEAK_MIB` (a header's claim allocated instead of refused).

How it runs: `build_mutants` writes each format's seed files, then copies and mutates them, one
`numpy.random.default_rng([SEED, index])` per mutant. `run_cases` runs every (mutant, method) in
one worker subprocess (`python tests/_fuzz.py worker CASES.json ENTRY`) that calls
`recon.cli.main` in-process with stdout / stderr captured at the file-descriptor level and reports
each case on a pipe; the parent kills the worker when a case runs past its timeout (a hang) or
records its death (a crash) and starts a new worker for the cases left. `judge` turns each
outcome into the contract's failures.

Adding a format: write a `Format` with its seed builders (`Seed`: small valid files of the
format), its mutators (`Mutator`: structure and metadata of that format) and `expected_outputs`
(output names and shapes a file gives), and add it to `formats()`. The byte-level mutators
(`BYTE_MUTATORS`: truncation, byte flips, ...) apply to every format (a slow format may take
fewer repeats of them, `Format.byte_mutators`); the ISMRMRD-XML header mutators
(`xml_mutators`) to any format that has that header, given how to read and write it.

Siemens TWIX joins when twixtools 0.24's example `gre.dat` is in the test cache
(`tests/twix_files.py`; without it the TWIX mutants are left out): a small seed made from it
(its central 64 lines x 128 samples, protocol edited to match), its block-structure, counter,
geometry, sample and protocol mutators, and a reduced set of the byte mutators.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Sequence

import h5py
import numpy as np

from _hostile import fft2c, smooth_coil_images, write_ismrmrd
from fastmri_files import COLS, PADDING, ROWS, write_multicoil

ROOT = Path(__file__).resolve().parent.parent

SEED = 28
#: Methods: every mutant runs the first; mutants with `index % SENSE_EVERY == 0` (and every seed)
#: also the second, on seeds whose k-space can calibrate coil maps.
METHODS = ("zero-filled", "sense")
SENSE_EVERY = 3
MAX_MEMORY = "256M"
#: Peak RSS growth (MiB) a case may show: twice `MAX_MEMORY`, the slack of an estimate. More means
#: a header's claim was allocated instead of refused.
PEAK_MIB = 512

Expect = Literal["refuse", "image", "either"]
Kind = Literal["structural", "metadata", "value", "bytes", "none"]
Mutate = Callable[[Path, np.random.Generator], str]


@dataclass(frozen=True)
class Seed:
    """A valid file of a format: `build(path)` writes it. `sense`: its k-space has coil structure
    for ESPIRiT (white-noise k-space has none). `expect`: what the unmutated file must give."""

    name: str
    build: Callable[[Path], None]
    sense: bool = True
    expect: Expect = "image"


@dataclass(frozen=True)
class Mutator:
    """One kind of damage: `mutate(path, rng)` changes the copy of a seed in place and returns a
    one-line description. `seeds`: the seed names it applies to (None: all of the format);
    `repeats`: how many mutants (different draws) it makes."""

    name: str
    kind: Kind
    expect: Expect
    mutate: Mutate
    seeds: tuple[str, ...] | None = None
    repeats: int = 1


@dataclass(frozen=True)
class Format:
    """A raw-data format: its seeds, its own mutators, and the outputs a readable file gives
    (`expected_outputs(path)`: output file name -> (slices, rows, cols)). `byte_mutators`: the
    byte-level mutators it gets (None: all of `BYTE_MUTATORS`; a slower format takes fewer
    repeats of the same kinds)."""

    name: str
    suffix: str
    seeds: tuple[Seed, ...]
    mutators: tuple[Mutator, ...]
    expected_outputs: Callable[[Path], dict[str, tuple[int, int, int]]]
    byte_mutators: tuple[Mutator, ...] | None = None


@dataclass(frozen=True)
class Mutant:
    """One mutated input file and what it must give."""

    id: str
    index: int
    path: Path
    format: str
    seed: str
    mutator: str
    kind: str
    description: str
    expect: Expect
    methods: tuple[str, ...]
    sha256: str


@dataclass
class Failure:
    """One broken promise: `category` groups them (hang, crash, traceback, ...)."""

    mutant: str
    method: str
    description: str
    category: str
    detail: str
    location: str = ""

    def line(self) -> str:
        where = f" @ {self.location}" if self.location else ""
        return f"{self.mutant} [{self.method}] {self.description} -> {self.category}: {self.detail}{where}"


# --------------------------------------------------------------------------------------------
# Small helpers shared by the mutators


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _replace(group: h5py.Group, name: str, data: Any = None, **kwargs: Any) -> None:
    """Delete `name` (if present) and create it again from `data` / `kwargs`."""
    if name in group:
        del group[name]
    group.create_dataset(name, data=data, **kwargs)


def _flip_bytes(path: Path, rng: np.random.Generator, count: int, limit: int | None = None) -> list[int]:
    """XOR `count` random bytes (in the first `limit` bytes) with random non-zero values."""
    data = bytearray(path.read_bytes())
    span = len(data) if limit is None else min(limit, len(data))
    offsets = sorted(int(o) for o in rng.choice(span, size=min(count, span), replace=False))
    for o in offsets:
        data[o] ^= int(rng.integers(1, 256))
    path.write_bytes(bytes(data))
    return offsets


# --------------------------------------------------------------------------------------------
# Byte-level mutators: any format


def _truncate(where: str) -> Mutate:
    def mutate(path: Path, rng: np.random.Generator) -> str:
        size = path.stat().st_size
        if where == "head":
            keep = int(rng.integers(0, min(2048, size)))
        elif where == "tail":
            keep = size - int(rng.integers(1, 64))
        else:
            keep = int(rng.integers(0, size))
        with open(path, "r+b") as f:
            f.truncate(keep)
        return f"truncated to {keep} of {size} bytes"

    return mutate


def _flip(limit: int | None, most: int) -> Mutate:
    def mutate(path: Path, rng: np.random.Generator) -> str:
        offsets = _flip_bytes(path, rng, int(rng.integers(1, most + 1)), limit)
        return f"bytes flipped at {offsets}"

    return mutate


def _zero_block(path: Path, rng: np.random.Generator) -> str:
    data = bytearray(path.read_bytes())
    start = int(rng.integers(0, len(data) // 512)) * 512
    data[start : start + 512] = bytes(512)
    path.write_bytes(bytes(data))
    return f"512 bytes zeroed at {start}"


def _append_garbage(path: Path, rng: np.random.Generator) -> str:
    with open(path, "ab") as f:
        f.write(rng.bytes(1000))
    return "1000 random bytes appended"


def _prepend_block(path: Path, rng: np.random.Generator) -> str:
    path.write_bytes(bytes(512) + path.read_bytes())
    return "512 zero bytes prepended (file shifted)"


def _empty_file(path: Path, rng: np.random.Generator) -> str:
    path.write_bytes(b"")
    return "empty file"


def _text_file(path: Path, rng: np.random.Generator) -> str:
    path.write_bytes(b"this is not raw data\n" * 10)
    return "plain text file"


BYTE_MUTATORS: tuple[Mutator, ...] = (
    Mutator("truncate", "bytes", "refuse", _truncate("any"), repeats=6),
    Mutator("truncate-head", "bytes", "refuse", _truncate("head"), repeats=2),
    Mutator("truncate-tail", "bytes", "refuse", _truncate("tail"), repeats=2),
    Mutator("flip-metadata", "bytes", "either", _flip(4096, 4), repeats=10),
    Mutator("flip-anywhere", "bytes", "either", _flip(None, 8), repeats=8),
    Mutator("zero-block", "bytes", "either", _zero_block, repeats=3),
    Mutator("append-garbage", "bytes", "either", _append_garbage),
    Mutator("prepend-block", "bytes", "either", _prepend_block),
    Mutator("empty-file", "bytes", "refuse", _empty_file),
    Mutator("text-file", "bytes", "refuse", _text_file),
)


# --------------------------------------------------------------------------------------------
# ISMRMRD XML header mutators: fastMRI's `ismrmrd_header` and ISMRMRD's `dataset/xml`

ISMRMRD_NS = "http://www.ismrm.org/ISMRMRD"
XmlIO = tuple[Callable[[Path], bytes], Callable[[Path, bytes], None]]
ENC = ("encoding", "encodedSpace", "matrixSize")
REC = ("encoding", "reconSpace", "matrixSize")
LIMITS = ("encoding", "encodingLimits", "kspace_encoding_step_1")


def _xml_root(text: bytes) -> Any:
    import defusedxml.ElementTree as SafeET

    return SafeET.fromstring(text)


def _xml_find(root: Any, path: Sequence[str]) -> Any:
    return root.find("/".join(f"{{*}}{tag}" for tag in path))


def _xml_bytes(root: Any) -> bytes:
    import xml.etree.ElementTree as ET

    ET.register_namespace("", ISMRMRD_NS)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _xml_edit(io: XmlIO, path: Sequence[str], value: str | Callable[[str], str] | None) -> Mutate:
    """Set the text at `path` (a callable gets the old text), or remove the element (None)."""

    def mutate(file: Path, rng: np.random.Generator) -> str:
        root = _xml_root(io[0](file))
        node = _xml_find(root, path)
        if node is None:
            raise LookupError(f"seed header lacks {'/'.join(path)}")
        where = "/".join(path)
        if value is None:
            parent = _xml_find(root, path[:-1]) if len(path) > 1 else root
            parent.remove(node)
            text = f"header {where} removed"
        else:
            new = value(node.text or "") if callable(value) else value
            node.text = new
            text = f"header {where} = {new!r}"
        io[1](file, _xml_bytes(root))
        return text

    return mutate


def _xml_text(io: XmlIO, how: str) -> Mutate:
    """Damage the header text as a whole."""

    def mutate(file: Path, rng: np.random.Generator) -> str:
        old = io[0](file)
        if how == "truncate":
            cut = int(rng.integers(1, len(old)))
            io[1](file, old[:cut])
            return f"header text cut at {cut} of {len(old)} bytes"
        new = {
            "empty": b"",
            "random": rng.bytes(200),
            "plain": b"hello, not XML",
            "nul": old[: len(old) // 2] + b"\x00" + old[len(old) // 2 :],
            "bom": b"\xef\xbb\xbf" + old,
            "bad-utf8": old.replace(b"<encoding>", b"<!-- \xff\xfe --><encoding>", 1),
            "laughs": b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
                      b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>'
                      + re.sub(rb"^<\?xml[^>]*\?>", b"", old).replace(b"</ismrmrdHeader>", b"<x>&d;</x></ismrmrdHeader>"),
            "external-entity": b'<?xml version="1.0"?><!DOCTYPE h [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                               + re.sub(rb"^<\?xml[^>]*\?>", b"", old).replace(b"</ismrmrdHeader>", b"<x>&e;</x></ismrmrdHeader>"),
            "other-root": re.sub(rb"ismrmrdHeader", b"somethingElse", old),
            "double-encoding": re.sub(rb"<encoding>", b"<encoding><encodedSpace><matrixSize><x>128</x><y>128</y><z>1</z>"
                                                    b"</matrixSize></encodedSpace><reconSpace><matrixSize><x>128</x><y>128</y>"
                                                    b"<z>1</z></matrixSize></reconSpace></encoding><encoding>", old, count=1),
        }[how]
        io[1](file, new)
        return f"header text: {how}"

    return mutate


MATRIX_BAD = ("0", "-1", "abc", "", "3.5", "NaN", "1e3", "2147483647", "99999999999999999999", "1000000")
FOV_VALUES = ("0", "-200", "nan", "inf", "1e30", "abc")
LIMIT_VALUES = ("-1", "0", "1000", "65536", "abc", "")


def xml_mutators(io: XmlIO, fastmri: bool) -> tuple[Mutator, ...]:
    """Header mutators for a format whose header is ISMRMRD XML (read / written through `io`).

    fastMRI files must carry encoding limits (their padding comes from them) and an encodedSpace
    equal to the k-space matrix; ISMRMRD files may omit the limits and grid to their header.
    """
    out: list[Mutator] = []

    def add(name: str, kind: Kind, expect: Expect, mutate: Mutate) -> None:
        out.append(Mutator(name, kind, expect, mutate))

    for space, axis in itertools.product((ENC, REC), "xy"):
        label = f"{space[1]}-{axis}"
        for value in MATRIX_BAD:
            add(f"xml-{label}={value or 'blank'}", "metadata", "refuse", _xml_edit(io, (*space, axis), value))
        add(f"xml-{label}=padded", "metadata", "image", _xml_edit(io, (*space, axis), lambda old: f"  {old.strip()}\n"))
        for value in ("16", "48"):
            expect: Expect = "refuse" if fastmri and space is ENC else "either"
            add(f"xml-{label}={value}", "metadata", expect, _xml_edit(io, (*space, axis), value))
        add(f"xml-{label}-removed", "metadata", "refuse", _xml_edit(io, (*space, axis), None))
    for space, axis in itertools.product(("encodedSpace", "reconSpace"), "xy"):
        for value in FOV_VALUES:
            add(f"xml-{space}-fov-{axis}={value or 'blank'}", "metadata", "either",
                _xml_edit(io, ("encoding", space, "fieldOfView_mm", axis), value))
        add(f"xml-{space}-fov-removed", "metadata", "either", _xml_edit(io, ("encoding", space, "fieldOfView_mm"), None))
    for name in ("center", "maximum"):
        for value in LIMIT_VALUES:
            if value == "abc" or (value == "" and fastmri) or value == "-1" or (name == "center" and value in ("1000", "65536")):
                expect = "refuse"
            else:
                expect = "either"
            add(f"xml-limit-{name}={value or 'blank'}", "metadata", expect, _xml_edit(io, (*LIMITS, name), value))
        add(f"xml-limit-{name}-removed", "metadata", "refuse" if fastmri else "either", _xml_edit(io, (*LIMITS, name), None))
    for value in ("-1", "1000", "abc"):
        add(f"xml-limit-minimum={value}", "metadata", "either", _xml_edit(io, (*LIMITS, "minimum"), value))
    add("xml-encodingLimits-removed", "metadata", "refuse" if fastmri else "either", _xml_edit(io, ("encoding", "encodingLimits"), None))
    for element in ("encodedSpace", "reconSpace"):
        add(f"xml-{element}-removed", "metadata", "refuse", _xml_edit(io, ("encoding", element), None))
    add("xml-encoding-removed", "metadata", "refuse", _xml_edit(io, ("encoding",), None))
    add("xml-encodedSpace-z=4", "metadata", "either" if fastmri else "refuse", _xml_edit(io, (*ENC, "z"), "4"))
    add("xml-encodedSpace-z-removed", "metadata", "either", _xml_edit(io, (*ENC, "z"), None))
    add("xml-trajectory=radial", "metadata", "either" if fastmri else "refuse", _xml_edit(io, ("encoding", "trajectory"), "radial"))
    add("xml-trajectory-removed", "metadata", "either", _xml_edit(io, ("encoding", "trajectory"), None))
    for how in ("truncate", "empty", "random", "plain", "nul", "laughs", "external-entity", "double-encoding"):
        add(f"xml-text-{how}", "metadata", "refuse", _xml_text(io, how))
    for how in ("bom", "bad-utf8", "other-root"):
        add(f"xml-text-{how}", "metadata", "either", _xml_text(io, how))
    return tuple(out)


def _recon_matrix(xml: bytes | str) -> tuple[int, int]:
    """reconSpace (x, y) of an ISMRMRD header, read independently of `recon`."""
    root = _xml_root(xml.encode() if isinstance(xml, str) else bytes(xml))
    x, y = (_xml_find(root, (*REC, axis)) for axis in "xy")
    return int(x.text.strip()), int(y.text.strip())


# --------------------------------------------------------------------------------------------
# fastMRI files


def _smooth_fastmri_kspace(slices: int, coils: int) -> np.ndarray:
    """k-space of an ellipse under Gaussian coil profiles, zero in the padding columns."""
    k = np.stack([fft2c(smooth_coil_images(ROWS, COLS, coils, 1.0 + s)) for s in range(slices)]).astype(np.complex64)
    k[..., : PADDING[0]] = 0
    k[..., PADDING[1] :] = 0
    return k


#: The challenge-style seed's mask: 9 of the 33 acquirable columns (3.7x, stated as 4x), a
#: 4-column centre (num_low_frequency 3).
SEED_MASK = np.zeros(COLS, bool)
SEED_MASK[PADDING[0] : PADDING[1] : 6] = True
SEED_MASK[COLS // 2 - 1 : COLS // 2 + 3] = True


def _fastmri_target(path: Path) -> None:
    """write_multicoil's training-style file (target, attrs), with smooth k-space."""
    write_multicoil(path, seed=0)
    with h5py.File(path, "r+") as f:
        f["kspace"][...] = _smooth_fastmri_kspace(*f["kspace"].shape[:2])


def _fastmri_mask(path: Path) -> None:
    """write_multicoil's challenge-style file (mask, acceleration, num_low_frequency), smooth k-space."""
    write_multicoil(path, seed=1, mask=SEED_MASK)
    with h5py.File(path, "r+") as f:
        f["kspace"][...] = _smooth_fastmri_kspace(*f["kspace"].shape[:2]) * SEED_MASK


def _fastmri_noise(path: Path) -> None:
    """write_multicoil as it is: white-noise k-space (no coil structure to calibrate)."""
    write_multicoil(path, seed=2)


def _h5_edit(fn: Callable[[h5py.File, np.random.Generator], str]) -> Mutate:
    def mutate(path: Path, rng: np.random.Generator) -> str:
        with h5py.File(path, "r+") as f:
            return fn(f, rng)

    return mutate


def _kspace_as(transform: Callable[[np.ndarray], Any], text: str, **kwargs: Any) -> Mutate:
    """Replace `kspace` by `transform(kspace)` (dataset options in `kwargs`)."""

    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        k = f["kspace"][()]
        _replace(f, "kspace", transform(k), **kwargs)
        return text

    return _h5_edit(fn)


def _delete(name: str) -> Mutate:
    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        del f[name]
        return f"'{name}' deleted"

    return _h5_edit(fn)


def _rename(name: str, new: str) -> Mutate:
    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        f.move(name, new)
        return f"'{name}' renamed to '{new}'"

    return _h5_edit(fn)


def _group_instead(name: str) -> Mutate:
    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        if name in f:
            del f[name]
        f.create_group(name).create_dataset("inner", data=np.zeros(3))
        return f"'{name}' is a group"

    return _h5_edit(fn)


def _set_dataset(name: str, text: str, data: Callable[[h5py.File], Any], **kwargs: Any) -> Mutate:
    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        _replace(f, name, data(f), **kwargs)
        return text

    return _h5_edit(fn)


def _kspace_values(text: str, edit: Callable[[np.ndarray, np.random.Generator], None]) -> Mutate:
    """Change k-space values in place (same dataset, same layout)."""

    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        k = f["kspace"][()]
        edit(k, rng)
        f["kspace"][...] = k
        return text

    return _h5_edit(fn)


def _random_index(shape: tuple[int, ...], rng: np.random.Generator) -> tuple[int, ...]:
    return tuple(int(rng.integers(0, n)) for n in shape)


def _set_at(value: complex, where: str) -> Callable[[np.ndarray, np.random.Generator], None]:
    def edit(k: np.ndarray, rng: np.random.Generator) -> None:
        if where == "padding":
            s, c, r = _random_index(k.shape[:3], rng)
            k[s, c, r, 0] = value
        elif where == "sampled":
            s, c, r = _random_index(k.shape[:3], rng)
            k[s, c, r, COLS // 2] = value
        else:
            k[_random_index(k.shape, rng)] = value

    return edit


def _attr(name: str, value: Any, label: str) -> Mutate:
    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        f.attrs[name] = value
        return f"attr {name} = {label}"

    return _h5_edit(fn)


def _del_attr(name: str) -> Mutate:
    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        if name in f.attrs:
            del f.attrs[name]
        return f"attr {name} deleted"

    return _h5_edit(fn)


def _mask(text: str, make: Callable[[np.ndarray], Any]) -> Mutate:
    """Replace `mask` by `make(old mask as bool, or the seed mask on a training file)`."""

    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        old = f["mask"][()].astype(bool) if "mask" in f else SEED_MASK.copy()
        _replace(f, "mask", make(old))
        return f"mask {text}"

    return _h5_edit(fn)


def _fastmri_xml_read(path: Path) -> bytes:
    with h5py.File(path, "r") as f:
        raw = f["ismrmrd_header"][()]
    return raw if isinstance(raw, bytes) else str(raw).encode()


def _fastmri_xml_write(path: Path, text: bytes) -> None:
    with h5py.File(path, "r+") as f:
        _replace(f, "ismrmrd_header", np.bytes_(text))


def _soft_link(target: str) -> Mutate:
    def fn(f: h5py.File, rng: np.random.Generator) -> str:
        if target == "/data":
            f.move("kspace", "data")
        else:
            del f["kspace"]
        f["kspace"] = h5py.SoftLink(target)
        return f"'kspace' is a soft link to {target}"

    return _h5_edit(fn)


def _hard_link_header(f: h5py.File, rng: np.random.Generator) -> str:
    del f["kspace"]
    f["kspace"] = f["ismrmrd_header"]
    return "'kspace' is a hard link to 'ismrmrd_header'"


def _extra_objects(f: h5py.File, rng: np.random.Generator) -> str:
    f.create_dataset("unrelated", data=np.arange(10))
    f.create_group("notes").attrs["text"] = "extra"
    return "extra dataset and group"


def _complex_compound(names: tuple[str, str], dtype: str) -> Callable[[np.ndarray], np.ndarray]:
    def make(k: np.ndarray) -> np.ndarray:
        out = np.empty(k.shape, dtype=[(names[0], dtype), (names[1], dtype)])
        out[names[0]], out[names[1]] = k.real, k.imag
        return out

    return make


def _fastmri_mutators() -> tuple[Mutator, ...]:
    target, mask_seed = ("target", "noise"), ("mask",)
    m: list[Mutator] = [
        Mutator("kspace-deleted", "structural", "refuse", _delete("kspace")),
        Mutator("header-deleted", "structural", "refuse", _delete("ismrmrd_header")),
        Mutator("target-deleted", "structural", "image", _delete("reconstruction_rss"), target),
        Mutator("mask-deleted", "structural", "either", _delete("mask"), mask_seed),
        Mutator("kspace-renamed", "structural", "refuse", _rename("kspace", "kspace_data")),
        Mutator("header-renamed", "structural", "refuse", _rename("ismrmrd_header", "header")),
        Mutator("kspace-complex128", "structural", "either", _kspace_as(lambda k: k.astype(np.complex128), "kspace complex128")),
        Mutator("kspace-big-endian", "structural", "either", _kspace_as(lambda k: k.astype(">c8"), "kspace big-endian complex64")),
        Mutator("kspace-float32", "structural", "refuse", _kspace_as(lambda k: k.real.astype(np.float32), "kspace float32 (real part)")),
        Mutator("kspace-int16", "structural", "refuse", _kspace_as(lambda k: (k.real * 100).astype(np.int16), "kspace int16")),
        Mutator("kspace-compound-real-imag", "structural", "either",
                _kspace_as(_complex_compound(("real", "imag"), "<f4"), "kspace compound (real, imag)")),
        Mutator("kspace-compound-r-i-f2", "structural", "either",
                _kspace_as(_complex_compound(("r", "i"), "<f2"), "kspace compound (r, i) float16")),
        Mutator("kspace-chunked-gzip", "structural", "image",
                _kspace_as(lambda k: k, "kspace chunked (h5py auto chunks), gzip + shuffle", chunks=True, compression="gzip", shuffle=True)),
        Mutator("kspace-rank3", "structural", "either", _kspace_as(lambda k: k[:, 0], "kspace rank 3 (coil 0: single-coil)")),
        Mutator("kspace-rank5", "structural", "refuse", _kspace_as(lambda k: k[None], "kspace rank 5")),
        Mutator("kspace-rank2", "structural", "refuse", _kspace_as(lambda k: k[0, 0], "kspace rank 2")),
        Mutator("kspace-rank1", "structural", "refuse", _kspace_as(lambda k: k[0, 0, 0], "kspace rank 1")),
        Mutator("kspace-scalar", "structural", "refuse", _kspace_as(lambda k: k[0, 0, 0, 0], "kspace scalar")),
        Mutator("kspace-rows-cols-swapped", "structural", "refuse",
                _kspace_as(lambda k: np.ascontiguousarray(k.swapaxes(-1, -2)), "kspace (S, C, W, H)")),
        Mutator("kspace-slices-coils-swapped", "structural", "either",
                _kspace_as(lambda k: np.ascontiguousarray(k.swapaxes(0, 1)), "kspace (C, S, H, W)")),
        Mutator("kspace-group", "structural", "refuse", _group_instead("kspace")),
        Mutator("header-group", "structural", "refuse", _group_instead("ismrmrd_header")),
        Mutator("mask-group", "structural", "refuse", _group_instead("mask"), mask_seed),
        Mutator("target-group", "structural", "either", _group_instead("reconstruction_rss"), target),
        Mutator("kspace-no-slices", "structural", "refuse", _kspace_as(lambda k: k[:0], "kspace (0, C, H, W)")),
        Mutator("kspace-no-coils", "structural", "refuse", _kspace_as(lambda k: k[:, :0], "kspace (S, 0, H, W)")),
        Mutator("kspace-no-rows", "structural", "refuse", _kspace_as(lambda k: k[:, :, :0], "kspace (S, C, 0, W)")),
        Mutator("kspace-null", "structural", "refuse", _kspace_as(lambda k: h5py.Empty("<c8"), "kspace null dataspace")),
        Mutator("header-empty", "structural", "refuse", _set_dataset("ismrmrd_header", "header b''", lambda f: np.bytes_(b""))),
        Mutator("header-null", "structural", "refuse", _set_dataset("ismrmrd_header", "header null dataspace", lambda f: h5py.Empty("S10"))),
        Mutator("header-int", "structural", "refuse", _set_dataset("ismrmrd_header", "header int array", lambda f: np.arange(5))),
        Mutator("header-vlen-str", "structural", "image",
                _set_dataset("ismrmrd_header", "header vlen str", lambda f: f["ismrmrd_header"][()].decode(), dtype=h5py.string_dtype())),
        Mutator("header-two-strings", "structural", "either",
                _set_dataset("ismrmrd_header", "header array of 2 strings", lambda f: np.array([f["ismrmrd_header"][()]] * 2))),
        Mutator("mask-empty", "structural", "refuse", _mask("shape (0,)", lambda m: np.zeros(0, bool)), mask_seed),
        Mutator("target-empty", "structural", "either", _set_dataset("reconstruction_rss", "target (0, 32, 32)", lambda f: np.zeros((0, 32, 32), np.float32)), target),
        Mutator("target-int16", "structural", "either", _set_dataset("reconstruction_rss", "target int16", lambda f: f["reconstruction_rss"][()].astype(np.int16)), target),
        Mutator("target-rank2", "structural", "either", _set_dataset("reconstruction_rss", "target rank 2", lambda f: f["reconstruction_rss"][0]), target),
        Mutator("kspace-soft-link", "structural", "image", _soft_link("/data")),
        Mutator("kspace-dangling-link", "structural", "refuse", _soft_link("/nowhere")),
        Mutator("kspace-link-loop", "structural", "refuse", _soft_link("/kspace")),
        Mutator("kspace-is-header", "structural", "refuse", _h5_edit(_hard_link_header)),
        Mutator("extra-objects", "structural", "image", _h5_edit(_extra_objects)),
        # values
        Mutator("nan-sample", "value", "refuse", _kspace_values("one NaN sample", _set_at(complex(np.nan, 0), "any"))),
        Mutator("nan-sample-acquired", "value", "refuse", _kspace_values("one NaN sample in the centre column", _set_at(complex(np.nan, 0), "sampled"))),
        Mutator("nan-in-padding", "value", "refuse", _kspace_values("one NaN in a padding column", _set_at(complex(np.nan, np.nan), "padding"))),
        Mutator("inf-sample", "value", "refuse", _kspace_values("one +Inf sample", _set_at(complex(np.inf, 0), "sampled"))),
        Mutator("neg-inf-imag", "value", "refuse", _kspace_values("one -Inf imaginary part", _set_at(complex(0, -np.inf), "sampled"))),
        Mutator("max-float", "value", "either", _kspace_values("one sample 3e38", _set_at(complex(3e38, 3e38), "sampled"))),
        Mutator("all-zero", "value", "refuse", _kspace_values("all-zero k-space", lambda k, r: k.fill(0))),
        Mutator("slice-zero", "value", "refuse", _kspace_values("one slice all zero", lambda k, r: k[int(r.integers(0, k.shape[0]))].fill(0))),
        Mutator("coil-zero", "value", "either", _kspace_values("one coil all zero", lambda k, r: k[:, int(r.integers(0, k.shape[1]))].fill(0))),
        Mutator("huge", "value", "either", _kspace_values("k-space x 1e30", lambda k, r: k.__imul__(np.float32(1e30)))),
        Mutator("tiny", "value", "either", _kspace_values("k-space x 1e-30", lambda k, r: k.__imul__(np.float32(1e-30)))),
        Mutator("subnormal", "value", "either", _kspace_values("k-space x 1e-44 (subnormal)", lambda k, r: k.__imul__(np.float32(1e-44)))),
        Mutator("white-noise", "value", "either", _kspace_values(
            "k-space replaced by white noise", lambda k, r: k.__setitem__(Ellipsis, (r.standard_normal(k.shape) + 1j * r.standard_normal(k.shape)) * (k != 0)))),
        # mask values
        Mutator("mask-half", "metadata", "either", _mask("float 0.5 where sampled", lambda m: m * np.float32(0.5)), mask_seed),
        Mutator("mask-nan-sampled", "metadata", "refuse", _mask("float with NaN in a sampled column",
                lambda m: np.where(np.arange(m.size) == COLS // 2, np.nan, m.astype(np.float32))), mask_seed),
        Mutator("mask-nan-unsampled", "metadata", "refuse", _mask("float with NaN in an unsampled column",
                lambda m: np.where(np.arange(m.size) == np.flatnonzero(~m)[-1], np.nan, m.astype(np.float32))), mask_seed),
        Mutator("mask-inf", "metadata", "either", _mask("float with Inf where sampled", lambda m: np.where(m, np.inf, 0).astype(np.float32)), mask_seed),
        Mutator("mask-negative", "metadata", "either", _mask("-1 where sampled", lambda m: -m.astype(np.float32)), mask_seed),
        Mutator("mask-all-false", "metadata", "refuse", _mask("all false", lambda m: np.zeros_like(m)), mask_seed),
        Mutator("mask-all-true", "metadata", "either", _mask("all true", lambda m: np.ones_like(m)), mask_seed),
        Mutator("mask-only-padding", "metadata", "refuse", _mask("samples only the padding columns",
                lambda m: np.isin(np.arange(m.size), [0, 1, m.size - 1])), mask_seed),
        Mutator("mask-short", "metadata", "refuse", _mask("one column short", lambda m: m[:-1]), mask_seed),
        Mutator("mask-long", "metadata", "refuse", _mask("one column long", lambda m: np.append(m, True)), mask_seed),
        Mutator("mask-row", "metadata", "either", _mask("shape (1, W)", lambda m: m[None]), mask_seed),
        Mutator("mask-scalar", "metadata", "refuse", _mask("scalar True", lambda m: np.bool_(True)), mask_seed),
        Mutator("mask-int8", "metadata", "image", _mask("int8 0/1", lambda m: m.astype(np.int8)), mask_seed),
        Mutator("mask-float32", "metadata", "image", _mask("float32 0/1", lambda m: m.astype(np.float32)), mask_seed),
        Mutator("mask-uint8-255", "metadata", "either", _mask("uint8 0/255", lambda m: m.astype(np.uint8) * 255), mask_seed),
        Mutator("mask-strings", "metadata", "either", _mask("strings b'0'/b'1'", lambda m: np.where(m, b"1", b"0")), mask_seed),
        Mutator("mask-on-training-file", "metadata", "either", _mask("added to a fully sampled file", lambda m: m), target),
    ]
    for attr, seeds in (("acceleration", mask_seed), ("num_low_frequency", mask_seed), ("max", None), ("norm", None)):
        for label, value in ATTR_VALUES.items():
            m.append(Mutator(f"attr-{attr}={label}", "metadata", "either", _attr(attr, value, label), seeds))
        m.append(Mutator(f"attr-{attr}-deleted", "metadata", "either", _del_attr(attr), seeds))
    for attr in ("acquisition", "patient_id"):
        for label in ("array", "bytes", "huge", "empty"):
            m.append(Mutator(f"attr-{attr}={label}", "metadata", "either", _attr(attr, ATTR_VALUES[label], label)))
    m += xml_mutators((_fastmri_xml_read, _fastmri_xml_write), fastmri=True)
    return tuple(m)


ATTR_VALUES: dict[str, Any] = {
    "nan": np.nan,
    "inf": np.inf,
    "negative": -4.0,
    "zero": 0,
    "string": "abc",
    "bytes": b"\xff\xfe",
    "array": np.array([4.0, 8.0]),
    "huge": 1e300,
    "empty": h5py.Empty("f8"),
    "bool": True,
}


def fastmri_expected(path: Path) -> dict[str, tuple[int, int, int]]:
    """fastMRI: one output `<name>.h5`, (k-space slices, reconSpace x, reconSpace y)."""
    with h5py.File(path, "r") as f:
        slices = int(f["kspace"].shape[0])
        raw = f["ismrmrd_header"][()]
    raw = raw.item() if isinstance(raw, np.ndarray) else raw
    rows, cols = _recon_matrix(raw)
    return {path.name: (slices, rows, cols)}


# --------------------------------------------------------------------------------------------
# ISMRMRD files


def _ismrmrd_bit(flag: int) -> int:
    return 1 << (flag - 1)


def _not_image_bits() -> int:
    import ismrmrd

    names = ("NOISE_MEASUREMENT", "DUMMYSCAN_DATA", "NAVIGATION_DATA", "PHASECORR_DATA", "HPFEEDBACK_DATA", "RTFEEDBACK_DATA",
             "SURFACECOILCORRECTIONSCAN_DATA", "PHASE_STABILIZATION", "PHASE_STABILIZATION_REFERENCE")
    return sum(_ismrmrd_bit(getattr(ismrmrd, f"ACQ_IS_{n}")) for n in names)


def _read_table(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["dataset/data"][()]


def _write_table(path: Path, table: np.ndarray) -> None:
    """Write the acquisition table back (resized when acquisitions were added or removed)."""
    with h5py.File(path, "r+") as f:
        ds = f["dataset/data"]
        ds.resize((len(table),))
        if len(table):
            ds[...] = table


def _image_rows(table: np.ndarray) -> np.ndarray:
    return np.flatnonzero((table["head"]["flags"] & np.uint64(_not_image_bits())) == 0)


def _seed_geometry(path: Path) -> None:
    """Scanner-like geometry and dwell time on every acquisition (write_ismrmrd leaves zeros)."""
    table = _read_table(path)
    head = table["head"]
    head["read_dir"] = (1.0, 0.0, 0.0)
    head["phase_dir"] = (0.0, 1.0, 0.0)
    head["slice_dir"] = (0.0, 0.0, 1.0)
    head["position"] = (0.0, 0.0, 10.0)
    head["sample_time_us"] = 5.0
    _write_table(path, table)


def _append_noise(path: Path, coils: int, samples: int = 128, count: int = 2, scale: float = 1e-3,
                  nan: bool = False, dwell: float = 5.0, slice_index: int = 0) -> None:
    """Append `count` noise-measurement acquisitions (seeded complex Gaussian) with the ismrmrd package."""
    import ismrmrd

    rng = np.random.default_rng(samples * 7 + coils)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=False) as dset:
        for _ in range(count):
            noise = (scale * (rng.standard_normal((coils, samples)) + 1j * rng.standard_normal((coils, samples)))).astype(np.complex64)
            if nan:
                noise[0, 0] = np.nan
            acq = ismrmrd.Acquisition.from_array(noise)
            acq.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            acq.sample_time_us = dwell
            acq.idx.slice = slice_index
            dset.append_acquisition(acq)


def _ismrmrd_seed(**kwargs: Any) -> Callable[[Path], None]:
    noise = kwargs.pop("noise", False)

    def build(path: Path) -> None:
        write_ismrmrd(path, **kwargs)
        _seed_geometry(path)
        if noise:
            _append_noise(path, coils=4)
            xml = _ismrmrd_xml_read(path).replace(
                b"</ismrmrdHeader>", b"<acquisitionSystemInformation><relativeReceiverNoiseBandwidth>0.79"
                                     b"</relativeReceiverNoiseBandwidth></acquisitionSystemInformation></ismrmrdHeader>")
            _ismrmrd_xml_write(path, xml)

    return build


def _ismrmrd_xml_read(path: Path) -> bytes:
    with h5py.File(path, "r") as f:
        raw = f["dataset/xml"][0]
    return raw if isinstance(raw, bytes) else str(raw).encode()


def _ismrmrd_xml_write(path: Path, text: bytes) -> None:
    """Rewrite the header in place; text with a NUL byte (which a variable-length string cannot
    hold) as a fixed-length string dataset of the same shape."""
    with h5py.File(path, "r+") as f:
        if b"\x00" in text:
            _replace(f["dataset"], "xml", np.array([text], dtype=f"S{len(text)}"))
        else:
            f["dataset/xml"][0] = text


def _table_edit(text: str, edit: Callable[[np.ndarray, np.random.Generator], str | None]) -> Mutate:
    """Edit the acquisition table (headers and payloads) and write it back."""

    def mutate(path: Path, rng: np.random.Generator) -> str:
        table = _read_table(path)
        extra = edit(table, rng)
        _write_table(path, table)
        return text + (f" ({extra})" if extra else "")

    return mutate


def _head(field_: str, value: Any, which: str) -> Callable[[np.ndarray, np.random.Generator], str | None]:
    """Set a head field (`idx.<name>` for counters) on one random image acquisition or on all."""

    def edit(table: np.ndarray, rng: np.random.Generator) -> str | None:
        head = table["head"]
        target = head["idx"] if field_.startswith("idx.") else head
        name = field_.removeprefix("idx.")
        if which == "all":
            target[name] = value
            return None
        row = int(rng.choice(_image_rows(table)))
        target[name][row] = value
        return f"acquisition {row}"

    return edit


def _payload(how: str) -> Callable[[np.ndarray, np.random.Generator], str | None]:
    """Change one random image acquisition's samples (or all of them)."""

    def edit(table: np.ndarray, rng: np.random.Generator) -> str | None:
        rows = _image_rows(table)
        row = int(rng.choice(rows))
        data = table["data"][row]
        if how == "nan":
            data[int(rng.integers(0, data.size))] = np.nan
        elif how == "inf":
            data[int(rng.integers(0, data.size))] = np.inf
        elif how == "max-float":
            data[: 2] = 3e38
        elif how == "short":
            table["data"][row] = data[:-8].copy()
        elif how == "empty":
            table["data"][row] = np.zeros(0, np.float32)
        elif how == "long":
            table["data"][row] = np.concatenate([data, data[:64]])
        elif how == "odd":
            table["data"][row] = data[:-1].copy()
        elif how == "traj":
            table["traj"][row] = np.ones(2 * int(table["head"]["number_of_samples"][row]), np.float32)
        else:
            for r in rows:
                d = table["data"][r]
                if how == "zero":
                    d[:] = 0
                elif how == "huge":
                    d *= np.float32(1e30)
                elif how == "tiny":
                    d *= np.float32(1e-30)
                elif how == "coil-zero":
                    n = int(table["head"]["number_of_samples"][r])
                    d.reshape(-1, 2 * n)[0] = 0
                elif how == "noise":
                    d[:] = rng.standard_normal(d.size)
            return None
        return f"acquisition {row}"

    return edit


def _reorder(how: str) -> Mutate:
    """Remove, duplicate or reorder acquisitions."""

    def mutate(path: Path, rng: np.random.Generator) -> str:
        table = _read_table(path)
        rows = _image_rows(table)
        if how == "reverse":
            table = table[::-1].copy()
        elif how == "duplicate":
            table = np.concatenate([table, table])
        elif how == "drop-half":
            keep = np.ones(len(table), bool)
            keep[rng.choice(rows, size=len(rows) // 2, replace=False)] = False
            table = table[keep]
        elif how == "drop-centre":
            steps = table["head"]["idx"]["kspace_encode_step_1"].astype(int)
            table = table[np.abs(steps - 16) > 3]
        elif how == "one":
            table = table[[int(rng.choice(rows))]]
        elif how == "none":
            table = table[:0]
        _write_table(path, table)
        return f"acquisitions: {how}"

    return mutate


def _noise(text: str, **kwargs: Any) -> Mutate:
    def mutate(path: Path, rng: np.random.Generator) -> str:
        _append_noise(path, **kwargs)
        return text

    return mutate


def _ismrmrd_structure(how: str) -> Mutate:
    def mutate(path: Path, rng: np.random.Generator) -> str:
        with h5py.File(path, "r+") as f:
            g = f["dataset"]
            if how == "xml-deleted":
                del g["xml"]
            elif how == "data-deleted":
                del g["data"]
            elif how == "group-renamed":
                f.move("dataset", "measurement")
            elif how in ("xml-group", "data-group"):
                name = how.split("-")[0]
                del g[name]
                g.create_group(name)
            elif how == "data-float":
                del g["data"]
                g.create_dataset("data", data=np.zeros((32, 10), np.float32))
            elif how == "data-no-head":
                table = g["data"][()]
                del g["data"]
                slim = np.empty(len(table), dtype=[("data", h5py.vlen_dtype(np.float32))])
                slim["data"] = table["data"]
                g.create_dataset("data", data=slim)
            elif how == "xml-empty":
                del g["xml"]
                g.create_dataset("xml", shape=(0,), dtype=h5py.string_dtype())
            elif how == "xml-scalar":
                text = g["xml"][0]
                del g["xml"]
                g.create_dataset("xml", data=text, dtype=h5py.string_dtype())
            elif how == "xml-int":
                del g["xml"]
                g.create_dataset("xml", data=np.arange(4))
            elif how == "stray-kspace":
                f.create_dataset("kspace", data=np.ones((1, 1, 4, 4), np.complex64))
            elif how == "extra":
                g.create_dataset("waveforms", data=np.zeros(3))
                f.create_group("other").attrs["x"] = 1
        return f"structure: {how}"

    return mutate


def _ismrmrd_mutators() -> tuple[Mutator, ...]:
    import ismrmrd

    noise_seed, multi = ("noise",), None
    flag = _ismrmrd_bit
    m: list[Mutator] = [
        Mutator(f"structure-{how}", "structural", expect, _ismrmrd_structure(how))
        for how, expect in (
            ("xml-deleted", "refuse"), ("data-deleted", "refuse"), ("group-renamed", "refuse"), ("xml-group", "refuse"),
            ("data-group", "refuse"), ("data-float", "refuse"), ("data-no-head", "refuse"), ("xml-empty", "refuse"),
            ("xml-scalar", "either"), ("xml-int", "refuse"), ("stray-kspace", "refuse"), ("extra", "image"),
        )
    ]
    heads: list[tuple[str, str, Any, str, Expect, tuple[str, ...] | None]] = [
        ("flags-all-bits", "flags", np.uint64(2**64 - 1), "all", "refuse", multi),
        ("flags-noise-one", "flags", np.uint64(flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)), "one", "either", multi),
        ("flags-reverse-one", "flags", np.uint64(flag(ismrmrd.ACQ_IS_REVERSE)), "one", "either", multi),
        ("flags-calibration-one", "flags", np.uint64(flag(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)), "one", "either", multi),
        ("flags-phasecorr-one", "flags", np.uint64(flag(ismrmrd.ACQ_IS_PHASECORR_DATA)), "one", "either", multi),
        ("flags-dummy-all", "flags", np.uint64(flag(ismrmrd.ACQ_IS_DUMMYSCAN_DATA)), "all", "refuse", multi),
        ("flags-last-in-slice-all", "flags", np.uint64(flag(ismrmrd.ACQ_LAST_IN_SLICE)), "all", "image", multi),
        ("flags-random-one", "flags", np.uint64(0x5A5A_1234_DEAD_BEEF), "one", "either", multi),
        ("slice-one=1", "idx.slice", 1, "one", "either", multi),
        ("slice-all=2", "idx.slice", 2, "all", "either", multi),
        ("slice-one=65535", "idx.slice", 65535, "one", "either", multi),
        ("repetition-one=1", "idx.repetition", 1, "one", "either", multi),
        ("repetition-all=5", "idx.repetition", 5, "all", "image", multi),
        ("repetition-one=65535", "idx.repetition", 65535, "one", "either", multi),
        ("contrast-one=1", "idx.contrast", 1, "one", "either", multi),
        ("set-one=1", "idx.set", 1, "one", "either", multi),
        ("phase-one=1", "idx.phase", 1, "one", "either", multi),
        ("average-one=1", "idx.average", 1, "one", "image", multi),
        ("segment-all=3", "idx.segment", 3, "all", "image", multi),
        ("step1-one=65535", "idx.kspace_encode_step_1", 65535, "one", "refuse", multi),
        ("step1-all=0", "idx.kspace_encode_step_1", 0, "all", "refuse", multi),
        ("step2-one=1", "idx.kspace_encode_step_2", 1, "one", "refuse", multi),
        ("samples-one=16", "number_of_samples", 16, "one", "refuse", multi),
        ("samples-one=0", "number_of_samples", 0, "one", "refuse", multi),
        ("samples-one=64", "number_of_samples", 64, "one", "refuse", multi),
        ("samples-all=65535", "number_of_samples", 65535, "all", "refuse", multi),
        ("channels-one=2", "active_channels", 2, "one", "refuse", multi),
        ("channels-all=8", "active_channels", 8, "all", "refuse", multi),
        ("channels-all=0", "active_channels", 0, "all", "refuse", multi),
        ("channels-one=65535", "active_channels", 65535, "one", "refuse", multi),
        ("available-channels-all=0", "available_channels", 0, "all", "image", multi),
        ("center-sample-one=0", "center_sample", 0, "one", "either", multi),
        ("center-sample-all=0", "center_sample", 0, "all", "either", multi),
        ("center-sample-all=31", "center_sample", 31, "all", "either", multi),
        ("center-sample-one=65535", "center_sample", 65535, "one", "either", multi),
        ("trajectory-dims-one=2", "trajectory_dimensions", 2, "one", "refuse", multi),
        ("encoding-ref-one=1", "encoding_space_ref", 1, "one", "either", multi),
        ("encoding-ref-all=3", "encoding_space_ref", 3, "all", "refuse", multi),
        ("sample-time-all=0", "sample_time_us", 0.0, "all", "either", noise_seed),
        ("sample-time-all=nan", "sample_time_us", np.nan, "all", "either", noise_seed),
        ("sample-time-all=-5", "sample_time_us", -5.0, "all", "either", noise_seed),
        ("position-one=nan", "position", (np.nan, 0.0, 0.0), "one", "either", multi),
        ("position-all=inf", "position", (np.inf, np.inf, np.inf), "all", "either", multi),
        ("read-dir-all=0", "read_dir", (0.0, 0.0, 0.0), "all", "either", multi),
        ("phase-dir-all=read-dir", "phase_dir", (1.0, 0.0, 0.0), "all", "either", multi),
        ("slice-dir-all=nan", "slice_dir", (np.nan, np.nan, np.nan), "all", "either", multi),
        ("discard-pre-all=65535", "discard_pre", 65535, "all", "either", multi),
        ("discard-post-one=40", "discard_post", 40, "one", "either", multi),
        ("version-all=65535", "version", 65535, "all", "either", multi),
        ("user-float-all=nan", "user_float", np.nan, "all", "image", multi),
    ]
    for name, field_, value, which, expect, seeds in heads:
        text = f"{field_} = {value!r} on {'all acquisitions' if which == 'all' else 'one acquisition'}"
        m.append(Mutator(f"head-{name}", "metadata", expect, _table_edit(text, _head(field_, value, which)), seeds))
    payloads: tuple[tuple[str, Kind, Expect], ...] = (
        ("nan", "value", "refuse"), ("inf", "value", "refuse"), ("max-float", "value", "either"), ("zero", "value", "refuse"),
        ("huge", "value", "either"), ("tiny", "value", "either"), ("coil-zero", "value", "either"), ("noise", "value", "either"),
        ("short", "structural", "refuse"), ("empty", "structural", "refuse"), ("long", "structural", "refuse"),
        ("odd", "structural", "refuse"), ("traj", "structural", "either"),
    )
    for how, kind, expect in payloads:
        m.append(Mutator(f"samples-{how}", kind, expect, _table_edit(f"samples: {how}", _payload(how))))
    orders: tuple[tuple[str, Expect], ...] = (
        ("reverse", "image"), ("duplicate", "image"), ("drop-half", "either"), ("drop-centre", "either"), ("one", "refuse"), ("none", "refuse"),
    )
    for how, expect in orders:
        m.append(Mutator(f"acquisitions-{how}", "structural", expect, _reorder(how)))
    noises: tuple[tuple[str, str, dict[str, Any], Expect], ...] = (
        ("noise-2-coils", "noise scan with 2 coils", dict(coils=2), "either"),
        ("noise-8-coils", "noise scan with 8 coils", dict(coils=8), "either"),
        ("noise-same-coils", "noise scan with the image's 4 coils", dict(coils=4), "image"),
        ("noise-nan", "noise scan with a NaN", dict(coils=4, nan=True), "either"),
        ("noise-zero", "all-zero noise scan (singular covariance)", dict(coils=4, scale=0.0), "either"),
        ("noise-one-sample", "noise scans of 1 sample", dict(coils=4, samples=1), "either"),
        ("noise-dwell-0", "noise scan with sample_time_us 0", dict(coils=4, dwell=0.0), "either"),
        ("noise-slice-5", "noise scan with slice index 5", dict(coils=4, slice_index=5), "image"),
    )
    for name, text, kwargs, expect in noises:
        m.append(Mutator(name, "metadata", expect, _noise(text, **kwargs)))
    bandwidths: tuple[tuple[str, Expect], ...] = (
        ("0", "refuse"), ("nan", "refuse"), ("abc", "refuse"), ("5", "refuse"), ("0.79", "image"), ("", "either"),
    )
    bandwidth = ("acquisitionSystemInformation", "relativeReceiverNoiseBandwidth")
    for value, expect in bandwidths:
        m.append(Mutator(f"xml-noise-bandwidth={value or 'blank'}", "metadata", expect,
                         _xml_edit((_ismrmrd_xml_read, _ismrmrd_xml_write), bandwidth, value), noise_seed))
    m += xml_mutators((_ismrmrd_xml_read, _ismrmrd_xml_write), fastmri=False)
    return tuple(m)


def ismrmrd_expected(path: Path) -> dict[str, tuple[int, int, int]]:
    """ISMRMRD: one output per (repetition, contrast, set) combination present among the imaging
    acquisitions when a counter has several values (`<stem>_rep1.h5`, ...), else `<stem>.h5`;
    each (distinct slice indices of its acquisitions, reconSpace x, reconSpace y)."""
    with h5py.File(path, "r") as f:
        xml = f["dataset/xml"][0]
        head = f["dataset/data"]["head"]
    rows, cols = _recon_matrix(xml)
    image = ((head["flags"] & np.uint64(_not_image_bits())) == 0) & (head["encoding_space_ref"] == 0)
    idx = head["idx"][image]
    axes = []
    for counter, tag in (("repetition", "rep"), ("contrast", "contrast"), ("set", "set")):
        values = np.unique(idx[counter])
        if values.size > 1:
            axes.append([(counter, tag, int(v)) for v in values])
    out: dict[str, tuple[int, int, int]] = {}
    for combo in itertools.product(*axes):
        sel = np.ones(len(idx), bool)
        for counter, _, value in combo:
            sel &= idx[counter] == value
        name = path.stem + "".join(f"_{tag}{value}" for _, tag, value in combo) + path.suffix
        out[name] = (int(np.unique(idx["slice"][sel]).size), rows, cols)
    return out


# --------------------------------------------------------------------------------------------
# Siemens TWIX files (seeds from twixtools 0.24's gre.dat; see tests/twix_files.py)


def _twix_seed(path: Path) -> None:
    """The small seed: gre.dat's central 64 x 128 k-space, protocol edited to match."""
    import twix_files

    twix_files.write_small(path, twix_files.template(twix_files.cache_dir() / "gre.dat"))


def _twix_readouts(path: Path) -> list[int]:
    """File offsets of the imaging measurement's readouts (twixtools' own reading)."""
    import twixtools

    return [int(m.mem_pos) for m in twixtools.read_twix(str(path), verbose=False, parse_pmu=False, parse_geometry=False)[-1]["mdb"]]


def _twix_mdh(field_: str, fmt: str, value: Any, which: str) -> Mutate:
    """Set MDH bytes (`struct` format `fmt` at the field's offset) on one random readout or all."""
    from twix_files import VD_FIELDS

    def mutate(path: Path, rng: np.random.Generator) -> str:
        offsets = _twix_readouts(path)
        rows = range(len(offsets)) if which == "all" else [int(rng.integers(0, len(offsets)))]
        data = bytearray(path.read_bytes())
        for r in rows:
            at = offsets[r] + VD_FIELDS[field_]
            old = struct.unpack_from(fmt, data, at)
            new = value(old, r) if callable(value) else value
            struct.pack_into(fmt, data, at, *(new if isinstance(new, tuple) else (new,)))
        path.write_bytes(bytes(data))
        return f"MDH {field_} set on {'all readouts' if which == 'all' else f'readout {rows[0]}'}"

    return mutate


def _twix_sync_zero(path: Path, rng: np.random.Generator) -> str:
    """Insert a SYNCDATA block with DMA length 0 (twixtools loops forever on it)."""
    from twix_files import first_readout

    data = bytearray(path.read_bytes())
    first, length_at = first_readout(data)
    offsets = _twix_readouts(path)
    at = offsets[int(rng.integers(0, len(offsets)))] if offsets else first
    block = bytearray(192)
    struct.pack_into("<Q", block, 40, 1 << 5)
    data[at:at] = block
    struct.pack_into("<Q", data, length_at, struct.unpack_from("<Q", data, length_at)[0] + 192)
    path.write_bytes(bytes(data))
    return f"SYNCDATA block of DMA length 0 inserted at byte {at}"


def _twix_raid(field_: str, change: Callable[[int], int]) -> Mutate:
    def mutate(path: Path, rng: np.random.Generator) -> str:
        data = bytearray(path.read_bytes())
        at, fmt = {"count": (4, "<I"), "off": (8 + 8, "<Q"), "len": (8 + 16, "<Q")}[field_]
        (old,) = struct.unpack_from(fmt, data, at)
        struct.pack_into(fmt, data, at, change(old))
        path.write_bytes(bytes(data))
        return f"multi-RAID {field_} {old} -> {change(old)}"

    return mutate


def _twix_protocol(yaps: dict[str, str | None] | None = None, config: dict[str, str] | None = None,
                   garbage: bool = False) -> Mutate:
    def mutate(path: Path, rng: np.random.Generator) -> str:
        from twix_files import edit_header_of_file

        def insert(text: bytes) -> bytes:
            cut = int(rng.integers(100, len(text) - 100))
            return text[:cut] + b"x" * 20000 + text[cut:]

        edit_header_of_file(path, yaps=yaps, config=config, edit=insert if garbage else None)
        return f"protocol: {yaps or ''}{config or ''}{' 20000 non-space bytes in MeasYaps' if garbage else ''}"

    return mutate


def _twix_nan(path: Path, rng: np.random.Generator) -> str:
    offsets = _twix_readouts(path)
    r = int(rng.integers(0, len(offsets)))
    data = bytearray(path.read_bytes())
    struct.pack_into("<f", data, offsets[r] + 192 + 32 + 8 * int(rng.integers(0, 64)), float("nan"))
    path.write_bytes(bytes(data))
    return f"NaN sample in readout {r}"


def _twix_mutators() -> tuple[Mutator, ...]:
    acqend, last = 1, 1 << 11
    return (
        Mutator("acqend-flipped", "structural", "refuse", _twix_mdh("EvalInfoMask", "<Q", lambda old, r: old[0] | acqend, "one")),
        Mutator("lastscaninmeas-cleared", "metadata", "refuse", _twix_mdh("EvalInfoMask", "<Q", lambda old, r: old[0] & ~last, "all")),
        Mutator("sync-dma-zero", "structural", "refuse", _twix_sync_zero),
        Mutator("raid-length-short", "structural", "refuse", _twix_raid("len", lambda v: v - 1000)),
        Mutator("raid-length-long", "structural", "refuse", _twix_raid("len", lambda v: v + 10**6)),
        Mutator("raid-count-0", "structural", "refuse", _twix_raid("count", lambda v: 0)),
        Mutator("line-65535", "metadata", "refuse", _twix_mdh("Lin", "<H", 65535, "one")),
        Mutator("line-duplicated", "metadata", "refuse", _twix_mdh("Lin", "<H", lambda old, r: (r + 1) % 64, "one")),
        Mutator("slice-1", "metadata", "refuse", _twix_mdh("Sli", "<H", 1, "one")),
        Mutator("samples-plus-1", "structural", "refuse", _twix_mdh("SamplesInScan", "<H", lambda old, r: old[0] + 1, "one")),
        Mutator("channels-3", "structural", "refuse", _twix_mdh("UsedChannels", "<H", 3, "one")),
        Mutator("centre-line-moved", "metadata", "refuse", _twix_mdh("CenterLin", "<H", 40, "one")),
        Mutator("quaternion-zero", "metadata", "refuse", _twix_mdh("Quaternion", "<4f", (0.0, 0.0, 0.0, 0.0), "all")),
        Mutator("nan-sample", "value", "refuse", _twix_nan),
        Mutator("protocol-base-resolution", "metadata", "refuse", _twix_protocol({"sKSpace.lBaseResolution": "48"})),
        Mutator("protocol-readout-fov", "metadata", "refuse", _twix_protocol({"sSliceArray.asSlice[0].dReadoutFOV": "300.0"})),
        Mutator("protocol-radial", "metadata", "refuse", _twix_protocol({"sKSpace.ucTrajectory": "2"})),
        Mutator("protocol-epi", "metadata", "refuse", _twix_protocol({"sFastImaging.lEPIFactor": "64"})),
        Mutator("protocol-two-slices", "metadata", "refuse", _twix_protocol({"sSliceArray.lSize": "2"})),
        Mutator("protocol-ascconv-garbage", "metadata", "either", _twix_protocol(garbage=True)),
    )


#: The byte-level mutators for TWIX, with fewer repeats (each TWIX case parses a protocol). A
#: TWIX file ends in padding to 512 bytes after its last measurement: cutting a few bytes off the
#: tail may leave every measurement whole, so that truncation may give an image.
TWIX_BYTE_MUTATORS = tuple(replace(m, repeats=max(1, m.repeats // 2), expect="either" if m.name == "truncate-tail" else m.expect)
                           for m in BYTE_MUTATORS)


def twix_expected(path: Path) -> dict[str, tuple[int, int, int]]:
    """TWIX, read with twixtools: one output per (repetition, echo, set) combination with several
    values among the imaging lines (`<stem>_rep1.h5`, ...), else `<stem>.h5`; each (distinct slice
    counters, base resolution, image lines of the protocol)."""
    import twixtools

    scan = twixtools.read_twix(str(path), verbose=False, parse_pmu=False, parse_geometry=False)[-1]
    yaps, config = scan["hdr"]["MeasYaps"], scan["hdr"]["Config"]
    rows = int(yaps["sKSpace"]["lBaseResolution"])
    cols = int(config.get("NImageLins") or round(rows * yaps["sSliceArray"]["asSlice"][0]["dPhaseFOV"]
                                                 / yaps["sSliceArray"]["asSlice"][0]["dReadoutFOV"]))
    image = [m for m in scan["mdb"] if m.is_image_scan()]
    counters = {"rep": [m.cRep for m in image], "contrast": [m.cEco for m in image], "set": [m.cSet for m in image]}
    axes = [[(tag, int(v)) for v in sorted(set(values))] for tag, values in counters.items() if len(set(values)) > 1]
    out: dict[str, tuple[int, int, int]] = {}
    for combo in itertools.product(*axes):
        chosen = [m for m in image if all({"rep": m.cRep, "contrast": m.cEco, "set": m.cSet}[t] == v for t, v in combo)]
        name = path.stem + "".join(f"_{tag}{value}" for tag, value in combo) + ".h5"
        out[name] = (len({m.cSlc for m in chosen}), rows, cols)
    return out


def _twix_format() -> tuple[Format, ...]:
    """The TWIX format when gre.dat is cached (no download here), else none."""
    from twix_files import have_example

    if not have_example("gre.dat"):
        return ()
    return (Format("twix", ".dat", (Seed("small", _twix_seed),), _twix_mutators(), twix_expected, TWIX_BYTE_MUTATORS),)


# --------------------------------------------------------------------------------------------
# Formats and mutants


def formats() -> tuple[Format, ...]:
    """Every format the fuzzer knows (TWIX when its example file is cached)."""
    return (
        Format(
            "fastmri",
            ".h5",
            (Seed("target", _fastmri_target), Seed("mask", _fastmri_mask), Seed("noise", _fastmri_noise, sense=False, expect="either")),
            _fastmri_mutators(),
            fastmri_expected,
        ),
        Format(
            "ismrmrd",
            ".h5",
            (Seed("full", _ismrmrd_seed()), Seed("under", _ismrmrd_seed(undersample=2)), Seed("reps", _ismrmrd_seed(repetitions=2)),
             Seed("noise", _ismrmrd_seed(noise=True))),
            _ismrmrd_mutators(),
            ismrmrd_expected,
        ),
        *_twix_format(),
    )


def build_mutants(folder: Path, seed: int = SEED) -> list[Mutant]:
    """Write every format's seeds into `folder/seeds` and the mutants into `folder` (`m###.h5`).

    Unmutated seeds come first (both methods); then each mutator of each format (byte-level
    mutators too) on seeds drawn from `default_rng(seed)`, each mutant with its own
    `default_rng([seed, index])`."""
    folder.mkdir(parents=True, exist_ok=True)
    seeds_dir = folder.parent / f"{folder.name}-seeds"
    seeds_dir.mkdir(exist_ok=True)
    pick = np.random.default_rng(seed)
    mutants: list[Mutant] = []
    for fmt in formats():
        seed_paths: dict[str, Path] = {}
        for s in fmt.seeds:
            seed_paths[s.name] = seeds_dir / f"{fmt.name}_{s.name}{fmt.suffix}"
            s.build(seed_paths[s.name])
        by_name = {s.name: s for s in fmt.seeds}
        plan: list[tuple[Mutator, Seed]] = [
            (Mutator("none", "none", s.expect, lambda p, r: "unmutated seed"), s) for s in fmt.seeds
        ]
        for mut in (*fmt.mutators, *(BYTE_MUTATORS if fmt.byte_mutators is None else fmt.byte_mutators)):
            allowed = [by_name[n] for n in (mut.seeds or by_name)]
            for _ in range(mut.repeats):
                plan.append((mut, allowed[int(pick.integers(0, len(allowed)))]))
        for mut, s in plan:
            index = len(mutants)
            path = folder / f"m{index:03d}{fmt.suffix}"
            shutil.copyfile(seed_paths[s.name], path)
            description = mut.mutate(path, np.random.default_rng([seed, index]))
            sense = s.sense and (mut.name == "none" or index % SENSE_EVERY == 0)
            methods = METHODS if sense or mut.name == "none" else METHODS[:1]
            mutants.append(Mutant(f"m{index:03d}:{fmt.name}/{s.name}/{mut.name}", index, path, fmt.name, s.name, mut.name,
                                  mut.kind, description, mut.expect, methods, sha256(path)))
    return mutants


# --------------------------------------------------------------------------------------------
# Running: a worker subprocess, a timeout per case


@dataclass
class Case:
    """One (mutant, method) run: `argv` for the entry point, the output folder, the format."""

    key: str
    argv: list[str]
    out: str
    path: str
    format: str


def cases_for(mutants: Sequence[Mutant], out_root: Path) -> list[Case]:
    cases = []
    for m in mutants:
        for method in m.methods:
            out = out_root / f"m{m.index:03d}-{method}"
            argv = ["--debug", "reconstruct", str(m.path), "--out", str(out), "--quiet", "--max-memory", MAX_MEMORY, "--method", method]
            cases.append(Case(f"{m.id}|{method}", argv, str(out), str(m.path), m.format))
    return cases


def _limit_worker() -> None:
    """In the worker: its own process group (killed whole on a hang) and at most 4 GiB of address space."""
    import resource

    os.setsid()
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def run_cases(cases: Sequence[Case], workdir: Path, *, timeout: float = 10.0, startup: float = 90.0,
              budget: float = 150.0, entry: str = "recon.cli:main") -> dict[str, dict[str, Any]]:
    """Run `cases` in worker subprocesses; return key -> outcome.

    An outcome has `status` "done" (with `rc`, `stdout`, `stderr`, `seconds`, `expected` or
    `expected_error`), "hang" (no result within `timeout` s: the worker is killed and a new one
    takes the cases left), "crash" (the worker died in the case: `returncode`, `log`) or
    "not-run" (the whole run passed `budget` s, or the worker did not start in `startup` s).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    order = [c.key for c in cases]
    by_key = {c.key: c for c in cases}
    deadline = time.monotonic() + budget
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "TQDM_DISABLE": "1"}
    env.pop("RECON_DEBUG", None)
    attempt = 0
    while True:
        pending = [k for k in order if k not in results]
        if not pending:
            return results
        if time.monotonic() > deadline:
            for k in pending:
                results[k] = {"status": "not-run", "why": f"the fuzz run passed its {budget:g} s budget"}
            return results
        batch = workdir / f"batch{attempt}.json"
        batch.write_text(json.dumps([asdict(by_key[k]) for k in pending]))
        log = workdir / f"worker{attempt}.log"
        attempt += 1
        with open(log, "wb") as log_file:
            proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "worker", str(batch), entry],
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_file, cwd=ROOT, env=env,
                                    preexec_fn=_limit_worker)
            assert proc.stdout is not None
            current: str | None = None
            started = False
            case_deadline = time.monotonic() + startup
            for message in _messages(proc.stdout.fileno(), lambda: min(case_deadline, deadline)):
                if message is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
                    if current is not None and time.monotonic() >= deadline:
                        results[current] = {"status": "not-run", "why": f"the fuzz run passed its {budget:g} s budget"}
                    elif current is not None:
                        results[current] = {"status": "hang", "why": f"no result within {timeout:g} s"}
                    elif not started:
                        for k in pending:
                            results[k] = {"status": "not-run", "why": f"worker did not start within {startup:g} s: {_tail(log)}"}
                    break
                if message["event"] == "start":
                    current, started = message["key"], True
                    case_deadline = time.monotonic() + timeout
                else:
                    results[message["key"]] = message["outcome"]
                    current = None
                    case_deadline = time.monotonic() + timeout
            else:
                code = proc.wait()
                if current is not None:
                    results[current] = {"status": "crash", "returncode": code, "log": _tail(log)}
                else:
                    for k in [k for k in order if k not in results]:
                        results[k] = {"status": "not-run", "why": f"worker exited {code} outside any case: {_tail(log)}"}
            proc.stdout.close()


def _tail(log: Path, chars: int = 300) -> str:
    text = log.read_text(errors="replace") if log.exists() else ""
    return " ".join(text[-chars:].split())


def _messages(fd: int, until: Callable[[], float]) -> Iterator[dict[str, Any] | None]:
    """JSON lines from `fd`; None when `until()` passes first; ends at EOF."""
    buffer = b""
    while True:
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            if line.strip():
                yield json.loads(line)
        wait = until() - time.monotonic()
        if wait <= 0:
            yield None
            return
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return
        buffer += chunk


def _captured(run: Callable[[], Any], folder: Path) -> tuple[Any, str, str]:
    """`run()` with file descriptors 1 and 2 sent to files (C-level writes included)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(dir=folder) as out, tempfile.TemporaryFile(dir=folder) as err:
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        try:
            result = run()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        out.seek(0)
        err.seek(0)
        return result, out.read().decode(errors="replace"), err.read().decode(errors="replace")


def _status_kib(key: str) -> int | None:
    """A `VmRSS` / `VmHWM` line of /proc/self/status in KiB (None where there is no such file)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> int | None:
    """Reset the process's peak RSS to its current RSS (Linux `clear_refs` 5); that RSS in KiB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status_kib("VmRSS")


def _call(entry: Callable[[list[str]], int], argv: list[str]) -> int | str:
    """The entry point's exit code; an exception escaping it as its traceback text."""
    try:
        with warnings.catch_warnings():  # entering resets "once per location": each case shows its own warnings
            return int(entry(argv) or 0)
    except SystemExit as err:
        return err.code if isinstance(err.code, int) else 2
    except BaseException:  # noqa: BLE001 - reported as the case's failure
        return "escaped: " + traceback.format_exc()


def worker(batch: Path, entry_name: str) -> None:
    """Run the batch's cases in order, reporting `start` and `done` JSON lines on the original stdout."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    module, _, name = entry_name.partition(":")
    entry = getattr(__import__(module, fromlist=[name]), name)
    known = {f.name: f for f in formats()}
    scratch = batch.with_suffix(".capture")
    scratch.mkdir(exist_ok=True)
    for case in json.loads(batch.read_text()):
        proto.write(json.dumps({"event": "start", "key": case["key"]}) + "\n")
        start, base = time.perf_counter(), _reset_peak_rss()
        rc, out, err = _captured(lambda: _call(entry, case["argv"]), scratch)
        peak = _status_kib("VmHWM")
        outcome: dict[str, Any] = {"status": "done", "rc": rc, "stdout": out[-4000:], "stderr": err[-8000:],
                                   "seconds": round(time.perf_counter() - start, 3),
                                   "peak_mib": None if base is None or peak is None else round((peak - base) / 1024, 1)}
        if rc == 0 and case["format"] in known:
            try:
                outcome["expected"] = known[case["format"]].expected_outputs(Path(case["path"]))
            except Exception as exc:  # noqa: BLE001 - the harness cannot read what recon accepted
                outcome["expected_error"] = f"{type(exc).__name__}: {exc}"
        proto.write(json.dumps({"event": "done", "key": case["key"], "outcome": outcome}) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Judging

FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')
RAW_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Exit|Interrupt|Iteration)\b:?")
PY_WARNING = re.compile(r"^\S+:\d+: \w*Warning: ")


def _location(text: str) -> str:
    """The innermost traceback frame inside `recon/` (else the innermost frame), as path:line func."""
    frames = FRAME.findall(text)
    inside = [f for f in frames if f"{os.sep}recon{os.sep}" in f[0] and ".venv" not in f[0]]
    chosen = (inside or frames or [("", "", "")])[-1]
    if not chosen[0]:
        return ""
    path = Path(chosen[0])
    try:
        path = path.relative_to(ROOT)
    except ValueError:
        pass
    return f"{path}:{chosen[1]} {chosen[2]}"


def _exception_line(text: str) -> str:
    """The `Type: message` line that ends the last traceback in `text`."""
    lines = text.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent call last)")]
    for line in lines[starts[-1] + 1 :] if starts else []:
        if line and not line.startswith(" ") and not line.startswith("Traceback"):
            return " ".join(line.split())[:200]
    return ""


def _outputs(out: Path) -> list[str]:
    """Every file the run left in its output folder, except summary.json (and kept earlier ones)."""
    if not out.exists():
        return []
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not re.fullmatch(r"summary(-\w+)?\.json", p.name))


def _check_image(path: Path, shape: tuple[int, ...]) -> str | None:
    """Why `path` is not a good reconstruction of `shape`, or None."""
    try:
        with h5py.File(path, "r") as f:
            ds = f.get("reconstruction")
            if not isinstance(ds, h5py.Dataset):
                return "no 'reconstruction' dataset"
            image = ds[()]
    except OSError as err:
        return f"unreadable output ({err})"
    if image.shape != tuple(shape):
        return f"shape {image.shape}, expected {tuple(shape)}"
    if image.dtype.kind != "f":
        return f"dtype {image.dtype}"
    if not np.isfinite(image).all():
        return f"{int((~np.isfinite(image)).sum())} non-finite values"
    zero = [s for s in range(image.shape[0]) if not np.any(image[s])]
    if zero:
        return f"all-zero slice(s) {zero}"
    return None


def judge(mutant: Mutant, method: str, outcome: dict[str, Any], out: Path) -> list[Failure]:
    """The contract's failures of one (mutant, method) outcome."""
    problems: list[tuple[str, str, str]] = []

    def fail(category: str, detail: str, location: str = "") -> None:
        problems.append((category, " ".join(detail.split())[:300], location))

    status = outcome["status"]
    if (outcome.get("peak_mib") or 0) > PEAK_MIB:
        fail("memory", f"peak RSS grew by {outcome['peak_mib']:.0f} MiB under --max-memory {MAX_MEMORY} "
                       f"({outcome.get('seconds', 0):.1f} s, exit {outcome.get('rc')})")
    if status != "done":
        detail = outcome.get("why") or f"worker died (exit {outcome.get('returncode')}): {outcome.get('log', '')}"
        fail(status, detail)
    else:
        rc, err = outcome["rc"], outcome["stderr"]
        text = err + outcome["stdout"]
        lines = [line for line in err.splitlines() if line.strip() and not line.startswith(("warning:", "note:"))]
        written = _outputs(out)
        summary = (out / "summary.json").is_file()
        named = any(str(mutant.path) in line for line in lines if line.startswith("error:"))
        if isinstance(rc, str):
            fail("traceback", f"exception escaped main: {_exception_line(rc)}", _location(rc))
        elif "Traceback (most recent call last)" in text:
            if summary:
                fail("traceback", _exception_line(text) or "traceback", _location(text))
            else:
                fail("batch-abort", f"{_exception_line(text)}; escaped the batch runner (no summary.json; a folder run stops here)"
                                    + ("" if named else "; error line without the file name"), _location(text))
            if rc != 0 and written:
                fail("output-on-refusal", f"exit {rc} but wrote {written}")
        elif rc == 0:
            stray = [line for line in lines if not PY_WARNING.match(line)]
            if [line for line in lines if PY_WARNING.match(line)]:
                fail("python-warning", next(line for line in lines if PY_WARNING.match(line)))
            if stray:
                fail("stderr-on-success", stray[0])
            if mutant.expect == "refuse":
                fail("accepted-invalid", f"exit 0, wrote {written}; this mutation must be refused")
            expected = outcome.get("expected")
            if expected is None:
                fail("bad-output", f"harness cannot derive the outputs of this file: {outcome.get('expected_error')}")
            else:
                if sorted(expected) != written:
                    fail("bad-output", f"outputs {written}, expected {sorted(expected)}")
                for name in sorted(set(expected) & set(written)):
                    why = _check_image(out / name, tuple(expected[name]))
                    if why:
                        fail("bad-output", f"{name}: {why}")
        else:
            errors = [line for line in lines if line.startswith("error:")]
            if not summary:
                fail("batch-abort", f"refused before the batch runner (no summary.json; a folder run stops here): {' | '.join(lines[:2])}")
            if [line for line in lines if PY_WARNING.match(line)]:
                fail("python-warning", next(line for line in lines if PY_WARNING.match(line)))
            if len(errors) != 1 or len(lines) != 1:
                fail("not-one-line", f"{len(lines)} stderr lines: {' | '.join(lines[:3])}")
            if errors:
                line = errors[0]
                reason = line.removeprefix("error: ").removeprefix(str(mutant.path)).removeprefix(": ")
                if str(mutant.path) not in line:
                    fail("no-file-name", line)
                elif RAW_EXCEPTION.match(reason) or "run with --debug" in reason:
                    fail("raw-exception", line)
                elif mutant.expect == "image":
                    fail("refused-valid", reason)
            if written:
                fail("output-on-refusal", f"exit {rc} but wrote {written}")
    return [Failure(mutant.id, method, mutant.description, c, d, loc) for c, d, loc in problems]


def check_inputs(mutants: Sequence[Mutant], folder: Path) -> list[Failure]:
    """Inputs byte-identical, and nothing new beside them."""
    failures = [Failure(m.id, "-", m.description, "input-changed", "input file changed or removed")
                for m in mutants if not m.path.is_file() or sha256(m.path) != m.sha256]
    known = {m.path.name for m in mutants}
    extra = sorted(p.name for p in folder.iterdir() if p.name not in known)
    if extra:
        failures.append(Failure("inputs", "-", "input folder", "input-changed", f"new files beside the inputs: {extra}"))
    return failures


@dataclass
class Report:
    """What a fuzz run found: failures sorted by mutant and method, and run statistics."""

    mutants: int
    cases: int
    seconds: float
    failures: list[Failure] = field(default_factory=list)

    def summary(self) -> str:
        counts: dict[str, int] = {}
        for f in self.failures:
            counts[f.category] = counts.get(f.category, 0) + 1
        head = (f"{len(self.failures)} contract failure(s) in {self.cases} runs of {self.mutants} mutants ({self.seconds:.0f} s): "
                + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
        return "\n".join([head, *(f.line() for f in self.failures)])


def fuzz(folder: Path, seed: int = SEED, **run_options: Any) -> Report:
    """Build the mutants under `folder`, run them all, judge them, check the inputs."""
    start = time.monotonic()
    mutants = build_mutants(folder / "inputs", seed)
    cases = cases_for(mutants, folder / "out")
    outcomes = run_cases(cases, folder / "work", **run_options)
    failures: list[Failure] = []
    for m in mutants:
        for method in m.methods:
            key = f"{m.id}|{method}"
            failures += judge(m, method, outcomes[key], folder / "out" / f"m{m.index:03d}-{method}")
    failures += check_inputs(mutants, folder / "inputs")
    failures.sort(key=lambda f: (f.mutant, f.method, f.category))
    report = Report(len(mutants), len(cases), time.monotonic() - start, failures)
    target = os.environ.get("RECON_FUZZ_REPORT")
    if target:
        Path(target).write_text(json.dumps({"mutants": report.mutants, "cases": report.cases, "seconds": report.seconds,
                                            "failures": [asdict(f) for f in failures],
                                            "outcomes": {k: {x: v for x, v in o.items() if x != "expected"} for k, o in outcomes.items()}},
                                           indent=1, default=str))
    return report


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "worker":
    worker(Path(sys.argv[2]), sys.argv[3])
