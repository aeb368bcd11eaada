"""The output check every built method passes through (`recon.methods.get` wraps each in it)."""

from __future__ import annotations

from typing import Any

import torch

from recon.core import image_problem
from recon.methods.batch import Method, ReconBatch


class OutputError(ValueError):
    """A method's images failed the output check (`check_images`)."""


def check_images(name: str, batch: ReconBatch, images: object) -> torch.Tensor:
    """`images` if they are `(B, h, w)` float32 at `batch.crop_size`, finite, and not all zero
    where the slice's k-space is not; otherwise OutputError naming the method and the cause."""
    count = batch.masked_kspace.shape[0]
    want = (count, *(int(n) for n in batch.crop_size))
    if not isinstance(images, torch.Tensor):
        raise OutputError(f"method {name!r} returned {type(images).__name__}, not a tensor of images")
    if tuple(images.shape) != want or images.dtype != torch.float32:
        raise OutputError(f"method {name!r} returned {images.dtype} images of shape {tuple(images.shape)}; expected float32 {want}")
    zero_data = (batch.masked_kspace.flatten(1).abs().amax(1) == 0).cpu().tolist()
    problem = image_problem(images, may_be_zero=zero_data)
    if problem is not None:
        raise OutputError(f"method {name!r} returned a failed image: {problem}")
    return images


class CheckedMethod:
    """A built method (`method`, from `options`) whose every output goes through `check_images`."""

    def __init__(self, name: str, method: Method, options: Any = None) -> None:
        self.name = name
        self.method = method
        self.options = options

    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        return check_images(self.name, batch, self.method(batch))
