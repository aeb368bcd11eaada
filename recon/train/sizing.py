"""How big a configured model is, checked against the data and the memory before anything is built.

A U-Net too deep for the slices fails only after the first batch (a 1 x 1 bottleneck cannot be
instance-normalized), and a model too wide or deep for the machine is killed by the kernel's OOM
killer rather than refused. `check_model_size` counts the parameters exactly (from the layer
shapes of `recon.models.Unet`, without building it) and estimates the memory training needs:
weights, gradients, optimizer moments and one serialization copy, plus what autograd keeps for
the backward pass of one batch of the largest slice, and refuses, naming the options to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch

from recon.io.limits import format_bytes, host_memory
from recon.models.image_unet import unet_crop_size
from recon.train.config import TrainConfig, flag
from recon.arguments import UsageError

#: Bytes per float32; complex64 k-space is two of them.
FLOAT = 4
#: Complex `(C, H, W)` k-space tensors that autograd keeps per VarNet cascade (sens_reduce and
#: sens_expand with their FFTs, the soft data consistency and the update).
KSPACE_PER_CASCADE = 8
#: Complex k-space tensors kept by the sensitivity estimate and the final RSS image.
KSPACE_FIXED = 6
#: Peak over saved tensors in the backward pass (gradient buffers of the activations, allocator
#: slack), measured on CPU for VarNet and U-Net (1.2-1.6).
BACKWARD_PEAK = 1.5
#: Float tensors of weight size per parameter: weights, gradients, a serialization copy, and the
#: optimizer's moments (Adam two, RMSprop one).
STATE_COPIES = {"varnet": 5, "unet": 4}


@dataclass(frozen=True)
class SliceShape:
    """One training or validation file's slice geometry: k-space `(coils, rows, cols)` and the
    reconSpace crop the image U-Net trains on."""

    path: Path
    coils: int
    rows: int
    cols: int
    crop: tuple[int, int]


@dataclass(frozen=True)
class Footprint:
    """Estimated training memory: `state_bytes` (weights, gradients, moments, a copy) and
    `activation_bytes` (autograd's saved tensors for one batch of the largest slice)."""

    parameters: int
    state_bytes: int
    activation_bytes: int

    @property
    def total(self) -> int:
        """Bytes the run needs at its peak."""
        return self.state_bytes + self.activation_bytes


def padded(n: int) -> int:
    """The side length the VarNet's NormUnet pads `n` to (the next multiple of 16)."""
    return ((n - 1) | 15) + 1


def unet_fits(pools: int, rows: int, cols: int) -> bool:
    """Whether a U-Net with `pools` halvings trains on `rows x cols` images: every side keeps at
    least one pixel and the bottleneck more than one (instance norm needs two in training)."""
    low_rows, low_cols = rows >> pools, cols >> pools
    return low_rows >= 1 and low_cols >= 1 and low_rows * low_cols >= 2


def unet_parameters(in_chans: int, out_chans: int, chans: int, pools: int) -> int:
    """The exact parameter count of `recon.models.Unet(in_chans, out_chans, chans, pools)`."""

    def block(cin: int, cout: int) -> int:
        return 9 * cin * cout + 9 * cout * cout

    total = block(in_chans, chans)
    ch = chans
    for _ in range(pools - 1):
        total += block(ch, 2 * ch)
        ch *= 2
    total += block(ch, 2 * ch)
    for level in range(pools):
        total += 4 * (2 * ch) * ch
        if level < pools - 1:
            total += block(2 * ch, ch)
            ch //= 2
    return total + block(2 * ch, ch) + ch * out_chans + out_chans


def unet_activation_floats(in_chans: int, chans: int, pools: int, rows: int, cols: int) -> int:
    """Floats autograd keeps for one image through `Unet` in training: per conv block its two conv
    and two norm outputs, the pooled copy on the way down, and on the way up the transposed conv
    and norm outputs and the concatenation with the skip."""
    total = in_chans * rows * cols
    for level in range(pools):
        ch, size = chans << level, (rows >> level) * (cols >> level)
        total += 4 * ch * size + ch * (rows >> (level + 1)) * (cols >> (level + 1))  # down: conv block, pooled
        total += (2 + 2 + 4) * ch * size  # up: transposed conv and norm, concatenation, conv block
    total += 4 * (chans << pools) * (rows >> pools) * (cols >> pools)
    return total


def estimate(config: TrainConfig, shapes: Iterable[SliceShape]) -> Footprint:
    """Training memory of `config` on the largest of `shapes` (per rank, batch `batch_size`)."""
    if config.model == "unet":
        params = unet_parameters(1, 1, config.unet_chans, config.unet_pools)
    else:
        params = (unet_parameters(2, 2, config.sens_chans, config.sens_pools)
                  + config.num_cascades * (unet_parameters(2, 2, config.chans, config.pools) + 1))
    state = STATE_COPIES[config.model] * FLOAT * params
    activations = max((_activation_bytes(config, s) for s in shapes), default=0)
    return Footprint(params, state, int(BACKWARD_PEAK * config.batch_size * activations))


def _activation_bytes(config: TrainConfig, s: SliceShape) -> int:
    """Autograd's saved bytes for one slice of shape `s`."""
    kspace = 2 * FLOAT * s.coils * s.rows * s.cols
    if config.model == "unet":
        h, w = unet_crop_size((s.coils, s.rows, s.cols), s.crop)
        return FLOAT * unet_activation_floats(1, config.unet_chans, config.unet_pools, h, w) + 3 * kspace
    rows, cols = padded(s.rows), padded(s.cols)
    sens = s.coils * FLOAT * unet_activation_floats(2, config.sens_chans, config.sens_pools, rows, cols)
    cascade = FLOAT * unet_activation_floats(2, config.chans, config.pools, rows, cols)
    if config.activation_checkpointing:
        inputs = FLOAT * 2 * rows * cols * (s.coils + config.num_cascades)
        unets = max(sens, cascade) + inputs
    else:
        unets = sens + config.num_cascades * cascade
    return unets + kspace * (KSPACE_FIXED + KSPACE_PER_CASCADE * config.num_cascades)


def check_depth(config: TrainConfig, shapes: Iterable[SliceShape]) -> None:
    """UsageError when a U-Net of `config` has more pooling layers than a slice of `shapes` can
    be halved (naming the option, the file and the sizes)."""
    for s in shapes:
        if config.model == "unet":
            h, w = unet_crop_size((s.coils, s.rows, s.cols), s.crop)
            nets = [("unet_pools", config.unet_pools, h, w, f"its {h} x {w} target crop")]
        else:
            h, w = padded(s.rows), padded(s.cols)
            seen = f"its {s.rows} x {s.cols} k-space, padded to {h} x {w}"
            nets = [("pools", config.pools, h, w, seen), ("sens_pools", config.sens_pools, h, w, seen)]
        for name, pools, rows, cols, seen in nets:
            if not unet_fits(pools, rows, cols):
                deepest = max((p for p in range(1, pools) if unet_fits(p, rows, cols)), default=0)
                advice = f"use {flag(name)} {deepest} or less" if deepest else "these slices are too small for a U-Net"
                raise UsageError(f"{flag(name)} {pools} is too deep for {s.path}: the U-Net halves the image {pools} times "
                                 f"and needs at least {1 << pools} x {2 << pools} pixels, but sees {seen}; {advice}")


def memory_limit(device: torch.device) -> tuple[int, str]:
    """(bytes free, where) for training on `device`: the GPU's free memory, or `host_memory`."""
    if device.type == "cuda" and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(device)
        return int(free), f"free on {device}"
    return host_memory()


def check_memory(config: TrainConfig, shapes: Iterable[SliceShape], device: torch.device) -> Footprint:
    """UsageError when the estimated training memory exceeds what `device` has free; the model is
    built on the host first, so its weights must also fit the host's available memory."""
    shapes = list(shapes)
    need = estimate(config, shapes)
    limit, where = memory_limit(device)
    host, host_where = host_memory()
    if need.total > limit or FLOAT * need.parameters > host:
        over = need.total if need.total > limit else FLOAT * need.parameters
        if need.total <= limit:
            limit, where = host, f"{host_where} on the host"
        largest = max(shapes, key=lambda s: s.coils * s.rows * s.cols, default=None)
        data = (f" and activations of {format_bytes(need.activation_bytes)} for --batch-size {config.batch_size} of "
                f"{largest.rows} x {largest.cols} slices with {largest.coils} coils") if largest else ""
        sizes = ("--unet-chans, --unet-pools" if config.model == "unet"
                 else "--chans, --pools, --num-cascades, --sens-chans, --sens-pools")
        raise UsageError(f"the {config.model} configured needs about {format_bytes(over)} of memory to train "
                         f"({need.parameters:,} parameters: {format_bytes(need.state_bytes)} with gradients and optimizer "
                         f"state{data}), more than the {format_bytes(limit)} {where}; refused before allocating: "
                         f"use smaller {sizes} or --batch-size"
                         + ("" if config.model == "unet" or config.activation_checkpointing else
                            ", or --activation-checkpointing true"))
    return need
