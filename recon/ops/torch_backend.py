"""Reference backend of `recon.ops` in plain PyTorch (any device, autograd for free)."""

from __future__ import annotations

import torch

from recon import core

fft2c = core.fft2c
ifft2c = core.ifft2c
rss = core.rss


def sens_expand(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil k-space `fft2c(maps * x)`: image `(B,1,H,W)`, maps `(B,C,H,W)` -> `(B,C,H,W)`."""
    return core.fft2c(maps * x)


def sens_reduce(k: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
    """Coil combination `sum_c conj(maps) * ifft2c(k)`: `(B,C,H,W)` -> `(B,1,H,W)`."""
    return (maps.conj() * core.ifft2c(k)).sum(dim=1, keepdim=True)


def soft_dc(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor, eta: torch.Tensor | float) -> torch.Tensor:
    """Soft data consistency `k - eta * mask * (k - k0)`; mask (bool or 0/1) broadcasts to `k`."""
    zero = torch.zeros((), dtype=k.dtype, device=k.device)
    return k - eta * torch.where(mask.bool(), k - k0, zero)


def hard_dc(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Hard data consistency: measured samples `k0` where sampled, `k` elsewhere."""
    return torch.where(mask.bool(), k0, k)


def normal(x: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """SENSE normal operator `A^H A x = sens_reduce(mask * sens_expand(x, maps), maps)`."""
    k = sens_expand(x, maps)
    zero = torch.zeros((), dtype=k.dtype, device=k.device)
    return sens_reduce(torch.where(mask.bool(), k, zero), maps)

