"""Grid sweep of lambda x iterations for sense / cs / cs-tv on the simulated tuning split.

The tuning volumes use `TUNE_SEED` (disjoint from `REPORT_SEED`, on which results are
reported); masks are fastMRI's validation-seeded random masks at 4x and 8x; maps are ESPIRiT
from each slice's ACS; lambda is on the normalized scale (`data_scale`). Score: fastMRI SSIM
against the RSS target, mean over volumes and accelerations. Intermediate iterates are scored
by a callback, so one run per lambda covers all iteration counts. Writes
results/sweep_baselines_<preset>.json and .md; the chosen defaults go into
each method's options defaults (`recon/methods/sense.py`, `cs.py`, `cs_tv.py`). Usage:

    OMP_NUM_THREADS=2 python benchmarks/sweep_baselines.py [--preset small|knee] [--volumes 2] [--slices 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import calib_region, machine, undersampled, write_results
from recon import ops
from recon.calib import espirit_calib
from recon.methods.solvers import cg_sense, fista_l1_wavelet, pdhg_tv
from recon.noise import data_scale
from recon.core import center_crop
from recon.metrics import ssim
from recon.simulate import PRESETS
from recon.simulate.dataset import TUNE_SEED, simulate_dataset

GRID: dict[str, list[float]] = {
    "sense": [0.01, 0.03, 0.1, 0.3, 1.0],
    "cs": [0.001, 0.003, 0.01, 0.03],
    "cs-tv": [0.001, 0.003, 0.01, 0.03],
}
SOLVERS = {"sense": cg_sense, "cs": fista_l1_wavelet, "cs-tv": pdhg_tv}
CHECKPOINTS: dict[str, tuple[int, ...]] = {"sense": (5, 10, 20, 40), "cs": (10, 20, 40, 80), "cs-tv": (20, 40, 100, 200)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--slices", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="small", choices=sorted(PRESETS), help="simulated size (small: the demo/benchmark data)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="sweep_baselines_"))
    paths = simulate_dataset(work, args.volumes, args.slices, PRESETS[args.preset].coils, TUNE_SEED, config=PRESETS[args.preset])
    # scores[method][(lam, iters)][accel] -> per-volume SSIMs
    scores: dict[str, dict[tuple[float, int], dict[int, list[float]]]] = {m: {} for m in GRID}
    zero_filled: dict[int, list[float]] = {4: [], 8: []}
    start = time.perf_counter()
    for path in paths:
        for accel in (4, 8):
            volume, target = undersampled(path, accel)
            kspace, mask, crop = volume.masked_kspace, volume.mask, volume.crop_size
            zf = center_crop(ops.rss(ops.ifft2c(kspace), 1), crop).numpy()
            zero_filled[accel].append(ssim(target, zf))
            maps = espirit_calib(kspace, calib_region(volume))
            scale = data_scale(kspace)
            y = kspace / scale
            for method, lams in GRID.items():
                for lam in lams:

                    def score(it: int, x: torch.Tensor, method: str = method, lam: float = lam) -> None:
                        if it in CHECKPOINTS[method]:
                            image = center_crop((x * scale).abs()[:, 0], crop).numpy()
                            scores[method].setdefault((lam, it), {4: [], 8: []})[accel].append(ssim(target, image))

                    SOLVERS[method](y, maps, mask, lam, max(CHECKPOINTS[method]), callback=score)
            print(f"{path.name} {accel}x done, {time.perf_counter() - start:.0f} s", flush=True)

    table: dict[str, Any] = {}
    best: dict[str, dict[str, float]] = {}
    for method, grid in scores.items():
        rows = [
            {"lam": lam, "iters": it, "ssim": float(np.mean(v[4] + v[8])), "ssim_4x": float(np.mean(v[4])), "ssim_8x": float(np.mean(v[8]))}
            for (lam, it), v in sorted(grid.items())
        ]
        table[method] = rows
        top = max(rows, key=lambda r: (round(r["ssim"], 3), -r["iters"]))
        best[method] = top
    payload = {
        "split_seed": TUNE_SEED,
        "preset": args.preset,
        "files": [p.name for p in paths],
        "accelerations": [4, 8],
        "zero_filled_ssim": float(np.mean(zero_filled[4] + zero_filled[8])),
        "zero_filled_ssim_by_accel": {a: float(np.mean(v)) for a, v in zero_filled.items()},
        "grid": table,
        "best": best,
        "seconds": time.perf_counter() - start,
        "machine": machine(),
    }
    lines = [
        "# Baseline regularization sweep (tuning split)",
        "",
        f"Simulated tuning split (seed {TUNE_SEED}, disjoint from the report split), {len(paths)} volume(s) x "
        f"{args.slices} slice(s), preset `{args.preset}` ({PRESETS[args.preset].coils} coils), 4x and 8x random masks, "
        "ESPIRiT maps from the ACS, lambda on the normalized scale. Cells: mean fastMRI SSIM over both "
        "accelerations (4x / 8x); best = highest mean SSIM (to 3 decimals), fewest iterations on ties. "
        f"Zero-filled SSIM: {payload['zero_filled_ssim']:.4f} (4x {np.mean(zero_filled[4]):.4f}, 8x {np.mean(zero_filled[8]):.4f}).",
        "",
    ]
    for method, rows in table.items():
        its = CHECKPOINTS[method]
        lines += [f"## {method}", "", "| lambda | " + " | ".join(f"{c} it" for c in its) + " |", "| --- |" + " --- |" * len(its)]
        for lam in GRID[method]:
            cells = [next(r for r in rows if r["lam"] == lam and r["iters"] == c) for c in its]
            lines.append(f"| {lam:g} | " + " | ".join(f"{r['ssim']:.4f} ({r['ssim_4x']:.3f} / {r['ssim_8x']:.3f})" for r in cells) + " |")
        lines += ["", f"best: lam={best[method]['lam']:g}, iters={best[method]['iters']}, SSIM {best[method]['ssim']:.4f}", ""]
    write_results(f"sweep_baselines_{args.preset}", payload, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
