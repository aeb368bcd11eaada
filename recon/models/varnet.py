"""E2E-VarNet (Sriram et al. 2020) on native complex tensors, state-dict compatible with fastMRI.

All reconstruction operators go through `recon.ops`, so the operator backend (torch or the
CuPy kernels) can change without touching the model. k-space stays complex64 throughout;
only the U-Nets see real two-channel tensors (and only they run under mixed precision).
"""

from __future__ import annotations

import torch
from torch import nn

from recon import ops
from recon.acquisition import symmetric_band
from recon.models.unet import NormUnet
from recon.partial_fourier import symmetric_readout


def detect_num_low_frequencies(mask: torch.Tensor) -> torch.Tensor:
    """Width of the symmetric fully sampled center of each mask, as fastMRI detects it.

    mask: `(B, ..., W)` (bool or 0/1); the column pattern is the columns sampled in any row
    (fastMRI reads row 0 of its column masks, the same pattern; a partial-echo mask
    `(B, 1, H, W)` has unsampled rows). Counts the contiguous run of sampled columns left of `W // 2` and from `W // 2` on,
    returns `max(2 * min(left, right), 1)` as `(B,)` int64 (an all-ones half counts as 0,
    as in fastMRI).
    """
    cols = mask.reshape(mask.shape[0], -1, mask.shape[-1]).bool().any(1).to(torch.int8)
    cent = cols.shape[1] // 2
    left = torch.argmin(cols[:, :cent].flip(1), dim=1)
    right = torch.argmin(cols[:, cent:], dim=1)
    return torch.clamp(2 * torch.minimum(left, right), min=1).long()


def _low_frequency_widths(
    mask: torch.Tensor, num_low_frequencies: int | torch.Tensor | None, batch: int
) -> torch.Tensor:
    """`(B,)` int64 ACS widths: given values, with None or 0 entries detected from the mask."""
    detected = detect_num_low_frequencies(mask.expand(batch, *mask.shape[1:]))
    if num_low_frequencies is None:
        return detected
    given = torch.as_tensor(num_low_frequencies, device=mask.device).long().reshape(-1).expand(batch)
    return torch.where(given > 0, given, detected)


def _symmetric_columns(start: torch.Tensor, stop: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(B,)` column regions, each cut to its symmetric centre when it is more than two columns
    off-centre (fastMRI's own placements, at most one off, are kept as they are)."""
    regions = []
    for a, z in zip(start.tolist(), stop.tolist()):
        centre = width // 2
        if abs((centre - a) - (z - centre)) > 2:
            a, z = symmetric_band((a, z), width)
        regions.append((a, z))
    out = torch.tensor(regions, dtype=torch.long, device=start.device).reshape(-1, 2)
    return out[:, 0], out[:, 1]


class SensitivityModel(nn.Module):
    """Coil sensitivity estimation from the ACS columns: ifft2c, per-coil NormUnet, divide by RSS."""

    def __init__(self, chans: int, num_pools: int, drop_prob: float = 0.0, mask_center: bool = True) -> None:
        super().__init__()
        self.mask_center = mask_center
        self.norm_unet = NormUnet(chans, num_pools, drop_prob=drop_prob)

    def forward(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: int | torch.Tensor | None = None,
        calib: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """k-space `(B, C, H, W)` complex64 -> maps `(B, C, H, W)` complex64 with unit RSS.

        The calibration columns are `calib` (`(B, 2)` `[start, stop)`, from the acquisition
        model) when given; otherwise `num_low_frequencies` centered as fastMRI places them, or
        detected from the mask as fastMRI does. A region more than two columns off-centre
        (partial Fourier: the acquired run around the centre is one-sided) is cut to its
        symmetric centre, and with a sampled-location mask `(B, 1, H, W)` (partial echo) only
        the readout's symmetric centre is kept, so the low-resolution images the maps come
        from carry no partial-Fourier asymmetry.
        """
        b, c, h, w = masked_kspace.shape
        if self.mask_center:
            if calib is not None:
                region = torch.as_tensor(calib, device=masked_kspace.device).long().reshape(-1, 2).expand(b, 2)
                start, stop = _symmetric_columns(region[:, 0], region[:, 1], w)
            else:
                nlow = _low_frequency_widths(mask, num_low_frequencies, b)
                start = (w - nlow + 1) // 2
                stop = start + nlow
            cols = torch.arange(w, device=masked_kspace.device)
            keep = ((cols >= start[:, None]) & (cols < stop[:, None])).view(b, 1, 1, w)
            if mask.shape[-2] > 1:
                r0, r1 = symmetric_readout(mask, h)
                rows = torch.arange(h, device=masked_kspace.device)
                keep = keep & ((rows >= r0) & (rows < r1)).view(1, 1, h, 1)
            zero = torch.zeros((), dtype=masked_kspace.dtype, device=masked_kspace.device)
            masked_kspace = torch.where(keep, masked_kspace, zero)
        images = ops.ifft2c(masked_kspace).reshape(b * c, 1, h, w)
        maps = self.norm_unet(images).reshape(b, c, h, w)
        return maps / ops.rss(maps, 1).unsqueeze(1)


class VarNetBlock(nn.Module):
    """One cascade: `k - eta * M(k - k0) - E(model(R(k)))` with a learned `eta` (`dc_weight`)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.dc_weight = nn.Parameter(torch.ones(1))

    def forward(
        self, kspace: torch.Tensor, ref_kspace: torch.Tensor, mask: torch.Tensor, maps: torch.Tensor
    ) -> torch.Tensor:
        """All `(B, C, H, W)` complex64 except `mask` (broadcastable bool) -> updated k-space."""
        model_term = ops.sens_expand(self.model(ops.sens_reduce(kspace, maps)), maps)
        return ops.soft_dc(kspace, ref_kspace, mask, self.dc_weight) - model_term


class VarNet(nn.Module):
    """End-to-end variational network; keyword names and defaults as `fastmri.models.VarNet`.

    Args:
        num_cascades: number of unrolled cascades.
        sens_chans, sens_pools: width and depth of the sensitivity U-Net.
        chans, pools: width and depth of each cascade's U-Net.
        mask_center: estimate maps from the ACS columns only (fastMRI's default).
    """

    def __init__(
        self,
        num_cascades: int = 12,
        sens_chans: int = 8,
        sens_pools: int = 4,
        chans: int = 18,
        pools: int = 4,
        mask_center: bool = True,
    ) -> None:
        super().__init__()
        self.sens_net = SensitivityModel(sens_chans, sens_pools, mask_center=mask_center)
        self.cascades = nn.ModuleList([VarNetBlock(NormUnet(chans, pools)) for _ in range(num_cascades)])

    def set_mixed_precision(self, dtype: torch.dtype | None) -> None:
        """Run every U-Net under autocast with `dtype` (e.g. `torch.bfloat16`); None = float32."""
        for module in self.modules():
            if isinstance(module, NormUnet):
                module.autocast_dtype = dtype

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute U-Net activations during backward instead of storing them."""
        for module in self.modules():
            if isinstance(module, NormUnet):
                module.checkpoint = enabled

    def forward(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: int | torch.Tensor | None = None,
        calib: torch.Tensor | None = None,
        calib_kspace: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Reconstruct RSS images.

        Args:
            masked_kspace: `(B, C, H, W)` complex64, zero where not sampled.
            mask: bool, broadcastable to the k-space: `(B, 1, 1, W)` sampled columns, or
                `(B, 1, H, W)` sampled locations (partial echo).
            num_low_frequencies: ACS width (int, `(B,)` tensor, or None / 0 to detect).
            calib: `(B, 2)` calibration column region `[start, stop)`; overrides
                `num_low_frequencies` (the acquisition model's region).
            calib_kspace: `(B, C, H, W)` calibration data for the sensitivity estimate when they
                are not image data (ISMRMRD calibration-only lines); None = `masked_kspace`.

        Returns:
            `(B, H, W)` float32 RSS image, uncropped, as fastMRI's model returns.
        """
        return ops.rss(ops.ifft2c(self.reconstruct_kspace(masked_kspace, mask, num_low_frequencies, calib, calib_kspace)), 1)

    def reconstruct_kspace(
        self,
        masked_kspace: torch.Tensor,
        mask: torch.Tensor,
        num_low_frequencies: int | torch.Tensor | None = None,
        calib: torch.Tensor | None = None,
        calib_kspace: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The last cascade's coil k-space `(B, C, H, W)` complex64 (arguments as `forward`),
        whose RSS image `forward` returns; the partial-Fourier step works on it."""
        mask = mask.bool()
        if mask.dim() < 4:
            mask = mask.reshape(*([1] * (4 - mask.dim())), *mask.shape)
        source = masked_kspace if calib_kspace is None else calib_kspace
        maps = self.sens_net(source, mask, num_low_frequencies, calib)
        kspace = masked_kspace.clone()
        for cascade in self.cascades:
            kspace = cascade(kspace, masked_kspace, mask, maps)
        return kspace
