"""The numerical basics every layer shares: centered orthonormal FFTs, center crops, RSS, and
the readout crop in hybrid space.

One implementation each, for NumPy arrays and torch tensors alike (the type of the input picks
the library; the result has the same type). Conventions as fastMRI, SigPy and BART:
`fftc(x, axes) = fftshift(fftn(ifftshift(x), norm="ortho"))` over `axes`; `fft2c`/`ifft2c`
transform the last two axes, every leading axis is a batch axis.

A crop larger than the input is an error (`ValueError`), never a silent no-op: an image smaller
than the recon matrix means the geometry is wrong, and carrying on would mis-scale or mis-locate
it. Callers that expect a smaller grid pad k-space to the recon matrix first.
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np
import torch

Array = TypeVar("Array", np.ndarray, torch.Tensor)
_LAST_TWO = (-2, -1)


def _transform(x: Array, axes: Sequence[int], inverse: bool) -> Array:
    axes = tuple(int(a) for a in axes)
    if isinstance(x, torch.Tensor):
        x = torch.fft.ifftshift(x, dim=axes)
        x = (torch.fft.ifftn if inverse else torch.fft.fftn)(x, dim=axes, norm="ortho")
        return torch.fft.fftshift(x, dim=axes)
    x = np.fft.ifftshift(x, axes=axes)
    x = (np.fft.ifftn if inverse else np.fft.fftn)(x, axes=axes, norm="ortho")
    return np.fft.fftshift(x, axes=axes)


def fftc(x: Array, axes: Sequence[int]) -> Array:
    """Centered orthonormal FFT of `x` over `axes` (image -> k-space)."""
    return _transform(x, axes, inverse=False)


def ifftc(k: Array, axes: Sequence[int]) -> Array:
    """Centered orthonormal inverse FFT of `k` over `axes` (k-space -> image)."""
    return _transform(k, axes, inverse=True)


def fft2c(x: Array) -> Array:
    """Centered orthonormal 2-D FFT over the last two axes."""
    return _transform(x, _LAST_TWO, inverse=False)


def ifft2c(k: Array) -> Array:
    """Centered orthonormal 2-D inverse FFT over the last two axes."""
    return _transform(k, _LAST_TWO, inverse=True)


def rss(x: Array, dim: int = 1) -> Array:
    """Root sum of squares of magnitudes along `dim` (the coil axis); real output."""
    if isinstance(x, torch.Tensor):
        if x.is_complex():
            return torch.sqrt((x.real**2 + x.imag**2).sum(dim))
        return torch.sqrt((x**2).sum(dim))
    return np.sqrt((np.abs(x) ** 2).sum(axis=dim))


def center_crop(x: Array, shape: Sequence[int]) -> Array:
    """Crop the last two axes to `shape = (rows, cols)` around the center, as fastMRI does.

    The crop starts at `(size - crop) // 2` on each axis. Raises ValueError when a requested
    size exceeds the input or is not positive.
    """
    h, w = int(shape[0]), int(shape[1])
    rows, cols = int(x.shape[-2]), int(x.shape[-1])
    if h < 1 or w < 1 or h > rows or w > cols:
        raise ValueError(f"cannot center-crop an image of {rows}x{cols} to {h}x{w}")
    top = (rows - h) // 2
    left = (cols - w) // 2
    return x[..., top : top + h, left : left + w]


def crop_readout(kspace: Array, rows: int) -> Array:
    """k-space `(..., H, W)` on a readout FOV cut to its central `rows` rows: `(..., rows, W)`.

    Done in hybrid space: a centred 1-D inverse FFT along the readout (axis -2), the centre crop
    of the image rows `[(H - rows) // 2, ... + rows)`, and the forward FFT back. The readout must
    be fully acquired (an unacquired sample would be mixed into every row). Pixel size and image
    scale stay as they are: the result's image is exactly the centre rows of the input's.
    """
    height = int(kspace.shape[-2])
    if not 1 <= int(rows) <= height:
        raise ValueError(f"cannot crop a readout of {height} rows to {rows}")
    if int(rows) == height:
        return kspace
    start = (height - int(rows)) // 2
    return fftc(ifftc(kspace, (-2,))[..., start : start + int(rows), :], (-2,))



def image_problem(images: np.ndarray | torch.Tensor, may_be_zero: Sequence[bool] | None = None) -> str | None:
    """Why `(S, h, w)` reconstructed magnitude images are not a result, or None: the one output
    rule every method output, written image and scored prediction passes.

    A slice with a NaN or Inf pixel, or an all-zero slice, is a failed reconstruction (never an
    image); `may_be_zero[s]` excuses slice s from the all-zero rule (its input k-space was zero).
    """
    arr = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    if arr.ndim != 3 or min(arr.shape) < 1:
        return f"images of shape {arr.shape}; expected (slices, h, w) with every size >= 1"
    flat = arr.reshape(arr.shape[0], -1)
    for s in range(flat.shape[0]):
        bad = ~np.isfinite(flat[s])
        if bad.any():
            kind = "NaN" if np.isnan(flat[s]).any() else "Inf"
            return f"slice {s} has non-finite pixels ({int(bad.sum())} of {flat[s].size} are {kind})"
        if not np.any(flat[s]) and not (may_be_zero is not None and may_be_zero[s]):
            return f"slice {s} is all-zero"
    return None
