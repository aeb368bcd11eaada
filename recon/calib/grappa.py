"""GRAPPA in torch (CPU or GPU): kernels calibrated on the acquisition model's calibration
region, one kernel per sampling pattern, applied to every unsampled k-space location at once.

Geometry (as pygrappa's `mdgrappa`/`cgrappa`): a kernel of `(kx, ky)` k-space points (rows =
readout, columns = phase encodes) is a window `[y - kx//2, y - kx//2 + kx) x [x - ky//2,
x - ky//2 + ky)` around the target `(y, x)`; outside the matrix the window reads zeros. Every
unsampled location gets the kernel of its own *sampling pattern* (which window points were
acquired), so the ACS edges, the readout edges and uneven spacings each have their kernel; a
location whose window holds no sample stays zero.

Fit: with `S` the calibration patches restricted to a pattern's sources (all coils) and `T`
their centres (all coils), the weights solve `(S^H S + lam0 I) W = S^H T`, Tikhonov with
`lam0 = lam * ||S^H S||_F / n` (`n` = number of source values), pygrappa's scaling, so `lam`
is relative and GRAPPA is scale-invariant. All patterns share one Gram matrix `A^H A` of the
full-window calibration matrix `A`; each pattern's system is a sub-block of it, and patterns
of similar size are solved as one batch (Cholesky, complex128; the system is
Hermitian positive definite for `lam > 0`).

Calibration patches: as pygrappa, the calibration block (all rows x the calibration columns)
is zero-padded by `k//2` on every side and every window of the padded block enters the fit
(on the phantom of `tests/test_grappa.py` this is as good as or better than windows inside
the block only, `padded_calibration=False`). `pygrappa_compat=True` also takes the unsampled
locations from the exact zeros of coil 0 (pygrappa's "holes are exact zeros") rather than
from the acquisition model's mask; the two agree on masked data.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from recon.calib.regions import calib_regions

#: pygrappa's defaults: a 5x5 window and relative Tikhonov weight 0.01.
DEFAULT_LAM = 0.01
_MAX_WINDOW = 62  # window points per pattern code (bits of an int64)
_CHUNK = 1 << 24  # complex values per gathered block (bounds temporary memory)


class GrappaKernels(NamedTuple):
    """Calibrated GRAPPA weights for the sampling patterns of a batch.

    codes: `(P,)` int64 pattern codes (bit `r * ky + q` set = window point `(r, q)` sampled).
    weights: `(B, P, kx * ky, C, C)` complex64, `weights[b, p, pos, c_in, c_out]`; zero at
        points that are not sources of pattern `p`.
    kernel: `(kx, ky)`.
    """

    codes: torch.Tensor
    weights: torch.Tensor
    kernel: tuple[int, int]


def _check_kernel(kernel: tuple[int, int]) -> tuple[int, int]:
    kx, ky = (int(k) for k in kernel)
    if kx < 1 or ky < 1:
        raise ValueError(f"GRAPPA kernel {tuple(kernel)} must have positive sizes (kx rows, ky columns)")
    if kx * ky > _MAX_WINDOW:
        raise ValueError(f"GRAPPA kernel {kx}x{ky} has {kx * ky} points; at most {_MAX_WINDOW} are supported")
    return kx, ky


def check_calibration_width(calib: torch.Tensor | tuple[int, int], kernel: tuple[int, int], width: int) -> None:
    """ValueError when a calibration region has fewer columns than the kernel's phase-encode extent.

    calib: `(B, 2)` or `(2,)` column regions `[start, stop)` on a `width`-column matrix.
    """
    ky = int(kernel[1])
    regions = torch.as_tensor(calib).reshape(-1, 2)
    for start, stop in calib_regions(regions, regions.shape[0], width):
        if stop - start < ky:
            raise ValueError(
                f"calibration region [{start}, {stop}) is {stop - start} columns wide on a {width}-column matrix, "
                f"narrower than the GRAPPA kernel's phase-encode extent of {ky} columns; "
                f"use a kernel with ky <= {stop - start} or data with a wider ACS block"
            )


def uniform_spacing(columns: torch.Tensor, calib: tuple[int, int]) -> int:
    """The spacing `R` of a uniformly undersampled column mask, else ValueError.

    Uniform means: the sampled columns outside the calibration region `[start, stop)`, taken
    left and right of it, follow one another at one constant spacing `R` (equal on both
    sides). Columns never sampled at the edges (fastMRI's zero padding) do not count; a mask
    sampling every column is uniform with `R = 1`. columns: `(W,)` bool.
    """
    cols = columns.reshape(-1).bool().cpu()
    start, stop = int(calib[0]), int(calib[1])
    if bool(cols.all()):
        return 1
    index = torch.nonzero(cols).flatten()
    left, right = index[index < start], index[index >= stop]
    gaps = torch.cat([torch.diff(left), torch.diff(right)])
    if gaps.numel() == 0:
        raise ValueError(
            f"no phase-encode spacing to fill: at most one sampled column on each side of the calibration region "
            f"[{start}, {stop}); GRAPPA needs uniformly undersampled columns"
        )
    spacing = int(gaps[0])
    if bool((gaps != spacing).any()):
        found = sorted({int(g) for g in gaps})
        raise ValueError(
            f"GRAPPA needs uniform undersampling (one constant spacing between the sampled columns outside the "
            f"calibration region [{start}, {stop})); this mask has spacings {found[:8]}{' ...' if len(found) > 8 else ''}; "
            f"for random or irregular masks use sense or cs (SPIRiT, which handles arbitrary Cartesian masks, is planned)"
        )
    return spacing


def check_coverage(sampled: torch.Tensor, codes: torch.Tensor, kernel: tuple[int, int]) -> None:
    """ValueError when a missing location between the first and last sampled column of its slice
    has no sample in its window (it would stay zero: a silent hole in k-space)."""
    columns = sampled.any(1)  # (B, W)
    index = torch.arange(columns.shape[1], device=columns.device)
    first = torch.where(columns, index, columns.shape[1]).amin(1, keepdim=True)
    last = torch.where(columns, index, -1).amax(1, keepdim=True)
    inside = ((index >= first) & (index <= last))[:, None, :]
    empty = ~sampled & (codes == 0) & inside
    if bool(empty.any()):
        cols = sorted(set(torch.nonzero(empty)[:, 2].tolist()))
        raise ValueError(
            f"GRAPPA kernel {tuple(int(k) for k in kernel)} reaches no sampled point from {int(empty.sum())} missing "
            f"locations (columns {cols[:6]}{' ...' if len(cols) > 6 else ''}); widen its phase-encode extent ky "
            f"to at least the column spacing + 1"
        )


def pattern_codes(sampled: torch.Tensor, kernel: tuple[int, int]) -> torch.Tensor:
    """Sampling-pattern code of the window around every location: `(B, H, W)` int64.

    sampled: `(B, H, W)` bool. Bit `r * ky + q` is set when window point `(r, q)` (row offset
    `r - kx//2`, column offset `q - ky//2`) lies inside the matrix and was sampled.
    """
    kx, ky = _check_kernel(kernel)
    _, height, width = sampled.shape
    padded = torch.nn.functional.pad(sampled.to(torch.int64), (ky // 2, ky - 1 - ky // 2, kx // 2, kx - 1 - kx // 2))
    rowcode = torch.zeros(padded.shape[0], padded.shape[1], width, dtype=torch.int64, device=sampled.device)
    for q in range(ky):
        rowcode |= padded[:, :, q : q + width] << q
    code = torch.zeros(sampled.shape, dtype=torch.int64, device=sampled.device)
    for r in range(kx):
        code |= rowcode[:, r : r + height] << (r * ky)
    return code


def _code_bits(codes: torch.Tensor, points: int) -> torch.Tensor:
    """`(P,)` codes -> `(P, points)` bool."""
    shifts = torch.arange(points, device=codes.device)
    return ((codes[:, None] >> shifts) & 1).bool()


def _calibration_gram(block: torch.Tensor, kernel: tuple[int, int], pad: bool) -> torch.Tensor:
    """`A^H A` of the calibration matrix of `block` `(C, h, w)`: `(N, N)` complex128, `N = kx ky C`.

    Row `i` of `A` is one window flattened as `(r, q, c)`; `pad` zero-pads the block by `k//2`
    on every side first (pygrappa's calibration). Products are formed in the data's precision
    (complex64: ~1e-5 relative agreement with pygrappa's complex128) and summed in complex128.
    """
    kx, ky = kernel
    coils = block.shape[0]
    if pad:
        block = torch.nn.functional.pad(block, (ky // 2, ky // 2, kx // 2, kx // 2))
    rows = block.shape[1] - kx + 1
    cols = block.shape[2] - ky + 1
    size = kx * ky * coils
    gram = torch.zeros(size, size, dtype=torch.complex128, device=block.device)
    step = max(1, _CHUNK // max(1, cols * size))
    for top in range(0, rows, step):
        part = block[:, top : min(rows, top + step) + kx - 1]
        windows = part.unfold(1, kx, 1).unfold(2, ky, 1)  # (C, r, c, kx, ky)
        mat = windows.permute(1, 2, 3, 4, 0).reshape(-1, size)
        gram += (mat.conj().T @ mat).to(torch.complex128)
    return gram


def grappa_calibrate(
    calib_kspace: torch.Tensor,
    calib: torch.Tensor | tuple[int, int],
    codes: torch.Tensor,
    kernel: tuple[int, int] = (5, 5),
    lam: float = DEFAULT_LAM,
    padded_calibration: bool = True,
) -> GrappaKernels:
    """GRAPPA weights for the sampling patterns `codes` (from `pattern_codes`), per slice.

    calib_kspace: `(B, C, H, W)` k-space holding the calibration data in the region `calib`
    (`(B, 2)` or `(2,)` column region `[start, stop)`, all rows). lam: relative Tikhonov
    weight (see the module docstring). padded_calibration: windows of the zero-padded block
    (pygrappa) or only those inside it. Raises ValueError when a region is narrower than the
    kernel's phase-encode extent.
    """
    kx, ky = _check_kernel(kernel)
    if lam < 0:
        raise ValueError(f"GRAPPA lam must be >= 0, got {lam}")
    batch, coils, _, width = calib_kspace.shape
    regions = calib_regions(calib, batch, width)
    check_calibration_width(torch.tensor(regions), (kx, ky), width)
    points = kx * ky
    device = calib_kspace.device
    grams = torch.stack([_calibration_gram(calib_kspace[b, :, :, start:stop], (kx, ky), padded_calibration) for b, (start, stop) in enumerate(regions)])
    centre = (kx // 2) * ky + ky // 2
    target = centre * coils + torch.arange(coils, device=device)
    bits = _code_bits(codes.to(device), points)  # (P, points)
    counts = bits.sum(1)
    weights = torch.zeros(batch, codes.numel(), points * coils, coils, dtype=torch.complex128, device=device)
    # one batched solve per size class (counts padded up to a power of two, identity on padding)
    sizes = torch.where(counts > 0, 2 ** torch.ceil(torch.log2(counts.clamp_min(1).double())).long(), 0).clamp_max(points)
    for slots in torch.unique(sizes).tolist():
        if slots == 0:
            continue
        group = torch.nonzero(sizes == slots).flatten()
        pos = torch.argsort((~bits[group]).to(torch.int8), dim=1, stable=True)[:, :slots]  # sources first, ascending
        real = torch.arange(slots, device=device) < counts[group, None]
        src = (pos[:, :, None] * coils + torch.arange(coils, device=device)).reshape(group.numel(), -1)  # (g, n)
        valid = real.repeat_interleave(coils, dim=1)  # (g, n)
        gram = grams[:, src[:, :, None], src[:, None, :]] * (valid[:, :, None] & valid[:, None, :])  # (B, g, n, n)
        rhs = grams[:, src][:, :, :, target] * valid[..., None]  # (B, g, n, C)
        lam0 = lam * torch.linalg.matrix_norm(gram) / (counts[group] * coils)  # Frobenius, over the sources
        diag = torch.where(valid, lam0[..., None], 1.0)
        factor, info = torch.linalg.cholesky_ex(gram + torch.diag_embed(diag.to(gram.dtype)))
        if bool((info != 0).any()):
            raise ValueError(f"GRAPPA calibration matrix is singular for a sampling pattern at lam={lam}; use lam > 0")
        half = torch.linalg.solve_triangular(factor, rhs, upper=False)
        weights[:, group[:, None], src] = torch.linalg.solve_triangular(factor.mH, half, upper=True)
    weights = weights.reshape(batch, codes.numel(), points, coils, coils).to(torch.complex64)
    return GrappaKernels(codes.to(device), weights, (kx, ky))


def grappa_apply(kspace: torch.Tensor, sampled: torch.Tensor, kernels: GrappaKernels, codes: torch.Tensor | None = None) -> torch.Tensor:
    """Fill the unsampled locations of `kspace` with the kernels; sampled data are kept as given.

    kspace: `(B, C, H, W)`; sampled: `(B, H, W)` bool; codes: `pattern_codes(sampled)` if
    already computed. Returns a new tensor (the input is not modified); a location whose
    window holds no sample stays zero.
    """
    kx, ky = kernels.kernel
    batch, coils, height, width = kspace.shape
    if codes is None:
        codes = pattern_codes(sampled, (kx, ky))
    pad_w = width + ky - 1
    padded = torch.nn.functional.pad(kspace, (ky // 2, ky - 1 - ky // 2, kx // 2, kx - 1 - kx // 2))
    source = padded.permute(0, 2, 3, 1).reshape(batch, -1, coils)  # (B, Hp*Wp, C)
    out = kspace.permute(0, 2, 3, 1).reshape(batch, height * width, coils).clone()
    holes = ~sampled & (codes != 0)
    hb, hy, hx = torch.nonzero(holes, as_tuple=True)
    which = torch.searchsorted(kernels.codes, codes[hb, hy, hx])
    if bool((kernels.codes[which.clamp_max(kernels.codes.numel() - 1)] != codes[hb, hy, hx]).any()):
        raise ValueError("GRAPPA kernels were calibrated for other sampling patterns than this k-space has")
    base = hy * pad_w + hx  # window top-left in the padded grid
    target = hy * width + hx
    points = kx * ky
    offsets = torch.arange(kx, device=kspace.device)[:, None] * pad_w + torch.arange(ky, device=kspace.device)
    offsets = offsets.reshape(points)
    bits = _code_bits(kernels.codes, points)
    order = torch.argsort(which * batch + hb)
    key = (which * batch + hb)[order]
    segments, counts = torch.unique_consecutive(key, return_counts=True)
    ends = torch.cumsum(counts, 0).tolist()
    starts = [0, *ends[:-1]]
    for seg, lo, hi in zip(segments.tolist(), starts, ends):
        p, b = divmod(seg, batch)
        pos = torch.nonzero(bits[p]).flatten()
        w = kernels.weights[b, p, pos].reshape(-1, coils)  # (s*C, C)
        step = max(1, _CHUNK // max(1, pos.numel() * coils))
        for a in range(lo, hi, step):
            idx = order[a : min(hi, a + step)]
            vals = source[b][base[idx, None] + offsets[pos][None, :]]  # (h, s, C)
            out[b, target[idx]] = vals.reshape(idx.numel(), -1) @ w
    return out.reshape(batch, height, width, coils).permute(0, 3, 1, 2).contiguous()


def grappa(
    kspace: torch.Tensor,
    sampled: torch.Tensor | None,
    calib_kspace: torch.Tensor,
    calib: torch.Tensor | tuple[int, int],
    kernel: tuple[int, int] = (5, 5),
    lam: float = DEFAULT_LAM,
    pygrappa_compat: bool = False,
    padded_calibration: bool = True,
) -> torch.Tensor:
    """GRAPPA-filled k-space `(B, C, H, W)` complex64 (calibrate, then apply).

    kspace: `(B, C, H, W)` undersampled data, zero where not sampled. sampled: `(B, H, W)`
    bool sampled locations (the acquisition model's); None, or `pygrappa_compat=True`, takes
    the non-zero locations of coil 0. calib_kspace, calib: the calibration data and their
    column region (`ReconBatch.calibration_data`, `ReconBatch.calib`). padded_calibration:
    see `grappa_calibrate` (forced on with `pygrappa_compat`).
    """
    kspace = kspace.to(torch.complex64)
    if sampled is None or pygrappa_compat:
        sampled = kspace[:, 0] != 0
    sampled = sampled.to(kspace.device).bool().expand(kspace.shape[0], *kspace.shape[-2:])
    codes = pattern_codes(sampled, kernel)
    check_coverage(sampled, codes, kernel)
    used = torch.unique(codes[~sampled & (codes != 0)])
    kernels = grappa_calibrate(calib_kspace.to(kspace.device, torch.complex64), calib, used, kernel, lam, padded_calibration or pygrappa_compat)
    return grappa_apply(kspace, sampled, kernels, codes)
