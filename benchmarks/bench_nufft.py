"""NUFFT speed on the CPU: `recon.linops.NUFFT` (finufft) against SigPy and BART, same data.

Data: 8 coil images of 256 x 256 (complex64, seeded Gaussian noise: the content does not change
the cost), a golden-angle radial trajectory of 402 spokes x 512 samples (`recon.trajectory`,
2x readout oversampling, pi/2 x 256 spokes: Nyquist at the edge), 205,824 samples per coil.
One forward (8 images -> 8 x 205,824 samples) plus one adjoint (those samples -> 8 images).

Contestants, each named with its precision and threads:
- recon: `NUFFT` on finufft 2.5, complex64, `nthreads = --threads`, at its default tolerance
  (1e-6) and at 1e-2 (SigPy's default accuracy); warm (plans cached, as in an iterative
  method) and cold (a new operator: plan, point sorting and the transform).
- SigPy: `sigpy.nufft` / `sigpy.nufft_adjoint` on NumPy complex64 (its interpolation is a
  single-threaded Numba loop, its FFT NumPy's), at its defaults (oversampling 1.25, width 4)
  and at a matched accuracy (oversampling 2, width 6).
- BART: `bart nufft` and `bart nufft -a` (single precision, `OMP_NUM_THREADS = --threads`),
  by default and with `-P` (periodic k-space, finufft's model), each timed as the whole
  command on `.cfl` files written beforehand (process start, reading and writing the files
  included, nothing subtracted).

Accuracy of each output is its relative L2 error against finufft in complex128 at eps 1e-12,
the adjoint applied to the reference forward output. Each time is the median of `--repeats`
runs after one untimed warm-up; ratios are the other side's time over recon's (> 1: recon is
faster). Threads are set through the environment before NumPy loads. Writes
`benchmarks/results/nufft_cpu.json` and `.md`.

Usage:
    python benchmarks/bench_nufft.py [--threads 1 --repeats 3]
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv(argv: list[str]) -> str:
    return argv[argv.index("--threads") + 1] if "--threads" in argv else "1"


for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv(sys.argv)

import tempfile  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import finufft  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from recon import trajectory  # noqa: E402
from recon.linops import NUFFT  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, median_time, write_results  # noqa: E402
from bart_cfl import bart_available, read_cfl, run_bart, write_cfl  # noqa: E402

SHAPE = (256, 256)
COILS = 8
SPOKES, READOUT = 402, 512
SEED = 0


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def _reference(images: np.ndarray, coord: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    op = NUFFT(coord, SHAPE, eps=1e-12)
    y = op.forward(torch.from_numpy(images.astype(np.complex128)))
    return y.numpy(), op.adjoint(y).numpy()


def _recon(images: np.ndarray, coord: np.ndarray, eps: float, threads: int, repeats: int) -> dict[str, Any]:
    x = torch.from_numpy(images)
    op = NUFFT(coord, SHAPE, eps=eps, nthreads=threads)
    t_fwd, _, y = median_time(lambda: op.forward(x), repeats)
    t_adj, _, back = median_time(lambda: op.adjoint(y), repeats)

    def cold() -> None:
        fresh = NUFFT(coord, SHAPE, eps=eps, nthreads=threads)
        fresh.adjoint(fresh.forward(x))

    t_cold, _, _ = median_time(cold, repeats)
    return {"forward_s": t_fwd, "adjoint_s": t_adj, "total_s": t_fwd + t_adj, "cold_total_s": t_cold, "y": y.numpy(), "back": back.numpy()}


def _sigpy(images: np.ndarray, coord: np.ndarray, oversamp: float, width: int, repeats: int) -> dict[str, Any]:
    import sigpy

    t_fwd, _, y = median_time(lambda: sigpy.nufft(images, coord, oversamp=oversamp, width=width), repeats)
    t_adj, _, back = median_time(lambda: sigpy.nufft_adjoint(y, coord, images.shape, oversamp=oversamp, width=width), repeats)
    return {"forward_s": t_fwd, "adjoint_s": t_adj, "total_s": t_fwd + t_adj, "y": np.asarray(y), "back": np.asarray(back)}


def _bart(images: np.ndarray, coord: np.ndarray, flags: list[str], threads: int, repeats: int, work: Path) -> dict[str, Any]:
    """`bart nufft` on BART's layout: trajectory (3, readout, spokes), images (H, W, 1, C),
    k-space (1, readout, spokes, C); our k_row is BART's x (READ = image rows)."""
    write_cfl(work / "traj", trajectory.to_bart(coord).transpose(0, 2, 1))
    write_cfl(work / "img", np.transpose(images, (1, 2, 0))[:, :, None, :])
    fwd = ["nufft", *flags, str(work / "traj"), str(work / "img"), str(work / "ksp")]
    t_fwd, _, _ = median_time(lambda: run_bart(*fwd, threads=threads), repeats)
    ksp = read_cfl(work / "ksp").reshape(READOUT, SPOKES, COILS)
    adj = ["nufft", "-a", *flags, "-d", f"{SHAPE[0]}:{SHAPE[1]}:1", str(work / "traj"), str(work / "ksp"), str(work / "back")]
    t_adj, _, _ = median_time(lambda: run_bart(*adj, threads=threads), repeats)
    back = read_cfl(work / "back").reshape(SHAPE[0], SHAPE[1], COILS)
    return {
        "forward_s": t_fwd,
        "adjoint_s": t_adj,
        "total_s": t_fwd + t_adj,
        "y": np.transpose(ksp, (2, 1, 0)),
        "back": np.transpose(back, (2, 0, 1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message=r"\s*nccl library")
    load = os.getloadavg()[0]

    rng = np.random.default_rng(SEED)
    images = (rng.standard_normal((COILS, *SHAPE)) + 1j * rng.standard_normal((COILS, *SHAPE))).astype(np.complex64)
    coord = trajectory.radial(SPOKES, READOUT, SHAPE, "golden")
    ref_y, ref_back = _reference(images, coord)

    rows: list[dict[str, Any]] = []

    def add(name: str, precision: str, threads: str, settings: str, result: dict[str, Any]) -> None:
        y, back = result.pop("y"), result.pop("back")
        errors = {"forward_error": _rel(y, ref_y), "adjoint_error": _rel(back, ref_back)}
        rows.append({"name": name, "precision": precision, "threads": threads, "settings": settings, **errors, **result})
        print(f"{name:28s} {settings:34s} total {result['total_s']:.3f} s  fwd err {rows[-1]['forward_error']:.1e}", flush=True)

    threads = str(args.threads)
    add("recon NUFFT (finufft)", "complex64", threads, "eps 1e-6 (default)", _recon(images, coord, 1e-6, args.threads, args.repeats))
    add("recon NUFFT (finufft)", "complex64", threads, "eps 1e-2", _recon(images, coord, 1e-2, args.threads, args.repeats))
    add("SigPy nufft", "complex64", "1 (Numba loop, NumPy FFT)", "defaults: oversamp 1.25, width 4", _sigpy(images, coord, 1.25, 4, args.repeats))
    add("SigPy nufft", "complex64", "1 (Numba loop, NumPy FFT)", "oversamp 2, width 6", _sigpy(images, coord, 2.0, 6, args.repeats))
    if bart_available():
        with tempfile.TemporaryDirectory() as tmp:
            add("BART nufft (command)", "float32 complex", threads, "defaults", _bart(images, coord, [], args.threads, args.repeats, Path(tmp)))
            add("BART nufft (command)", "float32 complex", threads, "-P (periodic k-space)", _bart(images, coord, ["-P"], args.threads, args.repeats, Path(tmp)))

    base = {row["settings"]: row for row in rows if row["name"].startswith("recon")}
    default, coarse = base["eps 1e-6 (default)"], base["eps 1e-2"]
    for row in rows:
        row["ratio_vs_recon_default"] = row["total_s"] / default["total_s"]
        row["ratio_vs_recon_eps_1e-2"] = row["total_s"] / coarse["total_s"]

    payload = {
        "data": {"shape": list(SHAPE), "coils": COILS, "spokes": SPOKES, "readout": READOUT, "trajectory": "golden-angle radial, cycles/FOV", "seed": SEED},
        "reference": "finufft complex128, eps 1e-12",
        "threads": args.threads,
        "repeats": args.repeats,
        "finufft": finufft.__version__,
        "machine": machine(),
        "loadavg_start": load,
        "results": rows,
    }
    lines = [
        "# NUFFT forward + adjoint on the CPU: recon (finufft) vs SigPy vs BART",
        "",
        (
            f"Data: {COILS} coils x {SHAPE[0]} x {SHAPE[1]} complex64 images, golden-angle radial {SPOKES} spokes x {READOUT} samples "
            f"({SPOKES * READOUT:,} samples per coil); one forward and one adjoint. Median of {args.repeats} runs after a warm-up; "
            f"{args.threads} thread(s) where settable; load average {load:.1f} at the start on a shared {os.cpu_count()}-core machine. "
            f"Errors: relative L2 against finufft complex128 at eps 1e-12. BART times are whole `bart nufft` commands on .cfl files "
            f"(process start and file I/O included, nothing subtracted). Ratio: that row's total time over recon's (> 1: recon faster). "
            f"Command: `python benchmarks/bench_nufft.py --threads {args.threads} --repeats {args.repeats}`."
        ),
        "",
        "| implementation | precision | threads | settings | forward s | adjoint s | total s | cold total s | forward error | adjoint error | ratio vs recon eps 1e-6 | ratio vs recon eps 1e-2 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        cold = f"{row['cold_total_s']:.3f}" if "cold_total_s" in row else "-"
        lines.append(
            f"| {row['name']} | {row['precision']} | {row['threads']} | {row['settings']} | {row['forward_s']:.3f} | {row['adjoint_s']:.3f} | "
            f"{row['total_s']:.3f} | {cold} | {row['forward_error']:.1e} | {row['adjoint_error']:.1e} | "
            f"{row['ratio_vs_recon_default']:.2f} | {row['ratio_vs_recon_eps_1e-2']:.2f} |"
        )
    lines += [
        "",
        "recon's warm times reuse the operator's cached finufft plans (sorted points), as every iteration of an iterative",
        "method does; `cold total` builds a new operator each time (plan, sort, forward, adjoint). SigPy has no plan; BART",
        "plans inside each command. Without `-P` BART treats k-space as non-periodic, which changes the transform for the",
        "samples near |k| = N/2 (hence its larger error against the periodic reference).",
        "",
    ]
    out = write_results("nufft_cpu", payload, "\n".join(lines), args.out)
    print(f"wrote {out / 'nufft_cpu.json'} and .md")


if __name__ == "__main__":
    main()
