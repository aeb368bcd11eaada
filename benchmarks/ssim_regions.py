"""Where the SSIM is won or lost: the fastMRI SSIM map averaged inside and outside the object.

For fully sampled fastMRI-format files (e.g. the MNI152 acceptance set), every method reconstructs
the file-name-seeded undersampled k-space as `recon benchmark` does; the SSIM map
(skimage, 7x7 window, data_range = target max, as fastMRI) is averaged over the whole image,
over the object (`recon.simulate.realism.object_mask`, above 2x the RSS noise floor estimated from
the k-space) and over the background; also the ratio of background means (reconstruction /
target), which shows whether a method keeps the RSS noise floor of the target. Writes
results/<stem>.json and .md. Usage:

    OMP_NUM_THREADS=1 python benchmarks/ssim_regions.py DATA_DIR [--methods zero-filled,sense,cs,cs-tv] [--accel 4] [--stem ssim_regions_mni152]
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

from _common import write_results
from recon.io.scan import read_target
from recon.noise import estimate_noise_sigma
from recon.methods.classical import MAPS_CROP
from recon.pipeline import build_method, open_file, resolve_device, run_method
from recon.simulate.realism import NOISE_FLOOR_FACTOR, object_mask


def regions(target: np.ndarray, image: np.ndarray, mask: np.ndarray) -> dict[str, float]:
    """Mean SSIM map over all / object / background pixels, and the background mean ratio."""
    full, inside, outside = [], [], []
    b = 3  # skimage averages the 7x7 SSIM map without its 3-pixel border; so do the regions
    for s in range(target.shape[0]):
        _, smap = structural_similarity(target[s], image[s], data_range=float(target.max()), full=True)
        smap, m = smap[b:-b, b:-b], mask[s][b:-b, b:-b]
        full.append(smap.mean())
        inside.append(smap[m].mean())
        outside.append(smap[~m].mean() if (~m).any() else np.nan)
    bg = float(image[~mask].mean() / target[~mask].mean()) if (~mask).any() else float("nan")
    return {"ssim": float(np.mean(full)), "ssim_object": float(np.mean(inside)), "ssim_background": float(np.nanmean(outside)), "background_mean_ratio": bg}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--methods", default="zero-filled,sense,cs,cs-tv")
    p.add_argument("--accel", type=float, default=4.0)
    p.add_argument("--stem", default="ssim_regions_mni152")
    p.add_argument("--maps-crop", choices=["soft", "hard", "wide"], default="soft", help="ESPIRiT crop of sense / cs / cs-tv (recon --maps-crop)")
    args = p.parse_args()
    device = resolve_device("cpu")
    methods = [m for m in args.methods.split(",") if m]
    rows: list[dict[str, Any]] = []
    for path in sorted(Path(args.data).glob("*.h5")):
        with open_file(path) as full:
            kspace = full.read(0, len(full))[0]
        target, _ = read_target(path)
        sigma = float(estimate_noise_sigma(kspace))
        mask = object_mask(target, floor=NOISE_FLOOR_FACTOR * sigma * np.sqrt(kspace.shape[1]))
        del kspace
        data = open_file(path, args.accel, None, "random")
        for m in methods:
            options = {"espirit": MAPS_CROP[args.maps_crop]} if m in ("sense", "cs", "cs-tv") and args.maps_crop != "soft" else {}
            image = run_method(build_method(m, options), data, device, 8)
            rows.append({"file": path.name, "method": m, "acceleration": args.accel, "background_fraction": float(1 - mask.mean()), **regions(target, image, mask)})
    crop = f" --maps-crop {args.maps_crop}" if args.maps_crop != "soft" else ""
    command = f"OMP_NUM_THREADS=1 python benchmarks/ssim_regions.py {args.data} --methods {args.methods} --accel {args.accel:g} --stem {args.stem}{crop}"
    lines = [f"# SSIM inside and outside the object ({args.accel:g}x)", "",
             f"Data: `{args.data}` ({len({r['file'] for r in rows})} volumes). Mean over volumes of the SSIM map averaged over the whole",
             "image (the fastMRI number: 3-pixel border left out, as skimage does), the object and the background;",
             "background mean of the reconstruction over the target's.", "",
             "| method | SSIM (full) | SSIM object | SSIM background | background mean ratio |", "| --- | --- | --- | --- | --- |"]
    for m in methods:
        sel = [r for r in rows if r["method"] == m]
        lines.append(f"| {m} | {np.mean([r['ssim'] for r in sel]):.3f} | {np.mean([r['ssim_object'] for r in sel]):.3f} | "
                     f"{np.nanmean([r['ssim_background'] for r in sel]):.3f} | {np.mean([r['background_mean_ratio'] for r in sel]):.2f} |")
    lines += ["", "Command:", "", "```sh", command, "```", ""]
    write_results(args.stem, {"rows": rows, "command": command}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
