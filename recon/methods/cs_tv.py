"""`cs-tv`: total-variation compressed sensing on the SENSE model by PDHG, on ESPIRiT maps.

`min_x 1/2 ||A x - y||^2 + lam ||G x||_1`, `A = M F S`, G forward differences along rows and
columns (`recon.methods.solvers.pdhg_tv`), on data normalized by BART's scale, with
`lam = 0.1 sigma_n` from each slice's noise level unless fixed, `iters` PDHG iterations, solved
on the readout FOV. Tuning: docs/methods/model_based.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recon.methods.options import ModelBasedOptions
from recon.methods.spec import MethodSpec, Needs, option

if TYPE_CHECKING:
    from recon.methods.base import Device
    from recon.methods.batch import Method


@dataclass(frozen=True, kw_only=True)
class CsTvOptions(ModelBasedOptions):
    """Options of `cs-tv`."""

    lam: float | None = option(
        None, "TV weight on the data normalized by BART's scale (bright tissue ~1) (default: per slice 0.1 sigma "
        "from its noise level)", "--lam")
    iters: int = option(100, "PDHG iterations (default: 100)", "--iters")


def build(options: CsTvOptions, device: Device) -> Method:
    """A `ClassicalMethod` with the PDHG TV solver, solving on the readout FOV."""
    from recon.methods.classical import ClassicalMethod, espirit_options
    from recon.methods.solvers import tv_recon, tv_rule

    return ClassicalMethod(tv_recon, options.lam, options.iters, device, espirit_options(options.maps_crop, options.espirit),
                           tv_rule, options.partial_fourier, options.virtual_coils, options.compression, options.combine,
                           readout_crop=True)


SPEC = MethodSpec(
    name="cs-tv",
    summary="total-variation compressed sensing (PDHG) on ESPIRiT maps",
    options=CsTvOptions,
    build=build,
    needs=Needs(acs=3, matrix=(8, 8), coil_maps=True),
)
