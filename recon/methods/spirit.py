"""`spirit`: SPIRiT for any Cartesian mask.

A SPIRiT kernel per slice from the calibration region, then the unknown k-space samples filled
by CG with a noise-level k-space prior (default) or by L1-SPIRiT (FISTA with a joint L1-wavelet
norm, `lam` > 0 or `l1`), RSS of the coil images at the fastMRI target's scale
(`recon.methods.spirit_fill`). Derivation and tuning: docs/methods/spirit.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recon.methods.options import CoilOptions, PartialFourierOptions
from recon.methods.spec import MethodSpec, Needs, option

if TYPE_CHECKING:
    from recon.methods.base import Device
    from recon.methods.batch import Method


@dataclass(frozen=True, kw_only=True)
class SpiritOptions(PartialFourierOptions, CoilOptions):
    """Options of `spirit`."""

    lam: float | None = option(
        None, "L1-wavelet weight on the data normalized by BART's scale (L1-SPIRiT) (default: none, CG with the "
        "k-space prior)", "--lam")
    iters: int | None = option(None, "iterations (default: at most 50 CG, 30 FISTA with --lam)", "--iters")
    kernel: tuple[int, int] | None = option(
        None, "kernel (kx, ky), odd sizes (default: (5, ky), ky the largest odd width <= 5 and <= half the calibration width)")
    tikhonov: float | None = option(
        None, "calibration Tikhonov weight relative to the calibration matrix (Lustig's) (default: the noise rule m sigma^2)")
    prior: bool = option(True, "the k-space prior's noise rule; off: plain SPIRiT, stopped by iters alone (default: on)")
    l1: bool = option(False, "L1-SPIRiT with the noise rule lam = 0.3 sigma_n (default: off)")


def build(options: SpiritOptions, device: Device) -> Method:
    """A `Spirit` k-space method."""
    from recon.methods.spirit_fill import Spirit

    return Spirit(options.kernel, options.tikhonov, options.prior, options.lam, options.l1, options.iters,
                  partial_fourier=options.partial_fourier, device=device, virtual_coils=options.virtual_coils,
                  compression=options.compression)


SPEC = MethodSpec(
    name="spirit",
    summary="SPIRiT k-space fill with a noise-level prior (any Cartesian mask)",
    options=SpiritOptions,
    build=build,
    needs=Needs(acs=3, multi_coil=True),
)
