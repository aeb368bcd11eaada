"""Partial Fourier and partial echo: homodyne and POCS reconstruction of asymmetric k-space.

With partial Fourier (phase encodes) or an asymmetric echo (readout) one side of k-space past
the centre's mirror was never acquired. Those samples are unknown, never zero data: every
method's data consistency leaves them free (`Acquisition.sampling`, `ReconBatch.mask`), and
this module estimates them from the conjugate symmetry of a real object, `x = |x| e^{i phi}`
with a smooth phase `phi` measured on the symmetric centre of k-space.

The extent is `((r0, r1), (c0, c1))`: the acquired readout rows x the acquirable columns
(`Acquisition.kspace_extent`), on a centered grid (DC at `size // 2`). An axis is partial when
more than 1/16 of it is acquired without its mirror (`recon.acquisition.is_partial_fourier`);
on an axis that is not, the extent only bounds the data.

Modes (`MODES`; `DEFAULT_MODE` is `pocs`):

* `zero`: the unacquired side is zero (the classic zero-filled partial-Fourier image: blurred
  along the partial axis, no phase assumption).
* `homodyne` (Noll, Nishimura, Macovski 1991): `Re(e^{-i phi} F^-1(H k))`, the weight `H`
  doubling the unpaired side with a linear ramp across the symmetric centre
  (`H(k) + H(-k) = 2`); keeps the real part only (its magnitude is the output; noise in the
  imaginary part is discarded, and a phase that the low-pass estimate misses leaks signal out
  of the real part).
* `pocs` (Haacke et al. 1991): alternate the phase constraint `x <- |x| e^{i phi}` with data
  consistency on the acquired rectangle, `ITERS` iterations or until the relative change is
  below `TOL`; the image stays complex.

Both need more than half of each partial axis and a symmetric centre of at least `MIN_BAND`
samples for the phase estimate (1/4 of k-space at 5/8 partial Fourier); otherwise they raise
`ValueError` (use `zero`). The phase is estimated from the symmetric centre with a Tukey
window (`TAPER`), full resolution along an axis that is not partial.

Where they run in the chain: after each method's own fill-in of the undersampled lines, on its
k-space estimate inside the acquired rectangle. Per coil, before the RSS, for the methods that
produce coil k-space (`zero-filled`, `grappa`, `varnet`; and on the `unet`'s input image);
on the coil-combined complex image for the model-based methods (`sense`, `cs`, `cs-tv`), after
the parallel-imaging solve.

Every function takes NumPy arrays or torch tensors (complex, `(..., H, W)`, any leading batch or
coil axes) and returns the same type.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from recon.acquisition import Region, is_partial_fourier, mirror_index, symmetric_band
from recon.core import fft2c, ifft2c

Mode = Literal["pocs", "homodyne", "zero"]
MODES: tuple[str, ...] = ("pocs", "homodyne", "zero")
DEFAULT_MODE: Mode = "pocs"
#: Smallest symmetric centre (samples along a partial axis) the phase estimate is made from.
MIN_BAND = 8
#: Fraction of the symmetric centre that the Tukey window of the phase estimate tapers.
TAPER = 0.5
#: POCS iteration cap and relative-change tolerance.
ITERS = 20
TOL = 1e-4

Extent = tuple[Region, Region]
_AXES = ("readout (rows)", "phase encodes (columns)")


def check_mode(mode: str) -> Mode:
    """`mode` if it is one of `MODES`, else ValueError naming them."""
    if mode not in MODES:
        raise ValueError(f"unknown partial-Fourier mode {mode!r}; expected one of {', '.join(MODES)}")
    return mode  # type: ignore[return-value]


def partial_axes(extent: Extent, shape: Sequence[int]) -> tuple[bool, bool]:
    """Which of (rows, columns) of a `shape = (H, W)` grid are partial Fourier within `extent`."""
    return tuple(is_partial_fourier(_clip(region, n), n) for region, n in zip(extent, shape[-2:]))  # type: ignore[return-value]


def has_partial(extent: Extent | None, shape: Sequence[int]) -> bool:
    """Whether `extent` (None: the whole grid) leaves a partial-Fourier side on a `(..., H, W)` grid."""
    return extent is not None and any(partial_axes(extent, shape))


def _clip(region: Region, size: int) -> Region:
    return max(0, int(region[0])), min(int(size), int(region[1]))


def check_extent(extent: Extent, shape: Sequence[int]) -> None:
    """ValueError unless every partial axis holds more than half of k-space and a symmetric
    centre of at least `MIN_BAND` samples (what homodyne and POCS need for the phase)."""
    for name, region, size, partial in zip(_AXES, extent, shape[-2:], partial_axes(extent, shape)):
        if not partial:
            continue
        start, stop = _clip(region, size)
        lo, hi = symmetric_band((start, stop), size)
        if 2 * (stop - start) <= size or hi - lo < MIN_BAND:
            raise ValueError(
                f"partial Fourier along the {name}: [{start}, {stop}) of {size} acquired ({(stop - start) / size:.0%}) with a "
                f"symmetric centre of {hi - lo} samples; homodyne and POCS need more than half of k-space and a symmetric "
                f"centre of at least {MIN_BAND} samples for the phase estimate (use --partial-fourier zero)"
            )


def _acquired_weight(region: Region, size: int, partial: bool) -> np.ndarray:
    """1-D `m(k)`: 1 on the unpaired side, 0 where not acquired, and across the symmetric centre
    1/2 with linear ramps over its outer `TAPER / 2` on each side, so `m(k) + m(-k) = 1`; on an
    axis that is not partial the indicator of the extent."""
    start, stop = _clip(region, size)
    m = np.zeros(size)
    m[start:stop] = 1.0
    if not partial:
        return m
    lo, hi = symmetric_band((start, stop), size)
    t = (np.arange(lo, hi) - lo + 0.5) / (hi - lo)  # (0, 1) across the symmetric centre
    edge = TAPER / 2
    ramp = np.where(t < edge, 0.5 * t / edge, np.where(t > 1 - edge, 0.5 + 0.5 * (t - 1 + edge) / edge, 0.5))
    m[lo:hi] = ramp if stop > hi else ramp[::-1]
    return m


def _phase_window(region: Region, size: int, partial: bool) -> np.ndarray:
    """1-D low-pass of the phase estimate: a Tukey window over the symmetric centre (partial
    axis) or the acquired extent (other axes)."""
    start, stop = _clip(region, size)
    w = np.zeros(size)
    if not partial:
        w[start:stop] = 1.0
        return w
    lo, hi = symmetric_band((start, stop), size)
    n = hi - lo
    pos = (np.arange(n) + 0.5) / n  # (0, 1)
    edge = TAPER / 2
    w[lo:hi] = np.where(pos < edge, 0.5 * (1 - np.cos(np.pi * pos / edge)),
                        np.where(pos > 1 - edge, 0.5 * (1 - np.cos(np.pi * (1 - pos) / edge)), 1.0))
    return w


class _Filters:
    """The 2-D weights of one extent on one grid: acquired rectangle, homodyne weight, phase low-pass."""

    def __init__(self, extent: Extent, shape: Sequence[int]) -> None:
        rows, cols = int(shape[-2]), int(shape[-1])
        partial = partial_axes(extent, (rows, cols))
        self.partial = any(partial)
        m = [_acquired_weight(r, n, p) for r, n, p in zip(extent, (rows, cols), partial)]
        self.acquired = np.outer(m[0] > 0, m[1] > 0)
        weight = np.outer(m[0], m[1])
        mirrored = weight[mirror_index(rows)][:, mirror_index(cols)]
        total = weight + mirrored
        self.homodyne = np.where(total > 0, 2 * weight / np.where(total > 0, total, 1.0), 0.0)
        self.lowpass = np.outer(*(_phase_window(r, n, p) for r, n, p in zip(extent, (rows, cols), partial)))

    def tensors(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        real = torch.float32 if like.dtype == torch.complex64 else torch.float64
        as_t = lambda a: torch.as_tensor(a, dtype=real, device=like.device)  # noqa: E731
        return torch.as_tensor(self.acquired, device=like.device), as_t(self.homodyne), as_t(self.lowpass)


def _phase(kspace: torch.Tensor, lowpass: torch.Tensor) -> torch.Tensor:
    """`e^{i phi}` of the low-pass image (1 where it is exactly zero)."""
    low = ifft2c(kspace * lowpass)
    mag = low.abs()
    return torch.where(mag > 0, low / torch.where(mag > 0, mag, torch.ones_like(mag)), torch.ones_like(low))


def _to_torch(x: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return (x if x.is_complex() else x.to(torch.complex64)), False
    arr = np.asarray(x)
    if not np.iscomplexobj(arr):
        arr = arr.astype(np.complex64)
    return torch.from_numpy(np.ascontiguousarray(arr)), True


def _back(x: torch.Tensor, numpy: bool) -> np.ndarray | torch.Tensor:
    return x.cpu().numpy() if numpy else x


def homodyne(kspace: np.ndarray | torch.Tensor, extent: Extent) -> np.ndarray | torch.Tensor:
    """Homodyne image `Re(e^{-i phi} F^-1(H k))` of `(..., H, W)` k-space, as a complex array
    with zero imaginary part (see the module docstring); ValueError via `check_extent`."""
    k, numpy = _to_torch(kspace)
    check_extent(extent, k.shape)
    f = _Filters(extent, k.shape)
    acquired, weight, lowpass = f.tensors(k)
    k = torch.where(acquired, k, torch.zeros((), dtype=k.dtype, device=k.device))
    image = (ifft2c(k * weight) * _phase(k, lowpass).conj()).real
    return _back(image.to(k.dtype), numpy)


def pocs(
    kspace: np.ndarray | torch.Tensor, extent: Extent, iters: int = ITERS, tol: float = TOL
) -> np.ndarray | torch.Tensor:
    """POCS image of `(..., H, W)` k-space (complex): phase constraint and data consistency on
    the acquired rectangle alternate for at most `iters` iterations, stopping early once
    `||x_new - x|| <= tol ||x||` for every item. ValueError via `check_extent`."""
    if int(iters) < 1:
        raise ValueError(f"POCS needs iters >= 1, got {iters}")
    k, numpy = _to_torch(kspace)
    check_extent(extent, k.shape)
    f = _Filters(extent, k.shape)
    acquired, _, lowpass = f.tensors(k)
    data = torch.where(acquired, k, torch.zeros((), dtype=k.dtype, device=k.device))
    phase = _phase(data, lowpass)
    image = ifft2c(data)
    for _ in range(int(iters)):
        estimate = fft2c(image.abs() * phase)
        new = ifft2c(torch.where(acquired, data, estimate))
        change = torch.linalg.vector_norm((new - image).flatten(-2), dim=-1)
        size = torch.linalg.vector_norm(image.flatten(-2), dim=-1)
        image = new
        if bool((change <= tol * size).all()):
            break
    return _back(image, numpy)


def zero_filled(kspace: np.ndarray | torch.Tensor, extent: Extent) -> np.ndarray | torch.Tensor:
    """Image of `(..., H, W)` k-space with everything outside the acquired rectangle zero."""
    k, numpy = _to_torch(kspace)
    acquired, _, _ = _Filters(extent, k.shape).tensors(k)
    return _back(ifft2c(torch.where(acquired, k, torch.zeros((), dtype=k.dtype, device=k.device))), numpy)


def reconstruct(
    kspace: np.ndarray | torch.Tensor, extent: Extent | None, mode: str = DEFAULT_MODE
) -> np.ndarray | torch.Tensor:
    """Images `(..., H, W)` of k-space `(..., H, W)` with its partial-Fourier part handled by `mode`.

    Every leading axis is independent (one phase per coil for coil k-space). Without a partial
    axis in `extent` (or with `extent` None) it is the plain inverse FFT, whatever the mode.
    """
    mode = check_mode(mode)
    k, numpy = _to_torch(kspace)
    if not has_partial(extent, k.shape):
        return _back(ifft2c(k), numpy)
    if mode == "homodyne":
        return _back(homodyne(k, extent), numpy)  # type: ignore[arg-type]
    if mode == "pocs":
        return _back(pocs(k, extent), numpy)  # type: ignore[arg-type]
    return _back(zero_filled(k, extent), numpy)  # type: ignore[arg-type]


def batch_images(kspace: torch.Tensor, extent: Extent | None, mode: str = DEFAULT_MODE) -> torch.Tensor:
    """Per-coil images `(B, C, H, W)` of filled coil k-space `(B, C, H, W)` (torch): `reconstruct`."""
    return reconstruct(kspace, extent, mode)  # type: ignore[return-value]


def combined_image(image: torch.Tensor, extent: Extent | None, mode: str = DEFAULT_MODE) -> torch.Tensor:
    """A coil-combined complex image `(B, 1, H, W)` with its partial-Fourier part re-estimated by
    `mode` from its own k-space inside the acquired rectangle (the model-based methods)."""
    if not has_partial(extent, image.shape):
        return image
    return reconstruct(fft2c(image), extent, mode)  # type: ignore[return-value]



def acquired_rows(mask: torch.Tensor) -> Region:
    """`[first, last + 1)` of the readout rows sampled anywhere in a `(B, 1, H, W)` sampled-location
    mask, over the whole batch (`(0, H)` when none is)."""
    rows = mask.bool().reshape(-1, mask.shape[-2], mask.shape[-1]).any(-1).any(0)
    index = torch.nonzero(rows).flatten()
    if index.numel() == 0:
        return 0, int(mask.shape[-2])
    return int(index[0]), int(index[-1]) + 1


def readout_extent(mask: torch.Tensor, height: int) -> Region:
    """Acquired readout rows of a batch's mask on a grid of `height` rows (all of them for a column mask)."""
    return (0, int(height)) if mask.shape[-2] == 1 else acquired_rows(mask)


def symmetric_readout(mask: torch.Tensor, height: int) -> Region:
    """The rows of the readout's symmetric centre (both `k` and `-k` acquired): where a
    calibration (coil maps, sensitivities, kernels) sees no partial-echo asymmetry."""
    return symmetric_band(readout_extent(mask, height), int(height))
