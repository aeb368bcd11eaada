"""`unet`: fastMRI's image-domain U-Net baseline (`recon.models.image_unet`) behind the batched
method interface.

Weights: `--unet-checkpoint PATH` (safetensors, or fastMRI's `.pt` state dict read with
`weights_only=True`), or the shipped simulated-data checkpoint `models/unet.safetensors`.

Partial Fourier / partial echo: the network's input image is the RSS of the coil images with
the unacquired side completed per coil by `recon.partial_fourier` (`partial_fourier`: pocs,
homodyne or zero) instead of left zero; without a partial side it is fastMRI's zero-filled input.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from recon import partial_fourier as pf
from recon.core import fft2c
from recon.methods.batch import ReconBatch
from recon.methods.learned import LearnedMethod
from recon.models.image_unet import unet_reconstruct

#: Weights shipped with the source tree, when present (see models/README.md).
DEFAULT_UNET_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "unet.safetensors"


def resolve_unet_checkpoint(checkpoint: str | os.PathLike[str] | None) -> Path:
    """The given checkpoint, or the shipped one; ValueError naming how to get one otherwise."""
    if checkpoint is not None:
        return Path(checkpoint)
    if DEFAULT_UNET_CHECKPOINT.is_file():
        return DEFAULT_UNET_CHECKPOINT
    raise ValueError(
        "unet needs weights: train them with `recon train --model unet` and pass --unet-checkpoint PATH "
        f"(or fastMRI's published knee_mc_leaderboard_state_dict.pt); none shipped at {DEFAULT_UNET_CHECKPOINT}"
    )


class UnetMethod(LearnedMethod):
    """fastMRI's U-Net over a `ReconBatch`: zero-filled RSS in, de-normalized image out."""

    name = "unet"

    def __init__(self, model: torch.nn.Module, device: torch.device | None, batch_size: int, partial_fourier: str = pf.DEFAULT_MODE,
                 checkpoint: str | os.PathLike[str] | None = None) -> None:
        super().__init__(model, device, batch_size, checkpoint)
        self.partial_fourier = pf.check_mode(partial_fourier)

    def chunk(self, model: torch.nn.Module, batch: ReconBatch, start: int, stop: int, device: torch.device) -> torch.Tensor:
        kspace = batch.masked_kspace[start:stop].to(device)
        if pf.has_partial(batch.extent, kspace.shape):
            kspace = fft2c(pf.batch_images(kspace, batch.extent, self.partial_fourier))
        return unet_reconstruct(model, kspace, batch.crop_size)


def make_unet(
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 8,
    partial_fourier: str = pf.DEFAULT_MODE,
    **_: object,
) -> UnetMethod:
    """Method factory for the registry: U-Net weights (default: shipped) on `device` (None: the batch's);
    partial_fourier: pocs | homodyne | zero, on the input's coil images."""
    from recon.models.checkpoint import load_unet

    path = resolve_unet_checkpoint(checkpoint)
    return UnetMethod(load_unet(path), None if device is None else torch.device(device), batch_size, partial_fourier, path)
