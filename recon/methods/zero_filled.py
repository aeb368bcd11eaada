"""`zero-filled`: RSS of the inverse FFT of the zero-filled k-space, the fastMRI target's scale."""

from __future__ import annotations

import torch

from recon import ops
from recon.core import center_crop
from recon.methods.batch import Method, ReconBatch


def zero_filled(batch: ReconBatch) -> torch.Tensor:
    """RSS of the inverse FFT of the zero-filled k-space, cropped: `(B, h, w)` float32."""
    image = ops.rss(ops.ifft2c(batch.masked_kspace), 1)
    return center_crop(image, batch.crop_size).float()


def make_zero_filled(**_: object) -> Method:
    """Method factory (no options; runs where the batch lives)."""
    return zero_filled
