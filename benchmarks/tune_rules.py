"""Fix the constants of the noise rules of `cs` and `cs-tv` on the tuning split (seeds 2000+).

The rules set `lam = c sigma_n` per slice (`recon.methods.cs.l1_rule`, `cs_tv.tv_rule`), with
`sigma_n` the slice's complex noise std per k-space sample (`recon.noise.estimate_noise_sigma`)
over BART's data scale (`recon.noise.data_scale`). This script scores each `c` of a short grid,
and the iteration counts along the way (one run per `c` with a callback), by fastMRI SSIM on
both sources' tuning volumes (simulated phantom and MNI152 real-anatomy template) at 4x and 8x,
beside zero-filled. It reads data made by `recon simulate` and never the acceptance split.
Usage:

    recon simulate DIR/phantom --preset small --volumes 4 --slices 1 --seed 2000
    recon simulate DIR/mni152 --source mni152 --preset small --volumes 4 --slices 1 --seed 2000
    OMP_NUM_THREADS=1 python benchmarks/tune_rules.py --data DIR/phantom DIR/mni152 [--out results/tune_rules]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Iterator, NamedTuple

import numpy as np
import torch

from _common import calib_region, undersampled, write_results
from recon.calib import espirit_calib
from recon.core import center_crop, ifft2c, rss
from recon.methods import ReconBatch
from recon.methods.solvers import fista_l1_wavelet, pdhg_tv
from recon.noise import data_scale, noise_sigma
from recon.metrics import ssim
from recon.simulate.dataset import SEED_RANGES

GRID = (0.03, 0.1, 0.3, 1.0)
CHECKPOINTS = {"cs": (10, 20, 30, 50), "cs-tv": (25, 50, 100)}
SOLVERS = {"cs": fista_l1_wavelet, "cs-tv": pdhg_tv}


def source_of(path: Path) -> str:
    """`phantom` or `mni152` from the fastMRI-style file name `recon simulate` writes."""
    return "mni152" if "mni152" in path.name else "phantom"


def check_tune_split(path: Path) -> None:
    """Refuse a file outside the tuning seed range (the name holds its seed)."""
    seed = int(path.stem.split("_")[-2])
    tune = SEED_RANGES["tune"]
    if seed not in tune:
        raise SystemExit(f"{path}: seed {seed} is not in the tuning split [{tune.start}, {tune.stop})")


def tuning_args(description: str, out: str) -> argparse.Namespace:
    """The tuning scripts' command line (`--data` folders, `--accels`, `--out` stem); one thread."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, nargs="+", required=True)
    parser.add_argument("--accels", type=int, nargs="+", default=[4, 8])
    parser.add_argument("--out", default=out)
    args = parser.parse_args()
    torch.set_num_threads(1)
    return args


class TuningCase(NamedTuple):
    """One tuning volume at one acceleration, as every tuning script starts from it.

    batch: every slice as `recon.pipeline` undersamples it; base: the row fields that name the
    case (file, source, accel); zero_filled_ssim: the zero-filled RSS image's SSIM.
    """

    path: Path
    accel: int
    target: np.ndarray
    batch: ReconBatch
    base: dict[str, Any]
    zero_filled_ssim: float


def tuning_cases(args: argparse.Namespace) -> Iterator[TuningCase]:
    """A `TuningCase` for every tuning-split file of `args.data` (others refused) and acceleration."""
    for folder in args.data:
        for path in sorted(folder.glob("*.h5")):
            check_tune_split(path)
            for accel in args.accels:
                batch, target = undersampled(path, accel)
                zf = center_crop(rss(ifft2c(batch.masked_kspace), 1), batch.crop_size).numpy().astype(np.float32)
                yield TuningCase(path, accel, target, batch, {"file": path.name, "source": source_of(path), "accel": accel},
                                 ssim(target, zf))


def main() -> int:
    args = tuning_args(__doc__.splitlines()[0], "tune_rules")
    rows: list[dict[str, Any]] = []
    for path, accel, target, batch, base, zf_ssim in tuning_cases(args):
        rows.append({**base, "method": "zero-filled", "c": None, "iters": None, "ssim": zf_ssim})
        kspace, mask, crop = batch.masked_kspace, batch.mask, batch.crop_size
        maps = espirit_calib(kspace, calib_region(batch))
        scale = data_scale(kspace)
        sigma_n = float(noise_sigma(kspace, mask.expand(kspace.shape[0], 1, 1, -1))[0] / scale.flatten()[0])
        y = kspace / scale
        for method, solver in SOLVERS.items():
            for c in GRID:

                def score(it: int, x: torch.Tensor, method: str = method, c: float = c) -> None:
                    if it in CHECKPOINTS[method]:
                        image = center_crop((x * scale).abs()[:, 0], crop).numpy().astype(np.float32)
                        rows.append({**base, "method": method, "c": c, "iters": it, "sigma_n": sigma_n, "ssim": ssim(target, image)})

                solver(y, maps, mask, c * sigma_n, max(CHECKPOINTS[method]), callback=score)
        print(path.name, accel, f"sigma_n {sigma_n:.4f}", flush=True)
    lines = ["# Noise-rule constants on the tuning split", "", "Mean fastMRI SSIM over the tuning volumes (seeds 2000+), per source and acceleration; `lam = c sigma_n`.", ""]
    summary = []
    for source in sorted({r["source"] for r in rows}):
        for accel in args.accels:
            sel = [r for r in rows if r["source"] == source and r["accel"] == accel]
            zf = float(np.mean([r["ssim"] for r in sel if r["method"] == "zero-filled"]))
            volumes = sum(r["method"] == "zero-filled" for r in sel)
            lines += [f"## {source} {accel}x (zero-filled {zf:.4f}, {volumes} volumes)", "", "| method | c | iterations | SSIM |", "| --- | --- | --- | --- |"]
            for method in SOLVERS:
                for c in GRID:
                    for it in CHECKPOINTS[method]:
                        v = float(np.mean([r["ssim"] for r in sel if r["method"] == method and r["c"] == c and r["iters"] == it]))
                        summary.append({"source": source, "accel": accel, "method": method, "c": c, "iters": it, "ssim": v, "zero_filled": zf})
                        lines.append(f"| {method} | {c} | {it} | {v:.4f} |")
            lines.append("")
    command = "OMP_NUM_THREADS=1 python benchmarks/tune_rules.py --data " + " ".join(map(str, args.data)) + f" --out {args.out}"
    lines += ["Command (data from `recon simulate ... --preset small --volumes 4 --slices 1 --seed 2000`, with `--source mni152` for the template):", "", "```sh", command, "```"]
    write_results(args.out, {"command": command, "rows": rows, "summary": summary, "grid": GRID, "checkpoints": CHECKPOINTS}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
