"""What the model-based methods (sense, cs, cs-tv) share: maps, data scale, device, output.

A `ClassicalMethod` takes coil maps from the batch or estimates them by ESPIRiT from the
batch's calibration region (`recon.calib`), runs its solver on the batch's device (or the one
it was built for) and returns a magnitude image center-cropped to `crop_size`.

Map coverage (`ESPIRIT_DEFAULTS`): ESPIRiT's hard eigenvalue crop (0.95, SigPy's and BART's
default) zeroes the maps wherever the dominant eigenvalue falls below it, and the coil images
`S x` with them: at the FOV edge an object reaches when the narrow 8x calibration region cannot
follow the coil sensitivities across it (a black band with `combine="sense"`; with `rss` only the
measured samples remain there). The default weights the unit-norm eigenvector maps by BART
`ecalib -S`'s smooth step at 0.95 (`recon.calib.espirit.crop_weight`, `BART_SOFT`): the band,
whose eigenvalues lie just below 0.95, keeps most of its weight, while the maps still vanish
where the eigenvalue is low (the background), so the crop stays the support constraint inside
which SENSE / CS are better conditioned. Chosen on the tuning split (seeds 2000+) under the `rss`
output among the hard crop, this step and a wide step (`MAPS_CROP["wide"]`: half weight at
eigenvalue 0.49, which also keeps the background): BART's step scored highest or within 0.001
SSIM of the best for sense and cs on both sources at 4x and 8x. Acceptance split:
`benchmarks/results/soft_maps_accept_mni152.md`, `soft_maps_accept_phantom.md`.

Output (`combine`): the solver's estimate is one coil-combined complex image `x`. With `rss`
(default) the output is formed like the fastMRI target and like every k-space method here
(zero-filled, GRAPPA, SPIRiT, VarNet): each coil's k-space keeps its measured samples, the
samples not measured are predicted from the coil image `S_c x`, and the coil images are combined
by root-sum-of-squares (`consistent_rss`). The target is the RSS of noisy coil images; an image
without the measured noise (`|x|`) differs from it most in the background, where the target is
pure noise, and fastMRI's SSIM scores that difference heavily. With `sense` the output is
`|x| ||S||`, the RSS of the coil images `S x` without the measured samples, `||S||` the maps' RSS
over coils per pixel: `|x|` (BART `pics` / SigPy convention) where the maps have unit norm, the
crop weight times `|x|` where a soft crop scales them.

Readout oversampling: with `readout_crop` the maps come from the stored grid (fastMRI: 640
rows), then k-space and maps are cut to the `crop_size` rows of the readout FOV in hybrid space
(`recon.core.crop_readout`: 1-D inverse FFT along the readout, crop, FFT back) and the solver
runs there, at about half its cost. The data scale and the noise level are those of the stored
grid (`data_scale` of the cropped k-space differs by a few %, and the oversampled outer rows are
the pure noise the estimate needs), so the solver sees the same normalized data and the same
weight as on the stored grid, restricted to the FOV rows. The factories switch it on where the
image inside the FOV stays the same (ΔSSIM < 0.002 against the stored grid,
`benchmarks/results/oversampling_knee_1t.md`): `cs`, `cs-tv` and the readout-decoupled `sense`
with `hybrid=True` (one CG per row, so exactly the same image). It is off for the default CG-
SENSE: its CG step sizes are inner products over the whole grid, so the rows outside the FOV
(object and coil maps reach into the oversampled region of the knee) change the early-stopped
iterate inside it (fastMRI SSIM -0.005 at 4x). ESPIRiT stays on the stored grid: its maps on the
cropped grid are periodic over the FOV and cannot follow coil sensitivities that differ at the
two FOV edges when the object crosses them (-0.02 at 8x). A partial echo (a 2-D mask) keeps the
full grid.

Parameters by rule: every solver runs on k-space divided by `data_scale` (BART `pics`'s
automatic scale), and unless the caller fixes `lam`, each slice's weight comes from its own
noise level, `sigma_n = estimate_noise_sigma(kspace) / data_scale` (the complex noise std per
k-space sample on the normalized scale; `recon.noise`), through the method's `rule`.

Partial Fourier / partial echo: the solvers' data consistency leaves the unacquired side free
(the batch's mask), ESPIRiT calibrates on the readout's symmetric centre, the noise level is
measured on acquired rows only, and the coil-combined complex image is then completed by
`recon.partial_fourier` (`partial_fourier`: pocs, homodyne or zero) before its magnitude is taken.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import math

import numpy as np
import torch

from recon import ops
from recon import partial_fourier as pf
from recon.calib import espirit_calib
from recon.calib.espirit import BART_SOFT
from recon.core import center_crop, crop_readout
from recon.methods.batch import ReconBatch
from recon.methods.coils import check_virtual_coils, compress_batch
from recon.noise import estimate_noise_sigma

#: `solver(kspace, maps, mask, lam, iters, sigma=None[, scale=...]) -> (B, 1, H, W)` complex64
#: image at k-space's scale; `sigma` is the normalized noise std a stopping rule may use (None:
#: unknown); `scale` `(B, 1, 1, 1)`, passed only with the readout crop, is the data scale to
#: normalize by instead of `data_scale(kspace)` (`normalized`).
Solver = Callable[..., torch.Tensor]

#: `rule(sigma_n) -> lam`: the regularization weight of one slice from its normalized noise std.
Rule = Callable[[float], float]

#: How the output magnitude is formed (module docstring): `rss` of the data-consistent coil
#: images, or `sense`, the solver's coil-combined `|x|`.
COMBINES = ("rss", "sense")

#: BART's calibration block for its automatic scale: at most 32 samples per axis.
SCALE_BLOCK = 32

#: ESPIRiT options of the model-based methods unless the caller's `espirit` options set them:
#: a soft crop (module docstring; `recon.calib.espirit.crop_weight`).
ESPIRIT_DEFAULTS: dict[str, Any] = {"crop": 0.95, "soft": BART_SOFT}

#: `--maps-crop` choices -> ESPIRiT options: the soft default (BART `ecalib -S`'s step at 0.95),
#: SigPy / BART's hard 0.95 crop, or a wide step (half weight at eigenvalue 0.49) that keeps
#: most of the background too.
MAPS_CROP: dict[str, dict[str, Any]] = {
    "soft": dict(ESPIRIT_DEFAULTS),
    "hard": {"crop": 0.95, "soft": None},
    "wide": {"crop": 0.7, "soft": 0.1},
}


def _center_run(sampled: torch.Tensor, limit: int) -> tuple[int, int]:
    """`[W//2 - r, W//2 + r)`: the widest sampled run symmetric about the center column, at most `limit` wide (BART's calibration region)."""
    width = sampled.shape[0]
    start = stop = width // 2
    while stop - start + 2 <= limit and start > 0 and stop < width and bool(sampled[start - 1]) and bool(sampled[stop]):
        start, stop = start - 1, stop + 1
    return start, stop


def data_scale(kspace: torch.Tensor) -> torch.Tensor:
    """Per-slice scale `(B, 1, 1, 1)`, computed as BART `pics` scales its data automatically.

    BART (`estimate_scaling`, used by `pics` unless `-w` is given) takes the fully sampled
    k-space center, at most 32 x 32, inverse-FFTs it, combines the coils by root-sum-of-squares
    and divides by `sqrt(N / n)` per axis (full over block size), so the low-resolution image is
    on the full image's scale. Of its magnitudes it takes the median, the 90th percentile and
    the maximum, and uses the 90th percentile unless the maximum is an outlier
    (`max - p90 >= 2 (p90 - median)`), then the maximum. Here the block is the sampled run
    symmetric about the center column (the ACS region, up to 32) by the central 32 rows; where
    the image data hold no such run (calibration lines stored apart), the central 32 columns
    zero-filled, with the energy of the missing columns restored by `sqrt(block / sampled)`.

    The methods divide k-space by it and multiply the image back, so step sizes and explicit
    weights act on data whose bright tissue is ~1, whatever the scanner's units. A slice with
    no sampled column near the center, or an all-zero block, gets scale 1.
    """
    batch, _, height, width = kspace.shape
    sampled = (kspace != 0).flatten(1, 2).any(1)
    scales = []
    for b in range(batch):
        c0, c1 = _center_run(sampled[b], SCALE_BLOCK)
        if c1 - c0 < 2:
            c0 = max(0, width // 2 - SCALE_BLOCK // 2)
            c1 = min(width, c0 + SCALE_BLOCK)
        measured = int(sampled[b, c0:c1].sum())
        rows = min(height, SCALE_BLOCK)
        r0 = height // 2 - rows // 2
        if measured == 0:
            scales.append(1.0)
            continue
        block = kspace[b : b + 1, :, r0 : r0 + rows, c0:c1]
        low = ops.rss(ops.ifft2c(block), 1).flatten() * math.sqrt((c1 - c0) / measured)
        low = low / math.sqrt(height * width / (rows * (c1 - c0)))
        ordered = torch.sort(low.float()).values.cpu()
        n = ordered.numel()
        median, p90, peak = float(ordered[n // 2]), float(ordered[int(0.9 * n)]), float(ordered[-1])
        scale = p90 if (peak - p90) < 2 * (p90 - median) else peak
        scales.append(scale if scale > 0 else 1.0)
    return torch.tensor(scales, dtype=torch.float32, device=kspace.device).reshape(-1, 1, 1, 1)


def noise_sigma(kspace: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-slice complex noise std `(B,)` float in k-space units (`recon.noise.estimate_noise_sigma`).

    kspace `(B, C, H, W)`; mask `(B, 1, 1, W)` columns or `(B, 1, H, W)` locations (then the
    columns sampled anywhere count). 0 for a slice without measurable noise (edge rows all
    zero). The estimate holds where the outer readout rows are pure noise (2x readout
    oversampling, as in fastMRI files); where they still carry the object's k-space tail (no
    oversampling, analytic phantoms with sharp edges) it measures signal, and the noise rules
    then regularize more than they would at the true noise level. With a partial echo the
    outer rows are those of the acquired readout (the unacquired ones are not noise).
    """
    cols = mask.bool().flatten(1, 2).any(1).reshape(mask.shape[0], -1).expand(kspace.shape[0], -1).cpu().numpy()
    r0, r1 = pf.readout_extent(mask, kspace.shape[-2])
    data = kspace[..., r0:r1, :].detach().cpu().numpy()
    out = []
    for b in range(kspace.shape[0]):
        try:
            out.append(float(estimate_noise_sigma(data[b], np.asarray(cols[b]))))
        except ValueError:
            out.append(0.0)
    return torch.tensor(out, dtype=torch.float32)


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


class ClassicalMethod:
    """A solver with `iters` (its iteration cap), run on `device` (None = where the batch lives).

    lam: a fixed weight on the normalized scale for every slice; None = per slice by `rule` from
    the slice's normalized noise std (then the slices are solved one at a time, each with its
    own weight and noise level). espirit: keyword options of `recon.calib.espirit_calib` for
    batches without maps, over `ESPIRIT_DEFAULTS`. virtual_coils: compress each batch to that many coils (`compression`:
    svd | gcc) before the maps are estimated (`methods.coils.compress_batch`; None: all coils).
    combine: `rss` or `sense`, how the output is formed (module docstring).
    """

    def __init__(
        self,
        solver: Solver,
        lam: float | None,
        iters: int,
        device: str | torch.device | None = None,
        espirit: Mapping[str, Any] | None = None,
        rule: Rule | None = None,
        partial_fourier: str = pf.DEFAULT_MODE,
        virtual_coils: int | None = None,
        compression: str = "svd",
        combine: str = "rss",
    ) -> None:
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
        self.device = None if device is None else torch.device(device)
        self.espirit = {**ESPIRIT_DEFAULTS, **dict(espirit or {})}
        self.partial_fourier = pf.check_mode(partial_fourier)
        self.virtual_coils = check_virtual_coils(virtual_coils, compression)
        self.compression = compression
        #: solve on the readout FOV (module docstring); False solves on the stored grid (set by the factories)
        self.readout_crop = False

    @classmethod
    def build(
        cls,
        solver: Solver,
        defaults: Mapping[str, float | int],
        lam: float | None,
        iters: int | None,
        device: str | torch.device | None,
        espirit: Mapping[str, Any] | None,
        rule: Rule | None = None,
        partial_fourier: str = pf.DEFAULT_MODE,
        virtual_coils: int | None = None,
        compression: str = "svd",
        combine: str = "rss",
    ) -> ClassicalMethod:
        """The method with `lam`/`iters` from the caller; where None, `rule` and `defaults["iters"]`."""
        return cls(solver, lam, defaults["iters"] if iters is None else iters, device, espirit, rule, partial_fourier, virtual_coils, compression, combine)

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

    @torch.no_grad()
    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        """`ReconBatch` -> `(B, h, w)` float32 on the batch's device."""
        home = batch.masked_kspace.device
        device = self.device or home
        batch = compress_batch(batch, self.virtual_coils, self.compression)
        kspace = batch.masked_kspace.to(device, torch.complex64)
        mask = batch.mask.to(device).bool()
        maps = self.maps_for(batch, device)
        rows = int(batch.crop_size[0])
        sigma = scale = None
        partial = pf.has_partial(batch.extent, kspace.shape[-2:])
        if self.readout_crop and not partial and mask.shape[-2] == 1 and rows < kspace.shape[-2]:
            scale = data_scale(kspace)  # the stored grid's scale and noise level (module docstring)
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
        return center_crop(magnitude, batch.crop_size).float().to(home)
