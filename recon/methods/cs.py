"""`cs`: L1-wavelet compressed sensing on the SENSE model by FISTA, on ESPIRiT maps.

`min_x 1/2 ||A x - y||^2 + lam ||W x||_1`, `A = M F S`, W the db4 wavelet with BART's random
shifts (`recon.methods.solvers.fista_l1_wavelet`), on data normalized by BART's scale, with
`lam = 0.3 sigma_n` from each slice's noise level unless fixed, `iters` FISTA iterations, solved
on the readout FOV. Tuning: docs/methods/model_based.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from recon.methods.options import ModelBasedOptions
from recon.methods.spec import MethodSpec, Needs, option

if TYPE_CHECKING:
    from recon.methods.base import Device
    from recon.methods.batch import Method


@dataclass(frozen=True, kw_only=True)
class CsOptions(ModelBasedOptions):
    """Options of `cs`."""

    lam: float | None = option(
        None, "L1-wavelet weight on the data normalized by BART's scale (bright tissue ~1) (default: per slice "
        "0.3 sigma from its noise level)", "--lam")
    iters: int = option(20, "FISTA iterations (default: 20)", "--iters")
    restart: Literal["gradient", "function"] | None = option(
        None, "FISTA adaptive restart (O'Donoghue-Candes): gradient or function scheme (default: none)")


def build(options: CsOptions, device: Device) -> Method:
    """A `ClassicalMethod` with the FISTA L1-wavelet solver, solving on the readout FOV."""
    from recon.methods.classical import ClassicalMethod, espirit_options
    from recon.methods.solvers import L1WaveletSolver, l1_rule

    return ClassicalMethod(L1WaveletSolver(options.restart), options.lam, options.iters, device,
                           espirit_options(options.maps_crop, options.espirit), l1_rule, options.partial_fourier,
                           options.virtual_coils, options.compression, options.combine, readout_crop=True)


SPEC = MethodSpec(
    name="cs",
    summary="L1-wavelet compressed sensing (FISTA) on ESPIRiT maps",
    options=CsOptions,
    build=build,
    needs=Needs(acs=3, matrix=(8, 8), coil_maps=True),
)
