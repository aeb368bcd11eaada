"""What the model-based methods (sense, cs, cs-tv) share: maps, data scale, device, output.

A `ClassicalMethod` takes coil maps from the batch or estimates them by ESPIRiT from the
batch's calibration region (`recon.calib`), runs its solver on the batch's device (or the one
it was built for) and returns the magnitude center-cropped to `crop_size`. Unit-RSS ESPIRiT
maps make `|x| ~ RSS`, the fastMRI target's scale.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch

from recon import ops
from recon.calib import espirit_calib
from recon.core import center_crop
from recon.methods.batch import ReconBatch

#: `solver(kspace, maps, mask, lam, iters) -> (B, 1, H, W)` complex64 image at k-space's scale.
Solver = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, int], torch.Tensor]


def data_scale(kspace: torch.Tensor) -> torch.Tensor:
    """Per-slice scale `(B, 1, 1, 1)`: max of the zero-filled RSS image (1 where that is 0).

    The methods divide k-space by it and multiply the image back, so regularization weights
    are defined on data whose zero-filled image peaks at 1, whatever the scanner's units.
    """
    peak = ops.rss(ops.ifft2c(kspace), 1).flatten(1).amax(1)
    peak = torch.where(peak > 0, peak, torch.ones_like(peak))
    return peak.reshape(-1, 1, 1, 1)


def normalized(solve: Callable[..., torch.Tensor], kspace: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    """`solve(kspace / data_scale, ...) * data_scale`: a solver made scale-invariant."""
    scale = data_scale(kspace)
    return solve(kspace / scale, *args, **kwargs) * scale


class ClassicalMethod:
    """A solver with fixed `lam`/`iters`, run on `device` (None = where the batch lives).

    espirit: keyword options of `recon.calib.espirit_calib` for batches without maps.
    """

    def __init__(
        self,
        solver: Solver,
        lam: float,
        iters: int,
        device: str | torch.device | None = None,
        espirit: Mapping[str, Any] | None = None,
    ) -> None:
        self.solver = solver
        self.lam = float(lam)
        self.iters = int(iters)
        self.device = None if device is None else torch.device(device)
        self.espirit = dict(espirit or {})

    @classmethod
    def build(
        cls,
        solver: Solver,
        defaults: Mapping[str, float | int],
        lam: float | None,
        iters: int | None,
        device: str | torch.device | None,
        espirit: Mapping[str, Any] | None,
    ) -> ClassicalMethod:
        """The method with `lam`/`iters` from the caller, or from `defaults` where None."""
        return cls(
            solver,
            defaults["lam"] if lam is None else lam,
            defaults["iters"] if iters is None else iters,
            device,
            espirit,
        )

    def maps_for(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        """The batch's maps, or ESPIRiT maps from its calibration region (no fully sampled data)."""
        if batch.maps is not None:
            return batch.maps.to(device, torch.complex64)
        return espirit_calib(batch.calibration_data.to(device, torch.complex64), batch.calib, **self.espirit)

    @torch.no_grad()
    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        """`ReconBatch` -> `(B, h, w)` float32 on the batch's device."""
        home = batch.masked_kspace.device
        device = self.device or home
        kspace = batch.masked_kspace.to(device, torch.complex64)
        mask = batch.mask.to(device).bool()
        maps = self.maps_for(batch, device)
        image = self.solver(kspace, maps, mask, self.lam, self.iters)
        return center_crop(image.abs()[:, 0], batch.crop_size).float().to(home)
