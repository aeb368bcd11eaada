"""BART cross-check: `bart ecalib` + `bart pics` beside this project's sense / cs / cs-tv.

Same undersampled slices (simulated report split, fastMRI validation-seeded random masks at 4x
and 8x). BART rows: `ecalib -m1 -r H:nlow` (rectangular ACS region) then `pics -S -l2`,
`pics -S -l1` (30 iterations, lambda 0.01 on BART's own data scale), and fastMRI's CS
baseline `ecalib -d0 -m1 -r nlow` + `pics -d0 -S -R T:7:0:0.01 -i 200`. The ESPIRiT kernel is
BART's default 6 except on ACS regions narrower than 12 columns, where it is capped as ours is
(`fitted_kernel_width`; BART's ecalib aborts with a 6-wide kernel on 7 columns). Ours: the registered
methods with their defaults (ESPIRiT maps estimated inside). Reports fastMRI SSIM / PSNR /
NMSE and seconds per slice; writes results/baselines_bart_<preset>_<accels>.json and .md. Exits cleanly (0,
a message) where `bart` is not installed. Usage:

    OMP_NUM_THREADS=2 python benchmarks/bart_compare.py [--preset knee|small] [--volumes 1] [--slices 1] [--accels 4 8]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import machine, scores, undersample, write_results
from bart_cfl import bart_available, kspace_to_bart, read_cfl, run_bart, write_cfl
from recon.acquisition import centered_region
from recon.calib import fitted_kernel_width
from recon.core import center_crop
from recon.methods import ReconBatch, get_method
from recon.simulate import PRESETS
from recon.simulate.dataset import REPORT_SEED, simulate_dataset


def bart_runs(height: int, nlow: int) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (ecalib args, pics args)."""
    kernel = ["-k", str(fitted_kernel_width(6, nlow))]  # BART's default 6 (ecalib aborts on 7 ACS columns)
    rect = ["ecalib", "-m1", *kernel, "-r", f"{height}:{nlow}"]
    return {
        "bart pics -l2": (rect, ["pics", "-S", "-l2", "-r", "0.01", "-i", "30"]),
        "bart pics -l1": (rect, ["pics", "-S", "-l1", "-r", "0.01", "-i", "30"]),
        "bart fastMRI CS (T:7:0:0.01, 200 it)": (["ecalib", "-d0", "-m1", *kernel, "-r", str(nlow)], ["pics", "-d0", "-S", "-R", "T:7:0:0.01", "-i", "200"]),
    }


def run_bart_volume(kspace: np.ndarray, nlow: int, work: Path, threads: int) -> dict[str, tuple[np.ndarray, float]]:
    """BART reconstructions `(S, H, W)` complex and seconds per slice, per BART setting."""
    out: dict[str, tuple[list[np.ndarray], float]] = {}
    for name, (ecalib, pics) in bart_runs(kspace.shape[-2], nlow).items():
        images, seconds = [], 0.0
        for s, k in enumerate(kspace):
            base = work / f"s{s}"
            write_cfl(base.with_name(base.name + "_k"), kspace_to_bart(k))
            seconds += run_bart(*ecalib, f"{base}_k", f"{base}_maps", threads=threads)
            seconds += run_bart(*pics, f"{base}_k", f"{base}_maps", f"{base}_img", threads=threads)
            images.append(read_cfl(Path(f"{base}_img")).reshape(k.shape[-2:]))
        out[name] = (np.stack(images), seconds / len(kspace))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=1)
    parser.add_argument("--slices", type=int, default=1)
    parser.add_argument("--accels", type=int, nargs="+", default=[8], choices=(4, 8), help="BART's TV with 200 iterations takes ~1 min per slice")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="knee", choices=sorted(PRESETS), help="simulated size (knee: 15 coils 640 x ~368)")
    args = parser.parse_args()
    if not bart_available():
        print("bart is not installed; skipping the BART cross-check")
        return 0
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bart_compare_"))
    config = PRESETS[args.preset]
    paths = simulate_dataset(work / "data", args.volumes, args.slices, config.coils, REPORT_SEED, config=config)
    rows: list[dict[str, Any]] = []
    for path in paths:
        for accel in args.accels:
            data = undersample(path, accel)
            target, crop, nlow = data["target"], data["crop"], data["nlow"]
            kspace = torch.from_numpy(data["kspace"])
            batch = ReconBatch(kspace, torch.from_numpy(data["mask"]).reshape(1, 1, 1, -1).expand(kspace.shape[0], 1, 1, -1), torch.tensor([centered_region(kspace.shape[-1], nlow)] * kspace.shape[0]), crop)
            results: dict[str, tuple[np.ndarray, float]] = {}
            if not rows:
                for name in ("zero-filled", "sense", "cs", "cs-tv"):
                    get_method(name)(batch)  # warm-up: first-call library initialization is not timed
            for name in ("zero-filled", "sense", "cs", "cs-tv"):
                start = time.perf_counter()
                image = get_method(name)(batch).numpy()
                results[f"ours {name}"] = (image, (time.perf_counter() - start) / kspace.shape[0])
            for name, (image, seconds) in run_bart_volume(data["kspace"], nlow, work, args.threads).items():
                mag = center_crop(torch.from_numpy(np.abs(image)), crop).numpy().astype(np.float32)
                results[name] = (mag, seconds)
            for name, (image, seconds) in results.items():
                row = {"file": path.name, "accel": accel, "method": name, "seconds_per_slice": seconds, **scores(target, image)}
                rows.append(row)
                print(f"{path.name} {accel}x {name:40s} SSIM {row['ssim']:.4f} {seconds:6.2f} s/slice", flush=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = [
        "# This project's baselines beside BART",
        "",
        f"Simulated report split (seed {REPORT_SEED}), {len(paths)} volume(s) x {args.slices} slice(s), preset "
        f"`{args.preset}` ({config.coils} coils, {config.rows} x {'/'.join(map(str, config.widths))}), fastMRI random masks, {args.threads} threads. Mean over volumes; seconds per slice include "
        "ESPIRiT (and, for BART, process start and .cfl I/O).",
        "",
        "| accel | method | SSIM | PSNR | NMSE | s/slice |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for accel in args.accels:
        for m in methods:
            sel = [r for r in rows if r["accel"] == accel and r["method"] == m]
            mean = {k: float(np.mean([r[k] for r in sel])) for k in ("ssim", "psnr", "nmse", "seconds_per_slice")}
            lines.append(f"| {accel}x | {m} | {mean['ssim']:.4f} | {mean['psnr']:.2f} | {mean['nmse']:.4f} | {mean['seconds_per_slice']:.2f} |")
    write_results(f"baselines_bart_{args.preset}_" + "_".join(f"{a}x" for a in args.accels), {"rows": rows, "preset": args.preset, "machine": machine()}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
