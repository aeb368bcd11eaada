"""The learned methods: a trained network run over a `ReconBatch` in chunks, without gradients.

`VarNetMethod` (E2E-VarNet) is a k-space method: the last cascade's coil k-space goes through
the shared ending (partial-Fourier completion, RSS, crop; `recon.methods.base`); without a
partial side that is the model's own RSS output. `UnetMethod` (fastMRI's image U-Net) maps the
zero-filled RSS image, a partial side completed per coil first, to the image.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from recon import partial_fourier as pf
from recon.core import fft2c
from recon.methods.base import BatchMethod, KspaceMethod
from recon.methods.batch import ReconBatch
from recon.models.checkpoint import checkpoint_record
from recon.models.domain import domain_problems, domain_warning
from recon.models.image_unet import unet_reconstruct


class LearnedMethod(BatchMethod):
    """A network run on `device` (None: each batch's) over chunks of `batch_size` slices.

    `checkpoint`: the weights file, whose JSON record (training config and data domain)
    `domain_warning` reads.
    """

    name = "learned"

    def __init__(self, model: torch.nn.Module, device: torch.device | None, batch_size: int,
                 checkpoint: str | os.PathLike[str] | None = None) -> None:
        BatchMethod.__init__(self, device, chunk_size=batch_size)
        self.model = model.eval() if device is None else model.to(device).eval()
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.record: dict[str, Any] = {} if checkpoint is None else checkpoint_record(checkpoint)

    def domain_warning(self, coils: int, rows: int, cols: int, acceleration: float | None) -> str | None:
        """One-line warning when an input of `coils` x `rows` x `cols` k-space at `acceleration`
        lies outside the data the weights were trained on (`recon.models.domain`), else None."""
        if self.checkpoint is None:
            return None
        return domain_warning(self.name, self.checkpoint, domain_problems(self.record, coils, rows, cols, acceleration))

    def prepare(self, batch: ReconBatch) -> tuple[ReconBatch, torch.device, torch.device]:
        """As `BatchMethod.prepare`, with the network moved to the device it runs on."""
        batch, home, device = super().prepare(batch)
        self.model.to(device)
        return batch, home, device


class VarNetMethod(LearnedMethod, KspaceMethod):
    """A VarNet over a `ReconBatch`: calibration region and data from the acquisition model."""

    name = "varnet"

    def __init__(self, model: torch.nn.Module, device: torch.device | None, batch_size: int, partial_fourier: str = pf.DEFAULT_MODE,
                 checkpoint: str | os.PathLike[str] | None = None) -> None:
        LearnedMethod.__init__(self, model, device, batch_size, checkpoint)
        self.partial_fourier = pf.check_mode(partial_fourier)

    def fill(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        count = batch.masked_kspace.shape[0]
        calib = batch.calib.reshape(-1, 2).expand(count, 2)
        cal_k = batch.calib_kspace
        return self.model.reconstruct_kspace(batch.masked_kspace.to(device), batch.mask.bool().to(device), calib=calib.to(device),
                                             calib_kspace=None if cal_k is None else cal_k.to(device))


class UnetMethod(LearnedMethod):
    """fastMRI's U-Net over a `ReconBatch`: zero-filled RSS in, de-normalized image out."""

    name = "unet"

    def __init__(self, model: torch.nn.Module, device: torch.device | None, batch_size: int, partial_fourier: str = pf.DEFAULT_MODE,
                 checkpoint: str | os.PathLike[str] | None = None) -> None:
        super().__init__(model, device, batch_size, checkpoint)
        self.partial_fourier = pf.check_mode(partial_fourier)

    def images(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        kspace = batch.masked_kspace.to(device)
        if pf.has_partial(batch.extent, kspace.shape):
            kspace = fft2c(pf.batch_images(kspace, batch.extent, self.partial_fourier))
        return unet_reconstruct(self.model, kspace, batch.crop_size)
