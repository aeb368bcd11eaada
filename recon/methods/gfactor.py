"""g-factor maps of a built method, batch by batch (`recon reconstruct --gfactor`).

Defined for the linear parallel-imaging methods on uniform undersampling only (`GFACTOR`):
`sense`, the analytic SENSE g-factor of its coil maps (that of the unregularized SENSE
solution, which CG-SENSE approaches as lam -> 0; its early stop and Tikhonov weight only lower
the noise), and `grappa`, the analytic image-domain g-factor of its interior kernels with the
RSS combination of its own coil images (`recon.calib.gfactor`). Both use the method's own
calibration (ESPIRiT maps, kernel size and lam) and its virtual coils. The spacing `R` is that
of the sampled columns outside the calibration region (`calib.grappa.uniform_spacing`); the
calibration lines are not counted (the textbook g-factor of the uniform pattern; they only
lower the noise). SENSE uses the aliased-pixel groups where `R` divides the column count and
the exact per-row inversion (`sense_gfactor_columns`) where it does not. Random
masks, partial Fourier data and the other methods (zero-filled: no unfolding; cs, cs-tv,
varnet, unet: not linear, no g-factor) are refused.
"""

from __future__ import annotations

import torch

from recon import partial_fourier as pf
from recon.calib.gfactor import grappa_gfactor, sense_gfactor, sense_gfactor_columns
from recon.calib.grappa import uniform_spacing
from recon.core import center_crop, ifft2c
from recon.methods.batch import Method, ReconBatch
from recon.methods.classical import ClassicalMethod
from recon.methods.coils import compress_batch
from recon.methods.grappa import Grappa
from recon.methods.sense import _Sense

#: Methods with a g-factor map, and how it is computed.
GFACTOR: dict[str, str] = {"sense": "analytic SENSE", "grappa": "analytic image-domain GRAPPA (Breuer 2009)"}


def check_gfactor(method: str) -> None:
    """ValueError unless `method` has a g-factor map."""
    if method not in GFACTOR:
        raise ValueError(f"--gfactor: a g-factor is defined for sense and grappa (linear parallel imaging on uniform undersampling), not for method {method!r}")


def batch_spacing(batch: ReconBatch) -> tuple[int, int]:
    """The column spacing `R` shared by the batch's slices and the offset `c0` of its sampling grid
    (`c0 + k R`); ValueError for non-uniform masks or partial Fourier."""
    count, _, height, width = batch.masked_kspace.shape
    if pf.has_partial(batch.extent, (height, width)):
        raise ValueError("--gfactor: g-factor maps of partial Fourier / partial echo data are not supported")
    columns = batch.mask.bool().expand(count, 1, height, width)[:, 0].any(1).cpu()
    regions = batch.calib.reshape(-1, 2).expand(count, 2).cpu()
    try:
        spacings = {uniform_spacing(columns[b], tuple(regions[b].tolist())) for b in range(count)}
    except ValueError as err:
        raise ValueError(f"--gfactor needs uniform undersampling (--mask equispaced): {err}") from None
    if len(spacings) != 1:
        raise ValueError(f"--gfactor: the slices of one batch have different column spacings {sorted(spacings)}")
    spacing = spacings.pop()
    start, stop = (int(v) for v in regions[0])
    outside = torch.nonzero(columns[0]).flatten()
    outside = outside[(outside < start) | (outside >= stop)]
    return spacing, int(outside[0]) % spacing if outside.numel() else 0


class GFactorMaps:
    """`ReconBatch` -> `(B, h, w)` float32 g-factor maps of `method` (a built sense or grappa)."""

    def __init__(self, method: Method) -> None:
        inner = getattr(method, "method", method)  # a registry `CheckedMethod` wraps the method
        if isinstance(inner, Grappa) or (isinstance(inner, ClassicalMethod) and isinstance(inner.solver, _Sense)):
            self.method = inner
        else:
            raise ValueError(f"--gfactor: no g-factor for {type(inner).__name__}; defined for sense and grappa")

    @torch.no_grad()
    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        home = batch.masked_kspace.device
        spacing, offset = batch_spacing(batch)
        batch = compress_batch(batch, self.method.virtual_coils, self.method.compression)
        device = self.method.device or home
        if isinstance(self.method, Grappa):
            filled, spacing, kernel = self.method.fill(batch)
            count = filled.shape[0]
            calib = batch.calib.reshape(-1, 2).expand(count, 2).cpu()
            g = grappa_gfactor(batch.calibration_data.to(device), calib, spacing, kernel, ifft2c(filled), self.method.lam)
        else:
            maps = self.method.maps_for(batch, device)
            width = maps.shape[-1]
            if width % spacing == 0:
                g = sense_gfactor(maps, spacing)
            else:
                g = sense_gfactor_columns(maps, torch.arange(width) % spacing == offset)
        return center_crop(g, batch.crop_size).float().to(home)
