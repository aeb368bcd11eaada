"""Registry of reconstruction methods behind one batched interface.

A method takes a `ReconBatch` (masked k-space, mask, ACS width, optional coil maps) and
returns magnitude images `(B, h, w)` float32 at the RSS target's scale, center-cropped to
`crop_size`. The CLI, the benchmark and the runner treat all registered names alike.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Protocol

import torch

from recon import ops
from recon.fft import center_crop


class ReconBatch(NamedTuple):
    """A batch of undersampled slices of one volume (or of several of equal shape).

    masked_kspace: `(B, C, H, W)` complex64, zero where not sampled.
    mask: `(B, 1, 1, W)` bool, the sampled phase-encode columns.
    num_low_frequencies: `(B,)` int64, width of the fully sampled center (ACS); 0 = detect.
    crop_size: `(h, w)` of the output images (fastMRI reconSpace, usually 320x320).
    maps: optional `(B, C, H, W)` complex64 coil sensitivities.
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    num_low_frequencies: torch.Tensor
    crop_size: tuple[int, int]
    maps: torch.Tensor | None = None


class Method(Protocol):
    """A reconstruction method: `ReconBatch` -> `(B, h, w)` float32 magnitude images."""

    def __call__(self, batch: ReconBatch) -> torch.Tensor: ...


def zero_filled(batch: ReconBatch) -> torch.Tensor:
    """RSS of the inverse FFT of the zero-filled k-space, cropped: the fastMRI target's scale."""
    image = ops.rss(ops.ifft2c(batch.masked_kspace), 1)
    return center_crop(image, batch.crop_size).float()


MethodFactory = Callable[..., Method]
_REGISTRY: dict[str, MethodFactory] = {}


def register(name: str, factory: MethodFactory) -> None:
    """Register `factory(**options) -> Method` under `name`."""
    _REGISTRY[name] = factory


def available() -> list[str]:
    """Registered method names."""
    return sorted(_REGISTRY)


def get_method(name: str, **options: object) -> Method:
    """Build the method `name` with its options (unknown options are ignored by simple methods)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available())}")
    return _REGISTRY[name](**options)


register("zero-filled", lambda **_: zero_filled)

from recon.models.inference import make_varnet  # noqa: E402  (registered last: a learned method)

register("varnet", make_varnet)

from recon.models.image_unet import make_unet  # noqa: E402  (fastMRI's image-domain U-Net baseline)

register("unet", make_unet)

from recon.baselines.methods import make_cs, make_cs_tv, make_sense  # noqa: E402  (classical baselines)

register("sense", make_sense)
register("cs", make_cs)
register("cs-tv", make_cs_tv)
