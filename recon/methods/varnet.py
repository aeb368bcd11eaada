"""`varnet`: a trained E2E-VarNet (`recon.models`), fastMRI-weight compatible.

Weights are read without unpickling (safetensors; fastMRI `.pt`/`.pth` with
`weights_only=True`); the default is the shipped simulated-data checkpoint. The cascades' data
consistency leaves a partial-Fourier side free and the sensitivity network sees only the
symmetric centre; the last cascade's coil k-space is then completed per coil before the RSS.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from recon.methods.options import PartialFourierOptions
from recon.methods.spec import MethodSpec, Needs, option

if TYPE_CHECKING:
    from recon.methods.base import Device
    from recon.methods.batch import Method


@dataclass(frozen=True, kw_only=True)
class VarNetOptions(PartialFourierOptions):
    """Options of `varnet`."""

    checkpoint: str | os.PathLike[str] | None = option(
        None, "VarNet weights (.safetensors, or fastMRI .pt loaded with weights_only=True) (default: the shipped "
        "simulated-data weights)", "--checkpoint")
    batch_size: int = option(4, "slices per network call (default: 4)")


def build(options: VarNetOptions, device: Device) -> Method:
    """The weights loaded onto `device` (None: each batch's) as a `VarNetMethod`."""
    import torch

    from recon.methods.learned import VarNetMethod
    from recon.models.checkpoint import load_model, resolve_checkpoint

    path = resolve_checkpoint(options.checkpoint)
    return VarNetMethod(load_model(path), None if device is None else torch.device(device), options.batch_size, options.partial_fourier, path)


SPEC = MethodSpec(
    name="varnet",
    summary="E2E-VarNet (trained weights; default: the shipped ones)",
    options=VarNetOptions,
    build=build,
    needs=Needs(acs=1, matrix=(16, 16)),
    checkpoint="checkpoint",
)
