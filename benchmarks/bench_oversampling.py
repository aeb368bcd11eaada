"""Readout oversampling removed in hybrid space: speed and images, full grid vs the cropped grid.

Data: simulated knee slices (`recon.simulate`, knee preset: 15 coils, 640 x 368 with the 2x
readout oversampling of fastMRI files, fastMRI zero padding), each undersampled with fastMRI's
file-name-seeded random mask (4x: 8 % centre, 8x: 4 %) as `recon reconstruct` does. Each method
runs through `recon.pipeline.run_method` twice on the same batch: on the stored 640 x 368 grid
(`remove_oversampling=False`, the code before this change) and on the 320 x 368 readout FOV
(the default: 1-D inverse FFT along the readout, crop, FFT back). ESPIRiT alone is timed on
both grids too. Reported per method: the median wall time of `--repeats` runs after one untimed
warm-up (CPU seconds of the process, robust on a shared machine; wall times are kept in the
JSON), their ratio, the fastMRI SSIM of both images against `reconstruction_rss` on the
320 x 320 crop, the change in SSIM, and the SSIM of the new image against the old one.
Threads: `--threads` for torch and the BLAS (set before NumPy loads). Writes
`oversampling_knee_<threads>t.json` / `.md` to benchmarks/results.

Usage:
    python benchmarks/bench_oversampling.py [--threads 1 --repeats 3 --slices 1 --accelerations 4 8]
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv(argv: list[str]) -> str:
    return argv[argv.index("--threads") + 1] if "--threads" in argv else "1"


for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv(sys.argv)

import json  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recon.calib import espirit_calib  # noqa: E402
from recon.io.fastmri import FastMRIVolume, write_fastmri_volume  # noqa: E402
from recon.metrics import ssim  # noqa: E402
from recon.pipeline import build_method, crop_batch_readout, read_kspace, readout_rows, run_method, slice_batch, undersample  # noqa: E402
from recon.simulate import PRESETS, simulate_volume  # noqa: E402

RESULTS = Path(__file__).parent / "results"


def _median_time(run: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median CPU seconds of this process over `repeats` timed runs after one untimed warm-up,
    all wall-clock times, last result. CPU time, not wall time: the machine is shared, and with
    a fixed thread count the CPU time of a run does not depend on what else is running."""
    result = run()
    cpu, wall = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = run()
        cpu.append(time.process_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    return statistics.median(cpu), wall, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, default=1, help="slices of the simulated volume (batch size)")
    parser.add_argument("--accelerations", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--methods", nargs="+", default=["zero-filled", "sense", "cs"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    vol = simulate_volume(7, num_slices=args.slices, width=368, config=PRESETS["knee"], keep_maps=False, contrast="CORPD_FBK")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "file_knee_sim.h5"
        write_fastmri_volume(path, vol.kspace, vol.header_xml, vol.target, vol.attrs)
        with FastMRIVolume(path) as f:
            info, kspace = f.info, read_kspace(f)
        target = vol.target
        for acc in args.accelerations:
            data = undersample(kspace.copy(), info, float(acc))
            height = data.kspace.shape[-2]
            cropped_rows = readout_rows(data.acquisition, height)
            batch = slice_batch(data, 0, data.kspace.shape[0], device)
            small = crop_batch_readout(batch, cropped_rows)
            t_full, _, _ = _median_time(lambda: espirit_calib(batch.calibration_data, batch.calib), args.repeats)
            t_crop, _, _ = _median_time(lambda: espirit_calib(small.calibration_data, small.calib), args.repeats)
            rows.append({"acceleration": acc, "method": "espirit", "grid_full": list(batch.masked_kspace.shape[-2:]),
                         "grid_cropped": list(small.masked_kspace.shape[-2:]), "seconds_full": t_full,
                         "seconds_cropped": t_crop, "speedup": t_full / t_crop})
            print(rows[-1], flush=True)
            for name in args.methods:
                method = build_method(name, {"device": str(device)})
                t_full, times_full, old = _median_time(
                    lambda: run_method(method, data, device, batch_size=args.slices, remove_oversampling=False), args.repeats)
                t_crop, times_crop, new = _median_time(
                    lambda: run_method(method, data, device, batch_size=args.slices), args.repeats)
                ssim_old, ssim_new = ssim(target, old), ssim(target, new)
                rows.append({
                    "acceleration": acc, "method": name, "grid_full": [height, data.kspace.shape[-1]],
                    "grid_cropped": [cropped_rows, data.kspace.shape[-1]], "seconds_full": t_full,
                    "seconds_cropped": t_crop, "wall_full": times_full, "wall_cropped": times_crop,
                    "speedup": t_full / t_crop, "ssim_full": ssim_old, "ssim_cropped": ssim_new,
                    "delta_ssim": ssim_new - ssim_old, "ssim_cropped_vs_full": ssim(old, new),
                    "max_abs_diff_rel": float(np.abs(new - old).max() / np.abs(old).max()),
                })
                print({k: v for k, v in rows[-1].items() if not k.startswith("wall")}, flush=True)

    meta = {
        "data": "simulated knee (recon.simulate knee preset, seed 7, CORPD_FBK), 15 coils, 640 x 368, "
                f"{args.slices} slices per batch; fastMRI random mask seeded by file name",
        "threads": args.threads, "repeats": args.repeats, "device": str(device),
        "cpu": os.cpu_count(), "loadavg": os.getloadavg(), "torch": torch.__version__,
        "command": "python benchmarks/bench_oversampling.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    RESULTS.mkdir(exist_ok=True)
    stem = RESULTS / f"oversampling_knee_{args.threads}t"
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    lines = [
        "# Readout oversampling removed in hybrid space (640 x 368 -> 320 x 368)", "",
        f"Data: {meta['data']}. Threads: {args.threads}, device {device}, median CPU time of {args.repeats} runs after a warm-up.",
        f"Command: `{meta['command']}`", "",
        "| acc | method | full (CPU s) | cropped (CPU s) | speed-up | SSIM full | SSIM cropped | ΔSSIM | SSIM(cropped, full) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        quality = ("| - | - | - | - |" if "ssim_full" not in r else
                   f"| {r['ssim_full']:.4f} | {r['ssim_cropped']:.4f} | {r['delta_ssim']:+.4f} | {r['ssim_cropped_vs_full']:.4f} |")
        lines.append(f"| {r['acceleration']}x | {r['method']} | {r['seconds_full']:.2f} | {r['seconds_cropped']:.2f} | "
                     f"{r['speedup']:.2f}x {quality}")
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
