"""Shared helpers of the baseline benchmark scripts: simulated slices, undersampled batches, scores, output."""

from __future__ import annotations

import json
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
import torch

from recon.io.fastmri import write_fastmri_volume
from recon.io.scan import read_target
from recon.masks import Seed
from recon.methods import ReconBatch
from recon.metrics import nmse, psnr, ssim
from recon.pipeline import open_file, slice_batch
from recon.simulate.dataset import simulate_dataset
from recon.simulate.volume import SimConfig, SimVolume

RESULTS = Path(__file__).parent / "results"


def simulated_slices(out_dir: Path, seed: int, volumes: int, slices: int, coils: int = 15, width: int = 368, rows: int = 640) -> list[Path]:
    """fastMRI-format simulated volumes (cached in `out_dir`): `rows` x `width`, `coils` coils."""
    config = SimConfig(rows=rows, widths=(width,), coils=coils, slices=slices)
    return simulate_dataset(out_dir, volumes, slices, coils, seed, config=config)


class Undersampled(NamedTuple):
    """A volume as the methods get it: every slice in one CPU `ReconBatch`, and its target `(S, h, w)`."""

    batch: ReconBatch
    target: np.ndarray


def undersampled(path: Path, acceleration: float, mask_type: str = "random", seed: Seed = None) -> Undersampled:
    """The volume at `path` undersampled by `recon.pipeline` exactly as `recon reconstruct` and
    `recon benchmark` undersample it: `mask_type` at `acceleration` with the default centre
    fraction, seeded by the file name unless `seed` is given."""
    with open_file(path, float(acceleration), None, mask_type, seed=seed) as data:
        batch = slice_batch(data, 0, len(data), torch.device("cpu"))
    return Undersampled(batch, read_target(path)[0])


def simulated_batch(volume: SimVolume, acceleration: float, mask_type: str = "random", seed: Seed = None) -> ReconBatch:
    """An in-memory simulated volume undersampled by `recon.pipeline`: written to a temporary
    fastMRI file and read back through `undersampled` (same masks as that file would get)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "file_sim.h5"
        write_fastmri_volume(path, volume.kspace, volume.header_xml, volume.target, volume.attrs)
        return undersampled(path, acceleration, mask_type, seed).batch


def calib_region(batch: ReconBatch) -> tuple[int, int]:
    """The batch's calibration column region `[start, stop)`, the same for every slice."""
    start, stop = (int(v) for v in batch.calib[0])
    return start, stop


def num_low(batch: ReconBatch) -> int:
    """Width of the batch's calibration region (the ACS columns)."""
    start, stop = calib_region(batch)
    return stop - start


def column_mask(batch: ReconBatch) -> np.ndarray:
    """The batch's sampled columns, bool `(W,)` (the same for every slice)."""
    return batch.mask[0].reshape(-1, batch.mask.shape[-1]).any(0).numpy()


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


def median_time(run: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median wall time of `repeats` calls of `run` after one warm-up call, every time, and the
    last result."""
    out = run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, out


def write_results(stem: str, payload: dict[str, Any], markdown: str, out_dir: Path | None = None) -> Path:
    """Write `<out_dir>/<stem>.json` and `<out_dir>/<stem>.md` (default `benchmarks/results`); returns out_dir."""
    out_dir = RESULTS if out_dir is None else out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=float) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown)
    return out_dir
