"""`zero-filled`: RSS of the inverse FFT of the zero-filled k-space, the fastMRI target's scale.

Undersampled lines stay zero (that is the method). A partial-Fourier / partial-echo side is
handled per coil before the RSS by `recon.partial_fourier` (`partial_fourier`: pocs, homodyne or
zero; default pocs); without one the output is the plain zero-filled RSS.
"""

from __future__ import annotations

import torch

from recon import ops
from recon import partial_fourier as pf
from recon.core import center_crop
from recon.methods.batch import Method, ReconBatch


def zero_filled(batch: ReconBatch, partial_fourier: str = pf.DEFAULT_MODE) -> torch.Tensor:
    """RSS of the inverse FFT of the zero-filled k-space, cropped: `(B, h, w)` float32."""
    kspace = batch.masked_kspace
    if pf.has_partial(batch.extent, kspace.shape):
        coils = pf.batch_images(kspace, batch.extent, partial_fourier)
    else:
        coils = ops.ifft2c(kspace)
    return center_crop(ops.rss(coils, 1), batch.crop_size).float()


class ZeroFilled:
    """`zero_filled` with a fixed partial-Fourier mode (picklable)."""

    def __init__(self, partial_fourier: str = pf.DEFAULT_MODE) -> None:
        self.partial_fourier = pf.check_mode(partial_fourier)

    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        return zero_filled(batch, self.partial_fourier)


def make_zero_filled(partial_fourier: str = pf.DEFAULT_MODE, **_: object) -> Method:
    """Method factory (runs where the batch lives); partial_fourier: pocs | homodyne | zero."""
    return ZeroFilled(partial_fourier)
