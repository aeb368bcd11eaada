"""`zero-filled`: RSS of the inverse FFT of the zero-filled k-space, the fastMRI target's scale.

Undersampled samples stay zero (that is the method); a partial-Fourier / partial-echo side is
completed per coil before the RSS (`recon.methods.base.coil_rss`). The benchmark's baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from recon.methods.options import PartialFourierOptions
from recon.methods.spec import MethodSpec

if TYPE_CHECKING:
    from recon.methods.base import Device
    from recon.methods.batch import Method


@dataclass(frozen=True, kw_only=True)
class ZeroFilledOptions(PartialFourierOptions):
    """Options of `zero-filled`."""


def build(options: ZeroFilledOptions, device: Device) -> Method:
    """A `ZeroFilled` k-space method."""
    from recon.methods.base import ZeroFilled

    return ZeroFilled(partial_fourier=options.partial_fourier, device=device)


SPEC = MethodSpec(
    name="zero-filled",
    summary="RSS of the zero-filled k-space's coil images",
    options=ZeroFilledOptions,
    build=build,
    baseline=True,
)
