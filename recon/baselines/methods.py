"""Method factories for the classical baselines behind `recon.methods`' batched interface.

Each factory returns a callable `ReconBatch -> (B, h, w)` float32 magnitude images at the RSS
target's scale (unit-RSS ESPIRiT maps make `|x| ~ RSS`), center-cropped to `crop_size`.
Maps come from the batch or are estimated by ESPIRiT from its calibration region.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from recon.baselines.cs import l1_wavelet_recon, tv_recon
from recon.baselines.espirit import espirit_calib
from recon.baselines.sense import sense_recon
from recon.core import center_crop

Solver = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, float, int], torch.Tensor]

#: lam on the normalized scale (`data_scale`). sense / cs stop early on purpose: their
#: iteration count regularizes (more iterations amplify noise at high acceleration); TV runs
#: until its PDHG has converged. How they were chosen: `benchmarks/sweep_baselines.py` and
#: `benchmarks/results/`.
DEFAULTS: dict[str, dict[str, float | int]] = {
    "sense": {"lam": 0.1, "iters": 10},
    "cs": {"lam": 0.003, "iters": 10},
    "cs-tv": {"lam": 0.003, "iters": 100},
}


class BaselineMethod:
    """A solver with fixed `lam`/`iters`, run on `device` (None = where the batch lives)."""

    def __init__(self, solver: Solver, lam: float, iters: int, device: str | torch.device | None = None, espirit: dict[str, Any] | None = None) -> None:
        self.solver = solver
        self.lam = float(lam)
        self.iters = int(iters)
        self.device = None if device is None else torch.device(device)
        self.espirit = dict(espirit or {})

    def maps_for(self, batch: Any, device: torch.device) -> torch.Tensor:
        """The batch's maps, or ESPIRiT maps from its calibration region (no fully sampled data)."""
        if batch.maps is not None:
            return batch.maps.to(device, torch.complex64)
        return espirit_calib(batch.calibration_data.to(device, torch.complex64), batch.calib, **self.espirit)

    @torch.no_grad()
    def __call__(self, batch: Any) -> torch.Tensor:
        """`ReconBatch` -> `(B, h, w)` float32 on the batch's device."""
        home = batch.masked_kspace.device
        device = self.device or home
        kspace = batch.masked_kspace.to(device, torch.complex64)
        mask = batch.mask.to(device).bool()
        maps = self.maps_for(batch, device)
        image = self.solver(kspace, maps, mask, self.lam, self.iters)
        return center_crop(image.abs()[:, 0], batch.crop_size).float().to(home)


def _factory(name: str, solver: Solver) -> Callable[..., BaselineMethod]:
    def make(lam: float | None = None, iters: int | None = None, device: str | torch.device | None = None, espirit: dict[str, Any] | None = None, **_: object) -> BaselineMethod:
        defaults = DEFAULTS[name]
        return BaselineMethod(
            solver,
            defaults["lam"] if lam is None else lam,
            defaults["iters"] if iters is None else iters,
            device,
            espirit,
        )

    make.__name__ = f"make_{name.replace('-', '_')}"
    make.__doc__ = f"`{name}` method; lam/iters default to DEFAULTS[{name!r}], device None = the batch's."
    return make


make_sense = _factory("sense", sense_recon)
make_cs = _factory("cs", l1_wavelet_recon)
make_cs_tv = _factory("cs-tv", tv_recon)
