"""fastMRI's image-domain U-Net baseline: data transform and training loss (the `unet` method is
`recon.methods.unet`).

The transform is fastMRI's `UnetDataTransform` on already-masked multi-coil k-space:
inverse centered FFT, complex center crop to the target size (320 x 320 for knee), magnitude,
root-sum-of-squares over coils, instance normalization `(x - mean) / (std + 1e-11)` with the
slice's own mean and unbiased std, clamp to [-6, 6]. The target is normalized with the input's
mean and std and clamped the same way. The network is `recon.models.Unet(1, 1, chans, pools)`
(fastMRI's `Unet`, same parameter names); it is trained with an L1 loss on the normalized
images and RMSprop, as fastMRI's `UnetModule`, and its output is de-normalized with
`out * std + mean` for scoring.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from recon.core import center_crop, ifft2c, rss

#: fastMRI's normalization epsilon and clamp range.
EPS = 1e-11
CLAMP = 6.0


class UnetInput(NamedTuple):
    """Normalized zero-filled RSS `image` (B, h, w) and its per-slice `mean`, `std` (B,)."""

    image: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


def unet_crop_size(kspace_shape: tuple[int, ...], crop_size: tuple[int, int]) -> tuple[int, int]:
    """fastMRI's crop: the target size, unless the k-space width is smaller than the crop width
    (fastMRI's "FLAIR 203" case), then a square of the k-space width."""
    width = int(kspace_shape[-1])
    if width < int(crop_size[1]):
        return width, width
    return int(crop_size[0]), int(crop_size[1])


def unet_input(masked_kspace: torch.Tensor, crop_size: tuple[int, int]) -> UnetInput:
    """Masked k-space (B, C, H, W) complex -> normalized, clamped RSS images cropped to `crop_size`."""
    if masked_kspace.ndim != 4 or not masked_kspace.is_complex():
        raise ValueError(f"expected complex k-space (B, C, H, W), got {tuple(masked_kspace.shape)} {masked_kspace.dtype}")
    crop = unet_crop_size(tuple(masked_kspace.shape), crop_size)
    image = rss(center_crop(ifft2c(masked_kspace), crop), dim=1)
    flat = image.reshape(image.shape[0], -1)
    mean = flat.mean(dim=1)
    std = flat.std(dim=1)
    normalized = (image - mean.view(-1, 1, 1)) / (std.view(-1, 1, 1) + EPS)
    return UnetInput(normalized.clamp(-CLAMP, CLAMP), mean, std)


def normalize_target(target: torch.Tensor, inp: UnetInput) -> torch.Tensor:
    """Target (B, h, w), center-cropped to the input's size, normalized with its mean/std, clamped."""
    target = center_crop(target, inp.image.shape[-2:])
    return ((target - inp.mean.view(-1, 1, 1)) / (inp.std.view(-1, 1, 1) + EPS)).clamp(-CLAMP, CLAMP)


def denormalize(output: torch.Tensor, inp: UnetInput) -> torch.Tensor:
    """Network output (B, h, w) back to the RSS scale: `out * std + mean` (as fastMRI)."""
    return output * inp.std.view(-1, 1, 1) + inp.mean.view(-1, 1, 1)


def unet_forward(model: torch.nn.Module, image: torch.Tensor) -> torch.Tensor:
    """(B, h, w) -> (B, h, w) through a 1-in/1-out U-Net (fastMRI `UnetModule.forward`)."""
    return model(image.unsqueeze(1)).squeeze(1)


def unet_loss(model: torch.nn.Module, masked_kspace: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """fastMRI U-Net training loss: L1 between output and target, both in normalized units."""
    inp = unet_input(masked_kspace, tuple(target.shape[-2:]))
    return F.l1_loss(unet_forward(model, inp.image), normalize_target(target, inp))


@torch.no_grad()
def unet_reconstruct(model: torch.nn.Module, masked_kspace: torch.Tensor, crop_size: tuple[int, int]) -> torch.Tensor:
    """Masked k-space (B, C, H, W) -> de-normalized U-Net images (B, h, w) float32."""
    inp = unet_input(masked_kspace, crop_size)
    return denormalize(unet_forward(model, inp.image), inp).float()
