"""Fix the noise-rule factors and the CG stopping of `spirit` on the tuning split (seeds 2000+).

For each tuning volume (simulated phantom and MNI152 real-anatomy template) at 4x and 8x with
its validation-seeded random mask, this script calibrates SPIRiT kernels (`default_kernel`)
with the calibration noise rule `lam0 = c_cal m sigma^2`, sets the k-space prior's weights
`c_prior sigma_e^2 / P(k)` (`recon.methods.spirit.prior_weights`), runs CG and scores fastMRI
SSIM at several iteration counts and where the default stop (`ITERS`, `TOL`) ends; `none` is
plain SPIRiT (no prior). Zero-filled beside. It reads data made by `recon simulate` and
refuses any file outside the tuning seeds. Usage:

    recon simulate DIR/phantom --preset small --volumes 4 --slices 2 --seed 2000
    recon simulate DIR/mni152 --source mni152 --preset small --volumes 4 --slices 2 --seed 2000
    OMP_NUM_THREADS=1 python benchmarks/tune_spirit.py --data DIR/phantom DIR/mni152
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from _common import calib_region, write_results
from recon.alg import conjugate_gradient
from recon.calib.spirit import SpiritOperator, spirit_calibrate
from recon.core import center_crop, ifft2c, rss
from recon.methods.spirit_fill import ITERS, TOL, default_kernel, known_locations, prior_weights
from recon.noise import noise_sigma
from recon.metrics import ssim
from tune_rules import tuning_args, tuning_cases

#: (c_cal, c_prior); c_prior None = no prior.
GRID: tuple[tuple[float, float | None], ...] = ((1.0, 0.3), (1.0, 1.0), (1.0, 3.0), (0.1, 1.0), (1.0, None))
CHECKPOINTS = (5, 10, 20, 30)


def run(kspace: torch.Tensor, mask: torch.Tensor, region: tuple[int, int], c_cal: float, c_prior: float | None, target: np.ndarray, crop: tuple[int, int]) -> dict[str, float]:
    """SSIM at each checkpoint and at the default stop (`stop`: mean iterations), volume-wide."""
    calib = torch.tensor([region])
    sigma = noise_sigma(kspace, mask.expand(kspace.shape[0], 1, 1, -1)).double()
    images: dict[str, list[np.ndarray]] = {}
    stops = []
    for b in range(kspace.shape[0]):
        y = kspace[b : b + 1]
        kern = spirit_calibrate(y, calib, default_kernel(region[1] - region[0]), c_cal, sigma[b : b + 1])
        op = SpiritOperator.from_kernel(kern, tuple(y.shape[-2:]))
        known = known_locations(y, mask)
        unknown = ~known
        weights = None if c_prior is None else prior_weights(y, known, op, sigma[b : b + 1], c_prior)
        last = {"it": 0}

        def project(u: torch.Tensor) -> torch.Tensor:
            return torch.where(unknown, u, torch.zeros((), dtype=u.dtype))

        def normal_op(u: torch.Tensor, op: SpiritOperator = op, weights: torch.Tensor | None = weights) -> torch.Tensor:
            u = project(u)
            return project(op.normal(u) + (0 if weights is None else weights * u))

        def image(u: torch.Tensor, y: torch.Tensor = y) -> np.ndarray:
            return center_crop(rss(ifft2c(y + project(u)), 1), crop)[0].numpy()

        def callback(it: int, u: torch.Tensor, last: dict = last) -> bool:
            last["it"] = it
            if it in CHECKPOINTS:
                images.setdefault(f"it{it}", []).append(image(u))
            return False

        u = conjugate_gradient(normal_op, -project(op.normal(y)), ITERS, TOL, callback=callback)
        images.setdefault("stop", []).append(image(u))
        stops.append(last["it"])
        for it in CHECKPOINTS:  # stopped before a checkpoint: its image is the final one
            if len(images.get(f"it{it}", [])) < b + 1:
                images.setdefault(f"it{it}", []).append(image(u))
    out = {key: ssim(target, np.stack(v).astype(np.float32)) for key, v in images.items()}
    out["iters"] = float(np.mean(stops))
    return out


def main() -> int:
    args = tuning_args(__doc__.splitlines()[0], "tune_spirit")
    rows: list[dict[str, Any]] = []
    for path, accel, target, batch, base, zf_ssim in tuning_cases(args):
        rows.append({**base, "c_cal": None, "c_prior": None, "key": "zero-filled", "ssim": zf_ssim})
        for c_cal, c_prior in GRID:
            result = run(batch.masked_kspace, batch.mask[:1], calib_region(batch), c_cal, c_prior, target, batch.crop_size)
            for key, value in result.items():
                rows.append({**base, "c_cal": c_cal, "c_prior": str(c_prior), "key": key, "ssim" if key != "iters" else "iters": value})
        print(path.name, accel, "done", flush=True)
    lines = ["# SPIRiT noise rules on the tuning split (seeds 2000+)", "",
             "Mean fastMRI SSIM over tuning volumes, random masks, `default_kernel`; `c_cal`: calibration noise factor, "
             "`c_prior`: k-space prior factor (`None`: plain SPIRiT); `itN`: CG stopped after N iterations; "
             f"`stop`: the default stop ({ITERS} iterations or relative residual {TOL}), mean iterations in `iters`.", "",
             "| source | accel | c_cal | c_prior | zero-filled | " + " | ".join(f"it{n}" for n in CHECKPOINTS) + " | stop | iters |",
             "|" + " --- |" * (7 + len(CHECKPOINTS))]
    for source in sorted({r["source"] for r in rows}):
        for accel in args.accels:
            sel = [r for r in rows if r["source"] == source and r["accel"] == accel]
            zf = np.mean([r["ssim"] for r in sel if r["key"] == "zero-filled"])
            for c_cal, c_prior in GRID:

                def mean(key: str, field: str = "ssim", c_cal: float = c_cal, c_prior: float | None = c_prior) -> float:
                    return float(np.mean([r[field] for r in sel if r["c_cal"] == c_cal and r["c_prior"] == str(c_prior) and r["key"] == key]))

                cells = " | ".join(f"{mean(f'it{n}'):.4f}" for n in CHECKPOINTS)
                lines.append(f"| {source} | {accel}x | {c_cal} | {c_prior} | {zf:.4f} | {cells} | {mean('stop'):.4f} | {mean('iters', 'iters'):.1f} |")
    lines += ["", "Command: `OMP_NUM_THREADS=1 python benchmarks/tune_spirit.py --data " + " ".join(str(d) for d in args.data) + "`", ""]
    write_results(args.out, {"rows": rows}, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
