"""`grappa`: GRAPPA-filled k-space, RSS of the coil images, for uniformly undersampled data.

Uniform means a constant spacing of the sampled columns outside the calibration region
(`recon.calib.grappa.uniform_spacing`); a random mask is refused with a pointer to the methods
for any mask. Kernels are calibrated per slice on the calibration region of the calibration
data (ISMRMRD calibration-only lines when the file has them); the output is at the fastMRI
target's scale. Its g-factor is the analytic image-domain GRAPPA g-factor (Breuer 2009).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recon.methods.options import CoilOptions, PartialFourierOptions
from recon.methods.spec import MethodSpec, Needs, Supports, option

if TYPE_CHECKING:
    from recon.methods.base import Device
    from recon.methods.batch import Method


@dataclass(frozen=True, kw_only=True)
class GrappaOptions(PartialFourierOptions, CoilOptions):
    """Options of `grappa`."""

    kernel: tuple[int, int] | None = option(
        None, "kernel (kx readout rows, ky phase-encode columns) (default: (5, ky), ky the smallest odd width >= 5 "
        "reaching a sampled column from every missing one: 5 up to 4x, 9 at 8x)")
    lam: float | None = option(None, "Tikhonov weight relative to the calibration matrix's energy (default: 0.01, pygrappa's)")
    pygrappa_compat: bool = option(False, "reproduce pygrappa's conventions exactly (default: off)")


def build(options: GrappaOptions, device: Device) -> Method:
    """A `Grappa` k-space method."""
    from recon.calib.grappa import DEFAULT_LAM
    from recon.methods.grappa_fill import Grappa

    return Grappa(options.kernel, DEFAULT_LAM if options.lam is None else options.lam, options.pygrappa_compat,
                  partial_fourier=options.partial_fourier, device=device, virtual_coils=options.virtual_coils,
                  compression=options.compression)


SPEC = MethodSpec(
    name="grappa",
    summary="GRAPPA-filled k-space, RSS of the coil images (uniform masks)",
    options=GrappaOptions,
    build=build,
    needs=Needs(acs=3, uniform_mask=True, multi_coil=True),
    supports=Supports(gfactor="analytic image-domain GRAPPA (Breuer 2009)"),
)
