"""Training throughput: `recon train`'s loop against a fastMRI-style loop, samples per second, one run.

Both loops train the same `recon.models.VarNet` (same initial weights, Adam, SSIM loss with the
file's `max` as data range, batch 1) on the same fastMRI-format multi-coil files (written by
`bench_loading.write_files` into a temporary folder, so they sit in the page cache), with random
4x/8x training masks:

* recon: the training loop's data and step as `recon.train` runs them: `training_slices`
  (`recon.data.SliceDataset` + `VarNetTransform`, masks seeded by `(seed, epoch, index)`),
  `recon.data.collate`, `check_training_batch`, `batch_loss`, the finite-loss and
  finite-gradient checks, Adam step; sample logging off (no parameter digest);
* fastMRI-style: `fastmri.data.SliceDataset` + `fastmri.data.transforms.VarNetDataTransform`
  (`RandomMaskFunc`, unseeded as fastMRI trains) through a DataLoader with the default collate,
  its real-valued k-space viewed as complex for the same model, the same loss and step.

The two loops alternate `--repeats` times (`--steps` timed steps after `--warmup`, each) and the
best rate of each is reported with the ratio. Writes `train_throughput_<device>.json` / `.md`.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_train_throughput.py [--steps 12 --repeats 2]
    python benchmarks/bench_train_throughput.py --dry-run     # tiny: checks the script
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from _common import machine, slug, sync, write_results
from bench_loading import write_files
from recon.method_checks import check_training_batch
from recon.data import VarNetTransform, collate
from recon.masks import create_mask_func
from recon.metrics import SSIMLoss
from recon.train import TrainConfig, batch_loss, build_model
from recon.train.loop import _finite_grads, training_slices

FULL = {"files": 2, "slices": 4, "coils": 8, "rows": 320, "cols": 184, "cascades": 4, "chans": 8, "pools": 3,
        "sens_chans": 4, "sens_pools": 2, "steps": 12, "warmup": 2, "repeats": 2}
TINY = {"files": 2, "slices": 2, "coils": 4, "rows": 64, "cols": 48, "cascades": 1, "chans": 4, "pools": 2,
        "sens_chans": 2, "sens_pools": 2, "steps": 2, "warmup": 1, "repeats": 1}


def recon_batches(folder: Path, config: TrainConfig, workers: int) -> Iterator[Any]:
    """`recon train`'s batches, epoch after epoch (keys `(index, epoch)`, as the loop builds them)."""
    mask_func = create_mask_func(config.mask_type, config.center_fractions, config.accelerations)
    dataset = training_slices(folder, VarNetTransform(mask_func, use_seed=False, seed=config.seed), seed=config.seed)
    epoch = 0
    while True:
        keys = [(i, epoch) for i in range(len(dataset))]
        yield from torch.utils.data.DataLoader(dataset, batch_size=1, sampler=keys, collate_fn=collate,
                                               num_workers=workers)
        epoch += 1


def fastmri_batches(folder: Path, workers: int) -> Iterator[Any]:
    """fastMRI's training batches (VarNetDataTransform, default collate), pass after pass."""
    from fastmri.data.mri_data import SliceDataset as FastMRISliceDataset
    from fastmri.data.subsample import RandomMaskFunc
    from fastmri.data.transforms import VarNetDataTransform

    dataset = FastMRISliceDataset(folder, "multicoil", VarNetDataTransform(RandomMaskFunc([0.08, 0.04], [4, 8])),
                                  use_dataset_cache=False)
    while True:
        yield from torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers)


def recon_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: SSIMLoss, device: torch.device) -> Callable[[Any], float]:
    """One optimizer step of the training loop (accumulate 1) on a collated `recon.data.Sample`."""

    def step(batch: Any) -> float:
        check_training_batch(batch)
        loss = batch_loss(model, batch.to(device), loss_fn)
        if not bool(torch.isfinite(loss.detach())):
            raise RuntimeError("non-finite loss")
        loss.backward()
        value = float(loss.detach())
        if not _finite_grads(model):
            raise RuntimeError("non-finite gradients")
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return value

    return step


def fastmri_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn: SSIMLoss, device: torch.device) -> Callable[[Any], float]:
    """fastMRI's `VarNetModule.training_step` on its `VarNetSample` batch, same model and loss."""
    from recon.core import center_crop

    def step(batch: Any) -> float:
        kspace = torch.view_as_complex(batch.masked_kspace.to(device).contiguous())
        mask = batch.mask.to(device)[..., 0].bool()
        pred = model(kspace, mask, batch.num_low_frequencies)
        target = batch.target.to(device)
        pred = center_crop(pred, target.shape[-2:])
        loss = loss_fn(pred.unsqueeze(1), target.unsqueeze(1), batch.max_value.to(device))
        loss.backward()
        value = float(loss.detach())
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return value

    return step


def time_loop(batches: Iterator[Any], step: Callable[[Any], float], device: torch.device, warmup: int, steps: int) -> float:
    """Samples per second of `steps` steps (data loading included) after `warmup` steps."""
    for _ in range(warmup):
        step(next(batches))
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        step(next(batches))
    sync(device)
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for key, value in FULL.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=int, default=None, help=f"default {value}")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers of both loops")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--dry-run", action="store_true", help="tiny data and model: checks the script")
    parser.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results (dry run: a temp dir)")
    args = parser.parse_args(argv)
    for key, value in (TINY if args.dry_run else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rates: dict[str, list[float]] = {"recon": [], "fastmri": []}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        folder = Path(tmp) / "train"
        folder.mkdir()
        write_files(folder, args.files, args.slices, args.coils, args.rows, args.cols)
        config = TrainConfig(data=folder, out=Path(tmp) / "run", num_cascades=args.cascades, chans=args.chans,
                             pools=args.pools, sens_chans=args.sens_chans, sens_pools=args.sens_pools, device=str(device))
        loss_fn = SSIMLoss().to(device)
        loops: dict[str, tuple[Iterator[Any], Callable[[Any], float]]] = {}
        for name in rates:
            model = build_model(config).to(device)  # the same initial weights for both (seeded)
            optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
            if name == "recon":
                loops[name] = (recon_batches(folder, config, args.workers), recon_step(model, optimizer, loss_fn, device))
            else:
                loops[name] = (fastmri_batches(folder, args.workers), fastmri_step(model, optimizer, loss_fn, device))
        for _ in range(args.repeats):
            for name, (batches, step) in loops.items():
                rates[name].append(time_loop(batches, step, device, args.warmup, args.steps))
                print(f"{name}: {rates[name][-1]:.3f} samples/s", flush=True)
    best = {name: max(values) for name, values in rates.items()}
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    model_kwargs = config.model_kwargs()
    payload = {
        "benchmark": "training throughput, recon train's loop vs a fastMRI-style loop (same model, Adam, SSIM loss)",
        "device": device_name,
        "data": {"files": args.files, "slices_per_file": args.slices, "coils": args.coils, "rows": args.rows, "cols": args.cols},
        "model": model_kwargs, "batch_size": 1, "num_workers": args.workers, "warmup": args.warmup,
        "steps": args.steps, "repeats": args.repeats,
        "samples_per_s": rates, "best_samples_per_s": best, "ratio_recon_over_fastmri": best["recon"] / best["fastmri"],
        "machine": machine(),
    }
    lines = [
        f"# Training throughput on {device_name}: recon train's loop vs a fastMRI-style loop",
        "",
        f"{args.files} files x {args.slices} slices, {args.coils} coils x {args.rows} x {args.cols} complex64, random "
        f"4x/8x training masks, batch 1, {args.workers} DataLoader workers. Model: recon VarNet {model_kwargs}, Adam "
        f"{config.lr:g}, SSIM loss, the same initial weights in both loops. {args.steps} steps timed after "
        f"{args.warmup} warm-up steps, loops alternating {args.repeats} times, best rate kept. Machine: "
        f"{payload['machine']['cpu_count']} CPUs (shared, load average {payload['machine']['loadavg'][0]:.2f}), "
        f"{args.threads} torch thread(s), torch {torch.__version__}.",
        "",
        "recon: `training_slices` (`recon.data.SliceDataset` + `VarNetTransform`) + `collate` + the loop's checks "
        "and step; fastMRI-style: `fastmri.data.SliceDataset` + `VarNetDataTransform`, default collate, same model, "
        "loss and optimizer.",
        "",
        "| loop | samples/s (each repeat) | best | ratio |",
        "| --- | --- | --- | --- |",
        f"| recon train | {', '.join(f'{r:.3f}' for r in rates['recon'])} | {best['recon']:.3f} | "
        f"{payload['ratio_recon_over_fastmri']:.2f}x |",
        f"| fastMRI-style | {', '.join(f'{r:.3f}' for r in rates['fastmri'])} | {best['fastmri']:.3f} | 1.00x |",
        "",
        f"One step takes {1 / best['recon']:.2f} s (recon) and {1 / best['fastmri']:.2f} s (fastMRI-style): the "
        "model's forward and backward pass, not the data loading, sets the rate here (`bench_loading.py` loads a "
        "slice in milliseconds), so the ratio says the loop adds no measurable cost; with the machine shared "
        "(see the load average) repeats differ by more than the two loops do.",
        "",
    ]
    stem = f"train_throughput_{slug(device_name)}"
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="bench_train_out_")) if args.dry_run else None)
    written = write_results(stem, payload, "\n".join(lines), out_dir)
    print("\n".join(lines))
    print(f"wrote {written / stem}.json and .md")


if __name__ == "__main__":
    main()
