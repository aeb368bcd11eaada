"""The training loop: VarNet (SSIM loss, Adam) or fastMRI's image U-Net (L1, RMSprop), with
StepLR, validation, checkpoints, resume, DDP, and a summary at the end.

Data: `recon.data.SliceDataset` + `VarNetTransform`, the dataset every other part of `recon`
uses. Reproducibility: the model is initialised from `seed`; the slice order of each epoch
comes from `DistributedSampler(seed, epoch)`; the mask of a slice from `(seed, epoch, index)`
(items are addressed as `(index, epoch)`); validation masks from the file name. Masks are drawn
by `recon.masks.undersample` as at inference, and VarNet gets each sample's calibration region
(`calib=`) as at inference.
Resume state is saved at optimizer-step boundaries, so on CPU a run killed at any moment and
restarted ends with the same weights, bit for bit, as an uninterrupted run; Ctrl-C saves the
state of the last step and says so.
A run checks its data, the model's size (against the slices and the memory), the initial weights
and the resume state before it writes anything to its folder; a slice that fails to read later
is named, and so are the slices of a training step that fails.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from recon.method_checks import check_training_batch
from recon.core import center_crop
from recon.data import Sample, SliceDataset, VarNetTransform, collate
from recon.io.errors import InputError
from recon.masks import create_mask_func
from recon.metrics import SSIMLoss, volume_metrics
from recon.models.checkpoint import load_state_dict, save_model, state_mismatch
from recon.models.domain import folder_domain
from recon.models.image_unet import unet_loss, unet_reconstruct
from recon.models.unet import Unet
from recon.models.varnet import VarNet
from recon.models.widen import widen_state_dict
from recon.train.config import TrainConfig
from recon.train.distributed import DistInfo, barrier, cleanup, gather_objects, init_distributed
from recon.train.sizing import SliceShape, check_depth, check_memory
from recon.train.state import RESUME_JSON, load_resume, save_resume


def _split_folders(config: TrainConfig) -> tuple[Path, Path | None]:
    """(training folder, validation folder or None) from `data` / `val_data`."""
    data = Path(config.data)
    if (data / "train").is_dir():
        val = config.val_data or (data / "val" if (data / "val").is_dir() else None)
        return data / "train", val
    return data, config.val_data


def training_slices(
    folder: Path,
    transform: VarNetTransform,
    sample_rate: float = 1.0,
    volume_sample_rate: float = 1.0,
    seed: int = 0,
) -> SliceDataset:
    """The `*.h5` files of `folder` as a `SliceDataset`; InputError for a folder without files or
    a file without a `reconstruction_rss` target."""
    files = sorted(Path(folder).glob("*.h5"))
    if not files:
        raise InputError(folder, "no .h5 files found")
    dataset = SliceDataset(files, transform, sample_rate=sample_rate, volume_sample_rate=volume_sample_rate, seed=seed)
    for volume in dataset.volumes:
        if volume.target_key != "reconstruction_rss":
            raise InputError(volume.path, "no reconstruction_rss target (test files cannot be used for training)")
    return dataset


def _device(config: TrainConfig, info: DistInfo) -> torch.device:
    if config.device == "auto":
        return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if config.device == "cuda":
        return torch.device(f"cuda:{info.local_rank}")
    return torch.device(config.device)


def build_model(config: TrainConfig) -> VarNet | Unet:
    """The configured model initialised from `config.seed` (or `init_weights`), with the memory options set."""
    torch.manual_seed(config.seed)
    if config.model == "unet":
        unet = Unet(**config.model_kwargs())
        if config.init_weights is not None:
            init = {k.removeprefix("unet."): v for k, v in load_state_dict(config.init_weights).items()}
            problem = state_mismatch(unet.state_dict(), init)
            if problem:
                raise InputError(config.init_weights, f"does not fit the configured U-Net: {problem}")
            unet.load_state_dict(init)
        return unet
    model = VarNet(**config.model_kwargs())
    if config.init_weights is not None:
        init = load_state_dict(config.init_weights)
        own = model.state_dict()
        if init.keys() == own.keys() and any(init[k].shape != own[k].shape for k in own):
            try:
                init = widen_state_dict(init, own)
            except ValueError as err:
                raise InputError(config.init_weights, f"does not fit the configured VarNet: {err}") from err
            print(f"train: widened {config.init_weights} to {config.chans} channels (cascades) / {config.sens_chans} "
                  "(sensitivity net); same output at the start", file=sys.stderr)
        problem = state_mismatch(own, init)
        if problem:
            raise InputError(config.init_weights, f"does not fit the configured VarNet: {problem}")
        model.load_state_dict(init)
    model.set_mixed_precision(torch.bfloat16 if config.mixed_precision == "bf16" else None)
    model.set_activation_checkpointing(config.activation_checkpointing)
    return model


def _digest(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _slices(batch: Sample, folder: Path | None = None) -> str:
    """`a.h5 slice 3, b.h5 slice 0` (the files under `folder` when given)."""
    return ", ".join(f"{f if folder is None else folder / f} slice {s}" for f, s in zip(batch.fname, batch.slice_num))


def _finite_grads(model: torch.nn.Module) -> bool:
    """Whether every gradient is finite (one reduction per parameter, no host sync per tensor)."""
    flags = [torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None]
    return bool(torch.stack(flags).all()) if flags else True


def _stopped(ckpt: Path, global_step: int, cause: str) -> InputError:
    """The error that ends a run before a non-finite update reaches the weights."""
    kept = [p.name for p in (ckpt / "last.safetensors", ckpt / "best.safetensors", ckpt / "resume.json") if p.is_file()]
    saved = f"the last good checkpoints are kept ({', '.join(kept)})" if kept else "no checkpoint had been written yet"
    return InputError(ckpt.parent, f"training stopped before step {global_step + 1}: {cause}; weights not updated, {saved}")


def _core(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


def batch_loss(model: torch.nn.Module, batch: Sample, loss_fn: SSIMLoss) -> torch.Tensor:
    """The training loss of a collated batch already on the model's device.

    VarNet: forward with the samples' calibration regions (`calib=`, as inference passes them),
    center crop to the target, `loss_fn` (SSIM) with the files' `max` as data range. U-Net:
    fastMRI's L1 loss on instance-normalized zero-filled RSS (`loss_fn` unused).
    """
    if isinstance(_core(model), Unet):
        return unet_loss(model, batch.masked_kspace, batch.target)
    pred = model(batch.masked_kspace, batch.mask, calib=batch.calib)
    pred = center_crop(pred, batch.target.shape[-2:])
    return loss_fn(pred.unsqueeze(1), batch.target.unsqueeze(1), batch.max_value)


@torch.no_grad()
def validate(model: VarNet | Unet, volumes: SliceDataset, info: DistInfo, device: torch.device) -> dict[str, float]:
    """Mean per-volume SSIM/PSNR/NMSE; each volume is reconstructed on one rank, slice by slice."""
    model.eval()
    mine: list[dict[str, float]] = []
    for i in range(info.rank, len(volumes.volumes), info.world_size):
        preds, targets = [], []
        for item in volumes.volume_items(i):
            s = read_item(volumes, item)
            if isinstance(model, Unet):
                out = unet_reconstruct(model, s.masked_kspace[None].to(device), tuple(s.target.shape[-2:]))
            else:
                out = model(s.masked_kspace[None].to(device), s.mask[None].to(device), calib=s.calib[None].to(device))
            preds.append(center_crop(out, s.target.shape[-2:])[0].float().cpu())
            targets.append(s.target)
        mine.append(volume_metrics(torch.stack(targets).numpy(), torch.stack(preds).numpy()))
    everyone = [m for part in gather_objects(info, mine) for m in part]
    model.train()
    if not everyone:
        return {}
    return {k: float(np.mean([m[k] for m in everyone])) for k in ("ssim", "psnr", "nmse")}


class _Logger:
    """TensorBoard scalars and metrics.jsonl on rank 0; per-rank sample log when asked."""

    def __init__(self, config: TrainConfig, info: DistInfo) -> None:
        self.main = info.is_main
        self.writer = None
        if self.main and config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(config.out / "tensorboard"))
        self.samples = config.out / f"samples-rank{info.rank}.jsonl" if config.log_samples else None
        self.metrics = config.out / "metrics.jsonl"

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def epoch(self, record: dict[str, Any]) -> None:
        if self.main:
            with self.metrics.open("a") as f:
                f.write(json.dumps(record, allow_nan=False) + "\n")
        for k, v in record.items():
            if k not in ("epoch", "global_step") and isinstance(v, float):
                self.scalar(f"val/{k}", v, record["global_step"])

    def sample(self, record: Callable[[], dict[str, Any]]) -> None:
        """Append `record()` to the sample log; `record` is not called when sample logging is off
        (the parameter digest is a device-to-host copy of every weight)."""
        if self.samples is not None:
            with self.samples.open("a") as f:
                f.write(json.dumps(record(), allow_nan=False) + "\n")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def train(config: TrainConfig) -> Path:
    """Train (or resume) the run in `config.out`; return the best (else last) weights file.

    Under `torchrun`, each rank trains on its own `DistributedSampler` share of the slices
    (hence its own masks) and DDP averages gradients.
    """
    info = init_distributed(config.device)
    try:
        return _train(config, info)
    finally:
        cleanup(info)


def _domain(folder: str | Path) -> dict[str, Any]:
    """The training folder's coil count and k-space matrix range, recorded in every checkpoint's
    JSON so that `recon reconstruct` can warn about inputs outside it ({} when not describable)."""
    try:
        return folder_domain(folder)
    except (OSError, ValueError):
        return {}


@dataclass(frozen=True)
class _ReadFailure:
    """A slice that could not be read or batched, passed on as a value so that the message naming
    the file survives DataLoader worker processes (they re-raise other errors as RuntimeError)."""

    error: InputError


def read_item(dataset: SliceDataset, key: Any) -> Sample:
    """`dataset[key]`, with any failure to read or transform it an InputError naming the file
    and slice (a file damaged or replaced after the run started reads fine until then)."""
    try:
        return dataset[key]
    except (InputError, MemoryError):
        raise
    except Exception as err:  # noqa: BLE001 - whatever a damaged file raises, name the file
        index = key[0] if isinstance(key, tuple) else key
        path, slice_num = dataset.slice_index[int(index)]
        raise InputError(path, f"slice {slice_num} cannot be read ({type(err).__name__}: {err}); the file may be damaged or "
                         "changed since the run started: check it, or move it out of the data folder") from err


class _NamedReads(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """The training set as the DataLoader sees it: items that fail to read become `_ReadFailure`."""

    def __init__(self, dataset: SliceDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Any) -> Sample | _ReadFailure:
        try:
            return read_item(self.dataset, key)
        except InputError as err:
            return _ReadFailure(err)


def _collate(folder: Path, items: list[Sample | _ReadFailure]) -> Sample | _ReadFailure:
    """`collate`, passing the first read failure on; slices that cannot share a batch are a
    failure naming them."""
    for item in items:
        if isinstance(item, _ReadFailure):
            return item
    try:
        return collate(items)  # type: ignore[arg-type]
    except (ValueError, RuntimeError) as err:
        slices = ", ".join(f"{s.fname} slice {s.slice_num}" for s in items)  # type: ignore[union-attr]
        return _ReadFailure(InputError(folder, f"cannot batch {slices} ({type(err).__name__}: {err}); train with "
                                               "--batch-size 1, or on slices of one size"))


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; `str()` says what was saved and how to continue."""


class TrainingStepError(RuntimeError):
    """An unexpected failure inside a training step; the message names the step and its slices."""


def _slice_shapes(*datasets: SliceDataset | None) -> list[SliceShape]:
    """The distinct slice geometries of the datasets' files (first file of each)."""
    seen: dict[tuple[int, int, int, tuple[int, int]], SliceShape] = {}
    for dataset in datasets:
        for v in dataset.volumes if dataset is not None else []:
            coils, rows, cols = (1, *v.shape) if len(v.shape) == 2 else v.shape
            key = (coils, rows, cols, tuple(v.crop_size))
            seen.setdefault(key, SliceShape(v.path, coils, rows, cols, (int(v.crop_size[0]), int(v.crop_size[1]))))
    return list(seen.values())


@dataclass
class _Prepared:
    """Everything a run needs, built and checked before anything is written to its folder."""

    device: torch.device
    train_dir: Path
    train_set: SliceDataset
    val_set: SliceDataset | None
    domain: dict[str, Any]
    model: VarNet | Unet
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR
    record: dict[str, Any]


def _prepare(config: TrainConfig, info: DistInfo) -> _Prepared:
    """Check what can be checked without writing (data, batch size, model size against the data
    and the memory, initial weights, resume state) and build the model and optimizer, so that a
    run that cannot start leaves its folder as it was."""
    device = _device(config, info)
    train_dir, val_dir = _split_folders(config)
    mask_func = create_mask_func(config.mask_type, config.center_fractions, config.accelerations)
    train_set = training_slices(train_dir, VarNetTransform(mask_func, use_seed=False, seed=config.seed),
                                config.sample_rate, config.volume_sample_rate, config.seed)
    val_set = training_slices(val_dir, VarNetTransform(mask_func, use_seed=True)) if val_dir is not None else None
    per_step = config.batch_size * config.accumulate
    if len(train_set) // info.world_size < per_step:
        raise InputError(train_dir, f"{len(train_set)} training slices ({len(train_set) // info.world_size} per rank) are "
                         f"fewer than --batch-size x --accumulate = {per_step}: one optimizer step needs that many")
    shapes = _slice_shapes(train_set, val_set)
    check_depth(config, shapes)
    check_memory(config, shapes, device)
    domain = _domain(train_dir) if info.is_main else {}
    model = build_model(config).to(device)
    if config.model == "unet":
        optimizer: torch.optim.Optimizer = torch.optim.RMSprop(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, config.lr_step_size, config.lr_gamma)
    record = load_resume(Path(config.out) / "checkpoints", model, optimizer, scheduler) or {}
    return _Prepared(device, train_dir, train_set, val_set, domain, model, optimizer, scheduler, record)


def _train(config: TrainConfig, info: DistInfo) -> Path:
    """`_prepare` the run, then write `config.json` and train: a line per epoch, resume state every
    `checkpoint_every` steps and at epoch ends, and on Ctrl-C the state of the last step."""
    out = Path(config.out)
    ckpt = out / "checkpoints"
    run = _prepare(config, info)
    device, train_dir, train_set, val_set, domain = run.device, run.train_dir, run.train_set, run.val_set, run.domain
    model, optimizer, scheduler, record = run.model, run.optimizer, run.scheduler, run.record
    per_step = config.batch_size * config.accumulate
    epoch0 = int(record.get("epoch", 0))
    step0 = int(record.get("step_in_epoch", 0))
    global_step = int(record.get("global_step", 0))
    best = float(record.get("best_ssim", -1.0))

    if info.is_main:
        ckpt.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2, allow_nan=False) + "\n")
    barrier(info)
    net: torch.nn.Module = DistributedDataParallel(model) if info.enabled else model
    loss_fn = SSIMLoss()
    log = _Logger(config, info)
    done = config.max_steps is not None and global_step >= config.max_steps
    started = time.monotonic()
    finished_before = done or epoch0 >= config.epochs
    if info.is_main:
        if val_set is None:
            print(f"note: no validation data (no {Path(config.data) / 'val'} folder, no --val-data): no 'best' checkpoint; "
                  f"the result is {ckpt / 'last.safetensors'}", file=sys.stderr)
        if finished_before:
            print(f"training in {out} already finished (epoch {epoch0} of {config.epochs}, step {global_step}"
                  f"{'' if config.max_steps is None else f' of max {config.max_steps}'}); nothing to do. "
                  "Raise --epochs (or --max-steps) to continue it.", flush=True)
        elif record:
            print(f"resuming {out} from step {global_step} (epoch {epoch0}, step {step0} of that epoch; "
                  f"state {ckpt / RESUME_JSON})", flush=True)

    def scalars(epoch: int, step_in_epoch: int) -> dict[str, Any]:
        return {"epoch": epoch, "step_in_epoch": step_in_epoch, "global_step": global_step,
                "best_ssim": best, "config": config.to_dict()}

    saved_step = global_step if record else -1
    saved_at = (epoch0, step0)

    def save_state(epoch: int, step_in_epoch: int) -> None:
        nonlocal saved_step, saved_at
        if info.is_main:
            save_resume(ckpt, model, optimizer, scheduler, scalars(epoch, step_in_epoch))
        barrier(info)
        saved_step, saved_at = global_step, (epoch, step_in_epoch)

    # where a Ctrl-C may save the state: after an optimizer step, None while one is being applied
    resumable: tuple[int, int] | None = (epoch0, step0)
    step_rng = torch.get_rng_state()

    def interrupted() -> str:
        """On Ctrl-C: save the weights and resume state of the last optimizer step (single-process
        runs, when it is newer than the saved state); say what there is to continue from."""
        resume = ckpt / RESUME_JSON
        head = f"interrupted at step {global_step}"
        if resumable is not None and global_step > saved_step and not info.enabled:
            torch.set_rng_state(step_rng)
            save_resume(ckpt, model, optimizer, scheduler, scalars(*resumable))
            save_model(model, ckpt / "last.safetensors", {"train": config.to_dict(), "domain": domain, "global_step": global_step})
            return (f"{head} (epoch {resumable[0]}): saved its weights to {ckpt / 'last.safetensors'} and its resume state to "
                    f"{resume}; run the same command again to continue from step {global_step}")
        if saved_step >= 0:
            lost = f"; the {global_step - saved_step} step(s) after it are not saved" if global_step > saved_step else ""
            return (f"{head}: the resume state of step {saved_step} (epoch {saved_at[0]}) is in {resume}{lost}; "
                    "run the same command again to continue from there")
        return f"{head}: no resume state was saved; running the same command again starts the run over"

    try:
        for epoch in range(epoch0, config.epochs):
            if done:
                break
            epoch_started = time.monotonic()
            sampler = DistributedSampler(train_set, info.world_size, info.rank, shuffle=True, seed=config.seed, drop_last=True)
            sampler.set_epoch(epoch)
            order = list(sampler)
            steps = len(order) // per_step
            start = step0 if epoch == epoch0 else 0
            keys = [(i, epoch) for i in order[start * per_step : steps * per_step]]
            loader = DataLoader(_NamedReads(train_set), batch_size=config.batch_size, sampler=keys,
                                collate_fn=functools.partial(_collate, train_dir),
                                num_workers=config.num_workers, pin_memory=device.type == "cuda")
            batches = iter(loader)
            bar = tqdm(range(start, steps), desc=f"epoch {epoch}", disable=config.quiet or not info.is_main,
                       initial=start, total=steps, leave=False)
            model.train()
            stopped = False
            losses: list[float] = []
            for step in bar:
                loss_value = 0.0
                bad_loss = ""
                for micro in range(config.accumulate):
                    batch = next(batches)
                    if isinstance(batch, _ReadFailure):
                        raise batch.error
                    check_training_batch(batch)
                    last_micro = micro == config.accumulate - 1
                    sync = net.no_sync() if info.enabled and not last_micro else contextlib.nullcontext()
                    try:
                        with sync:
                            loss = batch_loss(net, batch.to(device), loss_fn) / config.accumulate
                            if not bool(torch.isfinite(loss.detach())):
                                bad_loss = f"non-finite loss ({float(loss.detach())}) on {_slices(batch)}"
                            loss.backward()
                    except InputError:
                        raise
                    except Exception as err:  # noqa: BLE001 - say where it happened, keep the cause
                        text = " ".join(str(err).split())
                        raise TrainingStepError(f"step {global_step + 1} (epoch {epoch}) failed on "
                                                f"{_slices(batch, train_dir)}: {type(err).__name__}: {text}") from err
                    loss_value += float(loss.detach())
                    log.sample(lambda: {"global_step": global_step + 1, "fname": batch.fname, "slice": batch.slice_num,
                                        "mask": _digest([batch.mask])})
                # checked after the gradients are all-reduced, so every DDP rank stops together
                if bad_loss or not _finite_grads(model):
                    raise _stopped(ckpt, global_step, bad_loss or "non-finite gradients")
                resumable = None
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                global_step += 1
                resumable = (epoch, step + 1)
                step_rng = torch.get_rng_state()
                losses.append(loss_value)
                log.scalar("train/loss", loss_value, global_step)
                log.sample(lambda: {"global_step": global_step, "params": _digest(list(model.parameters()))})
                bar.set_postfix(loss=f"{loss_value:.4f}")
                done = config.max_steps is not None and global_step >= config.max_steps
                periodic = bool(config.checkpoint_every) and global_step % config.checkpoint_every == 0
                if step + 1 < steps and (done or periodic):
                    save_state(epoch, step + 1)
                if done and step + 1 < steps:
                    stopped = True
                    break
            bar.close()
            if stopped:
                if info.is_main:
                    save_model(model, ckpt / "last.safetensors", {"train": config.to_dict(), "domain": domain, "global_step": global_step})
                break
            metrics = validate(model, val_set, info, device) if val_set is not None else {}
            if not all(np.isfinite(v) for v in metrics.values()):
                raise _stopped(ckpt, global_step, f"non-finite validation metrics {metrics}")
            if info.is_main:
                extra = {"train": config.to_dict(), "domain": domain, "epoch": epoch, "global_step": global_step, "val": metrics}
                save_model(model, ckpt / "last.safetensors", extra)
                if metrics and metrics["ssim"] > best:
                    best = metrics["ssim"]
                    save_model(model, ckpt / "best.safetensors", extra)
                log.epoch({"epoch": epoch, "global_step": global_step, **metrics})
                if not config.quiet:
                    print(epoch_line(epoch, losses, metrics, time.monotonic() - epoch_started, val_set is not None), flush=True)
            resumable = None
            scheduler.step()
            save_state(epoch + 1, 0)
            resumable = (epoch + 1, 0)
        barrier(info)
    except KeyboardInterrupt:
        raise TrainingInterrupted(interrupted()) from None
    finally:
        log.close()
    best_file = ckpt / "best.safetensors"
    result = best_file if best_file.is_file() else ckpt / "last.safetensors"
    if info.is_main:
        print(training_summary(ckpt, global_step, best, time.monotonic() - started, finished_before, val_set is not None), flush=True)
    return result


def epoch_line(epoch: int, losses: list[float], metrics: dict[str, float], seconds: float, has_validation: bool = True) -> str:
    """The line `recon train` prints after each epoch: mean training loss of the epoch's steps in
    this run, validation SSIM, wall time."""
    loss = f"{float(np.mean(losses)):.4f}" if losses else "n/a (no steps left in this run)"
    ssim = f"{metrics['ssim']:.4f}" if "ssim" in metrics else ("none" if has_validation else "none (no validation data)")
    return f"epoch {epoch}: train loss {loss}, val SSIM {ssim}, {seconds:.1f} s"


def training_summary(ckpt: Path, global_step: int, best_ssim: float, seconds: float, finished_before: bool = False,
                     has_validation: bool = False) -> str:
    """The lines `recon train` ends with: steps, best validation SSIM, checkpoint paths, time."""
    lines = [f"training {'was already finished' if finished_before else 'finished'}: {global_step} optimizer steps, "
             f"{seconds:.1f} s in this run"]
    none = "none (not validated yet)" if has_validation else "none (no validation data)"
    lines.append(f"  best validation SSIM: {best_ssim:.4f}" if best_ssim >= 0 else f"  best validation SSIM: {none}")
    for name in ("best.safetensors", "last.safetensors"):
        path = ckpt / name
        if path.is_file():
            lines.append(f"  {name.split('.')[0]} weights: {path}")
    lines.append(f"  resume state: {ckpt / 'resume.json'}")
    return "\n".join(lines)
