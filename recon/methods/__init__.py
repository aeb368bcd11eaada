"""Reconstruction methods behind one batched interface, one file per method.

A method takes a `ReconBatch` (masked k-space, sampled locations, calibration region from the
acquisition model, optional calibration data and coil maps) and returns magnitude images
`(B, h, w)` float32 at the RSS target's scale, center-cropped to `crop_size`. Each method file
declares a `MethodSpec` (options, needs, capabilities; `recon.methods.spec`), listed by the one
registry (`recon.methods.registry`). `get(name, **options)` checks the options and builds the
method, whose every output is checked (finite, right shape, not empty). The CLI, the checks,
the benchmark and the runner read the specs and treat all registered names alike.

This package imports no torch until a method is built or a torch-side name is asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from recon.methods.registry import available, get, get_method, register, scoped, spec
from recon.methods.spec import MethodSpec, Needs, Options, Supports

#: Torch-side names, imported when first asked for.
_LAZY = {
    "Method": "recon.methods.batch",
    "ReconBatch": "recon.methods.batch",
    "check_images": "recon.methods.output",
    "CheckedMethod": "recon.methods.output",
    "OutputError": "recon.methods.output",
}

__all__ = ["MethodSpec", "Needs", "Options", "Supports", "available", "get", "get_method", "register", "scoped", "spec", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'recon.methods' has no attribute {name!r}")
