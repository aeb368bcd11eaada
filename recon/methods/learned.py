"""What the learned methods share: a trained network run over a `ReconBatch` in chunks."""

from __future__ import annotations

import torch

from recon.methods.batch import ReconBatch


class LearnedMethod:
    """A network run over a `ReconBatch` in chunks of `batch_size` slices, without gradients.

    `device` None runs on each batch's device. Subclasses define `chunk`: slices `[start, stop)`
    of the batch -> `(stop - start, h, w)` images cropped to `batch.crop_size`.
    """

    def __init__(self, model: torch.nn.Module, device: torch.device | None, batch_size: int) -> None:
        self.model = model.eval() if device is None else model.to(device).eval()
        self.device = device
        self.batch_size = max(1, int(batch_size))

    def chunk(self, model: torch.nn.Module, batch: ReconBatch, start: int, stop: int, device: torch.device) -> torch.Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        """`ReconBatch` -> `(B, h, w)` float32 on the input's device."""
        k = batch.masked_kspace
        device = self.device if self.device is not None else k.device
        model = self.model.to(device)
        outs = [
            self.chunk(model, batch, s, min(s + self.batch_size, k.shape[0]), device).float().to(k.device)
            for s in range(0, k.shape[0], self.batch_size)
        ]
        return torch.cat(outs)
