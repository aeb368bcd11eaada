"""CPU timing of the torch baselines vs SigPy and BART on one 15-coil 640x368 slice.

Same slice, same undersampling, same maps (ours) for all SENSE/CS solvers, same iteration
counts. Writes results/baselines.json and results/baselines.md. Usage:

    OMP_NUM_THREADS=2 python benchmarks/bench_baselines.py [--accel 8] [--iters 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from _common import machine, scores, simulated_slices, undersample, write_results
from bart_cfl import bart_available, kspace_to_bart, read_cfl, run_bart, write_cfl
from recon.baselines.cs import fista_l1_wavelet, pdhg_tv
from recon.baselines.espirit import espirit_calib
from recon.baselines.methods import DEFAULTS
from recon.baselines.sense import cg_sense, data_scale
from recon.fft import center_crop
from recon.simulate.dataset import REPORT_SEED

LAM = {name: float(opts["lam"]) for name, opts in DEFAULTS.items()}


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Result and wall seconds of `fn()`."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def crop_mag(image: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """`|image|` cropped to `crop`, `(1, h, w)` float32."""
    return center_crop(torch.from_numpy(np.abs(image)).reshape(1, *image.shape[-2:]), crop).numpy().astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accel", type=int, default=8, choices=(4, 8))
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-sigpy-espirit", action="store_true", help="SigPy's EspiritCalib takes ~20 s")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_baselines_"))
    path = simulated_slices(work / "data", REPORT_SEED, 1, 1)[0]
    data = undersample(path, args.accel)
    k_np, crop, target = data["kspace"][0], data["crop"], data["target"]
    kspace = torch.from_numpy(k_np)[None]
    mask = torch.from_numpy(data["mask"])[None, None, None]
    nlow, iters = data["nlow"], args.iters
    rows: list[dict[str, Any]] = []

    def add(task: str, tool: str, seconds: float, image: np.ndarray | None) -> None:
        row: dict[str, Any] = {"task": task, "tool": tool, "seconds": seconds}
        if image is not None:
            row.update(scores(target, crop_mag(image, crop)))
        rows.append(row)
        print(f"{task:10s} {tool:6s} {seconds:7.2f} s  {row.get('ssim', float('nan')):.4f}", flush=True)

    espirit_calib(kspace, mask, nlow)
    maps, t = timed(lambda: espirit_calib(kspace, mask, nlow))
    add("espirit", "ours", t, None)
    scale = data_scale(kspace)
    y = kspace / scale
    solvers = {
        "sense": lambda: cg_sense(y, maps, mask, LAM["sense"], iters),
        "cs": lambda: fista_l1_wavelet(y, maps, mask, LAM["cs"], iters),
        "cs-tv": lambda: pdhg_tv(y, maps, mask, LAM["cs-tv"], iters),
    }
    for task, fn in solvers.items():
        fn()
        image, t = timed(fn)
        add(task, "ours", t, (image * scale)[0, 0].numpy())

    import sigpy.mri as mr

    y_np, maps_np, s = y[0].numpy(), maps[0].numpy(), float(scale)
    if not args.skip_sigpy_espirit:
        _, t = timed(lambda: mr.app.EspiritCalib(k_np, calib_width=nlow, show_pbar=False).run())
        add("espirit", "sigpy", t, None)
    sig = {
        "sense": lambda: mr.app.SenseRecon(y_np, maps_np, lamda=LAM["sense"], max_iter=iters, show_pbar=False).run(),
        "cs": lambda: mr.app.L1WaveletRecon(y_np, maps_np, lamda=LAM["cs"], max_iter=iters, show_pbar=False).run(),
        "cs-tv": lambda: mr.app.TotalVariationRecon(y_np, maps_np, lamda=LAM["cs-tv"], max_iter=iters, show_pbar=False).run(),
    }
    for task, fn in sig.items():
        image, t = timed(fn)
        add(task, "sigpy", t, image * s)

    if bart_available():
        bdir = work / "bart"
        bdir.mkdir()
        write_cfl(bdir / "k", kspace_to_bart(k_np))
        write_cfl(bdir / "s", np.transpose(maps_np, (1, 2, 0))[:, :, None, :])
        t = run_bart("ecalib", "-m1", "-r", f"{k_np.shape[1]}:{nlow}", str(bdir / "k"), str(bdir / "e"), threads=args.threads)
        add("espirit", "bart", t, None)
        flags = {"sense": ["-l2", "-r", "0.01"], "cs": ["-l1", "-r", "0.01"], "cs-tv": ["-R", "T:3:0:0.01"]}
        for task, extra in flags.items():
            t = run_bart("pics", "-S", *extra, "-i", str(iters), str(bdir / "k"), str(bdir / "s"), str(bdir / task), threads=args.threads)
            add(task, "bart", t, read_cfl(bdir / task).reshape(k_np.shape[1:]))

    by = {(r["task"], r["tool"]): r["seconds"] for r in rows}
    lines = [
        "# Baselines vs SigPy and BART, CPU",
        "",
        f"One simulated 15-coil 640x{k_np.shape[-1]} slice (report split), {args.accel}x random mask, "
        f"{nlow} ACS columns, {iters} iterations, {args.threads} threads. Same maps (ours) for all "
        "SENSE/CS solvers; ESPIRiT: ours and BART on the rectangular 640 x ACS region, SigPy on its square "
        "ACS x ACS region. BART times include process start and .cfl I/O; BART's lambda is on its own "
        "data scale (SSIM shown for orientation, not tuned). SSIM vs the RSS target, 320x320.",
        "",
        "| task | tool | seconds | x slower than ours | SSIM |",
        "| --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        ratio = r["seconds"] / by[(r["task"], "ours")]
        lines.append(f"| {r['task']} | {r['tool']} | {r['seconds']:.2f} | {ratio:.2f} | {r.get('ssim', float('nan')):.4f} |")
    write_results(f"baselines_{args.accel}x", {"rows": rows, "accel": args.accel, "iters": iters, "nlow": nlow, "machine": machine()}, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
