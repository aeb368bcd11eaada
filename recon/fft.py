"""Centered orthonormal 2-D FFTs on native complex tensors, root-sum-of-squares and crops.

Conventions (as fastMRI, SigPy and BART): `fft2c(x) = fftshift(fft2(ifftshift(x), norm="ortho"))`
over the last two axes; any leading axes are batch axes.
"""

from __future__ import annotations

from typing import Sequence

import torch

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D FFT over the last two axes of a complex tensor."""
    x = torch.fft.ifftshift(x, dim=_DIMS)
    x = torch.fft.fft2(x, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(x, dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Centered orthonormal 2-D inverse FFT over the last two axes of a complex tensor."""
    k = torch.fft.ifftshift(k, dim=_DIMS)
    k = torch.fft.ifft2(k, dim=_DIMS, norm="ortho")
    return torch.fft.fftshift(k, dim=_DIMS)


def rss(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Root sum of squares of magnitudes along `dim` (the coil axis); real output."""
    if x.is_complex():
        return torch.sqrt((x.real**2 + x.imag**2).sum(dim))
    return torch.sqrt((x**2).sum(dim))


def center_crop(x: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop the last two axes to `shape` (rows, cols) around the center, as fastMRI does.

    If a requested size exceeds the input along an axis, that axis is left as it is.
    """
    h, w = int(shape[0]), int(shape[1])
    H, W = x.shape[-2], x.shape[-1]
    h, w = min(h, H), min(w, W)
    top = (H - h) // 2
    left = (W - w) // 2
    return x[..., top : top + h, left : left + w]
