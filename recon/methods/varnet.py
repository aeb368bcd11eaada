"""`varnet`: a trained E2E-VarNet (`recon.models`) behind the batched method interface.

Weights are read without unpickling (safetensors; fastMRI `.pt`/`.pth` with
`weights_only=True`); the default is the shipped simulated-data checkpoint.
"""

from __future__ import annotations

import os

import torch

from recon.core import center_crop
from recon.methods.batch import ReconBatch
from recon.models.checkpoint import load_model, resolve_checkpoint
from recon.models.varnet import VarNet


class VarNetMethod:
    """Run a VarNet over a `ReconBatch` in chunks of `batch_size` slices, without gradients."""

    def __init__(self, model: VarNet, device: torch.device | None, batch_size: int = 4) -> None:
        self.model = model.eval() if device is None else model.to(device).eval()
        self.device = device
        self.batch_size = max(1, int(batch_size))

    @torch.no_grad()
    def __call__(self, batch: ReconBatch) -> torch.Tensor:
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
) -> VarNetMethod:
    """`varnet` method: load weights (default: shipped) onto `device` (None = each batch's)."""
    dev = None if device is None else torch.device(device)
    return VarNetMethod(load_model(resolve_checkpoint(checkpoint)), dev, batch_size)
