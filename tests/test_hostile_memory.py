"""Hostile input, memory: files whose headers claim huge matrices, run as real subprocesses.

Each case measures the child's peak RSS (`ru_maxrss` from `os.wait4`, see `_LAUNCHER`) and prints
how long the refusal or the run took (`pytest -s` shows it); the assertions are on exit code, message and RSS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import ismrmrd
import numpy as np

from _hostile import digest, fft2c, ismrmrd_xml, smooth_coil_images
from recon.io import build_header

REPO = Path(__file__).resolve().parents[1]
GIB = 2**30


#: Runs `python -m recon ARGS` as its own child and writes that child's rusage to REPORT. The
#: detour matters: Linux carries a process's memory high-water mark across exec, so a child forked
#: straight from this (large) pytest process would report pytest's RSS, not its own.
_LAUNCHER = """
import json, os, sys, time
report, args = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, "-m", "recon", *args])
_, status, usage = os.wait4(pid, 0)
with open(report, "w") as f:
    json.dump({"rc": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss, "seconds": time.perf_counter() - start}, f)
"""


def _run(args: list[str], tmp: Path) -> tuple[int, str, int, float]:
    """`python -m recon args` as a grandchild: exit code, stderr, its peak RSS in bytes, seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    err_path, report = tmp / "stderr.txt", tmp / "rusage.json"
    with open(err_path, "w") as err, open(tmp / "stdout.txt", "w") as out:
        subprocess.run([sys.executable, "-c", _LAUNCHER, str(report), *args], stdout=out, stderr=err, env=env, check=False)
    usage = json.loads(report.read_text())
    return usage["rc"], err_path.read_text(), usage["maxrss_kib"] * 1024, usage["seconds"]


def _huge_fastmri(path: Path, slices: int = 10000, coils: int = 64, rows: int = 640, cols: int = 368, fill: complex = 0) -> int:
    """A fastMRI file claiming (slices, coils, rows, cols) with data only in its central slice.

    Chunked and compressed, so the unwritten slices cost nothing on disk (a few MB in all); they
    read as `fill` everywhere (HDF5's fill value). Returns the central slice's index.
    """
    mid = (slices - 1) // 2  # the slice `--max-slices 1` keeps
    with h5py.File(path, "w") as f:
        f.create_dataset("ismrmrd_header", data=np.bytes_(build_header((rows, cols, 1), (320, 320, 1), cols // 2, cols - 1).encode()))
        ks = f.create_dataset("kspace", shape=(slices, coils, rows, cols), dtype=np.complex64, chunks=(1, coils, rows, cols),
                              compression="gzip", fillvalue=np.complex64(fill))
        k = np.zeros((coils, rows, cols), np.complex64)
        core = fft2c(smooth_coil_images(32, 32, coils)).astype(np.complex64)  # energy only in the 32 x 32 center
        k[:, rows // 2 - 16 : rows // 2 + 16, cols // 2 - 16 : cols // 2 + 16] = core
        ks[mid] = k
        tg = f.create_dataset("reconstruction_rss", shape=(slices, 320, 320), dtype=np.float32, chunks=(1, 320, 320), compression="gzip")
        tg[mid] = np.ones((320, 320), np.float32)
        f.attrs["max"] = 1.0
        f.attrs["acquisition"] = "CORPD_FBK"
    return mid


def test_fastmri_file_claiming_10000_slices(tmp_path: Path) -> None:
    """Reading is lazy and bounded: `--max-slices` picks before reading, and reconstruct reads one
    slice batch (a few 120 MB slices, however many the file claims) before its input check refuses
    the volume's first, empty slice."""
    src = tmp_path / "in" / "huge.h5"
    src.parent.mkdir()
    _huge_fastmri(src)
    before = digest([src])
    claimed = 10000 * 64 * 640 * 368 * 8
    rc, err, rss, seconds = _run(["benchmark", "--data", str(src), "--methods", "zero-filled", "--accelerations", "4",
                                  "--max-slices", "1", "--out", str(tmp_path / "bench"), "--quiet", "--device", "cpu"], tmp_path)
    print(f"\nbenchmark --max-slices 1 on a file claiming {claimed / GIB:.0f} GiB: rc {rc}, peak RSS {rss / GIB:.2f} GiB, {seconds:.1f} s")
    assert rc == 0, err
    assert rss < GIB
    rows = json.loads((tmp_path / "bench" / "results.json").read_text())["rows"]
    assert [(r["slices"], r["method"]) for r in rows] == [(1, "zero-filled")]
    # --max-memory: the 3.8 GiB of output images a full reconstruction would hold must not be
    # refused on a small machine; the point is what it reads
    rc, err, rss, seconds = _run(["reconstruct", str(src), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu",
                                  "--max-memory", "64G"], tmp_path)
    print(f"reconstruct (all slices) refused: rc {rc}, peak RSS {rss / GIB:.2f} GiB, {seconds:.1f} s")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and str(src) in lines[0] and "slice 0: the sampled k-space is all zero" in lines[0], err
    assert "Traceback" not in err and rss < GIB
    assert not (tmp_path / "out" / "huge.h5").exists()
    rc, err, rss, seconds = _run(["reconstruct", str(src), "--out", str(tmp_path / "out1"), "--quiet", "--max-memory", "1G"], tmp_path)
    print(f"reconstruct --max-memory 1G refused: rc {rc}, peak RSS {rss / GIB:.2f} GiB, {seconds:.1f} s")
    lines = err.strip().splitlines()
    assert rc == 1 and len(lines) == 1 and str(src) in lines[0] and "10000 slice(s)" in lines[0] and "--max-memory" in lines[0], err
    assert rss < GIB
    assert digest([src]) == before


def test_fastmri_volume_larger_than_the_memory_limit_is_reconstructed_in_batches(tmp_path: Path) -> None:
    """10 slices x 64 coils x 640 x 368 (1.1 GiB of k-space) under `--max-memory 1G`: the
    reconstruction holds one slice batch and the output images, not the volume."""
    src = tmp_path / "in" / "big.h5"
    src.parent.mkdir()
    _huge_fastmri(src, slices=10, fill=1e-3 + 1e-3j)
    rc, err, rss, seconds = _run(["reconstruct", str(src), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu",
                                  "--acceleration", "4", "--max-memory", "1G"], tmp_path)
    print(f"\nreconstruct of 1.1 GiB of k-space under --max-memory 1G: rc {rc}, peak RSS {rss / GIB:.2f} GiB, {seconds:.1f} s")
    assert rc == 0, err
    assert rss < GIB
    with h5py.File(tmp_path / "out" / "big.h5") as f:
        images = f["reconstruction"][()]
    assert images.shape == (10, 320, 320) and np.isfinite(images).all() and (images.reshape(10, -1).max(1) > 0).all()


def _huge_ismrmrd(path: Path, enc: int = 8192, coils: int = 32, slices: int = 64) -> None:
    """A few-MB ISMRMRD file whose header and line indices claim `slices` x `coils` x enc x enc."""
    with ismrmrd.Dataset(str(path), "dataset", create_if_needed=True) as dset:
        dset.write_xml_header(ismrmrd_xml((enc, enc), (enc // 2, enc // 2), enc // 2, enc - 1).encode())
        rng = np.random.default_rng(0)
        for s, e in ((0, 0), (slices - 1, enc - 1)):
            line = (rng.standard_normal((coils, enc)) + 1j * rng.standard_normal((coils, enc))).astype(np.complex64)
            acq = ismrmrd.Acquisition.from_array(line, center_sample=enc // 2)
            acq.idx.kspace_encode_step_1 = e
            acq.idx.slice = s
            dset.append_acquisition(acq)


def test_ismrmrd_header_claiming_8192_squared(tmp_path: Path) -> None:
    src = tmp_path / "in" / "claim.h5"
    src.parent.mkdir()
    _huge_ismrmrd(src)
    before = digest([src])
    print(f"\nISMRMRD file of {src.stat().st_size / 2**20:.1f} MB claiming 64 x 32 x 8192 x 8192")
    for extra in ([], ["--max-memory", "1G"]):
        rc, err, rss, seconds = _run(["reconstruct", str(src), "--out", str(tmp_path / f"out{len(extra)}"), "--quiet", *extra], tmp_path)
        print(f"reconstruct {' '.join(extra) or '(default limit)'}: rc {rc}, peak RSS {rss / GIB:.2f} GiB, refused after {seconds:.1f} s")
        lines = err.strip().splitlines()
        assert rc == 1 and len(lines) == 1 and "Traceback" not in err, err
        assert str(src) in lines[0] and "gridding 64 slice(s) x 32 coils x 8192x8192" in lines[0] and "--max-memory" in lines[0]
        assert rss < GIB
    rc, err, rss, seconds = _run(["convert", str(src), str(tmp_path / "c.h5"), "--max-memory", "1G"], tmp_path)
    assert rc == 1 and "1.0 GiB limit (--max-memory)" in err and not (tmp_path / "c.h5").exists()
    assert digest([src]) == before
