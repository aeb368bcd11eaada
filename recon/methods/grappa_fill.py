"""GRAPPA's k-space fill as a method (`Grappa`), and its g-factor maps.

Kernels per slice from the batch's calibration region of its calibration data, applied on the
acquired readout rows only (a partial echo's unacquired rows are outside GRAPPA's matrix); the
`KspaceMethod` base completes a partial side, takes the RSS and crops.
"""

from __future__ import annotations

from typing import Sequence

import torch

from recon import partial_fourier as pf
from recon.calib.gfactor import grappa_gfactor
from recon.calib.grappa import DEFAULT_LAM, grappa, uniform_spacing
from recon.core import ifft2c
from recon.methods.base import Device, KspaceMethod
from recon.methods.batch import ReconBatch

#: Readout extent of the default kernel (pygrappa's default window is 5 x 5).
DEFAULT_KX = 5


def default_kernel(spacing: int) -> tuple[int, int]:
    """`(5, ky)` with `ky` the smallest odd width >= 5 that reaches a sampled column from every
    missing one at spacing `R` (`ky >= R + 1`): 5 up to 4x, 9 at 8x."""
    ky = max(5, spacing + 1)
    return DEFAULT_KX, ky + 1 - ky % 2


class Grappa(KspaceMethod):
    """GRAPPA with a fixed kernel (None = `default_kernel` per batch) and relative Tikhonov `lam`;
    `pygrappa_compat` reproduces pygrappa's conventions (`recon.calib.grappa`); the rest as `KspaceMethod`."""

    def __init__(self, kernel: Sequence[int] | None = None, lam: float = DEFAULT_LAM, pygrappa_compat: bool = False,
                 partial_fourier: str = pf.DEFAULT_MODE, device: Device = None, virtual_coils: int | None = None,
                 compression: str = "svd") -> None:
        super().__init__(partial_fourier, device, virtual_coils, compression)
        if kernel is not None and len(kernel) != 2:
            raise ValueError(f"grappa kernel must be (kx, ky), got {kernel!r}")
        self.kernel = None if kernel is None else (int(kernel[0]), int(kernel[1]))
        self.lam = float(lam)
        if self.lam < 0:
            raise ValueError(f"grappa lam must be >= 0, got {lam}")
        self.pygrappa_compat = bool(pygrappa_compat)

    def fill_with_kernel(self, batch: ReconBatch, device: torch.device) -> tuple[torch.Tensor, int, tuple[int, int]]:
        """GRAPPA-filled coil k-space `(B, C, H, W)` on `device`, the column spacing `R` and the kernel used."""
        kspace = batch.masked_kspace.to(device, torch.complex64)
        count, _, height, width = kspace.shape
        sampled = batch.mask.to(device).bool().expand(count, 1, height, width)[:, 0]
        regions = batch.calib.reshape(-1, 2).expand(count, 2).cpu()
        spacing = max(uniform_spacing(sampled[b].any(0), tuple(regions[b].tolist())) for b in range(count))
        kernel = self.kernel or default_kernel(spacing)
        r0, r1 = pf.readout_extent(batch.mask, height)
        filled = torch.zeros_like(kspace)
        filled[..., r0:r1, :] = grappa(kspace[..., r0:r1, :], sampled[:, r0:r1], batch.calibration_data[..., r0:r1, :].to(device),
                                       regions, kernel, self.lam, self.pygrappa_compat)
        return filled, spacing, kernel

    def fill(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        return self.fill_with_kernel(batch, device)[0]

    def gfactor(self, batch: ReconBatch, spacing: int, offset: int, device: torch.device) -> torch.Tensor:
        """`(B, H, W)` analytic image-domain g-factor of the batch's interior kernels with the RSS
        combination of its own coil images (`recon.calib.gfactor.grappa_gfactor`)."""
        filled, spacing, kernel = self.fill_with_kernel(batch, device)
        calib = batch.calib.reshape(-1, 2).expand(filled.shape[0], 2).cpu()
        return grappa_gfactor(batch.calibration_data.to(device), calib, spacing, kernel, ifft2c(filled), self.lam)
