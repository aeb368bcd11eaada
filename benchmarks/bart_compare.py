"""BART cross-check: `bart ecalib` + `bart pics` beside this project's sense / cs / cs-tv.

Same undersampled slices (a simulated split of either source, fastMRI validation-seeded random
masks at 4x and 8x). BART rows (`--bart`): `l2`, `l1`: `ecalib -m1 -r H:nlow` (rectangular ACS
region) then `pics -S -l2` / `pics -S -l1` (`--bart-iters` iterations, lambda 0.01 on BART's
own data scale); `tv`: fastMRI's CS baseline `ecalib -d0 -m1 -r nlow` + `pics -d0 -S -R
T:7:0:0.01 -i 200`. The ESPIRiT kernel is
BART's default 6 except on ACS regions narrower than 12 columns, where it is capped as ours is
(`fitted_kernel_width`; BART's ecalib aborts with a 6-wide kernel on 7 columns). Ours: the registered
methods with their defaults (ESPIRiT maps estimated inside; lambda by each method's noise
rule; output the RSS of the data-consistent coil images) and with `--combine sense` (|x|); each
BART setting also as `+ rss`, its solution put through the same output step with its own maps. Reports fastMRI SSIM / PSNR / NMSE and seconds per slice, overall and on the volumes at
or above the median SNR (measured: BART's data scale over the k-space noise std), per source:
`--source knee` (simulated phantom) or `mni152` (real-anatomy template), `--seed` picks the
split (e.g. 4000: acceptance). Writes results/baselines_bart_<source>_<split>_<accels>.json
and .md. Exits cleanly (0, a message) where `bart` is not installed. Usage:

    OMP_NUM_THREADS=2 python benchmarks/bart_compare.py [--source knee|mni152] [--seed 4000] [--preset knee|small] [--volumes 1] [--slices 1] [--accels 4 8] [--bart l1]
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

from _common import column_mask, machine, num_low, scores, undersampled, write_results
from bart_cfl import bart_available, kspace_to_bart, maps_from_bart, read_cfl, run_bart, write_cfl
from recon.calib import fitted_kernel_width
from recon.core import center_crop, fft2c
from recon.io.fastmri import read_volume
from recon.methods import get_method
from recon.methods.classical import consistent_rss
from recon.noise import data_scale, noise_sigma
from recon.simulate import PRESETS, seed_split
from recon.simulate.dataset import REPORT_SEED, simulate_dataset

#: This project's rows: each method with its defaults (output `--combine rss`), and the model-based
#: ones also with `--combine sense` (the solver's |x|, as BART's image rows).
OURS = [("zero-filled", {}), *[(m, {}) for m in ("sense", "cs", "cs-tv")], *[(m, {"combine": "sense"}) for m in ("sense", "cs", "cs-tv")]]

SOURCES = {"knee": "simulated phantom (knee-like)", "mni152": "real-anatomy template (MNI152)"}


def bart_runs(height: int, nlow: int, iters: int = 30, which: tuple[str, ...] = ("l2", "l1", "tv")) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (ecalib args, pics args), for the runs named in `which`."""
    kernel = ["-k", str(fitted_kernel_width(6, nlow))]  # BART's default 6 (ecalib aborts on 7 ACS columns)
    rect = ["ecalib", "-m1", *kernel, "-r", f"{height}:{nlow}"]
    runs = {
        "l2": (f"bart pics -l2 ({iters} it)", rect, ["pics", "-S", "-l2", "-r", "0.01", "-i", str(iters)]),
        "l1": (f"bart pics -l1 ({iters} it)", rect, ["pics", "-S", "-l1", "-r", "0.01", "-i", str(iters)]),
        "tv": ("bart fastMRI CS (T:7:0:0.01, 200 it)", ["ecalib", "-d0", "-m1", *kernel, "-r", str(nlow)], ["pics", "-d0", "-S", "-R", "T:7:0:0.01", "-i", "200"]),
    }
    return {runs[w][0]: (runs[w][1], runs[w][2]) for w in which}


def simulate(source: str, out: Path, volumes: int, slices: int, seed: int, preset: str) -> list[Path]:
    """`recon simulate`'s files for `source` (knee phantom or MNI152 template) at `seed`."""
    if source == "mni152":
        from recon.simulate.mni152 import MNI_PRESETS, simulate_mni152_dataset

        config = MNI_PRESETS[preset]
        return simulate_mni152_dataset(out, volumes, slices, config.coils, seed, config=config)
    config = PRESETS[preset]
    return simulate_dataset(out, volumes, slices, config.coils, seed, config=config)


def _convention_sign(image: torch.Tensor, maps: torch.Tensor, kspace: torch.Tensor, columns: torch.Tensor) -> float:
    """+1 or -1: BART's centered FFT differs from ours by a sign `(-1)^(N/2)` per even axis of
    odd half-length, so BART's image predicts our k-space up to that sign; it is read off the
    measured samples (the sign of the real part of their inner product with `F(S x)`)."""
    predicted = fft2c(maps * image)
    sampled = columns.bool().expand_as(kspace)
    return 1.0 if float(torch.vdot(predicted[sampled], kspace[sampled]).real) >= 0 else -1.0


def run_bart_volume(kspace: np.ndarray, mask: np.ndarray, nlow: int, work: Path, threads: int, iters: int, which: tuple[str, ...]) -> dict[str, tuple[np.ndarray, float]]:
    """BART reconstructions `(S, H, W)` magnitude and seconds per slice, per BART setting.

    Each setting gives two rows: BART's image `|x|`, and `+ rss`, the same solution output as
    this project's default (`recon.methods.classical.consistent_rss` with BART's own maps: the
    measured samples kept, the rest predicted from `S x`, coils combined by RSS).
    """
    out: dict[str, tuple[np.ndarray, float]] = {}
    columns = torch.from_numpy(mask).reshape(1, 1, 1, -1)
    for name, (ecalib, pics) in bart_runs(kspace.shape[-2], nlow, iters, which).items():
        images, combined, seconds = [], [], 0.0
        for s, k in enumerate(kspace):
            base = work / f"s{s}"
            write_cfl(base.with_name(base.name + "_k"), kspace_to_bart(k))
            seconds += run_bart(*ecalib, f"{base}_k", f"{base}_maps", threads=threads)
            seconds += run_bart(*pics, f"{base}_k", f"{base}_maps", f"{base}_img", threads=threads)
            image = read_cfl(Path(f"{base}_img")).reshape(k.shape[-2:])
            maps = torch.from_numpy(maps_from_bart(read_cfl(Path(f"{base}_maps"))).astype(np.complex64))[None]
            images.append(np.abs(image))
            x = torch.from_numpy(image.astype(np.complex64))[None, None]
            x = x * _convention_sign(x, maps, torch.from_numpy(k)[None], columns)
            combined.append(consistent_rss(x, maps, torch.from_numpy(k)[None], columns)[0].numpy())
        out[name] = (np.stack(images), seconds / len(kspace))
        out[name + " + rss"] = (np.stack(combined), seconds / len(kspace))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=1)
    parser.add_argument("--slices", type=int, default=1)
    parser.add_argument("--accels", type=int, nargs="+", default=[8], choices=(4, 8), help="BART's TV with 200 iterations takes ~1 min per slice")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--preset", default="knee", choices=sorted(PRESETS), help="simulated size (knee: 15 coils 640 x ~368)")
    parser.add_argument("--source", default="knee", choices=sorted(SOURCES), help="knee: simulated phantom; mni152: real-anatomy template")
    parser.add_argument("--seed", type=int, default=REPORT_SEED, help="dataset seed: its range is the split (4000+: acceptance)")
    parser.add_argument("--bart", nargs="+", default=["l2", "l1", "tv"], choices=("l2", "l1", "tv"), help="BART runs (tv: ~1 min per slice)")
    parser.add_argument("--bart-iters", type=int, default=30, help="iterations of the pics -l1 / -l2 runs")
    args = parser.parse_args()
    if not bart_available():
        print("bart is not installed; skipping the BART cross-check")
        return 0
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bart_compare_"))
    split = seed_split(args.seed) or "unsplit"
    paths = simulate(args.source, work / "data", args.volumes, args.slices, args.seed, args.preset)
    rows: list[dict[str, Any]] = []
    snr: dict[str, dict[str, float | None]] = {}
    for path in paths:
        _, _, info = read_volume(path)
        stated = info.attrs.get("snr")
        for accel in args.accels:
            batch, target = undersampled(path, accel)
            crop, nlow, kspace = batch.crop_size, num_low(batch), batch.masked_kspace
            measured = float((data_scale(kspace).flatten().cpu() / noise_sigma(kspace, batch.mask).clamp_min(1e-30)).mean())
            snr.setdefault(path.name, {"stated": None if stated is None else float(stated), "measured": measured})
            results: dict[str, tuple[np.ndarray, float]] = {}
            if not rows:
                for name in ("zero-filled", "sense", "cs", "cs-tv"):
                    get_method(name)(batch)  # warm-up: first-call library initialization is not timed
            for name, options in OURS:
                start = time.perf_counter()
                image = get_method(name, **options)(batch).numpy()
                label = f"ours {name}" + (" (--combine sense)" if options else "")
                results[label] = (image, (time.perf_counter() - start) / kspace.shape[0])
            for name, (image, seconds) in run_bart_volume(kspace.numpy(), column_mask(batch), nlow, work, args.threads, args.bart_iters, tuple(args.bart)).items():
                mag = center_crop(torch.from_numpy(np.abs(image)), crop).numpy().astype(np.float32)
                results[name] = (mag, seconds)
            for name, (image, seconds) in results.items():
                inside = target > 0.3 * target.max(axis=(-2, -1), keepdims=True)
                row = {"file": path.name, "accel": accel, "method": name, "seconds_per_slice": seconds, "interior": float(image[inside].mean() / target[inside].mean()), **scores(target, image)}
                rows.append(row)
                print(f"{path.name} {accel}x {name:40s} SSIM {row['ssim']:.4f} {seconds:6.2f} s/slice", flush=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    median_snr = float(np.median([v["measured"] for v in snr.values()]))
    high = {name for name, v in snr.items() if v["measured"] >= median_snr}
    command = "OMP_NUM_THREADS={t} python benchmarks/bart_compare.py --source {s} --seed {seed} --preset {p} --volumes {v} --slices {sl} --accels {a} --threads {t} --bart {b} --bart-iters {bi}".format(
        t=args.threads, s=args.source, seed=args.seed, p=args.preset, v=args.volumes, sl=args.slices, a=" ".join(map(str, args.accels)), b=" ".join(args.bart), bi=args.bart_iters
    )
    lines = [
        f"# This project's baselines beside BART: {SOURCES[args.source]}, {split} split",
        "",
        f"{SOURCES[args.source]}, {split} split (seed {args.seed}), {len(paths)} volume(s) x {args.slices} slice(s), preset "
        f"`{args.preset}`, fastMRI random masks, {args.threads} threads. Mean over volumes; seconds per slice include "
        "ESPIRiT (and, for BART, process start and .cfl I/O); the machine is shared, so times are not a speed measurement.",
        "",
    ]
    for title, chosen in (("All volumes", set(snr)), (f"Volumes at or above the median measured SNR ({median_snr:.1f})", high)):
        lines += [f"## {title}", "", "| accel | method | volumes | SSIM | PSNR | NMSE | interior | s/slice |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for accel in args.accels:
            for m in methods:
                sel = [r for r in rows if r["accel"] == accel and r["method"] == m and r["file"] in chosen]
                mean = {k: float(np.mean([r[k] for r in sel])) for k in ("ssim", "psnr", "nmse", "interior", "seconds_per_slice")}
                lines.append(f"| {accel}x | {m} | {len(sel)} | {mean['ssim']:.4f} | {mean['psnr']:.2f} | {mean['nmse']:.4f} | {mean['interior']:.3f} | {mean['seconds_per_slice']:.2f} |")
        lines.append("")
    lines += ["## Volumes", "", "| file | stated SNR | measured SNR |", "| --- | --- | --- |"]
    lines += [f"| {name} | {'-' if v['stated'] is None else format(v['stated'], 'g')} | {v['measured']:.1f} |" for name, v in snr.items()]
    lines += ["", "Interior: mean image intensity inside the object (target > 0.3 of its slice maximum) over the target's there. Measured SNR: BART's data scale (`recon.noise.data_scale`) over the k-space noise std (`recon.noise.estimate_noise_sigma`), mean over the accelerations.", "", "Command:", "", "```sh", command, "```"]
    stem = f"baselines_bart_{args.source}_{split}_" + "_".join(f"{a}x" for a in args.accels)
    write_results(stem, {"rows": rows, "snr": snr, "median_snr": median_snr, "source": args.source, "seed": args.seed, "split": split, "preset": args.preset, "command": command, "machine": machine()}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
