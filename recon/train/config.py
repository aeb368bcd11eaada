"""Training configuration: a dataclass loadable from YAML and overridable from the command line."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recon.io.errors import InputError


@dataclass
class TrainConfig:
    """Everything one training run depends on (recorded in the run's checkpoints).

    data: folder with `train/` and `val/` subfolders of fastMRI multi-coil HDF5 files, or the
        training files themselves (then `val_data` names the validation folder, optional).
    out: run folder (checkpoints/, tensorboard/, metrics.jsonl).
    Model keywords are those of `recon.models.VarNet` (fastMRI defaults). The optimisation
    recipe defaults to fastMRI's leaderboard one (Adam 3e-4, StepLR(40, 0.1), 50 epochs,
    random masks over 4x/0.08 and 8x/0.04, SSIM loss with data range = file attr `max`).
    `max_steps` stops early after that many optimizer steps (smoke tests, short runs).
    `checkpoint_every`: optimizer steps between mid-epoch resume checkpoints (0 = epoch ends only).
    `mixed_precision`: "none" or "bf16" (only the U-Nets run in bf16; k-space stays complex64).
    `log_samples`: each rank appends, per optimizer step, its slices, a mask digest and a
        parameter digest to `samples-rank<R>.jsonl` (audit of data order and DDP sync).
    """

    data: Path
    out: Path
    val_data: Path | None = None
    num_cascades: int = 12
    sens_chans: int = 8
    sens_pools: int = 4
    chans: int = 18
    pools: int = 4
    mask_type: str = "random"
    center_fractions: list[float] = field(default_factory=lambda: [0.08, 0.04])
    accelerations: list[float] = field(default_factory=lambda: [4.0, 8.0])
    epochs: int = 50
    lr: float = 3e-4
    lr_step_size: int = 40
    lr_gamma: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 1
    accumulate: int = 1
    num_workers: int = 0
    sample_rate: float = 1.0
    seed: int = 0
    max_steps: int | None = None
    checkpoint_every: int = 200
    device: str = "auto"
    mixed_precision: str = "none"
    activation_checkpointing: bool = False
    init_weights: Path | None = None
    tensorboard: bool = True
    log_samples: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        for name in ("data", "out", "val_data", "init_weights"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))
        self.center_fractions = [float(v) for v in self.center_fractions]
        self.accelerations = [float(v) for v in self.accelerations]
        if self.mixed_precision not in ("none", "bf16"):
            raise ValueError(f"mixed_precision must be none or bf16, got {self.mixed_precision!r}")
        if self.batch_size < 1 or self.accumulate < 1 or self.epochs < 1:
            raise ValueError("batch_size, accumulate and epochs must be >= 1")
        self._check_recipe()

    def _check_recipe(self) -> None:
        """Masks, learning rate and sampling that give a usable run (checked before any file is read)."""
        import math

        from recon.validate import UsageError, acceleration, center_fraction

        try:
            for acc, cf in zip(self.accelerations, self.center_fractions):
                center_fraction(cf, acceleration(acc, self.mask_type, "accelerations"), self.mask_type)
        except UsageError as err:
            raise ValueError(str(err).replace("--center-fraction", "center_fractions")) from None
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr}")
        if not 0 < self.sample_rate <= 1:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")

    def model_kwargs(self) -> dict[str, int]:
        """Keywords for `recon.models.VarNet`."""
        return {k: getattr(self, k) for k in ("num_cascades", "sens_chans", "sens_pools", "chans", "pools")}

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-friendly dict (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<config>") -> "TrainConfig":
        """Build from a dict; unknown keys are an `InputError` naming `source`."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(source, f"unknown training option(s): {', '.join(unknown)}")
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            raise InputError(source, str(err)) from err

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """Load a YAML mapping of options; `overrides` (e.g. data, out) win over the file."""
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise InputError(path, f"cannot read YAML config ({err})") from err
        if not isinstance(values, dict):
            raise InputError(path, "YAML config must be a mapping of option: value")
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(values, str(path))


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--data`, `--out`, `--config` and one `--option` per `TrainConfig` field to `parser`.

    Options left unset keep the YAML config's (or the dataclass default) value.
    """
    parser.add_argument("--data", type=Path, help="data folder (train/ and val/ inside, or training files)")
    parser.add_argument("--out", type=Path, help="run folder: checkpoints, logs")
    parser.add_argument("--config", type=Path, help="YAML file of training options")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("data", "out"):
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type)
        if f.name == "quiet":
            parser.add_argument(flag, action="store_true", default=None, help="no progress bar")
        elif "list" in kind:
            parser.add_argument(flag, type=float, nargs="+", default=None, dest=f.name)
        elif "bool" in kind:
            parser.add_argument(flag, type=_bool, default=None, dest=f.name, metavar="BOOL")
        elif "int" in kind:
            parser.add_argument(flag, type=int, default=None, dest=f.name)
        elif "float" in kind:
            parser.add_argument(flag, type=float, default=None, dest=f.name)
        elif "Path" in kind:
            parser.add_argument(flag, type=Path, default=None, dest=f.name)
        else:
            parser.add_argument(flag, type=str, default=None, dest=f.name)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """`TrainConfig` from parsed arguments: YAML config (if given) overridden by explicit options."""
    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "config", None) is not None:
        return TrainConfig.from_yaml(args.config, **overrides)
    missing = [k for k in ("data", "out") if k not in overrides]
    if missing:
        raise InputError("<command line>", f"missing --{' and --'.join(missing)} (or a --config naming them)")
    return TrainConfig.from_dict(overrides, "<command line>")
