"""The batched method interface: a `ReconBatch` in, `(B, h, w)` float32 magnitude images out."""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch


class ReconBatch(NamedTuple):
    """A batch of undersampled slices of one volume (or of several of equal shape).

    masked_kspace: `(B, C, H, W)` complex64, zero where not sampled.
    mask: bool, `(B, 1, 1, W)` sampled columns or `(B, 1, H, W)` sampled locations.
    calib: `(B, 2)` int64 calibration column region `[start, stop)` (`Acquisition.calib`).
    crop_size: `(h, w)` of the output images (reconSpace; fastMRI: 320x320).
    maps: optional `(B, C, H, W)` complex64 coil sensitivities.
    calib_kspace: optional `(B, C, H, W)` calibration data when they are not image data
        (ISMRMRD calibration-only lines); None = calibrate on `masked_kspace`.
    extent: `((r0, r1), (c0, c1))` acquired readout rows x acquirable columns
        (`Acquisition.kspace_extent`); None = the whole grid. A side missing beyond the
        centre's mirror is partial Fourier / partial echo (`recon.partial_fourier`).
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    calib: torch.Tensor
    crop_size: tuple[int, int]
    maps: torch.Tensor | None = None
    calib_kspace: torch.Tensor | None = None
    extent: tuple[tuple[int, int], tuple[int, int]] | None = None

    @property
    def calibration_data(self) -> torch.Tensor:
        """The k-space to calibrate on (coil maps, kernels)."""
        return self.masked_kspace if self.calib_kspace is None else self.calib_kspace


class Method(Protocol):
    """A reconstruction method: `ReconBatch` -> `(B, h, w)` float32 magnitude images."""

    def __call__(self, batch: ReconBatch) -> torch.Tensor: ...
