"""Options several methods share, as `Options` dataclasses to derive from (torch-free).

The choices are `Literal` types, so the options refuse other values and the CLI offers exactly
these (`recon.methods.spec`). `PartialFourier` names the modes of `recon.partial_fourier.MODES`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Mapping

from recon.methods.spec import Options, option

PartialFourier = Literal["pocs", "homodyne", "zero"]
Compression = Literal["svd", "gcc"]
Combine = Literal["rss", "sense"]
MapsCrop = Literal["soft", "hard", "wide"]


@dataclass(frozen=True, kw_only=True)
class PartialFourierOptions(Options):
    """How a method completes the unacquired side of partial Fourier / partial echo data."""

    partial_fourier: PartialFourier = option(
        "pocs",
        "partial Fourier / asymmetric echo: how the unacquired side is estimated after the method's own fill-in "
        "(per coil before the RSS for k-space methods, on the coil-combined image for sense / cs / cs-tv); homodyne "
        "keeps the real part, zero leaves it zero (default: pocs; data without a partial side are not affected)",
        "--partial-fourier",
    )


@dataclass(frozen=True, kw_only=True)
class CoilOptions(Options):
    """Coil compression before calibration (`recon.methods.virtual_coils`)."""

    virtual_coils: int | None = option(
        None,
        "coil compression to N virtual coils (--coil-compression) before calibration, after prewhitening "
        "(N >= the coils: no compression; default: all coils)",
        "--virtual-coils",
    )
    compression: Compression = option(
        "svd",
        "with --virtual-coils: svd (one mixing per slice, BART cc -S) or gcc (geometric, one per readout position, "
        "BART cc -G; needs a fully sampled readout) (default: svd)",
        "--coil-compression",
    )


@dataclass(frozen=True, kw_only=True)
class ModelBasedOptions(PartialFourierOptions, CoilOptions):
    """The coil maps and output of the methods that solve for one image on ESPIRiT maps (`recon.methods.classical`)."""

    maps_crop: MapsCrop = option(
        "soft",
        "ESPIRiT maps: soft weights them by a smooth step of the eigenvalue at 0.95 (BART ecalib -S), so they cover "
        "the object up to the FOV edge; hard zeroes them below 0.95 (SigPy, BART without -S); wide steps at "
        "eigenvalue 0.49 and keeps most of the background too (default: soft)",
        "--maps-crop",
    )
    espirit: Mapping[str, Any] | None = option(
        None, "keyword options of `recon.calib.espirit_calib` over those of maps_crop (default: none)"
    )
    combine: Combine = option(
        "rss",
        "output: rss = root-sum-of-squares of the coil images with the measured samples kept and the rest predicted "
        "from the solution (formed like the fastMRI target); sense = the solver's coil-combined |x| (BART pics "
        "convention) (default: rss)",
        "--combine",
    )
