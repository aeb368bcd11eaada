"""What the learned methods share: a trained network run over a `ReconBatch` in chunks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from recon.methods.batch import ReconBatch
from recon.models.checkpoint import checkpoint_record
from recon.models.domain import domain_problems, domain_warning


class LearnedMethod:
    """A network run over a `ReconBatch` in chunks of `batch_size` slices, without gradients.

    `device` None runs on each batch's device. Subclasses define `chunk`: slices `[start, stop)`
    of the batch -> `(stop - start, h, w)` images cropped to `batch.crop_size`. `checkpoint`: the
    weights file, whose JSON record (training config and data domain) `domain_warning` reads.
    """

    name = "learned"

    def __init__(self, model: torch.nn.Module, device: torch.device | None, batch_size: int,
                 checkpoint: str | os.PathLike[str] | None = None) -> None:
        self.model = model.eval() if device is None else model.to(device).eval()
        self.device = device
        self.batch_size = max(1, int(batch_size))
        self.checkpoint = None if checkpoint is None else Path(checkpoint)
        self.record: dict[str, Any] = {} if checkpoint is None else checkpoint_record(checkpoint)

    def domain_warning(self, coils: int, rows: int, cols: int, acceleration: float | None) -> str | None:
        """One-line warning when an input of `coils` x `rows` x `cols` k-space at `acceleration`
        lies outside the data the weights were trained on (`recon.models.domain`), else None."""
        if self.checkpoint is None:
            return None
        return domain_warning(self.name, self.checkpoint, domain_problems(self.record, coils, rows, cols, acceleration))

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
