"""The image method base of sense, cs and cs-tv: coil maps, normalized solve, partial Fourier, output.

`ClassicalMethod` takes coil maps from the batch or estimates them by ESPIRiT from its
calibration region (soft-cropped by default, `ESPIRIT_DEFAULTS`), solves for one coil-combined
image on k-space normalized by `recon.noise.data_scale` with a weight fixed by the caller or set
per slice from its noise level by the method's `rule`, completes a partial-Fourier side on that
image and forms the output: `consistent_rss` (default, like the fastMRI target) or `|x| ||S||`.
With `readout_crop` it solves on the readout FOV in hybrid space. Why each choice, and the
measurements behind it: docs/methods/model_based.md.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, get_args

import torch

from recon import ops
from recon import partial_fourier as pf
from recon.calib import espirit_calib
from recon.calib.espirit import BART_SOFT
from recon.calib.gfactor import sense_gfactor, sense_gfactor_columns
from recon.core import center_crop, crop_readout
from recon.methods.base import BatchMethod, Device
from recon.methods.batch import ReconBatch
from recon.methods.options import Combine
from recon.noise import data_scale, noise_sigma

#: `solver(kspace, maps, mask, lam, iters, sigma=None[, scale=...]) -> (B, 1, H, W)` complex64
#: image at k-space's scale; `sigma` is the normalized noise std a stopping rule may use (None:
#: unknown); `scale` `(B, 1, 1, 1)`, passed only with the readout crop, is the data scale to
#: normalize by instead of `data_scale(kspace)` (`normalized`).
Solver = Callable[..., torch.Tensor]

#: `rule(sigma_n) -> lam`: the regularization weight of one slice from its normalized noise std.
Rule = Callable[[float], float]

#: How the output magnitude is formed: `rss` of the data-consistent coil images, or `sense`,
#: the solver's coil-combined `|x|`.
COMBINES: tuple[str, ...] = get_args(Combine)

#: ESPIRiT options unless the caller's `espirit` options set them: BART `ecalib -S`'s soft crop
#: at 0.95 (`recon.calib.espirit.crop_weight`).
ESPIRIT_DEFAULTS: dict[str, Any] = {"crop": 0.95, "soft": BART_SOFT}

#: `maps_crop` choices -> ESPIRiT options: the soft default, SigPy / BART's hard 0.95 crop, or a
#: wide step (half weight at eigenvalue 0.49) that keeps most of the background too.
MAPS_CROP: dict[str, dict[str, Any]] = {
    "soft": dict(ESPIRIT_DEFAULTS),
    "hard": {"crop": 0.95, "soft": None},
    "wide": {"crop": 0.7, "soft": 0.1},
}


def espirit_options(maps_crop: str = "soft", espirit: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """ESPIRiT keyword options of a `maps_crop` choice, with the caller's `espirit` options over them."""
    return {**MAPS_CROP[maps_crop], **dict(espirit or {})}


def consistent_rss(
    image: torch.Tensor,
    maps: torch.Tensor,
    kspace: torch.Tensor,
    mask: torch.Tensor,
    extent: tuple[tuple[int, int], tuple[int, int]] | None = None,
) -> torch.Tensor:
    """`(B, H, W)` RSS of the coil images whose k-space keeps the measured samples.

    image `(B, 1, H, W)` complex (the solver's estimate), maps `(B, C, H, W)`, kspace
    `(B, C, H, W)` measured (zero where not sampled), mask `(B, 1, 1, W)` columns or
    `(B, 1, H, W)` locations. Where not sampled, coil c's k-space is `F(S_c x)`. Outside the
    acquirable rectangle `extent` nothing is predicted (a scanner's zero padding stays zero, as
    in the fully sampled target), except along a partial-Fourier axis, where `x` already holds
    the partial-Fourier estimate.
    """
    predicted = ops.fft2c(maps * image)
    sampled = mask.bool().expand_as(kspace)
    coil_kspace = torch.where(sampled, kspace, predicted)
    if extent is not None:
        rows, cols = kspace.shape[-2:]
        partial = pf.partial_axes(extent, (rows, cols))
        keep = torch.zeros(rows, cols, dtype=torch.bool, device=kspace.device)
        (r0, r1), (c0, c1) = [(0, n) if p else (max(0, a), min(n, b)) for (a, b), n, p in zip(extent, (rows, cols), partial)]
        keep[r0:r1, c0:c1] = True
        coil_kspace = torch.where(keep | sampled, coil_kspace, torch.zeros((), dtype=coil_kspace.dtype, device=coil_kspace.device))
    return ops.rss(ops.ifft2c(coil_kspace), 1)


def normalized(
    solve: Callable[..., torch.Tensor], kspace: torch.Tensor, *args: Any, scale: torch.Tensor | None = None, **kwargs: Any
) -> torch.Tensor:
    """`solve(kspace / scale, ...) * scale`: a solver made scale-invariant; `scale` `(B, 1, 1, 1)`
    defaults to `data_scale(kspace)` (the readout crop passes the stored grid's)."""
    scale = data_scale(kspace) if scale is None else scale.to(kspace.device)
    return solve(kspace / scale, *args, **kwargs) * scale


class ClassicalMethod(BatchMethod):
    """A solver with `iters` (its iteration cap), run on `device` (None = where the batch lives).

    lam: a fixed weight on the normalized scale for every slice; None = per slice by `rule` from
    the slice's normalized noise std (then the slices are solved one at a time, each with its
    own weight and noise level). espirit: keyword options of `recon.calib.espirit_calib` for
    batches without maps, over `ESPIRIT_DEFAULTS`. virtual_coils, compression: as `BatchMethod`.
    combine: `rss` or `sense`, how the output is formed. readout_crop: solve on the readout FOV.
    """

    def __init__(
        self,
        solver: Solver,
        lam: float | None,
        iters: int,
        device: Device = None,
        espirit: Mapping[str, Any] | None = None,
        rule: Rule | None = None,
        partial_fourier: str = pf.DEFAULT_MODE,
        virtual_coils: int | None = None,
        compression: str = "svd",
        combine: str = "rss",
        readout_crop: bool = False,
    ) -> None:
        super().__init__(device, virtual_coils, compression)
        if lam is None and rule is None:
            raise ValueError("a classical method needs a fixed lam or a noise rule")
        if lam is not None and not (math.isfinite(lam) and lam >= 0):
            raise ValueError(f"lam must be finite and >= 0, got {lam}")
        if int(iters) < 1:
            raise ValueError(f"iters must be >= 1, got {iters}")
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {', '.join(COMBINES)}, got {combine!r}")
        self.combine = combine
        self.solver = solver
        self.lam = None if lam is None else float(lam)
        self.rule = rule
        self.iters = int(iters)
        self.espirit = {**ESPIRIT_DEFAULTS, **dict(espirit or {})}
        self.partial_fourier = pf.check_mode(partial_fourier)
        self.readout_crop = bool(readout_crop)

    def solve(
        self,
        kspace: torch.Tensor,
        maps: torch.Tensor,
        mask: torch.Tensor,
        sigma: torch.Tensor | None = None,
        scale: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(B, 1, H, W)` complex image: fixed `lam` for the batch, or per slice by the rule from
        `sigma`, the normalized noise std `(B,)` (None: measured on `kspace`). scale: the data
        scale `(B, 1, 1, 1)` to normalize by, passed on to the solver (None: its own `data_scale(kspace)`)."""
        if self.lam is not None:
            return self.solver(kspace, maps, mask, self.lam, self.iters, **({} if scale is None else {"scale": scale}))
        if sigma is None:
            sigma = noise_sigma(kspace, mask) / (data_scale(kspace) if scale is None else scale).flatten().cpu()
        images = []
        for b in range(kspace.shape[0]):
            sigma_n = float(sigma[b])
            m = mask[b : b + 1] if mask.shape[0] == kspace.shape[0] else mask
            own = {} if scale is None else {"scale": scale[b : b + 1]}
            images.append(self.solver(kspace[b : b + 1], maps[b : b + 1], m, self.rule(sigma_n), self.iters, sigma=sigma_n, **own))
        return torch.cat(images)

    def maps_for(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        """The batch's maps, or ESPIRiT maps from its calibration region (no fully sampled data).

        With a partial echo the calibration rows are the readout's symmetric centre (unless the
        `espirit` options fix `calib_rows`), so no unacquired row enters the calibration matrix.
        """
        if batch.maps is not None:
            return batch.maps.to(device, torch.complex64)
        options = dict(self.espirit)
        if batch.mask.shape[-2] > 1 and "calib_rows" not in options:
            lo, hi = pf.symmetric_readout(batch.mask, batch.masked_kspace.shape[-2])
            options["calib_rows"] = hi - lo
        return espirit_calib(batch.calibration_data.to(device, torch.complex64), batch.calib, **options)

    def images(self, batch: ReconBatch, device: torch.device) -> torch.Tensor:
        kspace = batch.masked_kspace.to(device, torch.complex64)
        mask = batch.mask.to(device).bool()
        maps = self.maps_for(batch, device)
        rows = int(batch.crop_size[0])
        sigma = scale = None
        partial = pf.has_partial(batch.extent, kspace.shape[-2:])
        if self.readout_crop and not partial and mask.shape[-2] == 1 and rows < kspace.shape[-2]:
            scale = data_scale(kspace)  # the stored grid's scale and noise level (docs/methods/model_based.md)
            sigma = noise_sigma(kspace, mask) / scale.flatten().cpu() if self.lam is None else None
            kspace = crop_readout(kspace, rows)
            maps = center_crop(maps, (rows, maps.shape[-1]))
        image = pf.combined_image(self.solve(kspace, maps, mask, sigma, scale), batch.extent, self.partial_fourier)
        if self.combine == "rss":
            magnitude = consistent_rss(image, maps, kspace, mask, batch.extent)
            # a slice without coil maps (ESPIRiT found none) has no solution; its zero-filled data are not one
            magnitude = torch.where(maps.flatten(1).any(1).reshape(-1, 1, 1), magnitude, torch.zeros((), device=magnitude.device))
        else:
            magnitude = image.abs()[:, 0] * torch.linalg.vector_norm(maps, dim=1)  # |x| ||S||: RSS of the coil images S x
        return center_crop(magnitude, batch.crop_size)


class SenseMethod(ClassicalMethod):
    """`sense`: a `ClassicalMethod` that also has g-factor maps of its own coil maps (`gfactor`)."""

    def gfactor(self, batch: ReconBatch, spacing: int, offset: int, device: torch.device) -> torch.Tensor:
        """`(B, H, W)` analytic SENSE g-factor of the batch's maps at column spacing `spacing`
        (sampled columns `offset + k spacing`): aliased-pixel groups where the spacing divides the
        columns, the exact per-row inversion where it does not (`recon.calib.gfactor`)."""
        maps = self.maps_for(batch, device)
        width = maps.shape[-1]
        if width % spacing == 0:
            return sense_gfactor(maps, spacing)
        return sense_gfactor_columns(maps, torch.arange(width) % spacing == offset)
