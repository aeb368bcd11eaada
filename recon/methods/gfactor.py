"""g-factor maps of a built method, batch by batch (`recon reconstruct --gfactor`).

Defined for the methods whose spec names a g-factor (`Supports.gfactor`: the linear
parallel-imaging methods) on uniform undersampling only; the built method computes the map of
its own calibration (`gfactor(batch, spacing, offset, device)`: sense the analytic SENSE
g-factor of its coil maps, that of the unregularized SENSE solution CG-SENSE approaches as
lam -> 0; grappa the analytic image-domain g-factor of its interior kernels with the RSS of its
own coil images; `recon.calib.gfactor`), with its virtual coils. The spacing `R` is that of the
sampled columns outside the calibration region (`calib.grappa.uniform_spacing`); the
calibration lines are not counted (the textbook g-factor of the uniform pattern). Random masks
and partial Fourier data are refused.
"""

from __future__ import annotations

import torch

from recon import partial_fourier as pf
from recon.calib.grappa import uniform_spacing
from recon.core import center_crop
from recon.methods.batch import Method, ReconBatch
from recon.methods.registry import available, spec


def check_gfactor(method: str) -> None:
    """ValueError unless `method` has a g-factor map."""
    if spec(method).supports.gfactor is None:
        having = [m for m in available() if spec(m).supports.gfactor is not None]
        raise ValueError(f"--gfactor: a g-factor is defined for {', '.join(having)} (linear parallel imaging on uniform "
                         f"undersampling), not for method {method!r}")


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
    """`ReconBatch` -> `(B, h, w)` float32 g-factor maps of `method` (built by `recon.methods.get`)."""

    def __init__(self, method: Method) -> None:
        inner = getattr(method, "method", method)  # `recon.methods.get` wraps the method in its output check
        if not hasattr(inner, "gfactor"):
            raise ValueError(f"--gfactor: no g-factor for {type(inner).__name__}")
        self.method = inner

    @torch.no_grad()
    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        spacing, offset = batch_spacing(batch)
        prepared, home, device = self.method.prepare(batch)
        return center_crop(self.method.gfactor(prepared, spacing, offset, device), batch.crop_size).float().to(home)
