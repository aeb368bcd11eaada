"""Real scanner data: retrospective undersampling of twixtools 0.24's `gre.dat` (Siemens Skyra,
2-D GRE of a phantom, 2 receive coils, 160 x 160 at 1.25 mm), every method beside BART `pics`.

The file is read by `recon convert` (the TWIX reader: gridded, readout oversampling kept) into
a fully sampled fastMRI file whose target is the RSS of the fully sampled coil images; the
undersampled batches come from `recon.pipeline` exactly as `recon reconstruct --acceleration R
--mask M` makes them (fastMRI's file-name-seeded masks with their default centre fraction).
Methods: zero-filled, sense, cs, cs-tv, spirit (any mask), grappa (equispaced masks only), each
with its defaults; BART (`--bart`): `ecalib -m1` + `pics -S -l2` / `-l1` (30 iterations,
lambda 0.01) and its `+ rss` output (the project's output step with BART's maps), every BART
image scaled by the least-squares factor onto the target first (BART's `-S` scale is its own).
With 2 coils, R = 3 exceeds the coil count: SENSE / GRAPPA / SPIRiT rows at 3x are reported but
cannot be good (a parallel-imaging limit, not a tuning result). fastMRI SSIM / PSNR / NMSE on
the 160 x 160 recon grid. Writes results/twix_gre.json and .md; exits cleanly (0, a message)
without gre.dat (`scripts/_setup.sh` caches it) or, for the BART rows, without `bart`. Usage:

    OMP_NUM_THREADS=2 python benchmarks/twix_gre.py [--gre PATH] [--accels 2 3] [--masks random equispaced] [--bart l2 l1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from _common import column_mask, machine, num_low, scores, undersampled, write_results
from bart_cfl import bart_available
from bart_compare import run_bart_volume
from recon.core import center_crop
from recon.io.convert import convert_ismrmrd_to_fastmri
from recon.methods import get_method

OURS = ("zero-filled", "sense", "cs", "cs-tv", "spirit", "grappa")


def default_gre() -> Path:
    """Where the test set-up caches gre.dat (`tests/twix_files.py`, `scripts/_setup.sh`)."""
    if os.environ.get("RECON_TWIX_CACHE"):
        return Path(os.environ["RECON_TWIX_CACHE"]) / "gre.dat"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "recon" / "twixtools-0.24" / "gre.dat"


def least_squares(image: np.ndarray, target: np.ndarray) -> np.ndarray:
    """`image` times the scale `a` minimising `||a image - target||` (BART's `-S` scale is its own)."""
    scale = float(np.vdot(image, target).real / max(float(np.vdot(image, image).real), 1e-30))
    return (image * scale).astype(np.float32)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gre", type=Path, default=default_gre(), help="gre.dat of the twixtools 0.24 sdist")
    parser.add_argument("--accels", type=int, nargs="+", default=[2, 3])
    parser.add_argument("--masks", nargs="+", default=["random", "equispaced"], choices=("random", "equispaced"))
    parser.add_argument("--bart", nargs="*", default=["l2", "l1"], choices=("l2", "l1", "tv"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if not args.gre.is_file():
        print(f"{args.gre} not found (scripts/_setup.sh caches twixtools 0.24's example data); skipping")
        return 0
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="twix_gre_"))
    path = convert_ismrmrd_to_fastmri(args.gre, work / "gre.h5")
    use_bart = bool(args.bart) and bart_available()
    rows: list[dict[str, Any]] = []
    for mask in args.masks:
        for accel in args.accels:
            batch, target = undersampled(path, accel, mask)
            sampled = column_mask(batch)
            results: dict[str, tuple[np.ndarray, float]] = {}
            for name in OURS:
                if name == "grappa" and mask != "equispaced":
                    continue
                start = time.perf_counter()
                results[f"ours {name}"] = (get_method(name)(batch).numpy(), time.perf_counter() - start)
            if use_bart:
                kspace = batch.masked_kspace.numpy()
                for name, (image, seconds) in run_bart_volume(kspace, sampled, num_low(batch), work, args.threads, 30, tuple(args.bart)).items():
                    mag = center_crop(np.abs(image), batch.crop_size).astype(np.float32)
                    results[f"{name} (LS-scaled)"] = (least_squares(mag, target), seconds)
            for name, (image, seconds) in results.items():
                row = {"mask": mask, "accel": accel, "sampled_columns": int(sampled.sum()), "acs": num_low(batch),
                       "method": name, "seconds": seconds, **scores(target, image)}
                rows.append(row)
                print(f"{mask:10s} {accel}x {name:34s} SSIM {row['ssim']:.4f} PSNR {row['psnr']:.2f} {seconds:6.2f} s", flush=True)
    command = (f"OMP_NUM_THREADS={args.threads} python benchmarks/twix_gre.py --accels {' '.join(map(str, args.accels))} "
               f"--masks {' '.join(args.masks)} --bart {' '.join(args.bart)}")
    lines = [
        "# Real scanner data: retrospectively undersampled gre.dat (Siemens, 2 coils)",
        "",
        "Real scanner data, not simulated: twixtools 0.24's example `gre.dat` (Siemens Skyra VE, 2-D GRE of a phantom, "
        "2 receive coils, 160 x 160 at 1.25 mm, fully sampled), read by the TWIX reader, undersampled retrospectively with "
        "fastMRI's file-name-seeded masks; target: the RSS of the fully sampled coil images. One slice, so no spread; "
        "BART images scaled by least squares onto the target. The 2 channels are the body coil's (`Dicom.atCoilSelectInfoText` "
        "BC): little sensitivity contrast between them, so parallel imaging is ill-conditioned already at 2x, for BART's "
        "`pics -l2` as for ours; with 2 coils, R = 3 exceeds the coil count: the parallel-imaging rows (sense, grappa, "
        "spirit) show that limit, not a tuning result. Seconds on a shared 2-core "
        "machine, not a speed measurement." + ("" if use_bart else " BART was not installed: no BART rows."),
        "",
        "| mask | accel | sampled columns | ACS | method | SSIM | PSNR | NMSE | s |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {r['mask']} | {r['accel']}x | {r['sampled_columns']} | {r['acs']} | {r['method']} | {r['ssim']:.4f} | "
              f"{r['psnr']:.2f} | {r['nmse']:.4f} | {r['seconds']:.1f} |" for r in rows]
    lines += ["", "Command:", "", "```sh", command, "```"]
    write_results("twix_gre", {"data": "real scanner data: twixtools 0.24 example_data/gre.dat (2 coils)", "rows": rows,
                               "command": command, "machine": machine()}, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
