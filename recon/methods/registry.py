"""The one registry of reconstruction methods, and the output check every method passes through.

Each entry names a factory as `"module:attribute"`, imported when the method is first built
(zero-filled never loads a network). Adding a method = a new file in `recon/methods/` with a
factory `make_<name>(device=None, **options) -> Method`, plus one line here.
"""

from __future__ import annotations

import importlib
from typing import Callable

import torch

from recon.methods.batch import Method, ReconBatch

MethodFactory = Callable[..., Method]

_REGISTRY: dict[str, str | MethodFactory] = {
    "zero-filled": "recon.methods.zero_filled:make_zero_filled",
    "sense": "recon.methods.sense:make_sense",
    "cs": "recon.methods.cs:make_cs",
    "cs-tv": "recon.methods.cs_tv:make_cs_tv",
    "varnet": "recon.methods.varnet:make_varnet",
    "unet": "recon.methods.unet:make_unet",
    "grappa": "recon.methods.grappa:make_grappa",
    "spirit": "recon.methods.spirit:make_spirit",
}


def register(name: str, factory: MethodFactory | str) -> None:
    """Register `factory(**options) -> Method` (or its `"module:attribute"`) under `name`."""
    _REGISTRY[name] = factory


def available() -> list[str]:
    """Registered method names."""
    return sorted(_REGISTRY)


def _factory(name: str) -> MethodFactory:
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module, attr = entry.split(":")
        entry = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = entry
    return entry


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
    bad = ~torch.isfinite(images)
    if bool(bad.any()):
        slices = torch.nonzero(bad.flatten(1).any(1)).flatten().tolist()
        raise OutputError(f"method {name!r} returned non-finite values (NaN/Inf) in {int(bad.sum())} pixels of batch slices {slices}")
    empty = images.flatten(1).amax(1).cpu() == 0
    if bool(empty.any()):
        data = batch.masked_kspace.flatten(1).abs().amax(1).cpu() > 0
        slices = torch.nonzero(empty & data).flatten().tolist()
        if slices:
            raise OutputError(f"method {name!r} returned an all-zero image for batch slices {slices} whose k-space is not zero")
    return images


class CheckedMethod:
    """A registered method whose every output goes through `check_images`."""

    def __init__(self, name: str, method: Method) -> None:
        self.name = name
        self.method = method

    def __call__(self, batch: ReconBatch) -> torch.Tensor:
        return check_images(self.name, batch, self.method(batch))


def get_method(name: str, **options: object) -> CheckedMethod:
    """Build the method `name` with its options (options a method does not take are ignored)."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available())}")
    return CheckedMethod(name, _factory(name)(**options))
