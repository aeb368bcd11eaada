"""GRAPPA speed: `recon.calib.grappa` against pygrappa's `mdgrappa`, side by side, one slice.

Data: one simulated knee slice (`recon.simulate`, knee preset: 15 coils, 640 x 368, fastMRI
zero padding at the edges), undersampled with fastMRI's equispaced mask (seed 1; the default centre fractions, 4x: 8 %
centre, 8x: 4 %) through `recon.pipeline` as `recon reconstruct` undersamples, the mask zeroed in
the padding columns so that "sampled" means the same to both (pygrappa takes the non-zero
locations of coil 0). Both fill the same k-space with the same kernel and
lam = 0.01, calibrating on the centre block; recon runs in its pygrappa-compatible mode and in
its default mode (the acquisition model's mask). Both libraries get `--threads` threads (torch,
and the BLAS under NumPy through the environment, set before NumPy loads). Each timing is the
median of `--repeats` runs after one untimed warm-up; the agreement of the filled k-space and
of the RSS image with pygrappa is recorded too. Writes `grappa_knee_<threads>t.json` / `.md`.

Usage:
    python benchmarks/bench_grappa.py [--threads 2 --repeats 5 --accelerations 4 8]
"""

from __future__ import annotations

import argparse
import os
import sys


def _threads_from_argv(argv: list[str]) -> str:
    return argv[argv.index("--threads") + 1] if "--threads" in argv else "2"


for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = _threads_from_argv(sys.argv)

import json  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from recon.calib.grappa import grappa  # noqa: E402
from recon.core import center_crop, ifft2c, rss  # noqa: E402
from recon.simulate import PRESETS, simulate_volume  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _common import calib_region, column_mask, median_time, simulated_batch  # noqa: E402

RESULTS = Path(__file__).parent / "results"
#: The masks' seed (as in the committed results).
MASK_SEED = 1


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--accelerations", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--seed", type=int, default=4000)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    import pygrappa

    torch.set_num_threads(args.threads)
    volume = simulate_volume(args.seed, num_slices=1, width=368, config=PRESETS["knee"], keep_maps=False)
    full = volume.kspace[0]
    coils, rows, width = full.shape
    truth = center_crop(rss(ifft2c(full), 0), volume.target.shape[-2:])
    results: dict[str, Any] = {
        "data": f"simulated knee phantom (recon.simulate, knee preset, seed {args.seed}), one slice, {coils} coils x {rows} x {width}",
        "threads": args.threads,
        "repeats": args.repeats,
        "loadavg_start": os.getloadavg(),
        "torch": torch.__version__,
        "pygrappa": getattr(pygrappa, "__version__", "0.26.3"),
        "cases": [],
    }
    for acc in args.accelerations:
        batch = simulated_batch(volume, acc, "equispaced", MASK_SEED)
        mask = column_mask(batch)
        start, stop = calib_region(batch)
        nlow = stop - start
        kt = batch.masked_kspace[:1]
        under = kt[0].numpy()
        kernel = (5, max(5, acc + 1 + acc % 2))
        sampled = torch.from_numpy(np.broadcast_to(mask, (1, rows, width)).copy())
        calib = torch.from_numpy(full)[None]

        def ours_compat() -> np.ndarray:
            return grappa(kt, None, calib, (start, stop), kernel, 0.01, pygrappa_compat=True)[0].numpy()

        def ours_default() -> np.ndarray:
            return grappa(kt, sampled, calib, (start, stop), kernel, 0.01)[0].numpy()

        def reference() -> np.ndarray:
            return pygrappa.mdgrappa(under.astype(np.complex128), full[..., start:stop].astype(np.complex128), kernel_size=kernel, coil_axis=0, lamda=0.01)

        t_ref, ref_times, ref = median_time(reference, args.repeats)
        t_compat, compat_times, filled = median_time(ours_compat, args.repeats)
        t_default, default_times, filled_default = median_time(ours_default, args.repeats)
        image, ref_image = rss(ifft2c(filled), 0), rss(ifft2c(ref), 0)
        case = {
            "acceleration": acc,
            "acs_columns": int(nlow),
            "kernel": list(kernel),
            "pygrappa_mdgrappa_s": t_ref,
            "recon_compat_s": t_compat,
            "recon_default_s": t_default,
            "speedup_compat": t_ref / t_compat,
            "speedup_default": t_ref / t_default,
            "times": {"pygrappa": ref_times, "recon_compat": compat_times, "recon_default": default_times},
            "kspace_rel_l2_vs_pygrappa": _rel(filled, ref),
            "kspace_max_err_over_max_vs_pygrappa": float(np.abs(filled - ref).max() / np.abs(ref).max()),
            "image_rel_l2_vs_pygrappa": _rel(image, ref_image),
            "default_vs_compat_kspace_rel_l2": _rel(filled_default, filled),
            "nrmse_vs_fully_sampled_rss": _rel(center_crop(image, truth.shape), truth),
            "nrmse_zero_filled": _rel(center_crop(rss(ifft2c(under), 0), truth.shape), truth),
        }
        print(json.dumps({k: v for k, v in case.items() if k != "times"}))
        results["cases"].append(case)
    results["loadavg_end"] = os.getloadavg()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"grappa_knee_{args.threads}t.json").write_text(json.dumps(results, indent=2) + "\n")
    lines = [
        "# GRAPPA: recon vs pygrappa (`mdgrappa`), one 15-coil 640 x 368 slice",
        "",
        f"Data: {results['data']}; fastMRI equispaced masks. {args.threads} threads each, median of "
        f"{args.repeats} runs after a warm-up; load average {results['loadavg_start'][0]:.1f} at the start "
        f"on a shared machine. Command: `python benchmarks/bench_grappa.py --threads {args.threads} --repeats {args.repeats}`.",
        "",
        "| acc | ACS | kernel | pygrappa s | recon compat s | recon default s | speed-up (compat / default) | k-space rel. L2 vs pygrappa | image rel. L2 | NRMSE vs full RSS (zero-filled) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for c in results["cases"]:
        lines.append(
            f"| {c['acceleration']}x | {c['acs_columns']} | {c['kernel'][0]}x{c['kernel'][1]} | {c['pygrappa_mdgrappa_s']:.2f} | "
            f"{c['recon_compat_s']:.2f} | {c['recon_default_s']:.2f} | {c['speedup_compat']:.1f}x / {c['speedup_default']:.1f}x | "
            f"{c['kspace_rel_l2_vs_pygrappa']:.1e} | {c['image_rel_l2_vs_pygrappa']:.1e} | "
            f"{c['nrmse_vs_fully_sampled_rss']:.3f} ({c['nrmse_zero_filled']:.3f}) |"
        )
    lines += [
        "",
        "NRMSE is against the RSS of the fully sampled, noisy simulated k-space: GRAPPA adds its",
        "noise amplification where zero-filling drops the noise of the missing lines, so on this",
        "noisy phantom it can score worse than zero-filled; it is a sanity figure, not a quality claim.",
    ]
    (args.out_dir / f"grappa_knee_{args.threads}t.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
