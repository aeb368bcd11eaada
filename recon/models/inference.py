"""The `varnet` reconstruction method: a trained VarNet behind the batched method interface.

`make_varnet(...)` returns a callable taking a `recon.methods.ReconBatch` and returning
`(B, h, w)` float32 magnitude images cropped to `crop_size`. Weights are read without
unpickling (safetensors; fastMRI `.pt`/`.pth` with `weights_only=True`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Protocol

import torch

from recon.core import center_crop
from recon.models.checkpoint import load_model
from recon.models.varnet import VarNet

#: Weights shipped with the source tree (trained on simulated data; see models/README.md).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "varnet.safetensors"


class _Batch(Protocol):
    """The fields of `recon.methods.ReconBatch` that VarNet uses."""

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    calib: torch.Tensor
    crop_size: tuple[int, int]
    calib_kspace: torch.Tensor | None


def shipped_checkpoint_available() -> bool:
    """Whether the shipped simulated-data weights are present (source checkouts; not wheels)."""
    return DEFAULT_CHECKPOINT.is_file()


def resolve_checkpoint(checkpoint: str | os.PathLike[str] | None) -> Path:
    """The given checkpoint path, or the shipped default; ValueError when neither exists."""
    if checkpoint is not None:
        return Path(checkpoint)
    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT
    raise ValueError(f"varnet needs checkpoint=PATH (no shipped weights at {DEFAULT_CHECKPOINT})")


class VarNetMethod:
    """Run a VarNet over a `ReconBatch` in chunks of `batch_size` slices, without gradients."""

    def __init__(self, model: VarNet, device: torch.device | None, batch_size: int = 4) -> None:
        self.model = model.eval() if device is None else model.to(device).eval()
        self.device = device
        self.batch_size = max(1, int(batch_size))

    @torch.no_grad()
    def __call__(self, batch: _Batch) -> torch.Tensor:
        """`ReconBatch` -> `(B, h, w)` float32 on the input's device, cropped to `batch.crop_size`."""
        k = batch.masked_kspace
        device = self.device if self.device is not None else k.device
        model = self.model.to(device)
        mask = batch.mask.bool()
        calib = torch.as_tensor(batch.calib).reshape(-1, 2).expand(k.shape[0], 2)
        cal_k = batch.calib_kspace
        outs = []
        for s in range(0, k.shape[0], self.batch_size):
            e = min(s + self.batch_size, k.shape[0])
            m = mask if mask.shape[0] == 1 else mask[s:e]
            image = model(
                k[s:e].to(device),
                m.to(device),
                calib=calib[s:e].to(device),
                calib_kspace=None if cal_k is None else cal_k[s:e].to(device),
            )
            outs.append(center_crop(image, batch.crop_size).float().to(k.device))
        return torch.cat(outs)


def make_varnet(
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 4,
    **_: object,
) -> Callable[[_Batch], torch.Tensor]:
    """Method factory for the registry: load weights (default: shipped) onto `device`.

    `device` None means where each batch lives (the caller's device choice decides).
    """
    dev = None if device is None else torch.device(device)
    return VarNetMethod(load_model(resolve_checkpoint(checkpoint)), dev, batch_size)
