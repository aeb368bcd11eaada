"""Training of E2E-VarNet: `train(TrainConfig) -> Path`, YAML configs, resume, DDP under torchrun.

The `recon train` subcommand calls `add_arguments(parser)` and `train(config_from_args(args))`.
"""

from recon.train.config import TrainConfig, add_arguments, config_from_args
from recon.train.loop import batch_loss, build_model, train, validate

__all__ = ["TrainConfig", "add_arguments", "batch_loss", "build_model", "config_from_args", "train", "validate"]
