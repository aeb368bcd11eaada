"""The endings every method shares, written once: device placement, coil compression, chunking,
and for the k-space methods partial-Fourier completion, RSS and crop.

`BatchMethod.__call__` compresses the batch to the method's virtual coils, runs `images` on the
method's device (None: the batch's) in chunks of `chunk_size` slices (None: all at once) and
returns float32 images on the batch's device. `KspaceMethod` is a `BatchMethod` whose subclass
fills coil k-space (`fill`); the base completes a partial-Fourier / partial-echo side per coil
(`recon.partial_fourier`), combines the coils by RSS and crops (`coil_rss`): zero-filled,
GRAPPA, SPIRiT and VarNet end this way, at the fastMRI target's scale.
"""

from __future__ import annotations

import torch

from recon import ops
from recon import partial_fourier as pf
from recon.core import center_crop
from recon.methods.batch import ReconBatch
from recon.methods.virtual_coils import check_virtual_coils, compress_batch

Device = str | torch.device | None
Extent = tuple[tuple[int, int], tuple[int, int]] | None


def coil_rss(kspace: torch.Tensor, extent: Extent, partial_fourier: str, crop_size: tuple[int, int]) -> torch.Tensor:
    """`(B, h, w)` RSS of the coil images of `(B, C, H, W)` k-space, a partial side of `extent`
    completed per coil by `partial_fourier` first, cropped to `crop_size`."""
    if pf.has_partial(extent, kspace.shape):
        coils = pf.batch_images(kspace, extent, partial_fourier)
    else:
        coils = ops.ifft2c(kspace)
    return center_crop(ops.rss(coils, 1), crop_size)


def batch_slices(batch: ReconBatch, start: int, stop: int) -> ReconBatch:
    """Slices `[start, stop)` of `batch` (per-slice fields cut; fields shared by all slices kept)."""
    count = batch.masked_kspace.shape[0]
    if (start, stop) == (0, count):
        return batch

    def cut(x: torch.Tensor | None) -> torch.Tensor | None:
        return x[start:stop] if x is not None and x.shape[0] == count else x

    calib = torch.as_tensor(batch.calib).reshape(-1, 2)
    return batch._replace(masked_kspace=batch.masked_kspace[start:stop], mask=cut(batch.mask), calib=cut(calib),
                          maps=cut(batch.maps), calib_kspace=cut(batch.calib_kspace))


class BatchMethod:
    """A method on `device` (None: each batch's), compressing to `virtual_coils` (`compression`:
    svd | gcc; None: all coils) and running `chunk_size` slices at a time (None: the whole batch)."""

    def __init__(self, device: Device = None, virtual_coils: int | None = None, compression: str = "svd",
                 chunk_size: int | None = None) -> None:
        self.device = None if device is None else torch.device(device)
        self.virtual_coils = check_virtual_coils(virtual_coils, compression)
        self.compression = compression
        self.chunk_size = None if chunk_size is None else max(1, int(chunk_size))

    def prepare(self, batch: ReconBatch) -> tuple[ReconBatch, torch.device, torch.device]:
        """The batch compressed to the virtual coils, the device it came on and the device to run on."""
        home = batch.masked_kspace.device
        return compress_batch(batch, self.virtual_coils, self.compression), home, self.device or home

    def images(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        """`(B, h, w)` images of a (compressed) batch or chunk, computed on `device`."""
        raise NotImplementedError

    @torch.no_grad()
    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        """`ReconBatch` -> `(B, h, w)` float32 on the batch's device."""
        batch, home, device = self.prepare(batch)
        count = batch.masked_kspace.shape[0]
        step = self.chunk_size or count
        outs = [self.images(batch_slices(batch, s, min(s + step, count)), device).float().to(home) for s in range(0, count, step)]
        return outs[0] if len(outs) == 1 else torch.cat(outs)


class KspaceMethod(BatchMethod):
    """A method that fills coil k-space (`fill`); the image is `coil_rss` of it with the
    partial-Fourier mode `partial_fourier` (pocs | homodyne | zero)."""

    def __init__(self, partial_fourier: str = pf.DEFAULT_MODE, device: Device = None, virtual_coils: int | None = None,
                 compression: str = "svd", chunk_size: int | None = None) -> None:
        super().__init__(device, virtual_coils, compression, chunk_size)
        self.partial_fourier = pf.check_mode(partial_fourier)

    def fill(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        """Filled coil k-space `(B, C, H, W)` on `device`; a partial side may stay empty (the base completes it)."""
        raise NotImplementedError

    def images(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        return coil_rss(self.fill(batch, device), batch.extent, self.partial_fourier, batch.crop_size)


class ZeroFilled(KspaceMethod):
    """`zero-filled`: the measured k-space as it is, unmeasured samples zero."""

    def fill(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        return batch.masked_kspace.to(device)
