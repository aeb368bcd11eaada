"""`sense`: CG-SENSE with Tikhonov regularization on ESPIRiT maps.

Solves `min_x 1/2 ||M F S x - y||^2 + lam/2 ||x||^2` per slice by conjugate gradients from
`x = 0` (`recon.methods.solvers.cg_sense`), on data normalized by BART's scale, with
`lam = sigma_n^2` from each slice's noise level unless fixed, and stopped after `iters`
iterations (early stopping is part of the regularization). Its g-factor is the analytic SENSE
g-factor of its maps. Tuning and the stopping rules tried: docs/methods/model_based.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recon.methods.options import ModelBasedOptions
from recon.methods.spec import MethodSpec, Needs, Supports, option

if TYPE_CHECKING:
    from recon.methods.base import Device
    from recon.methods.batch import Method


@dataclass(frozen=True, kw_only=True)
class SenseOptions(ModelBasedOptions):
    """Options of `sense`."""

    lam: float | None = option(
        None, "Tikhonov weight on the data normalized by BART's scale (bright tissue ~1) (default: per slice sigma^2 "
        "from its noise level)", "--lam")
    iters: int = option(10, "CG iterations (default: 10)", "--iters")
    hybrid: bool = option(False, "solve readout-decoupled, one CG per readout row, on the readout FOV (default: off)")
    discrepancy: bool = option(
        False, "also stop each slice by the discrepancy principle at its measured noise level (only with lam None) (default: off)")


def build(options: SenseOptions, device: Device) -> Method:
    """A `SenseMethod` (readout-cropped with `hybrid`: one CG per row gives the same image)."""
    from recon.methods.classical import SenseMethod, espirit_options
    from recon.methods.solvers import SenseSolver, tikhonov_rule

    return SenseMethod(SenseSolver(options.hybrid, options.discrepancy), options.lam, options.iters, device,
                       espirit_options(options.maps_crop, options.espirit), tikhonov_rule, options.partial_fourier,
                       options.virtual_coils, options.compression, options.combine, readout_crop=options.hybrid)


SPEC = MethodSpec(
    name="sense",
    summary="CG-SENSE with Tikhonov regularization on ESPIRiT maps",
    options=SenseOptions,
    build=build,
    needs=Needs(acs=3, matrix=(8, 8), coil_maps=True),
    supports=Supports(gfactor="analytic SENSE"),
)
