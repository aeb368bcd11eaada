"""`varnet`: a trained E2E-VarNet (`recon.models`) behind the batched method interface.

Weights are read without unpickling (safetensors; fastMRI `.pt`/`.pth` with
`weights_only=True`); the default is the shipped simulated-data checkpoint.
"""

from __future__ import annotations

import os

import torch

from recon.core import center_crop
from recon.methods.batch import ReconBatch
from recon.methods.learned import LearnedMethod
from recon.models.checkpoint import load_model, resolve_checkpoint


class VarNetMethod(LearnedMethod):
    """A VarNet over a `ReconBatch`: calibration region and data from the acquisition model."""

    def chunk(self, model: torch.nn.Module, batch: ReconBatch, start: int, stop: int, device: torch.device) -> torch.Tensor:
        mask = batch.mask.bool()
        mask = mask if mask.shape[0] == 1 else mask[start:stop]
        calib = torch.as_tensor(batch.calib).reshape(-1, 2).expand(batch.masked_kspace.shape[0], 2)
        cal_k = batch.calib_kspace
        image = model(
            batch.masked_kspace[start:stop].to(device),
            mask.to(device),
            calib=calib[start:stop].to(device),
            calib_kspace=None if cal_k is None else cal_k[start:stop].to(device),
        )
        return center_crop(image, batch.crop_size)


def make_varnet(
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 4,
    **_: object,
) -> VarNetMethod:
    """`varnet` method: load weights (default: shipped) onto `device` (None = each batch's)."""
    dev = None if device is None else torch.device(device)
    return VarNetMethod(load_model(resolve_checkpoint(checkpoint)), dev, batch_size)
