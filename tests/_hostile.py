"""Helpers of the hostile-input suite: small files that break things, and the checks every case makes
(non-zero exit, one stderr line naming the file and the problem, no traceback, no output, inputs
byte-identical afterwards)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable, Sequence

import ismrmrd
import numpy as np
import pytest

from recon.cli import main


def digest(paths: Iterable[Path]) -> dict[str, str]:
    """sha256 of every file under `paths` (files or folders)."""
    out: dict[str, str] = {}
    for p in paths:
        files = sorted(q for q in Path(p).rglob("*") if q.is_file()) if Path(p).is_dir() else [Path(p)]
        for f in files:
            out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def refused(
    capsys: pytest.CaptureFixture[str],
    argv: Sequence[str],
    needles: Sequence[str],
    inputs: Sequence[Path] = (),
    absent: Sequence[Path] = (),
    rc: int | None = None,
) -> str:
    """Run `recon argv` in-process; assert the refusal contract; return the error line."""
    before = digest(inputs)
    code = main(list(argv))
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip() and not line.startswith(("warning:", "note:"))]
    assert code != 0, f"exit 0 for {argv}: {captured.err}"
    if rc is not None:
        assert code == rc, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, captured.err
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert digest(inputs) == before, "an input changed"
    for p in absent:
        assert not Path(p).exists(), f"{p} was written"
    return lines[0]


def smooth_coil_images(rows: int, cols: int, coils: int, scale: float = 1.0) -> np.ndarray:
    """`(coils, rows, cols)` complex coil images of an ellipse under Gaussian coil profiles."""
    yy, xx = np.meshgrid(np.linspace(-1, 1, rows), np.linspace(-1, 1, cols), indexing="ij")
    obj = ((xx**2 / 0.6 + yy**2 / 0.4) < 1) * (1.0 + 0.3 * xx)
    centers = [(np.cos(a), np.sin(a)) for a in np.linspace(0, 2 * np.pi, coils, endpoint=False)]
    maps = np.stack([np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2)) for cx, cy in centers])
    return scale * obj[None] * maps


def fft2c(x: np.ndarray) -> np.ndarray:
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes), axes=axes, norm="ortho"), axes)


def ismrmrd_xml(enc: tuple[int, int], recon: tuple[int, int], center: int, maximum: int) -> str:
    return f"""<?xml version="1.0"?>
<ismrmrdHeader xmlns="http://www.ismrm.org/ISMRMRD">
 <measurementInformation><protocolName>HOSTILE</protocolName></measurementInformation>
 <encoding>
  <encodedSpace><matrixSize><x>{enc[0]}</x><y>{enc[1]}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>200</x><y>200</y><z>5</z></fieldOfView_mm></encodedSpace>
  <reconSpace><matrixSize><x>{recon[0]}</x><y>{recon[1]}</y><z>1</z></matrixSize>
   <fieldOfView_mm><x>200</x><y>200</y><z>5</z></fieldOfView_mm></reconSpace>
  <encodingLimits><kspace_encoding_step_1><minimum>0</minimum><maximum>{maximum}</maximum>
   <center>{center}</center></kspace_encoding_step_1></encodingLimits>
  <trajectory>cartesian</trajectory>
 </encoding>
</ismrmrdHeader>"""


def write_ismrmrd(
    path: Path,
    rows: int = 32,
    cols: int = 32,
    coils: int = 4,
    repetitions: int = 1,
    enc: tuple[int, int] | None = None,
    recon: tuple[int, int] | None = None,
    nan_line: int | None = None,
    undersample: int = 1,
    counter: str = "repetition",
) -> Path:
    """A fully sampled (or every `undersample`-th line plus 8 ACS lines) Cartesian ISMRMRD file.

    `enc` / `recon` override the header's matrices (the data stay rows x cols); `nan_line` puts
    one NaN sample into that phase-encode line; index r of `counter` (repetition, contrast or
    set) scales the object by 1 + r.
    """
    enc = enc or (rows, cols)
    recon = recon or (rows, cols)
    path.parent.mkdir(parents=True, exist_ok=True)
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(ismrmrd_xml(enc, recon, cols // 2, cols - 1).encode())
        for r in range(repetitions):
            k = fft2c(smooth_coil_images(rows, cols, coils, 1.0 + r)).astype(np.complex64)
            for e in range(cols):
                if undersample > 1 and e % undersample and abs(e - cols // 2) > 4:
                    continue
                line = np.ascontiguousarray(k[:, :, e])
                if nan_line == e:
                    line[0, rows // 2] = np.nan
                acq = ismrmrd.Acquisition.from_array(line, center_sample=rows // 2)
                acq.idx.kspace_encode_step_1 = e
                setattr(acq.idx, counter, r)
                dset.append_acquisition(acq)
    return path
