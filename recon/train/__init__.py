"""Training of E2E-VarNet: `train(TrainConfig) -> Path`, YAML configs, resume, DDP under torchrun.

The `recon train` subcommand calls `add_arguments(parser)` and `train(config_from_args(args))`.
The training loop (torch) is imported when one of its names is first asked for, so building the
command line (`recon.train.config`) stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from recon.train.config import TrainConfig, add_arguments, config_from_args

#: Names of the training loop, imported when first asked for.
_LOOP = ("batch_loss", "build_model", "train", "validate")

__all__ = ["TrainConfig", "add_arguments", "config_from_args", *_LOOP]


def __getattr__(name: str) -> Any:
    if name in _LOOP:
        return getattr(importlib.import_module("recon.train.loop"), name)
    raise AttributeError(f"module 'recon.train' has no attribute {name!r}")
