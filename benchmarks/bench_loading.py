"""Data-loading throughput of the loader `recon train` uses (recon.data) vs fastMRI's, and against VarNet's consumption.

Both modes read fastMRI-format multi-coil files (default 15 coils x 640 x 368, random k-space
written with `recon.io.write_fastmri_volume` to a temporary folder, so they sit in the OS page
cache: the loaders are timed on HDF5 decoding, masking and hand-over, not on disk reads).

Comparison mode (default): recon's `SliceDataset` + `VarNetTransform` (the dataset and transform
of `recon train`, its validation, `recon benchmark` and `recon reconstruct`) against fastMRI's
`SliceDataset` + `VarNetDataTransform` through a torch DataLoader (batch_size=None) with
`--workers` (default 0 and 2), applying the same file-name-seeded random 4x mask. Nothing is
cached across items: every item reads its slice from the HDF5 file. One pass (untimed) checks
that both loaders yield identical samples; then each configuration is timed over `--repeats`
passes and the best pass is reported (slices per second). Writes `loading.json` / `loading.md`.

Consumer mode (`--consumer`): is the model starved by the data loading of `recon train`? On
`--device` it times, in slices per second (batch 1, as fastMRI trains):

* model alone: `recon.models.VarNet` (built by `recon.train.build_model`, fastMRI defaults)
  repeating (a) the training loop's step (forward, center crop, `recon.metrics.SSIMLoss` with
  the file's `max` as data range, backward, Adam step, loss read back) and (b) inference
  (no grad) on one sample already on the device;
* loader alone: `recon.train.loop.training_slices` + `recon.data.collate` (the training loop's
  dataset and `(seed, epoch, index)` masks) through a DataLoader with N workers (pinned memory on CUDA, persistent workers and
  `--prefetch` batches per worker when N > 0), each batch copied `.to(device, non_blocking=True)`;
* fed: the same loader feeding the training step, as `recon train` runs.

A verdict per N says "GPU starved" when the fed rate is below 0.9 x the model-alone rate.
Each stream is timed after `--warmup` steps (plus N x prefetch for a loader, so that batches
queued during warm-up do not count). Writes `loading_feed_<device>[_bf16].json` / `.md`, where
<device> is the slug of `torch.cuda.get_device_name()` or `cpu`.

Usage:
    python benchmarks/bench_loading.py [--files 4 --slices 6 --repeats 3]   # recon vs fastMRI
    python benchmarks/bench_loading.py --consumer [--bf16] [--workers 0 2 4 8]  # on CUDA if present
    python benchmarks/bench_loading.py --consumer --dry-run [--device cuda]  # tiny: checks the script
Results go to `--out-dir` (default benchmarks/results; with `--dry-run` a new temporary folder).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from _common import slug, sync
from recon import ops
from recon.data import Sample, SliceDataset, VarNetTransform, collate
from recon.io import build_header, write_fastmri_volume
from recon.masks import create_mask_func
from recon.metrics import SSIMLoss
from recon.models import VarNet
from recon.train import TrainConfig, batch_loss, build_model
from recon.train.loop import training_slices

RESULTS = Path(__file__).parent / "results"
COILS, ROWS, WIDTH = 15, 640, 368
STARVED_BELOW = 0.9
FULL = {"files": 4, "slices": 6, "repeats": 3, "coils": COILS, "rows": ROWS, "cols": WIDTH,
        "cascades": 12, "chans": 18, "pools": 4, "sens_chans": 8, "sens_pools": 4, "steps": 40, "warmup": 5}
TINY = {"files": 2, "slices": 3, "repeats": 1, "coils": 4, "rows": 64, "cols": 48,
        "cascades": 2, "chans": 4, "pools": 2, "sens_chans": 2, "sens_pools": 2, "steps": 4, "warmup": 2}


def write_files(folder: Path, files: int, slices: int, coils: int = COILS, rows: int = ROWS,
                width: int = WIDTH) -> list[Path]:
    """Multi-coil files with fastMRI's knee header layout and a target (320 x 320 at full size)."""
    rng = np.random.default_rng(0)
    crop = min(320, rows // 2, width)
    pad = round(17 * width / WIDTH)
    header = build_header((rows, width, 1), (crop, crop, 1), enc_limits_center=width // 2 - pad,
                          enc_limits_max=width - 2 * pad - 1)
    paths = []
    for f in range(files):
        shape = (slices, coils, rows, width)
        kspace = (rng.standard_normal(shape, np.float32) + 1j * rng.standard_normal(shape, np.float32)).astype(np.complex64)
        kspace[..., :pad] = 0
        kspace[..., width - pad :] = 0
        target = rng.random((slices, crop, crop), np.float32)
        path = folder / f"file{1000000 + f}.h5"
        attrs = {"acquisition": "CORPD_FBK", "max": float(target.max()), "norm": 1.0, "patient_id": f"p{f}"}
        write_fastmri_volume(path, kspace, header, target=target, attrs=attrs)
        paths.append(path)
    return paths


def make_ours(folder: Path, cache: Path) -> torch.utils.data.Dataset:
    """recon's slice dataset (the one `recon train` uses) with a file-seeded 4x random mask."""
    return SliceDataset(folder, VarNetTransform(create_mask_func("random", [0.08], [4])), cache_file=cache)


def make_fastmri(folder: Path, cache: Path) -> torch.utils.data.Dataset:
    """fastMRI's slice dataset with the same mask (fastMRI is imported only in comparison mode)."""
    from fastmri.data.mri_data import SliceDataset as FastMRISliceDataset
    from fastmri.data.subsample import RandomMaskFunc
    from fastmri.data.transforms import VarNetDataTransform

    transform = VarNetDataTransform(RandomMaskFunc([0.08], [4]), use_seed=True)
    return FastMRISliceDataset(folder, "multicoil", transform, use_dataset_cache=False, dataset_cache_file=cache)


def check_identical(ours: torch.utils.data.Dataset, theirs: torch.utils.data.Dataset) -> int:
    """Assert both datasets yield the same samples; returns the number compared."""
    assert len(ours) == len(theirs)
    for i in range(len(ours)):
        a, b = ours[i], theirs[i]
        assert torch.equal(a.masked_kspace, torch.view_as_complex(b.masked_kspace)), i
        assert torch.equal(a.mask.view(-1), b.mask.view(-1)), i
        assert a.num_low_frequencies == b.num_low_frequencies and a.max_value == b.max_value, i
        assert torch.equal(a.target, b.target) and a.crop_size == tuple(b.crop_size), i
        assert (a.fname, a.slice_num) == (b.fname, b.slice_num), i
    return len(ours)


def time_loader(dataset: torch.utils.data.Dataset, workers: int, repeats: int) -> tuple[float, float]:
    """Best slices/s over `repeats` full passes of a DataLoader: (whole pass including worker
    start-up, steady state from the first sample on, i.e. what a training loop sees per epoch
    with persistent workers)."""
    best_total, best_steady = 0.0, 0.0
    for _ in range(repeats):
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)
        start = time.perf_counter()
        first = None
        count = 0
        for _sample in loader:
            count += 1
            if first is None:
                first = time.perf_counter()
        end = time.perf_counter()
        best_total = max(best_total, count / (end - start))
        best_steady = max(best_steady, (count - 1) / (end - first))
    return best_total, best_steady


def compare(args: argparse.Namespace, out_dir: Path) -> None:
    """recon.data vs fastMRI loader throughput; writes loading.json / loading.md."""
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="bench_loading_") as tmp:
        folder = Path(tmp) / "multicoil_val"
        folder.mkdir()
        write_files(folder, args.files, args.slices, args.coils, args.rows, args.cols)
        makers: dict[str, Callable[[Path, Path], torch.utils.data.Dataset]] = {"recon": make_ours, "fastmri": make_fastmri}
        datasets = {name: make(folder, Path(tmp) / f"{name}_cache") for name, make in makers.items()}
        compared = check_identical(datasets["recon"], datasets["fastmri"])
        rows: list[dict[str, Any]] = []
        for workers in args.workers:
            rate = {name: time_loader(ds, workers, args.repeats) for name, ds in datasets.items()}
            rows.append({"num_workers": workers,
                         "recon_slices_per_s": rate["recon"][0], "fastmri_slices_per_s": rate["fastmri"][0],
                         "speedup": rate["recon"][0] / rate["fastmri"][0],
                         "recon_steady_slices_per_s": rate["recon"][1], "fastmri_steady_slices_per_s": rate["fastmri"][1],
                         "steady_speedup": rate["recon"][1] / rate["fastmri"][1]})
    payload = {
        "benchmark": "data loading, VarNet samples (4x random mask, file-name seeded): recon.data.SliceDataset "
                     "+ VarNetTransform (the dataset of recon train, benchmark and reconstruct) vs fastMRI",
        "data": {"files": args.files, "slices_per_file": args.slices, "coils": args.coils, "rows": args.rows,
                 "cols": args.cols, "slice_mb": args.coils * args.rows * args.cols * 8 / 2**20},
        "identical_samples_checked": compared,
        "repeats": args.repeats,
        "results": rows,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(),
                    "torch": torch.__version__},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "loading.json").write_text(json.dumps(payload, indent=2) + "\n")
    lines = [
        "# Data loading: recon.data (the loader `recon train` uses) vs fastMRI",
        "",
        f"{args.files} files x {args.slices} slices, {args.coils} coils x {args.rows} x {args.cols} complex64 "
        f"({payload['data']['slice_mb']:.1f} MiB per slice), VarNet samples with a file-seeded 4x random mask; "
        f"best of {args.repeats} passes; {compared} samples checked identical. "
        f"Machine: {os.cpu_count()} CPUs (shared), load average {os.getloadavg()[0]:.2f}.",
        "",
        "Whole pass = slices / time of one DataLoader pass including worker start-up; steady = from the first "
        "sample on (what an epoch with persistent workers sees). Workers receive each sample through shared "
        "memory; recon's transform writes the masked k-space there directly.",
        "",
        "| num_workers | recon whole pass | fastMRI whole pass | speedup | recon steady | fastMRI steady | speedup |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        *[f"| {r['num_workers']} | {r['recon_slices_per_s']:.1f} | {r['fastmri_slices_per_s']:.1f} | {r['speedup']:.2f}x "
          f"| {r['recon_steady_slices_per_s']:.1f} | {r['fastmri_steady_slices_per_s']:.1f} | {r['steady_speedup']:.2f}x |" for r in rows],
        "",
        "Slices per second; best of the passes.",
        "",
    ]
    (out_dir / "loading.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out_dir / 'loading'}.json and .md")


class Trainer:
    """The training loop's optimizer step (accumulate 1) and an inference step on one VarNet."""

    def __init__(self, model: VarNet, config: TrainConfig) -> None:
        self.model = model
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.loss_fn = SSIMLoss()

    def train_step(self, batch: Sample) -> float:
        """Forward, crop, SSIM loss, backward, Adam step; returns the loss (a sync, as in the loop)."""
        self.model.train()
        loss = batch_loss(self.model, batch, self.loss_fn)
        loss.backward()
        value = float(loss.detach())
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return value

    @torch.no_grad()
    def infer(self, batch: Sample) -> torch.Tensor:
        """Reconstruct the batch without gradients."""
        self.model.eval()
        return self.model(batch.masked_kspace, batch.mask, calib=batch.calib)


def time_repeat(step: Callable[[], Any], device: torch.device, warmup: int, steps: int) -> float:
    """Calls per second of `step` over `steps` calls after `warmup` calls."""
    for _ in range(warmup):
        step()
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps / (time.perf_counter() - start)


def time_stream(loader: torch.utils.data.DataLoader, consume: Callable[[Sample], Any],
                device: torch.device, warmup: int) -> float:
    """Batches per second of one pass of `loader` through `consume`, after `warmup` batches."""
    batches = iter(loader)
    for _ in range(warmup):
        consume(next(batches))
    sync(device)
    start = time.perf_counter()
    count = 0
    for batch in batches:
        consume(batch)
        count += 1
    sync(device)
    return count / (time.perf_counter() - start)


def make_loader(dataset: SliceDataset, keys: list[tuple[int, int]], workers: int, device: torch.device,
                prefetch: int) -> torch.utils.data.DataLoader:
    """The training loop's DataLoader (batch 1, `collate`) with pinning, persistence and prefetch."""
    extra: dict[str, Any] = {"persistent_workers": True, "prefetch_factor": prefetch} if workers > 0 else {}
    return torch.utils.data.DataLoader(dataset, batch_size=1, sampler=keys, collate_fn=collate, num_workers=workers,
                                       pin_memory=device.type == "cuda", **extra)


def feed(args: argparse.Namespace, out_dir: Path) -> None:
    """Model-alone, loader-alone and fed training rates per worker count; writes loading_feed_*."""
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_loading: --device cuda but torch sees no CUDA device")
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    stem = f"loading_feed_{slug(device_name)}" + ("_bf16" if args.bf16 else "")
    tmp = Path(tempfile.mkdtemp(prefix="bench_loading_feed_"))
    try:
        folder = tmp / "train"
        folder.mkdir()
        start = time.perf_counter()
        write_files(folder, args.files, args.slices, args.coils, args.rows, args.cols)
        print(f"wrote {args.files} x {args.slices} slices in {time.perf_counter() - start:.1f} s", flush=True)
        config = TrainConfig(data=folder, out=tmp / "run", num_cascades=args.cascades, chans=args.chans,
                             pools=args.pools, sens_chans=args.sens_chans, sens_pools=args.sens_pools,
                             mixed_precision="bf16" if args.bf16 else "none", device=str(device))
        mask_func = create_mask_func(config.mask_type, config.center_fractions, config.accelerations)
        dataset = training_slices(folder, VarNetTransform(mask_func, use_seed=False, seed=config.seed), seed=config.seed)
        trainer = Trainer(build_model(config).to(device), config)
        sample = collate([dataset[(0, 0)]]).to(device)
        backend = ops.backend_for(sample.masked_kspace)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train_rate = time_repeat(lambda: trainer.train_step(sample), device, args.warmup, args.steps)
        peak_gib = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
        infer_rate = time_repeat(lambda: trainer.infer(sample), device, args.warmup, args.steps)
        print(f"model alone: training {train_rate:.2f} slices/s, inference {infer_rate:.2f} slices/s "
              f"(ops backend {backend})", flush=True)
        rows: list[dict[str, Any]] = []
        for workers in args.workers:
            warmup = args.warmup + workers * args.prefetch
            keys = [(i % len(dataset), 0) for i in range(warmup + args.steps)]
            row: dict[str, Any] = {"num_workers": workers, "warmup_batches": warmup, "timed_batches": args.steps}
            loader = make_loader(dataset, keys, workers, device, args.prefetch)
            try:
                row["loader_slices_per_s"] = time_stream(loader, lambda b: b.to(device), device, warmup)
                row["fed_slices_per_s"] = time_stream(loader, lambda b: trainer.train_step(b.to(device)),
                                                      device, warmup)
            except RuntimeError as err:
                row["error"] = str(err).splitlines()[0]
            finally:
                del loader
            if "error" not in row:
                row["fed_over_model"] = row["fed_slices_per_s"] / train_rate
                row["loader_over_model"] = row["loader_slices_per_s"] / train_rate
                row["verdict"] = (f"{'GPU' if device.type == 'cuda' else 'model'} starved"
                                  if row["fed_over_model"] < STARVED_BELOW else "keeps up")
                print(f"num_workers {workers}: loader {row['loader_slices_per_s']:.2f}, fed "
                      f"{row['fed_slices_per_s']:.2f} slices/s ({row['fed_over_model']:.2f} x model): "
                      f"{row['verdict']}", flush=True)
            else:
                print(f"num_workers {workers}: failed: {row['error']}", flush=True)
            rows.append(row)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    model_kwargs = config.model_kwargs()
    payload = {
        "benchmark": "data loading feeding VarNet training (recon.data.SliceDataset as recon train builds it, batch 1)",
        "device": device_name,
        "data": {"files": args.files, "slices_per_file": args.slices, "coils": args.coils, "rows": args.rows,
                 "cols": args.cols, "slice_mb": args.coils * args.rows * args.cols * 8 / 2**20},
        "model": {**model_kwargs, "mixed_precision": config.mixed_precision, "ops_backend": backend,
                  "train_slices_per_s": train_rate, "inference_slices_per_s": infer_rate,
                  "train_peak_gib": peak_gib},
        "loader": {"pin_memory": device.type == "cuda", "prefetch_factor": args.prefetch,
                   "persistent_workers": "when num_workers > 0"},
        "warmup": args.warmup, "steps": args.steps, "starved_below": STARVED_BELOW,
        "results": rows,
        "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "loadavg": os.getloadavg(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "dev_shm_gib": shutil.disk_usage("/dev/shm").total / 2**30 if os.path.isdir("/dev/shm") else None},
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")
    peak = f", peak memory {peak_gib:.1f} GiB" if peak_gib is not None else ""
    lines = [
        f"# Data loading feeding VarNet training on {device_name}",
        "",
        f"{args.files} files x {args.slices} slices, {args.coils} coils x {args.rows} x {args.cols} complex64 "
        f"({payload['data']['slice_mb']:.1f} MiB per slice) in the page cache; `recon.data.SliceDataset` "
        f"+ `collate` as `recon train` builds them, batch 1, random 4x/8x masks. Model: VarNet {model_kwargs}, U-Nets in "
        f"{'bf16' if args.bf16 else 'fp32'}, ops backend {backend}. Machine: {os.cpu_count()} CPUs, "
        f"torch {torch.__version__}.",
        "",
        f"Model alone (one sample on the device): training step {train_rate:.2f} slices/s "
        f"({1000 / train_rate:.0f} ms){peak}; inference {infer_rate:.2f} slices/s ({1000 / infer_rate:.0f} ms).",
        "",
        f"Loader alone: batches copied `.to(device, non_blocking=True)`"
        f"{' from pinned memory' if device.type == 'cuda' else ''}; "
        f"fed: the same loader feeding the training step (forward, SSIM loss, backward, Adam, loss read back). "
        f"Persistent workers, prefetch factor {args.prefetch}; {args.steps} batches timed after "
        f"{args.warmup} + num_workers x {args.prefetch} warm-up batches. Starved: fed < {STARVED_BELOW} x model alone.",
        "",
        "| num_workers | loader alone | fed training | model alone | fed / model | loader / model | verdict |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['num_workers']} | failed | | {train_rate:.2f} | | | {r['error']} |")
        else:
            lines.append(f"| {r['num_workers']} | {r['loader_slices_per_s']:.2f} | {r['fed_slices_per_s']:.2f} "
                         f"| {train_rate:.2f} | {r['fed_over_model']:.2f} | {r['loader_over_model']:.2f} "
                         f"| {r['verdict']} |")
    lines += ["", "Slices per second.", ""]
    (out_dir / f"{stem}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out_dir / stem}.json and .md")


def main(argv: list[str] | None = None) -> None:
    """Parse the options, fill size defaults (full or `--dry-run`), run the chosen mode."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=None, help="files written (default 4; dry run 2)")
    parser.add_argument("--slices", type=int, default=None, help="slices per file (default 6; dry run 3)")
    parser.add_argument("--coils", type=int, default=None, help=f"default {COILS}")
    parser.add_argument("--rows", type=int, default=None, help=f"default {ROWS}")
    parser.add_argument("--cols", type=int, default=None, help=f"default {WIDTH}")
    parser.add_argument("--repeats", type=int, default=None, help="comparison mode: passes per loader (default 3)")
    parser.add_argument("--workers", type=int, nargs="+", default=None,
                        help="DataLoader workers (default 0 2; consumer mode 0 2 4 8 up to the CPU count)")
    parser.add_argument("--consumer", action="store_true", help="time the loader against VarNet training")
    parser.add_argument("--device", default=None,
                        help="consumer mode device (default cuda if available, else cpu; dry run cpu)")
    parser.add_argument("--bf16", action="store_true", help="consumer mode: U-Nets in bfloat16")
    parser.add_argument("--cascades", type=int, default=None, help="VarNet num_cascades (default 12)")
    parser.add_argument("--chans", type=int, default=None, help="VarNet chans (default 18)")
    parser.add_argument("--pools", type=int, default=None, help="VarNet pools (default 4)")
    parser.add_argument("--sens-chans", type=int, default=None, help="VarNet sens_chans (default 8)")
    parser.add_argument("--sens-pools", type=int, default=None, help="VarNet sens_pools (default 4)")
    parser.add_argument("--steps", type=int, default=None, help="consumer mode: timed steps/batches (default 40)")
    parser.add_argument("--warmup", type=int, default=None, help="consumer mode: warm-up steps (default 5)")
    parser.add_argument("--prefetch", type=int, default=2, help="consumer mode: prefetch_factor per worker")
    parser.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results (dry run: a temp dir)")
    parser.add_argument("--dry-run", action="store_true", help="tiny data and model on the CPU: checks the script")
    args = parser.parse_args(argv)
    for key, value in (TINY if args.dry_run else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if args.workers is None:
        choices = [0, 2, 4, 8] if args.consumer and not args.dry_run else [0, 2]
        args.workers = [w for w in choices if w <= (os.cpu_count() or 1)]
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="bench_loading_out_")) if args.dry_run else RESULTS)
    (feed if args.consumer else compare)(args, out_dir)


if __name__ == "__main__":
    main()
