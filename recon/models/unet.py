"""U-Net and NormUnet regularizers of E2E-VarNet, parameter names as in `fastmri.models`.

Module and parameter names (`down_sample_layers`, `conv`, `up_transpose_conv`, `up_conv`,
`layers.<i>`) match fastMRI's so published state dicts load unchanged. The NormUnet works on
native complex tensors and converts to two real channels only around the U-Net.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn


class ConvBlock(nn.Module):
    """Two (3x3 conv without bias, instance norm, LeakyReLU(0.2), dropout) layers."""

    def __init__(self, in_chans: int, out_chans: int, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(in_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Dropout2d(drop_prob),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
            nn.Dropout2d(drop_prob),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, in_chans, H, W)` -> `(N, out_chans, H, W)`."""
        return self.layers(x)


class TransposeConvBlock(nn.Module):
    """2x2 stride-2 transposed conv (no bias), instance norm, LeakyReLU(0.2): doubles H and W."""

    def __init__(self, in_chans: int, out_chans: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(in_chans, out_chans, kernel_size=2, stride=2, bias=False),
            nn.InstanceNorm2d(out_chans),
            nn.LeakyReLU(negative_slope=0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, in_chans, H, W)` -> `(N, out_chans, 2H, 2W)`."""
        return self.layers(x)


class Unet(nn.Module):
    """Real-valued U-Net: `num_pool_layers` average-pool downsamplings, skip connections."""

    def __init__(
        self, in_chans: int, out_chans: int, chans: int = 32, num_pool_layers: int = 4, drop_prob: float = 0.0
    ) -> None:
        super().__init__()
        self.down_sample_layers = nn.ModuleList([ConvBlock(in_chans, chans, drop_prob)])
        ch = chans
        for _ in range(num_pool_layers - 1):
            self.down_sample_layers.append(ConvBlock(ch, 2 * ch, drop_prob))
            ch *= 2
        self.conv = ConvBlock(ch, 2 * ch, drop_prob)
        self.up_conv = nn.ModuleList()
        self.up_transpose_conv = nn.ModuleList()
        for level in range(num_pool_layers):
            self.up_transpose_conv.append(TransposeConvBlock(2 * ch, ch))
            if level < num_pool_layers - 1:
                self.up_conv.append(ConvBlock(2 * ch, ch, drop_prob))
                ch //= 2
        self.up_conv.append(
            nn.Sequential(ConvBlock(2 * ch, ch, drop_prob), nn.Conv2d(ch, out_chans, kernel_size=1))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`(N, in_chans, H, W)` real -> `(N, out_chans, H, W)`; odd sizes are reflect-padded on the way up."""
        skips = []
        out = x
        for layer in self.down_sample_layers:
            out = layer(out)
            skips.append(out)
            out = F.avg_pool2d(out, kernel_size=2, stride=2)
        out = self.conv(out)
        for up, conv in zip(self.up_transpose_conv, self.up_conv):
            skip = skips.pop()
            out = up(out)
            pad_w = int(out.shape[-1] != skip.shape[-1])
            pad_h = int(out.shape[-2] != skip.shape[-2])
            if pad_w or pad_h:
                out = F.pad(out, [0, pad_w, 0, pad_h], mode="reflect")
            out = conv(torch.cat([out, skip], dim=1))
        return out


def _pad_amounts(n: int) -> tuple[int, int, int]:
    """Split the padding of length `n` up to the next multiple of 16: (before, after, padded length)."""
    target = ((n - 1) | 15) + 1
    extra = target - n
    return extra // 2, extra - extra // 2, target


class NormUnet(nn.Module):
    """U-Net on complex images with per-sample normalization and padding to multiples of 16.

    Input and output are complex `(N, C, H, W)`; inside, the real parts of all C channels
    followed by the imaginary parts form 2C real channels, each of the two groups is
    normalized by its mean and (unbiased) std over C*H*W, as fastMRI does.

    `autocast_dtype` (e.g. `torch.bfloat16`) runs only the U-Net under autocast;
    `checkpoint` recomputes U-Net activations in the backward pass to save memory.
    """

    def __init__(
        self,
        chans: int,
        num_pools: int,
        in_chans: int = 2,
        out_chans: int = 2,
        drop_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.unet = Unet(in_chans, out_chans, chans=chans, num_pool_layers=num_pools, drop_prob=drop_prob)
        self.autocast_dtype: torch.dtype | None = None
        self.checkpoint = False

    def _run_unet(self, x: torch.Tensor) -> torch.Tensor:
        if self.autocast_dtype is None:
            return self.unet(x)
        with torch.autocast(device_type=x.device.type, dtype=self.autocast_dtype):
            return self.unet(x).float()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Complex `(N, C, H, W)` -> complex `(N, C, H, W)`."""
        n, c, h, w = x.shape
        real = torch.cat([x.real, x.imag], dim=1)
        groups = real.reshape(n, 2, c * h * w)
        mean = groups.mean(dim=2).view(n, 2, 1, 1, 1)
        std = groups.std(dim=2).view(n, 2, 1, 1, 1)
        real = ((real.view(n, 2, c, h, w) - mean) / std).view(n, 2 * c, h, w)
        top, bottom, hp = _pad_amounts(h)
        left, right, wp = _pad_amounts(w)
        real = F.pad(real, [left, right, top, bottom])
        if self.checkpoint and torch.is_grad_enabled():
            out = torch.utils.checkpoint.checkpoint(self._run_unet, real, use_reentrant=False)
        else:
            out = self._run_unet(real)
        out = out[..., top : hp - bottom, left : wp - right]
        out = out.reshape(n, 2, c, h, w) * std + mean
        return torch.complex(out[:, 0].contiguous(), out[:, 1].contiguous())
