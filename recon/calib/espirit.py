"""ESPIRiT coil sensitivity estimation in torch (CPU or GPU), from the ACS lines of the data.

The calibration region is rectangular: the acquisition model's calibration columns
`[start, stop)` (`recon.acquisition`) by every acquired readout row (as BART's `ecalib -r
H:nlow`), because at 8x there are only ~15 ACS columns and a square 15x15 region gives
unreliable maps. Only acquired lines enter the calibration: the region is never re-derived
from a width. Conventions follow SigPy's `EspiritCalib` (kernel
blocks, SVD threshold relative to the largest singular value, per-pixel power iteration on
the image-domain kernel Gram matrix, phase relative to the first coil, hard crop by the
eigenvalue), so its maps are reproduced where the regions agree.

The image-domain Gram matrix `G(r) = (H W / k^2) sum_n k_n(r) k_n(r)^H` of the null-space-
complement kernels is band-limited (its spectrum fits in `(2k-1)^2`), so it is evaluated
exactly with two small separable DFT matrices, row block by row block, never as `n` full
FFTs. The eigenvectors are smooth, so the power iteration runs on a 4x coarser grid and the
upsampled result seeds a few full-resolution iterations (same fixed point, ~1 s for a
15-coil 640x368 slice on 2 CPU cores).
"""

from __future__ import annotations

import torch


def noise_singular_value(sing: torch.Tensor) -> torch.Tensor:
    """Typical noise singular value of a calibration matrix: the median of its smaller half.

    The signal occupies a few dozen of the `C k^2` singular values; the rest form the noise
    bulk, whose largest member sits near `1 + sqrt(n / m)` times this value for an `m x n`
    calibration matrix (the Marchenko-Pastur edge; `calibration_kernels` applies it).
    """
    ordered = torch.sort(sing).values
    return ordered[: max(1, ordered.numel() // 2)].median()


def calibration_kernels(calib: torch.Tensor, kernel_width: int, thresh: float, noise_factor: float = 0.0) -> torch.Tensor:
    """Row space of the calibration (block Hankel) matrix above `thresh * s_max`.

    With `noise_factor > 0` a singular value must also exceed `noise_factor` times the noise
    bulk's edge (`noise_singular_value` x `1 + sqrt(n / m)`): on low-SNR data the noise bulk
    reaches `thresh * s_max`, and noise directions would otherwise enter the kernels.

    calib: `(C, h, w)` complex calibration k-space. Returns `(n, C, k, k)` complex kernels
    (the right singular vectors, as rows of `V^H`, in SigPy's block layout).
    """
    coils = calib.shape[0]
    k = kernel_width
    if calib.shape[-2] < k or calib.shape[-1] < k:
        raise ValueError(f"calibration region {tuple(calib.shape[-2:])} smaller than the kernel ({k})")
    blocks = calib.unfold(1, k, 1).unfold(2, k, 1)  # (C, by, bx, k, k)
    mat = blocks.permute(1, 2, 0, 3, 4).reshape(-1, coils * k * k)
    gram = (mat.conj().T @ mat).to(torch.complex128)  # V S^2 V^H
    evals, evecs = torch.linalg.eigh(gram)
    sing = evals.clamp_min(0).sqrt()
    keep = sing > thresh * sing.max()
    if noise_factor > 0:
        edge = 1 + (mat.shape[1] / mat.shape[0]) ** 0.5  # Marchenko-Pastur: noise bulk edge / median
        keep &= sing > noise_factor * edge * noise_singular_value(sing)
    vh = evecs[:, keep].conj().T  # rows of V^H
    return vh.reshape(-1, coils, k, k).to(calib.dtype)


def _centered_idft_columns(n: int, offsets: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Columns of the centered orthonormal inverse DFT of length `n` at frequency `offsets`.

    Frequency offset `d` means index `n // 2 + d`; result `(n, len(offsets))` complex128.
    """
    pos = torch.arange(n, device=device, dtype=torch.float64) - n // 2
    phase = 2 * torch.pi * pos[:, None] * offsets[None, :].to(torch.float64) / n
    return torch.polar(torch.full_like(phase, n**-0.5), phase)


def _gram_spectrum(kernels: torch.Tensor) -> torch.Tensor:
    """`S[c, c', d, e] = sum_n sum_{a-a'=d, b-b'=e} K[n,c,a,b] conj(K[n,c',a',b'])`.

    kernels: `(n, C, k, k)`. Returns `(C, C, 2k-1, 2k-1)` complex128 with lag 0 at index k-1.
    """
    k = kernels.shape[-1]
    size = 2 * k
    kh = torch.fft.fft2(kernels.to(torch.complex128), s=(size, size))
    prod = torch.einsum("nchw,ndhw->cdhw", kh, kh.conj())
    corr = torch.fft.ifft2(prod)  # circular lags, no wrap since 2k > 2k-1
    lags = torch.arange(-(k - 1), k, device=kernels.device) % size
    return corr[:, :, lags][:, :, :, lags]


def _power_iterate(gram: torch.Tensor, vec: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`iters` power iterations on per-pixel `(..., C, C)` matrices from `(..., C, 1)` vectors.

    Returns the unit-norm vectors and the last norm (the eigenvalue estimate), `(..., 1, 1)`.
    """
    norm = torch.linalg.vector_norm(vec, dim=-2, keepdim=True)
    vec = vec / norm.clamp_min(torch.finfo(torch.float32).tiny)
    for _ in range(iters):
        vec = torch.matmul(gram, vec)
        norm = torch.linalg.vector_norm(vec, dim=-2, keepdim=True)
        vec = vec / norm.clamp_min(torch.finfo(torch.float32).tiny)
    return vec, norm


class _GramField:
    """Evaluates the band-limited image-domain Gram matrix `G(y, x)` (C x C) on any rows/cols."""

    def __init__(self, kernels: torch.Tensor, shape: tuple[int, int]) -> None:
        height, width = shape
        k = kernels.shape[-1]
        self.coils = kernels.shape[1]
        device = kernels.device
        lags = torch.arange(-(k - 1), k, device=device)
        spec = _gram_spectrum(kernels) * ((height * width) ** 0.5 / k**2)
        self.fy = _centered_idft_columns(height, lags, device).to(torch.complex64)
        self.fx = _centered_idft_columns(width, lags, device).to(torch.complex64)
        self.spec = spec.to(torch.complex64)  # (C, C, 2k-1, 2k-1)

    def columns(self, cols: torch.Tensor | slice) -> torch.Tensor:
        """Column lags contracted for the chosen columns: `(w, 2k-1, C*C)`."""
        half = torch.einsum("cdye,xe->xycd", self.spec, self.fx[cols])
        return half.reshape(half.shape[0], half.shape[1], -1)

    def at(self, rows: torch.Tensor | slice, half: torch.Tensor) -> torch.Tensor:
        """`G` at the chosen rows and the columns of `half`: `(r, w, C, C)`."""
        gram = torch.matmul(self.fy[rows], half)  # (w, r, C*C)
        return gram.transpose(0, 1).reshape(-1, half.shape[0], self.coils, self.coils).contiguous()


def crop_weight(eig: torch.Tensor, crop: float, soft: float | None = None) -> torch.Tensor:
    """Per-pixel weight of the unit-norm eigenvector maps from the eigenvalue map `eig`.

    soft None: the hard crop `eig > crop` (SigPy's `EspiritCalib`, BART `ecalib` without `-S`).
    soft > 0: a smooth step in the square root of the eigenvalue, the Gaussian CDF
    `Phi((sqrt(eig) - crop) / soft)`: 0.5 at `sqrt(eig) = crop`, rising over a width `soft`,
    and exactly 0 below `crop - 3 soft` (a jump of 0.0013), so maps without signal (no kernel
    survives the calibration: eigenvalue 0) stay all zero and the image is refused, not made
    of noise divided by a weight of 1e-12.
    `BART_SOFT` reproduces BART `ecalib -S` (Soft-SENSE) within 0.04 per pixel; wider steps
    keep low-eigenvalue regions (the FOV edge an object reaches, the background) at a
    reduced weight instead of zeroing them. Returns `eig`'s shape, float32 in [0, 1].
    """
    if soft is None:
        return (eig > crop).to(torch.float32)
    if not soft > 0:
        raise ValueError(f"soft crop width must be > 0, got {soft}")
    root = eig.clamp_min(0).to(torch.float32).sqrt()
    step = 0.5 * (1 + torch.erf((root - crop) / (soft * 2**0.5)))
    return torch.where(root > crop - 3 * soft, step, torch.zeros_like(step))


#: A soft crop keeps maps only where some pixel's eigenvalue exceeds this (the hard crop's
#: default): the kernels of a calibration region holding no signal (pure noise that passed the
#: noise rule) give eigenvalues of 0.2-0.8 everywhere, which a soft step would otherwise keep.
SIGNAL_EIGENVALUE = 0.95

#: Width of `crop_weight`'s step that matches BART `ecalib -S` (fitted to its maps' norms
#: against its eigenvalue map; `tests/test_edge_maps.py` compares them).
BART_SOFT = 0.0174


def espirit_maps_from_kernels(
    kernels: torch.Tensor,
    shape: tuple[int, int],
    crop: float = 0.95,
    max_iter: int = 30,
    refine_iter: int = 4,
    coarse: int = 4,
    block_rows: int = 64,
    soft: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Dominant eigenvector maps of the image-domain kernel Gram matrix, by power iteration.

    The eigenvectors are smooth, so `max_iter` power iterations run on a grid `coarse` times
    coarser per axis, and the upsampled result seeds `refine_iter` iterations at full
    resolution (`coarse=1`: all `max_iter` iterations at full resolution from ones, as
    SigPy). kernels: `(n, C, k, k)`. Returns maps `(C, H, W)` complex64 (phase relative to
    coil 0; norm over coils `crop_weight(eig, crop, soft)`: 1 where the eigenvalue exceeds
    `crop` and 0 elsewhere with the default hard crop; a soft crop gives all-zero maps unless
    some eigenvalue exceeds `SIGNAL_EIGENVALUE`) and the eigenvalue map `(H, W)` float32.
    No kernels (`n = 0`: an all-zero calibration region, where no singular value clears the
    threshold) give all-zero maps and eigenvalues, so the image is refused as having no coil
    sensitivity instead of failing inside the FFT library on an empty transform.
    """
    height, width = shape
    coils = kernels.shape[1]
    device = kernels.device
    if kernels.shape[0] == 0:  # no kernel survived the calibration (no signal in it): no maps anywhere
        return (torch.zeros(coils, height, width, dtype=torch.complex64, device=device),
                torch.zeros(height, width, dtype=torch.float32, device=device))
    field = _GramField(kernels, shape)
    half = field.columns(slice(None))
    if coarse > 1:
        rows_c = torch.arange(coarse // 2, height, coarse, device=device)
        cols_c = torch.arange(coarse // 2, width, coarse, device=device)
        gram_c = field.at(rows_c, field.columns(cols_c))
        ones = torch.ones(*gram_c.shape[:2], coils, 1, dtype=torch.complex64, device=device)
        vec_c, _ = _power_iterate(gram_c, ones, max_iter)
        grid = torch.view_as_real(vec_c[..., 0]).permute(2, 3, 0, 1).reshape(1, 2 * coils, *gram_c.shape[:2])
        up = torch.nn.functional.interpolate(grid, size=(height, width), mode="bilinear", align_corners=False)
        start = torch.view_as_complex(up.reshape(coils, 2, height, width).permute(2, 3, 0, 1).contiguous())
        iters = refine_iter
    else:
        start = torch.ones(height, width, coils, dtype=torch.complex64, device=device)
        iters = max_iter
    maps = torch.empty(height, width, coils, dtype=torch.complex64, device=device)
    eig = torch.empty(height, width, dtype=torch.float32, device=device)
    for top in range(0, height, block_rows):
        block = slice(top, top + block_rows)
        vec, norm = _power_iterate(field.at(block, half), start[block].unsqueeze(-1), iters)
        maps[block] = vec[..., 0]
        eig[block] = norm[..., 0, 0]
    maps = maps.permute(2, 0, 1)
    ref = maps[0]
    phase = torch.where(ref.abs() > 0, ref.conj() / ref.abs().clamp_min(1e-30), torch.ones_like(ref))
    weight = crop_weight(eig, crop, soft)
    if soft is not None and not bool((eig > SIGNAL_EIGENVALUE).any()):
        weight = torch.zeros_like(weight)  # no signal anywhere: no maps (SIGNAL_EIGENVALUE)
    maps = maps * phase * weight
    return maps.contiguous(), eig


def fitted_kernel_width(kernel_width: int, acs_width: int) -> int:
    """Kernel width used for an ACS region `acs_width` columns wide.

    A kernel nearly as wide as the ACS region fits only one or two positions across it, so the
    calibration matrix cannot separate the signal subspace from noise and the eigenvalue crop
    then zeroes most of the maps. The width is capped at half the region, rounded up, and
    never below 3 (a region narrower than that is rejected by `calibration_kernels`).
    """
    return min(kernel_width, max(3, (acs_width + 1) // 2))


def espirit_calib(
    kspace: torch.Tensor,
    calib: torch.Tensor | tuple[int, int],
    kernel_width: int = 6,
    thresh: float = 0.02,
    crop: float = 0.95,
    max_iter: int = 30,
    refine_iter: int = 4,
    coarse: int = 4,
    calib_rows: int | None = None,
    noise_factor: float = 1.3,
    soft: float | None = None,
) -> torch.Tensor:
    """ESPIRiT maps from the calibration region of undersampled k-space, one map set per slice.

    kspace: `(B, C, H, W)` complex64 calibration data (masked). calib: `(B, 2)` or `(2,)`
    calibration column region `[start, stop)` (`Acquisition.calib`). calib_rows: readout rows
    of the calibration region around the center (None = all rows). max_iter / refine_iter /
    coarse: the power iterations (see `espirit_maps_from_kernels`). Returns `(B, C, H, W)`
    complex64 maps, unit RSS over coils inside the support, zero outside (soft None), or RSS
    over coils `crop_weight(eig, crop, soft)` (a soft crop). The kernel width is
    capped for narrow regions (`fitted_kernel_width`); kernels must also clear `noise_factor` x
    the edge of the calibration matrix's noise bulk (`calibration_kernels`; 0 gives SigPy's
    rule).
    """
    batch, _, height, width = kspace.shape
    regions = torch.as_tensor(calib).reshape(-1, 2).expand(batch, 2).cpu()
    out = torch.empty_like(kspace)
    for b in range(batch):
        start, stop = int(regions[b, 0]), int(regions[b, 1])
        if not 0 <= start < stop <= width:
            raise ValueError(f"calibration region [{start}, {stop}) is empty or outside the {width} columns")
        region = kspace[b, :, :, start:stop]
        if calib_rows is not None and calib_rows < height:
            top = height // 2 - calib_rows // 2
            region = region[:, top : top + calib_rows]
        kernels = calibration_kernels(region, fitted_kernel_width(kernel_width, stop - start), thresh, noise_factor)
        out[b], _ = espirit_maps_from_kernels(kernels, (height, width), crop, max_iter, refine_iter, coarse, soft=soft)
    return out
