"""`varnet`: a trained E2E-VarNet (`recon.models`) behind the batched method interface.

Weights are read without unpickling (safetensors; fastMRI `.pt`/`.pth` with
`weights_only=True`); the default is the shipped simulated-data checkpoint.

Partial Fourier / partial echo: the cascades' data consistency leaves the unacquired side free
(the batch's mask) and the sensitivity network sees only the symmetric centre; the last
cascade's coil k-space is then completed per coil before the RSS (`recon.partial_fourier`,
`partial_fourier`: pocs, homodyne or zero). Without a partial side the output is the model's RSS.
"""

from __future__ import annotations

import os

import torch

from recon import ops
from recon import partial_fourier as pf
from recon.core import center_crop
from recon.methods.batch import ReconBatch
from recon.methods.learned import LearnedMethod
from recon.models.checkpoint import load_model, resolve_checkpoint


class VarNetMethod(LearnedMethod):
    """A VarNet over a `ReconBatch`: calibration region and data from the acquisition model."""

    name = "varnet"

    def __init__(self, model: torch.nn.Module, device: torch.device | None, batch_size: int, partial_fourier: str = pf.DEFAULT_MODE,
                 checkpoint: str | os.PathLike[str] | None = None) -> None:
        super().__init__(model, device, batch_size, checkpoint)
        self.partial_fourier = pf.check_mode(partial_fourier)

    def chunk(self, model: torch.nn.Module, batch: ReconBatch, start: int, stop: int, device: torch.device) -> torch.Tensor:
        mask = batch.mask.bool()
        mask = mask if mask.shape[0] == 1 else mask[start:stop]
        calib = torch.as_tensor(batch.calib).reshape(-1, 2).expand(batch.masked_kspace.shape[0], 2)
        cal_k = batch.calib_kspace
        kspace = batch.masked_kspace[start:stop].to(device)
        args = (kspace, mask.to(device))
        kwargs = {"calib": calib[start:stop].to(device), "calib_kspace": None if cal_k is None else cal_k[start:stop].to(device)}
        if not pf.has_partial(batch.extent, kspace.shape):
            return center_crop(model(*args, **kwargs), batch.crop_size)
        filled = model.reconstruct_kspace(*args, **kwargs)
        return center_crop(ops.rss(pf.batch_images(filled, batch.extent, self.partial_fourier), 1), batch.crop_size)


def make_varnet(
    checkpoint: str | os.PathLike[str] | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 4,
    partial_fourier: str = pf.DEFAULT_MODE,
    **_: object,
) -> VarNetMethod:
    """`varnet` method: load weights (default: shipped) onto `device` (None = each batch's);
    partial_fourier: pocs | homodyne | zero, per coil on the last cascade's k-space."""
    dev = None if device is None else torch.device(device)
    path = resolve_checkpoint(checkpoint)
    return VarNetMethod(load_model(path), dev, batch_size, partial_fourier, path)
