"""Siemens TWIX raw data (`meas_*.dat`: VB, VD/VE, multi-RAID) -> the gridded `RawScan` of ISMRMRD input.

`twixtools` parses the protocol and the measurement data; this module decides whether the file
can be trusted first, describes every readout in ISMRMRD's acquisition-header layout (as
`siemens_to_ismrmrd` does) and hands it to the one gridding of the project
(`recon.io.gridding.grid_acquisitions`: line placement, averaging, calibration lines, noise
prewhitening, FOV and grid fitting, slice order, geometry, memory check). So every method,
writer, check and `recon convert` treats a `.dat` file exactly like an ISMRMRD file.

Damaged files (twixtools trusts them; checked on twixtools 0.24): before twixtools sees a file,
`walk` reads its block headers with bounded reads: the multi-RAID header (VD/VE) and every
measurement inside the file, every block's DMA length positive and inside its measurement, one
`ACQEND` block at the end of each measurement (an `ACQEND` bit flipped on an earlier block
would silently drop every line after it), `LASTSCANINMEAS` in the imaging measurement. The
twixtools read then runs once in a forked child under a time limit (`recon.io.guard`; its
regular expressions on a damaged text header can take forever), then for real with its stdout
captured: anything it prints is a refusal. Its readouts must be the walk's blocks. The lines are
checked against the protocol (counters within the protocol's slices, echoes, averages and
repetitions; every slice of every image present; without parallel imaging and partial Fourier
every phase-encoding line present once per average). Every refusal is one `InputError` line.
Memory is bounded before anything is allocated: twixtools' objects (per readout and per byte of
protocol text, from the walk) here, the grid in `grid_acquisitions` (`--max-memory` for both).

What a Siemens file carries, used as the scanner meant it:

* the imaging measurement is the last of a multi-RAID file; `NOISEADJSCAN` readouts (of an
  earlier adjustment measurement, or of the imaging one) are the noise scan: prewhitening with
  the noise covariance scaled by the ratio of the dwell times (`sRXSPEC.alDwellTime` of each
  measurement's protocol, per echo) and divided by Siemens' relative receiver noise bandwidth
  `RELATIVE_NOISE_BANDWIDTH` (0.793, the value `siemens_to_ismrmrd` states; no protocol field
  states another);
* `PATREFSCAN` lines are calibration data only, `PATREFANDIMASCAN` lines calibration and image;
* the readout keeps its oversampling (`Dicom.flReadoutOSFactor`) as the ISMRMRD path does;
  an asymmetric echo (`CenterCol` below half the samples) and phase partial Fourier (`CenterLin`)
  become the acquisition's readout extent and acquirable columns; `CutOff` samples are dropped;
* slices are sorted by position, averages (`Ave`) averaged, repetitions / echoes / sets
  (`Rep`, `Eco` -> contrast, `Set`) are separate images;
* refused in one line naming what is unsupported: non-Cartesian `sKSpace.ucTrajectory`, EPI
  (echo-planar readout trains, phase-correction navigators `PHASCOR`, reflected lines `REFLECT`,
  ramp sampling `alRegridMode`), 3-D partitions, simultaneous multi-slice, cine phases.

Geometry: per slice, from the measurement header's `SliceData` (position `SlicePos` in patient
coordinates Sag/Cor/Tra = LPS, and the rotation quaternion (W, X, Y, Z), whose rotation matrix has
the columns phase, read, slice: `quaternion_directions`), checked against the protocol's
`sSliceArray` (the slice normal must agree; FOV and thickness come from it, the FOV also checked
against `Config`). `twixtools.geometry` is not used (its matrix negates the read and phase
columns of the quaternion's). Identity (patient name, ID, birth date, sex, age, weight,
institution, address, device serial number, UIDs with time stamps, the RAID header's patient
name) goes to `RawScan.identity` only, never into `meta`.

VB files are read by the same code with VB's block layout (one 128-byte header per channel);
no real VB file was available to test with (`write_twix` writes VD/VE only): the tests write a
synthetic VB file themselves.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import ismrmrd
import numpy as np

from recon.io.errors import InputError
from recon.io.gridding import COUNTERS, HEAD_DTYPE, RawScan, grid_acquisitions, image_acquisitions
from recon.io.guard import finishes
from recon.io.header import HeaderInfo
from recon.io.limits import check_memory, format_bytes

#: Siemens' relative receiver noise bandwidth (the equivalent noise bandwidth of the receive
#: filter over the sampling bandwidth), used to scale the noise covariance.
RELATIVE_NOISE_BANDWIDTH = 0.793

PathLike = str | os.PathLike[str]


def _mdh_dtypes() -> tuple[np.dtype, np.dtype, int]:
    """(VD/VE scan header, VB17 header, VD channel header size) as twixtools defines them."""
    from twixtools import mdh_def

    return np.dtype(mdh_def.Scan_header), np.dtype(mdh_def.VB17_header), np.dtype(mdh_def.Channel_header).itemsize


VD_MDH, VB_MDH, VD_CHANNEL = _mdh_dtypes()
#: The multi-RAID file header of VD/VE files: 8 bytes, then 64 entries of 152 bytes.
RAID_HEADER_BYTES = 8 + 64 * 152
RAID_ENTRY = np.dtype([("measId", "<u4"), ("fileId", "<u4"), ("off", "<u8"), ("len", "<u8"), ("patName", "S64"), ("protName", "S64")])
#: Bytes after a measurement's ACQEND block that still count as padding (blocks of 512 bytes).
PADDING_BYTES = 512
DMA_MASK = (1 << 25) - 1
#: Estimated bytes of twixtools' Python objects per readout, and per byte of text header.
TWIXTOOLS_BYTES_PER_BLOCK = 4096
TWIXTOOLS_BYTES_PER_HEADER_BYTE = 8
_BUFFER_NAME = re.compile(rb"[A-Za-z]\w{3,}\x00")


def _flag_bits() -> dict[str, int]:
    """Evaluation-info-mask bit of each MDH flag name (twixtools' table)."""
    from twixtools import mdh_def

    return {name: 1 << bit for name, bit in mdh_def.mask_dict.items()}


BITS = _flag_bits()


def _ismrmrd_bit(flag: int) -> int:
    """ISMRMRD flag numbers are 1-based bit positions."""
    return 1 << (flag - 1)


#: MDH flags -> the ISMRMRD flag of the same meaning (only these matter to the gridding).
_TO_ISMRMRD = {
    "NOISEADJSCAN": ismrmrd.ACQ_IS_NOISE_MEASUREMENT,
    "PHASCOR": ismrmrd.ACQ_IS_PHASECORR_DATA,
    "REFLECT": ismrmrd.ACQ_IS_REVERSE,
    "RTFEEDBACK": ismrmrd.ACQ_IS_RTFEEDBACK_DATA,
    "HPFEEDBACK": ismrmrd.ACQ_IS_HPFEEDBACK_DATA,
    "PHASESTABSCAN": ismrmrd.ACQ_IS_PHASE_STABILIZATION,
    "REFPHASESTABSCAN": ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE,
    "noname60": ismrmrd.ACQ_IS_DUMMYSCAN_DATA,
}
#: Trajectories of `sKSpace.ucTrajectory`.
TRAJECTORIES = {1: "Cartesian", 2: "radial", 4: "spiral", 8: "PROPELLER (BLADE)"}
#: `sKSpace.uc*PartialFourier` values: 16 is off.
PARTIAL_FOURIER_OFF = 16


@dataclass(frozen=True)
class Measurement:
    """One measurement of a TWIX file, as the block walk found it.

    index: its place in the file (multi-RAID). offset, length: its bytes in the file.
    header_bytes: its text header (protocol). mdh: the measurement data headers of its
    readouts (SYNCDATA and ACQEND blocks left out), VD or VB layout. offsets: each readout's
    file offset.
    """

    index: int
    offset: int
    length: int
    header_bytes: int
    mdh: np.ndarray
    offsets: np.ndarray


@dataclass(frozen=True)
class Layout:
    """What the block walk found: `version` "VD" (VD/VE) or "VB", the file size, the
    measurements (the imaging one last) and the multi-RAID patient names (identity)."""

    version: str
    size: int
    measurements: tuple[Measurement, ...]
    raid_names: tuple[str, ...] = ()


def _u32(data: bytes, at: int = 0) -> tuple[int, int]:
    return struct.unpack_from("<II", data, at)


def is_twix(path: PathLike) -> bool:
    """Whether the bytes of `path` start like a Siemens TWIX file (twixtools' own rule: two
    small integers, the VD/VE multi-RAID header, or a VB measurement header whose first text
    buffer has a name). A damaged file that starts like one counts; `read_twix` says what is
    wrong with it."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    if len(head) < 8:
        return False
    first, second = _u32(head)
    if first < 10000:
        return 1 <= second <= 64
    return 1 <= second <= 64 and _BUFFER_NAME.match(head, 8) is not None


def _block_problem(what: str, pos: int, need: int, end: int, size: int) -> str:
    where = "the file" if end >= size else "its measurement"
    return (f"{what} at byte {pos} needs {need} bytes, beyond the end of {where} (byte {min(end, size)}); "
            "the file is truncated or damaged")


def _text_header(f: Any, path: PathLike, offset: int, end: int, size: int, index: int) -> int:
    """Check a measurement's text header (length, buffer names and lengths inside it); its length."""
    f.seek(offset)
    head = f.read(8)
    if len(head) < 8:
        raise InputError(path, f"measurement {index}: truncated before its header (byte {offset} of {size})")
    length, buffers = _u32(head)
    if not 8 <= length <= end - offset:
        raise InputError(path, f"measurement {index}: header length {length} does not fit its {end - offset} bytes; "
                               "the file is truncated or damaged")
    if not 1 <= buffers <= 64:
        raise InputError(path, f"measurement {index}: header claims {buffers} text buffers; the header is damaged")
    pos = offset + 8
    for b in range(buffers):
        f.seek(pos)
        chunk = f.read(80)
        name = _BUFFER_NAME.match(chunk)
        if name is None or len(chunk) < name.end() + 4:
            raise InputError(path, f"measurement {index}: text buffer {b} of the header has no name; the header is damaged")
        (n,) = struct.unpack_from("<I", chunk, name.end())
        pos += name.end() + 4 + n
        if pos > offset + length:
            label = name.group()[:-1].decode("ascii")
            raise InputError(path, f"measurement {index}: header buffer '{label}' runs past the header's {length} bytes; "
                                   "the header is damaged or truncated")
    return length


def _walk_blocks(f: Any, path: PathLike, version: str, start: int, end: int, size: int, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The readout headers of one measurement's data `[start, end)` (twixtools' loop, bounded)."""
    dtype = VD_MDH if version == "VD" else VB_MDH
    head_bytes = dtype.itemsize
    headers = bytearray()
    offsets: list[int] = []
    pos = start
    found_end = False
    while pos + 128 < end:
        if pos + head_bytes > min(end, size):
            raise InputError(path, _block_problem(f"measurement {index}: readout header {len(offsets)}", pos, head_bytes, end, size))
        f.seek(pos)
        raw = f.read(head_bytes)
        mdh = np.frombuffer(raw, dtype)[0]
        mask = int(mdh["EvalInfoMask"])
        if mask & (BITS["ACQEND"] | BITS["SYNCDATA"]):
            dma = int(mdh["FlagsAndDMALength"]) & DMA_MASK
            kind = "ACQEND" if mask & BITS["ACQEND"] else "SYNCDATA"
            if dma < head_bytes:
                raise InputError(path, f"measurement {index}: {kind} block at byte {pos} has DMA length {dma} "
                                       f"(less than its {head_bytes}-byte header; twixtools would loop forever); the file is damaged")
        else:
            channels, samples = int(mdh["UsedChannels"]), int(mdh["SamplesInScan"])
            if version == "VD":
                dma = head_bytes + channels * (VD_CHANNEL + 8 * samples)
            else:
                dma = channels * (head_bytes + 8 * samples)
                if dma == 0:
                    raise InputError(path, f"measurement {index}: readout at byte {pos} has {channels} channels of {samples} "
                                           "samples (DMA length 0); the file is damaged")
            kind = "readout"
        if pos + dma > min(end, size):
            raise InputError(path, _block_problem(f"measurement {index}: {kind} {len(offsets)}", pos, dma, end, size))
        if kind == "ACQEND":
            after = end - (pos + dma)
            if after >= PADDING_BYTES:
                raise InputError(path, f"measurement {index}: readout block {len(offsets)} (byte {pos}) is flagged ACQEND "
                                       f"(end of acquisition) but {after} bytes of the measurement follow it; the flag is "
                                       "damaged (every later line would be dropped)")
            found_end = True
            break
        if kind == "readout":
            headers += raw
            offsets.append(pos)
        pos += dma
    if not found_end:
        raise InputError(path, f"measurement {index} has no ACQEND block at its end (after {len(offsets)} readouts); "
                               "the file is truncated or damaged")
    return np.frombuffer(bytes(headers), dtype).copy(), np.asarray(offsets, np.int64)


def walk(path: PathLike) -> Layout:
    """The block structure of a TWIX file, read with bounded reads (module docstring).

    Raises InputError naming the first problem: a file too short, a multi-RAID header whose
    measurements lie outside the file or overlap, a text header that does not fit, a block whose
    DMA length is zero or reaches past its measurement or the file, a measurement without its
    ACQEND block or with one before its end, an imaging measurement without LASTSCANINMEAS.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "no such file" if not p.exists() else "not a regular file")
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(RAID_HEADER_BYTES)
        if len(head) < 8:
            raise InputError(p, f"{len(head)} bytes: too short to be a Siemens TWIX file")
        first, second = _u32(head)
        spans: list[tuple[int, int]] = []
        names: list[str] = []
        if first < 10000:
            version = "VD"
            if not 1 <= second <= 64:
                raise InputError(p, f"multi-RAID header claims {second} measurements (1 to 64 allowed); not a TWIX file or damaged")
            if len(head) < RAID_HEADER_BYTES:
                raise InputError(p, f"truncated: the VD/VE multi-RAID header needs {RAID_HEADER_BYTES} bytes, the file has {size}")
            entries = np.frombuffer(head, RAID_ENTRY, count=second, offset=8)
            previous = RAID_HEADER_BYTES
            for k, e in enumerate(entries):
                off, length = int(e["off"]), int(e["len"])
                if off < previous:
                    raise InputError(p, f"multi-RAID entry {k} starts at byte {off}, inside the RAID header or the previous "
                                        "measurement; the file header is damaged")
                if length < 8:
                    raise InputError(p, f"multi-RAID entry {k} has length {length}; the file header is damaged")
                if off + length > size:
                    raise InputError(p, f"truncated: measurement {k} spans bytes {off} to {off + length}, the file has {size}")
                spans.append((off, off + length))
                names.append(e["patName"].split(b"\x00")[0].decode("latin-1"))
                previous = off + length
        else:
            version = "VB"
            spans.append((0, size))
        measurements = []
        for k, (start, end) in enumerate(spans):
            header = _text_header(f, p, start, end, size, k)
            mdh, offsets = _walk_blocks(f, p, version, start + header, end, size, k)
            measurements.append(Measurement(k, start, end - start, header, mdh, offsets))
    last = measurements[-1]
    if not (last.mdh["EvalInfoMask"].astype(np.uint64) & np.uint64(BITS["LASTSCANINMEAS"])).any():
        raise InputError(p, f"the imaging measurement has no readout flagged LASTSCANINMEAS (of {len(last.mdh)}); "
                            "the acquisition did not finish or the file is damaged")
    return Layout(version, size, tuple(measurements), tuple(n for n in names if n))


def _flags(mask: np.ndarray) -> np.ndarray:
    """ISMRMRD flags (uint64) of MDH evaluation-info masks."""
    mask = mask.astype(np.uint64)
    out = np.zeros(mask.shape, np.uint64)
    for name, flag in _TO_ISMRMRD.items():
        out |= np.where((mask & np.uint64(BITS[name])) != 0, np.uint64(_ismrmrd_bit(flag)), np.uint64(0))
    both = (mask & np.uint64(BITS["PATREFANDIMASCAN"])) != 0
    only = ((mask & np.uint64(BITS["PATREFSCAN"])) != 0) & ~both
    out |= np.where(both, np.uint64(_ismrmrd_bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING)), np.uint64(0))
    out |= np.where(only, np.uint64(_ismrmrd_bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)), np.uint64(0))
    return out


def quaternion_directions(quaternion: Sequence[float] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(read, phase, slice) unit vectors (patient LPS) of a Siemens MDH quaternion (W, X, Y, Z).

    The quaternion's rotation matrix has the columns phase, read, slice (Siemens' PRS order):
    `siemens_to_ismrmrd`'s reading, under which the slice column equals the protocol's
    `sNormal` (checked on every file).
    """
    w, x, y, z = (float(v) for v in np.asarray(quaternion, float).reshape(4))
    rotation = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
    return rotation[:, 1].copy(), rotation[:, 0].copy(), rotation[:, 2].copy()


# ---------------------------------------------------------------------------------------------
# The protocol (twixtools' parsed header dictionaries)

_MISSING = object()


def _lookup(tree: Any, keys: Sequence[str | int]) -> Any:
    """`tree[k0][k1]...`, `_MISSING` where a key or index is absent (twixtools fills gaps of
    ASCCONV arrays with empty lists, which count as absent too)."""
    cur = tree
    for key in keys:
        if isinstance(key, int):
            if not isinstance(cur, list) or key >= len(cur):
                return _MISSING
        elif not isinstance(cur, dict) or key not in cur:
            return _MISSING
        cur = cur[key]
    return _MISSING if isinstance(cur, list) and not cur else cur


def _label(keys: Sequence[str | int]) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in keys).lstrip(".")


class Protocol:
    """Typed access to one measurement's parsed header (`MeasYaps`, `Config`, `Dicom`, `Meas`)."""

    def __init__(self, path: PathLike, hdr: Any) -> None:
        self.path = path
        if not isinstance(hdr, dict) or not isinstance(hdr.get("MeasYaps"), dict) or not hdr["MeasYaps"]:
            raise InputError(path, "the header has no MeasYaps protocol (ASCCONV); it is damaged or not a measurement")
        self.hdr = hdr
        self.yaps = hdr["MeasYaps"]

    def raw(self, section: str, keys: Sequence[str | int]) -> Any:
        return _lookup(self.hdr.get(section), keys)

    def number(self, section: str, keys: Sequence[str | int], default: float | None = None, *, positive: bool = False,
               integer: bool = False) -> float | None:
        """A finite number (None / `default` when absent; InputError when present but not one)."""
        value = self.raw(section, keys)
        if value is _MISSING or value == "":
            return default
        if isinstance(value, str):
            try:
                value = float(value.strip().strip('"'))
            except ValueError:
                value = None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
            raise InputError(self.path, f"protocol field {section} {_label(keys)} is {str(self.raw(section, keys))[:40]!r}, "
                                        "not a number; the header is damaged")
        if positive and not float(value) > 0:
            raise InputError(self.path, f"protocol field {section} {_label(keys)} is {value}; it must be > 0")
        if integer and float(value) != int(float(value)):
            raise InputError(self.path, f"protocol field {section} {_label(keys)} is {value}, not a whole number")
        return float(value)

    def count(self, section: str, keys: Sequence[str | int], default: int) -> int:
        """A whole number >= 0 (`default` when absent)."""
        value = self.number(section, keys, float(default), integer=True)
        assert value is not None
        if value < 0:
            raise InputError(self.path, f"protocol field {section} {_label(keys)} is {value:g}; it cannot be negative")
        return int(value)

    def text(self, section: str, keys: Sequence[str | int]) -> str | None:
        value = self.raw(section, keys)
        if value is _MISSING or value is None:
            return None
        text = str(value).strip().strip('"').strip()
        return text or None


# ---------------------------------------------------------------------------------------------
# Reading


@dataclass
class _Read:
    """A file read by twixtools and checked against the walk: the layout, the protocols and the
    readouts (twixtools' `Mdb` objects) of every measurement."""

    layout: Layout
    protocols: list[Protocol]
    mdbs: list[list[Any]]


#: Files already read once in a guarded child, by (path, size, mtime): None when it finished.
_GUARDED: dict[tuple[str, int, int], InputError | None] = {}


def _twixtools_read(path: Path) -> list[dict[str, Any]]:
    """`twixtools.read_twix` with its prints captured: anything printed is a refusal."""
    import twixtools

    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            scans = twixtools.read_twix(str(path), verbose=False, parse_pmu=False, parse_geometry=False, keep_syncdata=False)
    except Exception as err:  # noqa: BLE001 - a third-party parser of untrusted bytes: any failure is this file's
        text = " ".join(str(err).split())[:120]
        raise InputError(path, f"twixtools cannot read the file ({type(err).__name__}: {text}); it is damaged") from None
    said = " ".join(out.getvalue().split())
    if said:
        raise InputError(path, f"twixtools reports: {said[:160]}; the file is damaged")
    return scans


def _read(path: Path, layout: Layout, max_memory: int | None) -> _Read:
    """twixtools' read of a walked file: bounded in memory, time-limited, checked against the walk."""
    blocks = sum(len(m.mdh) for m in layout.measurements)
    header_bytes = sum(m.header_bytes for m in layout.measurements)
    check_memory(path, TWIXTOOLS_BYTES_PER_BLOCK * blocks + TWIXTOOLS_BYTES_PER_HEADER_BYTE * header_bytes,
                 f"parsing {blocks} readouts and {format_bytes(header_bytes)} of protocol text", max_memory)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _GUARDED:
        try:
            finishes(path, lambda: _twixtools_read(path), "the TWIX file with twixtools", "the file is damaged")
            _GUARDED[key] = None
        except InputError as err:
            _GUARDED[key] = err
    if _GUARDED[key] is not None:
        raise _GUARDED[key]
    scans = _twixtools_read(path)
    if len(scans) != len(layout.measurements):
        raise InputError(path, f"twixtools found {len(scans)} measurement(s), the block walk {len(layout.measurements)}; the file is damaged")
    protocols, mdbs = [], []
    for scan, meas in zip(scans, layout.measurements):
        readouts = list(scan.get("mdb", []))
        positions = np.asarray([int(m.mem_pos) for m in readouts], np.int64)
        if positions.shape != meas.offsets.shape or (positions != meas.offsets).any():
            raise InputError(path, f"measurement {meas.index}: twixtools read {len(readouts)} readouts, the block walk found "
                                   f"{len(meas.offsets)} at other places; the file is damaged")
        protocols.append(Protocol(path, scan.get("hdr")))
        mdbs.append(readouts)
    return _Read(layout, protocols, mdbs)


class _Samples(Sequence[np.ndarray]):
    """`payload[a]`: readout `a`'s samples as interleaved float32 (re, im) per coil, coil after
    coil, with its `CutOff` samples dropped (the layout `grid_acquisitions` reads)."""

    def __init__(self, readouts: list[Any], cut: np.ndarray) -> None:
        self.readouts = readouts
        self.cut = cut

    def __len__(self) -> int:
        return len(self.readouts)

    def __getitem__(self, a: int) -> np.ndarray:  # type: ignore[override]
        data = np.atleast_2d(np.asarray(self.readouts[a].data, np.complex64))
        pre, post = (int(v) for v in self.cut[a])
        data = data[:, pre : data.shape[1] - post]
        return np.ascontiguousarray(data).view(np.float32).reshape(-1)


def _heads(mdh: np.ndarray, dwell_us: Sequence[float]) -> np.ndarray:
    """ISMRMRD acquisition headers (`HEAD_DTYPE`) of MDH readouts; `dwell_us[e]`: the dwell time
    of echo `e` (the last one for higher echoes)."""
    heads = np.zeros(len(mdh), HEAD_DTYPE)
    counter = mdh["Counter"]
    pre, post = mdh["CutOff"]["Pre"].astype(np.int64), mdh["CutOff"]["Post"].astype(np.int64)
    heads["flags"] = _flags(mdh["EvalInfoMask"])
    heads["active_channels"] = mdh["UsedChannels"]
    heads["available_channels"] = mdh["UsedChannels"]
    heads["number_of_samples"] = np.maximum(mdh["SamplesInScan"].astype(np.int64) - pre - post, 0)
    heads["center_sample"] = np.maximum(mdh["CenterCol"].astype(np.int64) - pre, 0)
    heads["scan_counter"] = mdh["ScanCounter"]
    echoes = np.minimum(counter["Eco"].astype(np.int64), len(dwell_us) - 1)
    heads["sample_time_us"] = np.asarray(dwell_us, np.float64)[echoes]
    idx = heads["idx"]
    for ours, theirs in (("kspace_encode_step_1", "Lin"), ("kspace_encode_step_2", "Par"), ("average", "Ave"),
                         ("slice", "Sli"), ("contrast", "Eco"), ("phase", "Phs"), ("repetition", "Rep"), ("set", "Set"),
                         ("segment", "Seg")):
        idx[ours] = counter[theirs]
    slice_data = mdh["SliceData"]
    heads["position"] = np.stack([slice_data["SlicePos"][axis] for axis in ("Sag", "Cor", "Tra")], axis=-1)
    for a, quaternion in enumerate(slice_data["Quaternion"]):
        heads["read_dir"][a], heads["phase_dir"][a], heads["slice_dir"][a] = quaternion_directions(quaternion)
    return heads


def _dwell_us(protocol: Protocol, echoes: int) -> list[float]:
    """Dwell time (us) of each echo from `sRXSPEC.alDwellTime` (ns)."""
    out = []
    for e in range(max(1, echoes)):
        value = protocol.number("MeasYaps", ("sRXSPEC", "alDwellTime", e), positive=True)
        if value is None:
            if e == 0:
                raise InputError(protocol.path, "protocol lacks sRXSPEC.alDwellTime[0] (the dwell time); the noise "
                                                "scale cannot be set")
            break
        out.append(value / 1000.0)
    return out


def _unsupported(path: Path, prot: Protocol, mask: np.ndarray, counter: np.ndarray) -> None:
    """InputError naming what the imaging measurement holds that this reader does not reconstruct."""
    trajectory = prot.count("MeasYaps", ("sKSpace", "ucTrajectory"), 1)
    if trajectory != 1:
        raise InputError(path, f"{TRAJECTORIES.get(trajectory, f'trajectory code {trajectory}')} k-space trajectory "
                               f"(sKSpace.ucTrajectory {trajectory}) is not supported (Cartesian only)")
    epi: list[str] = []
    factor = prot.count("MeasYaps", ("sFastImaging", "lEPIFactor"), 1)
    if factor > 1:
        epi.append(f"echo trains (sFastImaging.lEPIFactor {factor})")
    if (mask & np.uint64(BITS["PHASCOR"])).any():
        epi.append("phase-correction navigators (PHASCOR)")
    if (mask & np.uint64(BITS["REFLECT"])).any():
        epi.append("reflected lines (REFLECT)")
    regrid = prot.raw("Meas", ("alRegridMode",))
    regrid = regrid[0] if isinstance(regrid, list) and regrid else regrid
    if isinstance(regrid, (int, float)) and not isinstance(regrid, bool) and regrid > 1:
        epi.append(f"ramp sampling (alRegridMode {regrid:g})")
    if epi:
        raise InputError(path, f"EPI is not supported: {', '.join(epi)}")
    dimension = prot.count("MeasYaps", ("sKSpace", "ucDimension"), 2)
    if dimension != 2 or (counter["Par"] > 0).any():
        raise InputError(path, "3-D encoding (partitions" + (f", sKSpace.ucDimension {dimension}" if dimension != 2 else "")
                               + ") is not supported (2-D slices only)")
    multiband = prot.count("MeasYaps", ("sSliceAcceleration", "lMultiBandFactor"), 1)
    if multiband > 1 or (mask & np.uint64(BITS["SLICE_ACCEL_REFSCAN"] | BITS["SLICE_ACCEL_PHASCOR"])).any():
        raise InputError(path, "simultaneous multi-slice (slice acceleration) is not supported")


def _slices(path: Path, prot: Protocol) -> list[dict[str, Any]]:
    """The protocol's slices (`sSliceArray.asSlice[:lSize]`) with FOV, thickness, position, normal."""
    n = prot.count("MeasYaps", ("sSliceArray", "lSize"), 0)
    if n < 1:
        raise InputError(path, "protocol sSliceArray.lSize is missing or 0: no slices")
    out = []
    for s in range(n):
        base = ("sSliceArray", "asSlice", s)
        fov = tuple(prot.number("MeasYaps", (*base, key), positive=True) for key in ("dReadoutFOV", "dPhaseFOV", "dThickness"))
        if any(v is None for v in fov):
            raise InputError(path, f"protocol slice {s} lacks its readout FOV, phase FOV or thickness (sSliceArray.asSlice[{s}])")
        position = [prot.number("MeasYaps", (*base, "sPosition", axis), 0.0) for axis in ("dSag", "dCor", "dTra")]
        normal = [prot.number("MeasYaps", (*base, "sNormal", axis), 0.0) for axis in ("dSag", "dCor", "dTra")]
        out.append({"fov": fov, "position": np.asarray(position, float), "normal": np.asarray(normal, float)})
    first = out[0]["fov"]
    for s, sl in enumerate(out[1:], 1):
        if not np.allclose(sl["fov"], first, rtol=1e-6):
            raise InputError(path, f"protocol slice {s} has another FOV or thickness than slice 0; slices of one image "
                                   "must share their grid")
    return out


#: Largest angle (degrees) between an MDH slice normal and the protocol's that still agrees
#: (the MDH stores float32; the protocol rounds to 10 digits).
NORMAL_TOLERANCE_DEG = 0.5
#: Position difference (mm) beyond which the MDH position is reported as disagreeing with the protocol.
POSITION_TOLERANCE_MM = 1.0


def _check_geometry(path: Path, mdh: np.ndarray, heads: np.ndarray, image: np.ndarray, slices: list[dict[str, Any]],
                    notes: list[str]) -> None:
    """Each slice's readouts share one SliceData with a unit quaternion, whose normal is the
    protocol's; a position far from every protocol slice is reported in `notes`."""
    sli = mdh["Counter"]["Sli"]
    for s in np.unique(sli[image]):
        rows = np.flatnonzero(image & (sli == s))
        quaternions = mdh["SliceData"]["Quaternion"][rows].astype(np.float64)
        norm = float(np.linalg.norm(quaternions[0]))
        if abs(norm - 1.0) > 1e-3:
            raise InputError(path, f"slice {int(s)}: the SliceData quaternion has norm {norm:.4g}, not 1; the image "
                                   "orientation is unknown (the header is damaged)")
        positions = heads["position"][rows].astype(np.float64)
        if np.abs(quaternions - quaternions[0]).max() > 1e-5 or np.abs(positions - positions[0]).max() > 1e-3:
            raise InputError(path, f"the readouts of slice {int(s)} disagree on the slice position or orientation "
                                   "(SliceData); the file is damaged")
        normal = heads["slice_dir"][rows[0]].astype(np.float64)
        position = positions[0]
        distances = [float(np.linalg.norm(position - sl["position"])) for sl in slices]
        nearest = slices[int(np.argmin(distances))]
        ref = nearest["normal"]
        if np.linalg.norm(ref) > 0.5:
            cosine = float(np.dot(normal, ref) / np.linalg.norm(ref))
            if cosine < math.cos(math.radians(NORMAL_TOLERANCE_DEG)):
                angle = math.degrees(math.acos(max(-1.0, min(1.0, cosine))))
                raise InputError(path, f"slice {int(s)}: the slice normal of the measurement header (SliceData) is "
                                       f"{angle:.1f} degrees from the protocol's sSliceArray normal; the image cannot be placed")
        if min(distances) > POSITION_TOLERANCE_MM:
            at = ", ".join(f"{v:.2f}" for v in position)
            notes.append(f"slice {int(s)} is at ({at}) mm in its measurement header, {min(distances):.1f} mm from the "
                         "nearest slice of the protocol; the header position is used")


def _first_missing(present: np.ndarray) -> int:
    """The smallest index >= 0 not in the sorted unique `present` (counters are checked below their limit first)."""
    gaps = np.flatnonzero(np.asarray(present) != np.arange(len(present)))
    return int(gaps[0]) if gaps.size else len(present)


def _check_lines(path: Path, prot: Protocol, mdh: np.ndarray, image: np.ndarray, lines: int) -> None:
    """The imaging lines against the protocol (module docstring): counters within the protocol,
    every slice of every image present, each line once per average; without parallel imaging and
    partial Fourier every phase-encoding line present."""
    counter = mdh["Counter"]
    limits = {
        "Sli": ("slice", prot.count("MeasYaps", ("sSliceArray", "lSize"), 1), "sSliceArray.lSize"),
        "Eco": ("echo", prot.count("MeasYaps", ("lContrasts",), 1), "lContrasts"),
        "Ave": ("average", prot.count("MeasYaps", ("lAverages",), 1), "lAverages"),
        "Rep": ("repetition", prot.count("MeasYaps", ("lRepetitions",), 0) + 1, "lRepetitions + 1"),
        "Lin": ("line", lines, "phase-encoding lines"),
    }
    for name, (what, limit, field) in limits.items():
        values = counter[name][image]
        bad = np.flatnonzero(values >= max(limit, 1))
        if bad.size:
            row = int(np.flatnonzero(image)[bad[0]])
            raise InputError(path, f"readout {row} has {what} counter {int(values[bad[0]])}, but the protocol has {limit} "
                                   f"({field}); the file is damaged")
    for name, what, field in (("Rep", "repetition", "lRepetitions + 1"), ("Eco", "echo", "lContrasts")):
        expected = limits[name][1]
        present = np.unique(counter[name][image])
        if present.size != expected:
            raise InputError(path, f"{what} {_first_missing(present)} of the protocol's {expected} ({field}) has no imaging lines; "
                                   "the measurement is incomplete")
    n_slices, n_averages = limits["Sli"][1], limits["Ave"][1]
    accelerated = prot.count("MeasYaps", ("sPat", "lAccelFactPE"), 1) > 1
    partial = prot.count("MeasYaps", ("sKSpace", "ucPhasePartialFourier"), PARTIAL_FOURIER_OFF) != PARTIAL_FOURIER_OFF
    keys = np.stack([counter[c][image].astype(np.int64) for c in ("Rep", "Eco", "Set")], axis=1)
    reference: dict[tuple[int, ...], frozenset[int]] = {}
    for key in np.unique(keys, axis=0):
        inside = image.copy()
        inside[image] = (keys == key).all(axis=1)
        label = f"repetition {key[0]}, echo {key[1]}, set {key[2]}"
        present = np.unique(counter["Sli"][inside])
        if present.size != n_slices:
            raise InputError(path, f"slice {_first_missing(present)} of the protocol's {n_slices} has no imaging lines ({label}); "
                                   "the measurement is incomplete")
        for s in range(n_slices):
            for a in range(n_averages):
                rows = inside & (counter["Sli"] == s) & (counter["Ave"] == a)
                got = counter["Lin"][rows].astype(np.int64)
                where = f"slice {s}, average {a} ({label})"
                if got.size == 0:
                    raise InputError(path, f"{where} has no imaging lines; the measurement is incomplete")
                unique, counts = np.unique(got, return_counts=True)
                if (counts > 1).any():
                    raise InputError(path, f"{where}: line {int(unique[counts > 1][0])} was acquired {int(counts.max())} times "
                                           "within one average; the line counters are damaged")
                seen = frozenset(unique.tolist())
                first = reference.setdefault(tuple(key[1:]), seen)
                if seen != first:
                    odd = sorted(seen ^ first)[0]
                    raise InputError(path, f"{where} holds other lines than the first slice of this echo and set (line {odd}); "
                                           "the measurement is incomplete or its counters are damaged")
                if not accelerated:
                    gaps = np.flatnonzero(np.diff(unique) > 1)
                    if gaps.size:
                        raise InputError(path, f"{where}: line {int(unique[gaps[0]]) + 1} is missing (the protocol has no "
                                               "parallel imaging); the measurement is incomplete or damaged")
                    if not partial and unique.size != lines:
                        raise InputError(path, f"{where} holds {unique.size} lines, the protocol {lines} (no parallel imaging, "
                                               "no partial Fourier); the measurement is incomplete or damaged")


def _identity(read: _Read) -> dict[str, str]:
    """Patient and site identity of every header (module docstring); the first value found wins."""
    fields = {
        "patient_name": [("Config", ("tPatientName",)), ("Config", ("PatientName",)), ("Dicom", ("tPatientName",)),
                         ("Meas", ("tPatientName",))],
        "patient_id": [("Config", ("PatientID",)), ("Meas", ("PatientID",))],
        "patient_birth_date": [("Config", ("PatientBirthDay",)), ("Meas", ("PatientBirthDay",))],
        "patient_age": [("Dicom", ("flPatientAge",)), ("Meas", ("flPatientAge",))],
        "patient_weight_kg": [("Dicom", ("flUsedPatientWeight",)), ("Meas", ("flUsedPatientWeight",))],
        "institution_name": [("Dicom", ("InstitutionName",)), ("Meas", ("InstitutionName",))],
        "institution_address": [("Dicom", ("InstitutionAddress",)), ("Meas", ("InstitutionAddress",))],
        "device_serial_number": [("Dicom", ("DeviceSerialNumber",)), ("Meas", ("DeviceSerialNumber",))],
        "frame_of_reference_uid": [("Config", ("FrameOfReference",)), ("Meas", ("FrameOfReference",))],
        "patient_loid": [("Config", ("PatientLOID",)), ("Meas", ("PatientLOID",))],
        "study_loid": [("Config", ("StudyLOID",)), ("Meas", ("StudyLOID",))],
        "series_loid": [("Config", ("SeriesLOID",)), ("Meas", ("SeriesLOID",))],
        "exam_memory_uid": [("Config", ("ExamMemoryUID",)), ("Meas", ("ExamMemoryUID",))],
    }
    out: dict[str, str] = {}
    for prot in read.protocols[::-1]:
        for key, places in fields.items():
            for section, keys in places:
                value = prot.text(section, keys)
                if value is not None and key not in out:
                    out[key] = value
        sex = prot.raw("Dicom", ("lPatientSex",))
        if isinstance(sex, (int, float)) and "patient_sex" not in out:
            out["patient_sex"] = {1: "F", 2: "M"}.get(int(sex), "O")
        refs = [prot.text("MeasYaps", (f"tReferenceImage{i}",)) for i in range(8)]
        if any(refs) and "reference_image_uids" not in out:
            out["reference_image_uids"] = " ".join(r for r in refs if r)
    if not re.fullmatch(r"\d{8}", out.get("patient_birth_date", "")):
        out.pop("patient_birth_date", None)  # anonymised ('xxxxxxxx'): not a date an output could carry
    if read.layout.raid_names and "raid_patient_name" not in out:
        out["raid_patient_name"] = " / ".join(read.layout.raid_names)
    return out


def _meta(prot: Protocol, version: str) -> dict[str, Any]:
    """Non-identifying protocol facts (what ISMRMRD's header gives as `meta`)."""
    meta: dict[str, Any] = {"format": f"Siemens TWIX {'VD/VE' if version == 'VD' else version}"}
    texts = {"protocol_name": ("MeasYaps", ("tProtocolName",)), "system_vendor": ("Dicom", ("Manufacturer",)),
             "system_model": ("Dicom", ("ManufacturersModelName",)), "software_version": ("Dicom", ("SoftwareVersions",)),
             "sequence": ("MeasYaps", ("tSequenceFileName",))}
    for key, (section, keys) in texts.items():
        value = prot.text(section, keys)
        if value is not None:
            meta[key] = value
    numbers = {"field_strength_T": (("Dicom", ("flMagneticFieldStrength",)), 1.0),
               "TR_ms": (("MeasYaps", ("alTR", 0)), 1e-3), "TE_ms": (("MeasYaps", ("alTE", 0)), 1e-3)}
    for key, ((section, keys), scale) in numbers.items():
        try:
            value = prot.number(section, keys)
        except InputError:
            value = None
        if value is not None:
            meta[key] = float(value) * scale
    return meta


def _declared_lines(prot: Protocol) -> int:
    """Phase-encoding lines of the protocol (`Config.NLinMeas`, else `sKSpace.lPhaseEncodingLines`; 0 when absent)."""
    return int(prot.number("Config", ("NLinMeas",), 0.0, integer=True) or 0) or int(
        prot.number("MeasYaps", ("sKSpace", "lPhaseEncodingLines"), 0.0, integer=True) or 0)


def _grid_header(path: Path, prot: Protocol, mdh: np.ndarray, image: np.ndarray, calibration: np.ndarray,
                 slices: list[dict[str, Any]], identity: dict[str, str], meta: dict[str, Any]) -> HeaderInfo:
    """The encoded / recon matrices and FOVs, and the phase-encoding centre, in ISMRMRD's terms."""
    base = int(prot.number("MeasYaps", ("sKSpace", "lBaseResolution"), positive=True, integer=True) or 0)
    if base < 1:
        raise InputError(path, "protocol lacks sKSpace.lBaseResolution (the readout matrix)")
    oversampling = prot.number("Dicom", ("flReadoutOSFactor",), positive=True)
    if oversampling is None:
        raise InputError(path, "protocol lacks Dicom.flReadoutOSFactor (the readout oversampling); the readout FOV is unknown")
    phase_os = prot.number("MeasYaps", ("sKSpace", "dPhaseOversamplingForDialog"), 0.0) or 0.0
    if not 0 <= phase_os < 10:
        raise InputError(path, f"protocol phase oversampling {phase_os:g} is out of range")
    read_fov, phase_fov, thickness = slices[0]["fov"]
    for section, key, value in (("Config", "RoFOV", read_fov), ("Config", "PeFOV", phase_fov), ("Config", "BaseResolution", base)):
        other = prot.number(section, (key,))
        if other is not None and not math.isclose(other, value, rel_tol=1e-3):
            raise InputError(path, f"protocol {section}.{key} {other:g} disagrees with the MeasYaps value {value:g}; "
                                   "the header is damaged")
    rows = int(round(base * oversampling))
    used = image | calibration
    samples = mdh["SamplesInScan"].astype(np.int64) - mdh["CutOff"]["Pre"] - mdh["CutOff"]["Post"]
    centre_col = mdh["CenterCol"].astype(np.int64) - mdh["CutOff"]["Pre"]
    symmetric = used & (2 * centre_col == samples)
    if symmetric.any() and (samples[symmetric] != rows).any():
        got = int(samples[symmetric][samples[symmetric] != rows][0])
        raise InputError(path, f"readouts hold {got} samples, but the protocol's base resolution {base} x readout "
                               f"oversampling {oversampling:g} is {rows}; the header and the data disagree")
    start = rows // 2 - centre_col[used]
    if (start < 0).any() or (start + samples[used] > rows).any():
        raise InputError(path, f"a readout (samples {int(samples[used].max())}, echo at sample {int(centre_col[used].min())}) "
                               f"does not fit the protocol's {rows}-sample readout; the header and the data disagree")
    centre = np.unique(mdh["CenterLin"][used])
    if centre.size != 1:
        raise InputError(path, f"imaging lines disagree on the k-space centre line (CenterLin {centre[:4].tolist()}); "
                               "the file is damaged")
    centre_lin = int(centre[0])
    lin = mdh["Counter"]["Lin"][used].astype(np.int64)
    declared = _declared_lines(prot)
    needed = 2 * max(centre_lin, int(lin.max()) + 1 - centre_lin)
    cols = max(declared, needed + needed % 2)
    image_lines = int(prot.number("Config", ("NImageLins",), 0.0, integer=True) or 0)
    if image_lines < 1:
        image_lines = int(round(base * phase_fov / read_fov))
    return HeaderInfo(
        encoded_size=(rows, cols, 1),
        recon_size=(base, image_lines, 1),
        padding_left=0,
        padding_right=cols,
        fov_mm=(read_fov * oversampling, phase_fov * (1.0 + phase_os), thickness),
        recon_fov_mm=(read_fov, phase_fov, thickness),
        trajectory="cartesian",
        step1_center=centre_lin,
        step1_maximum=cols - 1,
        identity=identity,
        meta=meta,
        noise_bandwidth=RELATIVE_NOISE_BANDWIDTH,
    )


def _check_channels(path: Path, read: _Read, noise_meas: list[int]) -> None:
    """A noise scan of another measurement must list the imaging measurement's channels in the same order."""
    if read.layout.version != "VD":
        return

    def ids(readouts: list[Any]) -> list[int]:
        return [int(c.ChannelId) for c in getattr(readouts[0], "channel_hdr", [])] if readouts else []

    imaging = ids(read.mdbs[-1])
    for k in noise_meas:
        noise = [m for m in read.mdbs[k] if m.is_flag_set("NOISEADJSCAN")]
        theirs = ids(noise)
        if theirs and imaging and theirs != imaging:
            raise InputError(path, f"the noise scan (measurement {k}) has channels {theirs[:8]}, the imaging data {imaging[:8]}; "
                                   "it cannot whiten them")


def image_lines(mdh: np.ndarray) -> np.ndarray:
    """bool per readout: an imaging line (in the gridding's sense: not noise, navigator,
    feedback, phase stabilisation or calibration-only data)."""
    heads = np.zeros(len(mdh), HEAD_DTYPE)
    heads["flags"] = _flags(mdh["EvalInfoMask"])
    return image_acquisitions(heads) & ((heads["flags"] & np.uint64(_ismrmrd_bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION))) == 0)


def counter_values(path: PathLike) -> dict[str, list[int]]:
    """The repetition / contrast (echo) / set indices of the imaging measurement's imaging lines (sorted)."""
    mdh = walk(path).measurements[-1].mdh
    image = image_lines(mdh)
    counter = mdh["Counter"]
    names = {"repetition": "Rep", "contrast": "Eco", "set": "Set"}
    return {c: np.unique(counter[names[c]][image]).astype(int).tolist() for c in COUNTERS}


def read_twix(
    path: PathLike,
    *,
    repetition: int | None = None,
    contrast: int | None = None,
    set_index: int | None = None,
    prewhiten: bool = True,
    remove_oversampling: bool = False,
    max_memory: int | None = None,
) -> RawScan:
    """Read a Cartesian 2-D (multi-slice) Siemens TWIX file into a RawScan (module docstring).

    Args:
        path: the `.dat` file (VB or VD/VE, single or multi-RAID).
        repetition, contrast, set_index: which repetition / echo / set to grid (None: the file's
            only one; several and none chosen is an InputError naming them).
        prewhiten: whiten the coils with the file's noise scan (NOISEADJSCAN readouts).
        remove_oversampling: crop the readout to the recon FOV (`recon.io.gridding`).
        max_memory: bytes the read may use (default: the available memory).

    Raises:
        InputError: a damaged or truncated file (block walk, twixtools, protocol checks), an
            unsupported acquisition (non-Cartesian, EPI, 3-D, multi-band), lines that do not
            match the protocol, geometry that cannot place the image, too much memory.
    """
    p = Path(path)
    layout = walk(p)
    imaging = layout.measurements[-1]
    mdh = imaging.mdh
    if len(mdh) == 0:
        raise InputError(p, "the imaging measurement holds no readouts")
    mask = mdh["EvalInfoMask"].astype(np.uint64)
    image = image_lines(mdh)
    calibration = (_flags(mdh["EvalInfoMask"]) & np.uint64(_ismrmrd_bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION))) != 0
    if not image.any():
        raise InputError(p, f"the imaging measurement holds no imaging lines (of {len(mdh)} readouts)")
    used = image | calibration
    read = _read(p, layout, max_memory)
    prot = read.protocols[-1]
    _unsupported(p, prot, mask, mdh["Counter"][used])
    slices = _slices(p, prot)
    notes: list[str] = []
    identity = _identity(read)
    _check_lines(p, prot, mdh, image, _declared_lines(prot) or int(mdh["Counter"]["Lin"][used].max()) + 1)
    header = _grid_header(p, prot, mdh, image, calibration, slices, identity, _meta(prot, layout.version))
    echoes = max(prot.count("MeasYaps", ("lContrasts",), 1), int(mdh["Counter"]["Eco"].max()) + 1)
    heads = _heads(mdh, _dwell_us(prot, echoes))
    cut = np.stack([mdh["CutOff"]["Pre"], mdh["CutOff"]["Post"]], axis=1)
    if (cut.sum(axis=1) >= mdh["SamplesInScan"])[used].any():
        raise InputError(p, "a readout's CutOff removes all of its samples; the file is damaged")
    _check_geometry(p, mdh, heads, image, slices, notes)
    parts, payloads = [heads], [_Samples(read.mdbs[-1], cut)]
    noise_meas = []
    for k, meas in enumerate(layout.measurements[:-1]):
        noise = (meas.mdh["EvalInfoMask"].astype(np.uint64) & np.uint64(BITS["NOISEADJSCAN"])) != 0
        if not noise.any():
            continue
        noise_meas.append(k)
        rows = np.flatnonzero(noise)
        parts.append(_heads(meas.mdh[rows], _dwell_us(read.protocols[k], 1)))
        readouts = [read.mdbs[k][i] for i in rows]
        payloads.append(_Samples(readouts, np.stack([meas.mdh["CutOff"]["Pre"][rows], meas.mdh["CutOff"]["Post"][rows]], axis=1)))
    _check_channels(p, read, noise_meas)
    all_heads = np.concatenate(parts)
    payload = _Joined(payloads)
    choice = {"repetition": repetition, "contrast": contrast, "set": set_index}
    raw = grid_acquisitions(p, header, all_heads, payload, choice, prewhiten, remove_oversampling, max_memory)
    raw.warnings[:0] = notes
    return raw


class _Joined(Sequence[np.ndarray]):
    """Several payload sequences indexed as one (imaging readouts, then noise readouts)."""

    def __init__(self, parts: list[_Samples]) -> None:
        self.parts = parts
        self.starts = np.cumsum([0] + [len(p) for p in parts])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, a: int) -> np.ndarray:  # type: ignore[override]
        k = int(np.searchsorted(self.starts, a, side="right")) - 1
        return self.parts[k][int(a) - int(self.starts[k])]
