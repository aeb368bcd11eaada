"""`unet`: fastMRI's image-domain U-Net baseline (`recon.models.image_unet`).

Weights: the `checkpoint` option (safetensors, or fastMRI's `.pt` state dict read with
`weights_only=True`), or the shipped simulated-data checkpoint `models/unet.safetensors`. The
network's input is the RSS of the coil images, a partial-Fourier side completed per coil first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from recon.methods.options import PartialFourierOptions
from recon.methods.spec import MethodSpec, option

if TYPE_CHECKING:
    from recon.methods.base import Device
    from recon.methods.batch import Method

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


@dataclass(frozen=True, kw_only=True)
class UnetOptions(PartialFourierOptions):
    """Options of `unet`."""

    checkpoint: str | os.PathLike[str] | None = option(
        None, "U-Net weights (`recon train --model unet`, or fastMRI's knee_mc_leaderboard_state_dict.pt) (default: "
        "the shipped simulated-data weights)", "--unet-checkpoint")
    batch_size: int = option(8, "slices per network call (default: 8)")


def build(options: UnetOptions, device: Device) -> Method:
    """The weights loaded onto `device` (None: each batch's) as a `UnetMethod`."""
    import torch

    from recon.methods.learned import UnetMethod
    from recon.models.checkpoint import load_unet

    path = resolve_unet_checkpoint(options.checkpoint)
    return UnetMethod(load_unet(path), None if device is None else torch.device(device), options.batch_size, options.partial_fourier, path)


SPEC = MethodSpec(
    name="unet",
    summary="fastMRI's image-domain U-Net (trained weights; default: the shipped ones)",
    options=UnetOptions,
    build=build,
    checkpoint="checkpoint",
)
