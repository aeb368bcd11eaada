"""SVD coil compression (Huang et al. 2008; BART `cc -S`): `C` receive coils -> `N` virtual coils.

The virtual coils are the `N` dominant right singular vectors of the calibration data matrix
`X` (one row per calibration sample, one column per coil; no mean removed):
`X = U Sigma V^H`, compressed data `X V[:, :N]`. The compression is a per-slice unitary mixing
of the coils followed by dropping the weakest ones, so it applies to k-space, coil images and
coil maps alike (`compress`), and it keeps white noise white: it must follow prewhitening
(noise that is not white would be weighted by its covariance, not by signal energy). Virtual
coils are ordered by decreasing singular value.
"""

from __future__ import annotations

import torch

from recon.calib.regions import calib_regions
from recon.core import fftc, ifftc


def singular_values(calib_kspace: torch.Tensor, calib: torch.Tensor | tuple[int, int]) -> torch.Tensor:
    """Singular values `(B, C)` float64, descending, of each slice's calibration matrix."""
    gram = _gram(calib_kspace, calib)
    return torch.linalg.eigvalsh(gram).flip(-1).clamp_min(0).sqrt()


def _gram(calib_kspace: torch.Tensor, calib: torch.Tensor | tuple[int, int]) -> torch.Tensor:
    batch, coils, _, width = calib_kspace.shape
    grams = []
    for b, (start, stop) in enumerate(calib_regions(calib, batch, width)):
        x = calib_kspace[b, :, :, start:stop].reshape(coils, -1).to(torch.complex128)
        grams.append(x.conj() @ x.T)  # (C, C) = X^H X with X = x.T
    return torch.stack(grams)


def compression_matrix(calib_kspace: torch.Tensor, calib: torch.Tensor | tuple[int, int], virtual_coils: int) -> torch.Tensor:
    """SVD compression matrices `(B, C, N)` complex64 with orthonormal columns.

    calib_kspace: `(B, C, H, W)`; calib: `(B, 2)` or `(2,)` column region `[start, stop)`,
    all rows (`(0, W)`: all data, BART's `cc -A`). virtual_coils: `1 <= N <= C`.
    """
    coils = calib_kspace.shape[1]
    n = int(virtual_coils)
    if not 1 <= n <= coils:
        raise ValueError(f"virtual coils must be between 1 and the {coils} coils, got {virtual_coils}")
    _, vectors = torch.linalg.eigh(_gram(calib_kspace, calib))  # ascending eigenvalues
    return vectors.flip(-1)[..., :n].to(torch.complex64)


def compress(data: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """`(B, C, H, W)` k-space, coil images or maps -> `(B, N, H, W)` virtual coils, with `matrix` `(B, C, N)`."""
    return torch.einsum("bchw,bcn->bnhw", data, matrix.to(data.device, data.dtype))


def geometric_matrices(calib_kspace: torch.Tensor, calib: torch.Tensor | tuple[int, int], virtual_coils: int) -> torch.Tensor:
    """Geometric coil compression matrices (Zhang et al. 2013; BART `cc -G`): `(B, H, C, N)` complex64.

    The readout (rows, fully sampled) is inverse-FFT'd; at each readout position `x` the SVD of
    the calibration columns gives its own `N` virtual coils, and each position's basis is turned
    (orthogonal Procrustes) to the previous one's so that the virtual coils vary smoothly along
    the readout (their maps stay smooth). Same arguments as `compression_matrix`.
    """
    coils = calib_kspace.shape[1]
    n = int(virtual_coils)
    if not 1 <= n <= coils:
        raise ValueError(f"virtual coils must be between 1 and the {coils} coils, got {virtual_coils}")
    batch, _, height, width = calib_kspace.shape
    out = []
    for b, (start, stop) in enumerate(calib_regions(calib, batch, width)):
        hybrid = ifftc(calib_kspace[b, :, :, start:stop].to(torch.complex128), (-2,))  # (C, H, w)
        x = hybrid.permute(1, 2, 0)  # (H, w, C)
        _, vectors = torch.linalg.eigh(x.mH @ x)  # (H, C, C), ascending
        basis = vectors.flip(-1)[..., :n]  # (H, C, N)
        aligned = [basis[0]]
        for row in range(1, height):
            u, _, vh = torch.linalg.svd(basis[row].mH @ aligned[-1])
            aligned.append(basis[row] @ (u @ vh))
        out.append(torch.stack(aligned))
    return torch.stack(out).to(torch.complex64)


def compress_geometric(kspace: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """`(B, C, H, W)` k-space (readout fully sampled) -> `(B, N, H, W)` with `(B, H, C, N)` matrices."""
    hybrid = ifftc(kspace, (-2,))
    mixed = torch.einsum("bchw,bhcn->bnhw", hybrid, matrices.to(kspace.device, kspace.dtype))
    return fftc(mixed, (-2,))


def compress_geometric_images(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Coil images or maps `(B, C, H, W)` -> `(B, N, H, W)`: the per-row mixing of `compress_geometric`."""
    return torch.einsum("bchw,bhcn->bnhw", images, matrices.to(images.device, images.dtype))
