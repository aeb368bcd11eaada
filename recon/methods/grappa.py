"""`grappa`: GRAPPA-filled k-space (`recon.calib.grappa`), RSS of the coil images, cropped.

For uniformly undersampled data only (constant spacing of the sampled columns outside the
calibration region, `calib.grappa.uniform_spacing`); a random mask is refused with a pointer
to the model-based methods. The kernels are calibrated per slice on the batch's calibration
region (`batch.calib`) of its calibration data (`batch.calibration_data`: the ISMRMRD
calibration-only lines when the file has them). The output is at the zero-filled / fastMRI
target's scale (RSS of orthonormal inverse FFTs).

Partial echo: kernels are calibrated and applied on the acquired readout rows only (the
unacquired rows are outside the matrix for GRAPPA, never zero data). The partial-Fourier /
partial-echo side is then completed per coil, on the GRAPPA-filled k-space, before the RSS
(`recon.partial_fourier`, `partial_fourier`: pocs, homodyne or zero).
"""

from __future__ import annotations

from typing import Sequence

import torch

from recon import ops
from recon import partial_fourier as pf
from recon.calib.grappa import DEFAULT_LAM, grappa, uniform_spacing
from recon.core import center_crop
from recon.methods.batch import ReconBatch
from recon.methods.coils import check_virtual_coils, compress_batch

#: Readout extent of the default kernel (pygrappa's default window is 5 x 5).
DEFAULT_KX = 5


def default_kernel(spacing: int) -> tuple[int, int]:
    """`(5, ky)` with `ky` the smallest odd width >= 5 that reaches a sampled column from every
    missing one at spacing `R` (`ky >= R + 1`): 5 up to 4x, 9 at 8x."""
    ky = max(5, spacing + 1)
    return DEFAULT_KX, ky + 1 - ky % 2


class Grappa:
    """GRAPPA with a fixed kernel (None = `default_kernel` per batch) and relative Tikhonov `lam`."""

    def __init__(
        self,
        kernel: Sequence[int] | None = None,
        lam: float = DEFAULT_LAM,
        device: str | torch.device | None = None,
        pygrappa_compat: bool = False,
        partial_fourier: str = pf.DEFAULT_MODE,
        virtual_coils: int | None = None,
        compression: str = "svd",
    ) -> None:
        if kernel is not None and len(kernel) != 2:
            raise ValueError(f"grappa kernel must be (kx, ky), got {kernel!r}")
        self.kernel = None if kernel is None else (int(kernel[0]), int(kernel[1]))
        self.lam = float(lam)
        if self.lam < 0:
            raise ValueError(f"grappa lam must be >= 0, got {lam}")
        self.device = None if device is None else torch.device(device)
        self.pygrappa_compat = bool(pygrappa_compat)
        self.partial_fourier = pf.check_mode(partial_fourier)
        self.virtual_coils = check_virtual_coils(virtual_coils, compression)
        self.compression = compression

    def fill(self, batch: ReconBatch) -> tuple[torch.Tensor, int, tuple[int, int]]:
        """GRAPPA-filled coil k-space `(B, C, H, W)` of an (already compressed) batch on the
        method's device, the column spacing `R` and the kernel used."""
        device = self.device or batch.masked_kspace.device
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

    @torch.no_grad()
    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        """`ReconBatch` -> `(B, h, w)` float32 on the batch's device."""
        home = batch.masked_kspace.device
        filled, _, _ = self.fill(compress_batch(batch, self.virtual_coils, self.compression))
        if pf.has_partial(batch.extent, filled.shape):
            image = ops.rss(pf.batch_images(filled, batch.extent, self.partial_fourier), 1)
        else:
            image = ops.rss(ops.ifft2c(filled), 1)
        return center_crop(image, batch.crop_size).float().to(home)


def make_grappa(
    kernel: Sequence[int] | None = None,
    lam: float | None = None,
    device: str | torch.device | None = None,
    pygrappa_compat: bool = False,
    partial_fourier: str = pf.DEFAULT_MODE,
    virtual_coils: int | None = None,
    compression: str = "svd",
    **_: object,
) -> Grappa:
    """`grappa` method; kernel `(kx, ky)` (None = `default_kernel`), lam default 0.01 (pygrappa's);
    partial_fourier: pocs | homodyne | zero, per coil after the fill-in; virtual_coils, compression:
    coil compression (svd | gcc) before calibration (`methods.coils`; None: all coils)."""
    return Grappa(kernel, DEFAULT_LAM if lam is None else lam, device, pygrappa_compat, partial_fourier, virtual_coils, compression)
