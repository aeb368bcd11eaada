"""Siemens TWIX test files: the real `gre.dat` / `epi.dat` of the twixtools 0.24 sdist, and
synthetic files written with `twixtools.write_twix` from `gre.dat` as the template.

The sdist is fetched once into a cache (`scripts/_setup.sh` does it at set-up; `example_data`
fetches it here if set-up could not): `$RECON_TWIX_CACHE`, else
`${XDG_CACHE_HOME:-~/.cache}/recon/twixtools-0.24`. Tests that need the files skip, saying why,
when the cache cannot be filled (no network to PyPI, no pip).

Synthetic files edit the protocol as text (`write_twix` writes the header string verbatim): the
ASCCONV lines of `MeasYaps` (`yaps` edits) and `<Param...."Name"> { value }` entries of
`Config` (`config` edits); the big `Meas`, `Phoenix` and `Spice` buffers are left out unless
kept (the reader needs `MeasYaps`, `Config` and `Dicom`).
"""

from __future__ import annotations

import copy
import os
import re
import struct
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

VERSION = "0.24"
EXAMPLES = ("gre.dat", "epi.dat")
_FETCH_ERROR: list[str] = []


def cache_dir() -> Path:
    """Where the sdist's example files are kept."""
    if os.environ.get("RECON_TWIX_CACHE"):
        return Path(os.environ["RECON_TWIX_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "recon" / f"twixtools-{VERSION}"


def fetch(folder: Path, timeout: float = 180.0) -> str | None:
    """Download the twixtools sdist with pip and extract its example data into `folder`; None on
    success, else why not (one line)."""
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        try:
            done = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                                   f"twixtools=={VERSION}", "-d", tmp, "-q"], capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"pip download of the twixtools {VERSION} sdist failed ({type(err).__name__})"
        archives = sorted(Path(tmp).glob("twixtools-*.tar.gz"))
        if done.returncode != 0 or not archives:
            return f"pip download of the twixtools {VERSION} sdist failed: {' '.join(done.stderr.split())[-200:]}"
        with tarfile.open(archives[0]) as tar:
            for name in EXAMPLES:
                member = tar.getmember(f"twixtools-{VERSION}/example_data/{name}")
                data = tar.extractfile(member)
                assert data is not None
                part = folder / f".{name}.part"
                part.write_bytes(data.read())
                part.replace(folder / name)
    return None


def example_data(name: str) -> Path:
    """Path of `gre.dat` or `epi.dat`, fetched into the cache once; pytest.skip with the reason
    when it cannot be had."""
    path = cache_dir() / name
    if not path.is_file() and not _FETCH_ERROR:
        problem = fetch(cache_dir())
        if problem:
            _FETCH_ERROR.append(problem)
    if not path.is_file():
        reason = _FETCH_ERROR[0] if _FETCH_ERROR else f"{path} is missing"
        pytest.skip(f"needs twixtools {VERSION}'s example {name} (scripts/_setup.sh caches it): {reason}")
    return path


def have_example(name: str) -> bool:
    """Whether `name` is in the cache already (nothing fetched)."""
    return (cache_dir() / name).is_file()


@pytest.fixture(scope="session")
def gre_dat() -> Path:
    return example_data("gre.dat")


@pytest.fixture(scope="session")
def epi_dat() -> Path:
    return example_data("epi.dat")


# ---------------------------------------------------------------------------------------------
# Header text


def split_header(raw: bytes) -> list[tuple[str, bytes]]:
    """The text buffers (name, text including its trailing NUL) of a measurement header."""
    _, count = struct.unpack_from("<II", raw, 0)
    pos, out = 8, []
    for _ in range(count):
        end = raw.index(b"\x00", pos)
        name = raw[pos:end].decode("ascii")
        (n,) = struct.unpack_from("<I", raw, end + 1)
        out.append((name, raw[end + 5 : end + 5 + n]))
        pos = end + 5 + n
    return out


def join_header(buffers: list[tuple[str, bytes]]) -> bytes:
    """A measurement header from its buffers, padded to 32 bytes as the scanner writes it."""
    body = b"".join(name.encode("ascii") + b"\x00" + struct.pack("<I", len(text)) + text for name, text in buffers)
    length = 8 + len(body)
    length += (-length) % 32
    return (struct.pack("<II", length, len(buffers)) + body).ljust(length, b"\x00")


def edit_yaps(text: bytes, edits: dict[str, str | None]) -> bytes:
    """Set (or, with None, remove) ASCCONV lines `key = value`; new keys go before the end marker."""
    out = text
    for key, value in edits.items():
        pattern = re.compile(rb"^" + re.escape(key.encode()) + rb"\s*=[^\n]*\n", re.MULTILINE)
        line = b"" if value is None else key.encode() + b"\t = \t" + value.encode() + b"\n"
        if pattern.search(out):
            out = pattern.sub(lambda m: line, out, count=1)
        elif value is not None:
            out = out.replace(b"### ASCCONV END ###", line + b"### ASCCONV END ###", 1)
    return out


def edit_xprot(text: bytes, edits: dict[str, str]) -> bytes:
    """Set the value of every `<ParamXxx."name"> { value }` entry of that name (twixtools keeps the last)."""
    out = text
    for name, value in edits.items():
        pattern = re.compile(rb'(<Param\w+\."' + re.escape(name.encode()) + rb'">\s*\{)([^}]*)(\})')
        out, n = pattern.subn(lambda m: m.group(1) + b" " + value.encode() + b"  " + m.group(3), out)
        assert n >= 1, f"no XProtocol entry {name}"
    return out


# ---------------------------------------------------------------------------------------------
# Synthetic files


@dataclass
class Template:
    """gre.dat read by twixtools: its header buffers, readouts (local copies), ACQEND block,
    RAID entry and k-space `(coils, lines, samples)`."""

    buffers: list[tuple[str, bytes]]
    readouts: list[Any]
    acqend: Any
    raid: Any
    kspace: np.ndarray
    path: Path = field(default_factory=Path)


def template(gre: Path) -> Template:
    import twixtools

    scan = twixtools.read_twix(str(gre), verbose=False, parse_pmu=False, parse_geometry=False, keep_acqend=True)[-1]
    raw = scan["hdr_str"].tobytes()
    readouts = [m.convert_to_local() for m in scan["mdb"][:-1]]
    kspace = np.stack([np.asarray(m.data) for m in readouts], axis=1)
    return Template(split_header(raw), readouts, scan["mdb"][-1], scan["raidfile_hdr"], kspace, gre)


@dataclass
class Line:
    """One readout to write: `data` (coils, samples), MDH counters and flags."""

    data: np.ndarray
    lin: int
    sli: int = 0
    ave: int = 0
    eco: int = 0
    rep: int = 0
    set: int = 0
    flags: tuple[str, ...] = ()
    centre_col: int | None = None
    centre_lin: int = 80
    position: tuple[float, float, float] | None = None
    quaternion: tuple[float, float, float, float] | None = None


def make_readout(tpl: Template, line: Line) -> Any:
    """A twixtools local readout from the template's first one, with `line`'s data and counters."""
    m = copy.deepcopy(tpl.readouts[0])
    m.data = np.asarray(line.data, np.complex64)
    m.mdh.EvalInfoMask = 0
    for flag in ("ONLINE", *line.flags):
        m.add_flag(flag)
    c = m.mdh.Counter
    c.Lin, c.Sli, c.Ave, c.Eco, c.Rep, c.Set = line.lin, line.sli, line.ave, line.eco, line.rep, line.set
    m.mdh.CenterCol = line.data.shape[1] // 2 if line.centre_col is None else line.centre_col
    m.mdh.CenterLin = line.centre_lin
    if line.position is not None:
        m.mdh.SliceData.SlicePos.Sag, m.mdh.SliceData.SlicePos.Cor, m.mdh.SliceData.SlicePos.Tra = line.position
    if line.quaternion is not None:
        for i, v in enumerate(line.quaternion):
            m.mdh.SliceData.Quaternion[i] = v
    return m


def header(tpl: Template, yaps: dict[str, str | None] | None = None, config: dict[str, str] | None = None,
           keep: tuple[str, ...] = ("Config", "Dicom", "MeasYaps")) -> bytes:
    """The template's header with the edits, keeping the buffers `keep`."""
    out = []
    for name, text in tpl.buffers:
        if name not in keep:
            continue
        if name == "MeasYaps" and yaps:
            text = edit_yaps(text, yaps)
        if name == "Config" and config:
            text = edit_xprot(text, config)
        out.append((name, text))
    return join_header(out)


def write(path: Path, tpl: Template, lines: list[Line], *, yaps: dict[str, str | None] | None = None,
          config: dict[str, str] | None = None, keep: tuple[str, ...] = ("Config", "Dicom", "MeasYaps"),
          before: list[tuple[bytes, list[Line]]] = ()) -> Path:
    """Write a VD/VE file of `lines` (the last flagged LASTSCANINMEAS) with the edited header;
    `before`: earlier measurements (header bytes, lines), e.g. a noise adjustment scan."""
    import twixtools

    scans = []
    for head, items in [*before, (header(tpl, yaps, config, keep), lines)]:
        readouts = [make_readout(tpl, line) for line in items]
        readouts[-1].add_flag("LASTSCANINMEAS")
        scans.append({"hdr_str": np.frombuffer(head, "S1"), "mdb": [*readouts, tpl.acqend], "raidfile_hdr": tpl.raid.copy()})
    twixtools.write_twix(scans, str(path))
    return path


def gre_lines(tpl: Template, scale: complex = 1.0, **counters: Any) -> Iterator[Line]:
    """gre.dat's 160 lines (times `scale`), with the given counters."""
    for lin in range(tpl.kspace.shape[1]):
        yield Line(tpl.kspace[:, lin] * scale, lin, **counters)


def write_vb(path: Path, tpl: Template, yaps: dict[str, str | None] | None = None) -> Path:
    """A VB file of gre.dat's lines (no real VB sample exists: the layout follows twixtools' VB
    reader): the measurement header at byte 0, then per readout one 128-byte VB17 header per
    channel followed by its samples, then an ACQEND header."""
    from twixtools import mdh_def

    blocks = [header(tpl, yaps)]
    n = len(tpl.readouts)
    for i, m in enumerate(tpl.readouts):
        data = np.asarray(m.data, np.complex64)
        for c in range(data.shape[0]):
            vb = mdh_def.VB17_header()
            for name in ("MeasUID", "ScanCounter", "TimeStamp", "PMUTimeStamp", "EvalInfoMask", "SamplesInScan", "UsedChannels",
                         "CenterCol", "CenterLin", "CenterPar", "ReadOutOffcentre", "TimeSinceLastRF", "CoilSelect"):
                setattr(vb, name, getattr(m.mdh, name))
            if i == n - 1:
                vb.EvalInfoMask |= 1 << 11  # LASTSCANINMEAS
            vb.Counter = m.mdh.Counter
            vb.CutOff = m.mdh.CutOff
            vb.SliceData = m.mdh.SliceData
            vb.ChannelId = c
            mdh_def.set_dma_len(vb, 128 + 8 * data.shape[1])
            blocks.append(bytes(vb) + data[c].tobytes())
    end = mdh_def.VB17_header()
    end.EvalInfoMask = 1
    mdh_def.set_dma_len(end, 128 + 16)
    blocks.append(bytes(end) + bytes(16))
    path.write_bytes(b"".join(blocks))
    return path


def rewrite(path: Path, edit: Callable[[bytearray], None]) -> Path:
    """Apply `edit` to the bytes of `path` in place."""
    data = bytearray(path.read_bytes())
    edit(data)
    path.write_bytes(bytes(data))
    return path


def first_readout(data: bytes | bytearray) -> tuple[int, int]:
    """(offset of the first readout, offset of the RAID entry 0 length field) of a VD/VE file."""
    off = struct.unpack_from("<Q", data, 8 + 8)[0]
    (hdr_len,) = struct.unpack_from("<I", data, off)
    return off + hdr_len, 8 + 16


def edit_header_of_file(path: Path, yaps: dict[str, str | None] | None = None, config: dict[str, str] | None = None,
                        edit: Callable[[bytes], bytes] | None = None) -> Path:
    """Edit the protocol of a single-measurement VD/VE file in place (ASCCONV lines, Config
    entries, or `edit` on the MeasYaps text), moving the data and fixing the lengths."""
    data = path.read_bytes()
    off, length = struct.unpack_from("<QQ", data, 8 + 8)
    (hdr_len,) = struct.unpack_from("<I", data, off)
    buffers = []
    for name, text in split_header(data[off : off + hdr_len]):
        if name == "MeasYaps":
            text = edit_yaps(text, yaps or {})
            text = edit(text) if edit is not None else text
        if name == "Config" and config:
            text = edit_xprot(text, config)
        buffers.append((name, text))
    new = join_header(buffers)
    out = bytearray(data[:off] + new + data[off + hdr_len :])
    struct.pack_into("<Q", out, 8 + 16, length + len(new) - hdr_len)
    path.write_bytes(bytes(out))
    return path


def write_small(path: Path, tpl: Template, lines: int = 64, samples: int = 128) -> Path:
    """A small VD/VE file: gre.dat's central `lines` x `samples` k-space (same FOV, coarser
    matrix: base resolution `samples // 2`), its protocol edited to match."""
    base = samples // 2
    r0, c0 = (tpl.kspace.shape[2] - samples) // 2, (tpl.kspace.shape[1] - lines) // 2
    items = [Line(tpl.kspace[:, c0 + lin, r0 : r0 + samples], lin, centre_lin=lines // 2) for lin in range(lines)]
    yaps = {"sKSpace.lBaseResolution": str(base), "sKSpace.lPhaseEncodingLines": str(lines)}
    config = {"NLinMeas": str(lines), "NImageLins": str(lines), "BaseResolution": str(base)}
    return write(path, tpl, items, yaps=yaps, config=config)


#: Byte offsets of MDH fields in a VD/VE readout header (twixtools' `Scan_header`).
def _vd_fields() -> dict[str, int]:
    from twixtools import mdh_def

    dtype = np.dtype(mdh_def.Scan_header)
    counter = dtype.fields["Counter"][1]
    out = {name: dtype.fields[name][1] for name in ("EvalInfoMask", "SamplesInScan", "UsedChannels", "CenterCol", "CenterLin")}
    out |= {name: counter + np.dtype(mdh_def.LineCounter).fields[name][1] for name in ("Lin", "Sli", "Ave", "Eco", "Rep", "Set")}
    slice_data = dtype.fields["SliceData"][1]
    out["Quaternion"] = slice_data + np.dtype(mdh_def.SliceData).fields["Quaternion"][1]
    return out


VD_FIELDS = _vd_fields()
