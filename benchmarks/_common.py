"""Shared helpers of the baseline benchmark scripts: simulated slices, masks, scores, output."""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recon.acquisition import centered_region
from recon.io.fastmri import read_volume
from recon.masks import make_mask, seed_from_filename
from recon.methods import ReconBatch
from recon.metrics import nmse, psnr, ssim
from recon.simulate.dataset import simulate_dataset
from recon.simulate.volume import SimConfig

CENTER_FRACTIONS = {4: 0.08, 8: 0.04}
RESULTS = Path(__file__).parent / "results"


def simulated_slices(out_dir: Path, seed: int, volumes: int, slices: int, coils: int = 15, width: int = 368, rows: int = 640) -> list[Path]:
    """fastMRI-format simulated volumes (cached in `out_dir`): `rows` x `width`, `coils` coils."""
    config = SimConfig(rows=rows, widths=(width,), coils=coils, slices=slices)
    return simulate_dataset(out_dir, volumes, slices, coils, seed, config=config)


def undersample(path: Path, acceleration: int) -> dict[str, Any]:
    """Volume at `path` with its validation-seeded random mask (fastMRI knee setting).

    Returns kspace `(S, C, H, W)` complex64 (masked), mask `(W,)` bool, nlow, target
    `(S, h, w)` float32 and crop size.
    """
    kspace, target, info = read_volume(path)
    width = kspace.shape[-1]
    mask, nlow = make_mask("random", width, acceleration, CENTER_FRACTIONS[acceleration], seed_from_filename(path.name))
    left, right = info.padding
    mask = mask.astype(bool).copy()
    mask[:left] = False
    mask[right:] = False
    return {"kspace": (kspace * mask + 0.0).astype(np.complex64), "mask": mask, "nlow": int(nlow), "target": target, "crop": tuple(info.crop_size)}


def recon_batch(kspace: torch.Tensor, mask: torch.Tensor, nlow: int, crop: tuple[int, int]) -> ReconBatch:
    """The methods' `ReconBatch` of masked k-space `(S, C, H, W)` with one sampled-column mask
    (any shape ending in `W`) shared by every slice and a centred ACS block of `nlow` columns."""
    slices, width = kspace.shape[0], kspace.shape[-1]
    return ReconBatch(kspace, mask.reshape(1, 1, 1, width).expand(slices, 1, 1, width),
                      torch.tensor([centered_region(width, nlow)] * slices), crop)


def scores(target: np.ndarray, image: np.ndarray) -> dict[str, float]:
    """fastMRI SSIM / PSNR / NMSE of a `(S, h, w)` reconstruction against its target."""
    return {"ssim": ssim(target, image), "psnr": psnr(target, image), "nmse": nmse(target, image)}


def machine() -> dict[str, Any]:
    """Where a timing was taken."""
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
        "torch": torch.__version__,
    }


def slug(text: str) -> str:
    """Lower-case file-name slug of a device name: `NVIDIA H100 80GB HBM3` -> `nvidia_h100_80gb_hbm3`."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); no-op on the CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def write_results(stem: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None) -> Path:
    """Write `<out_dir>/<stem>.json` and `<out_dir>/<stem>.md` (default `benchmarks/results`); returns out_dir."""
    out_dir = RESULTS if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown)
    return out_dir
