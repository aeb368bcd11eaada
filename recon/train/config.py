"""Training configuration: a dataclass loadable from YAML and overridable from the command line.

Every option is checked when the dataclass is built, against one table (`LIMITS`, `CHOICES`,
`FLAGS`), so a YAML config and the command line are refused alike, each in its own terms: an
option typed on the command line as `--lr-step-size` (a `UsageError`), one from a YAML file as
`lr_step_size` with the file's name (an `InputError`).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection

import yaml

from recon.io.errors import InputError
from recon.masks import DEFAULT_CENTER_FRACTIONS, MASK_KINDS
from recon.arguments import OPTION_LIMITS, TRAIN_NUMERIC, Bounds, UsageError, acceleration, center_fraction

#: Trainable models and their fastMRI learning rates (VarNetModule 3e-4, UnetModule 1e-3).
MODELS = ("varnet", "unet")
DEFAULT_LR = {"varnet": 3e-4, "unet": 1e-3}
#: The `source` of options given on the command line (errors name them as `--flags`).
COMMAND_LINE = "<command line>"


def flag(name: str) -> str:
    """The command-line spelling of a training field: `lr_step_size` -> `--lr-step-size`."""
    return "--" + name.replace("_", "-")


class OptionError(ValueError):
    """A training option outside its limits. The message is a template with one `{field}` per
    option involved, so that the command line names them as `--flags` and a YAML file as keys."""

    def __init__(self, template: str, *options: str) -> None:
        self.template = template
        self.options = options
        super().__init__(self.render(str))

    def render(self, name: Callable[[str], str]) -> str:
        """The message with each option written as `name(option)`."""
        return self.template.format(**{o: name(o) for o in self.options})


def _literal(text: str) -> str:
    """`text` safe inside an `OptionError` template."""
    return text.replace("{", "{{").replace("}", "}}")


#: Limits of every numeric training option, by `TrainConfig` field: their rows of the one table of
#: option limits (`recon.arguments.OPTION_LIMITS`), which both a YAML config and the command line
#: are checked against (in `TrainConfig.__post_init__`). Model sizes are further checked against
#: the data and the memory when the run starts (`recon.train.sizing`).
LIMITS: dict[str, Bounds] = {name: OPTION_LIMITS[name] for name in TRAIN_NUMERIC}
#: Options with a fixed set of values (`_` spellings of mask kinds are accepted as `-`).
CHOICES: dict[str, tuple[str, ...]] = {
    "model": MODELS,
    "mixed_precision": ("none", "bf16"),
    "mask_type": tuple(MASK_KINDS),
}
#: Options that are true or false.
FLAGS = ("activation_checkpointing", "tensorboard", "log_samples", "quiet")


@dataclass
class TrainConfig:
    """Everything one training run depends on (recorded in the run's checkpoints).

    model: "varnet" (E2E-VarNet, SSIM loss, Adam) or "unet" (fastMRI's image-domain U-Net on
        zero-filled RSS, L1 loss on instance-normalized images, RMSprop, as `UnetModule`).

    data: folder with `train/` and `val/` subfolders of fastMRI multi-coil HDF5 files, or the
        training files themselves (then `val_data` names the validation folder, optional).
    out: run folder (checkpoints/, tensorboard/, metrics.jsonl).
    Model keywords are those of `recon.models.VarNet` (fastMRI defaults); `unet_chans`,
    `unet_pools`, `drop_prob` those of the U-Net (fastMRI `UnetModule` defaults 32, 4, 0). The
    optimisation recipe defaults to fastMRI's (VarNet: Adam 3e-4; U-Net: RMSprop 1e-3; both
    StepLR(40, 0.1), 50 epochs, random masks over 4x/0.08 and 8x/0.04); `lr` None = that default.
    `max_steps` stops early after that many optimizer steps (smoke tests, short runs).
    `checkpoint_every`: optimizer steps between mid-epoch resume checkpoints (0 = epoch ends only).
    `mixed_precision`: "none" or "bf16" (only the U-Nets run in bf16; k-space stays complex64).
    `log_samples`: each rank appends, per optimizer step, its slices, a mask digest and a
        parameter digest to `samples-rank<R>.jsonl` (audit of data order and DDP sync).
    """

    data: Path
    out: Path
    val_data: Path | None = None
    model: str = "varnet"
    num_cascades: int = 12
    sens_chans: int = 8
    sens_pools: int = 4
    chans: int = 18
    pools: int = 4
    unet_chans: int = 32
    unet_pools: int = 4
    drop_prob: float = 0.0
    mask_type: str = "random"
    center_fractions: list[float] = field(default_factory=lambda: list(DEFAULT_CENTER_FRACTIONS.values()))
    accelerations: list[float] = field(default_factory=lambda: list(DEFAULT_CENTER_FRACTIONS))
    epochs: int = 50
    lr: float | None = None
    lr_step_size: int = 40
    lr_gamma: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 1
    accumulate: int = 1
    num_workers: int = 0
    sample_rate: float = 1.0
    volume_sample_rate: float = 1.0
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
        """Check every option against `LIMITS`, `CHOICES` and `FLAGS` (OptionError naming it)."""
        for name in ("data", "out", "val_data", "init_weights"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(value))
        if isinstance(self.mask_type, str):
            self.mask_type = self.mask_type.replace("_", "-")
        for name, choices in CHOICES.items():
            if getattr(self, name) not in choices:
                raise OptionError(f"{{{name}}} must be one of {', '.join(choices)}, got {_literal(repr(getattr(self, name)))}", name)
        for name in FLAGS:
            if not isinstance(getattr(self, name), bool):
                raise OptionError(f"{{{name}}} must be true or false, got {_literal(repr(getattr(self, name)))}", name)
        if self.lr is None:
            self.lr = DEFAULT_LR[self.model]
        for name, bounds in LIMITS.items():
            try:
                setattr(self, name, bounds.normalize(getattr(self, name)))
            except ValueError as err:
                raise OptionError(f"{{{name}}} {_literal(str(err))}", name) from None
        if self.model == "unet" and (self.mixed_precision != "none" or self.activation_checkpointing):
            raise OptionError("{mixed_precision} and {activation_checkpointing} apply to {model} varnet only",
                              "mixed_precision", "activation_checkpointing", "model")
        self._check_recipe()

    def _check_recipe(self) -> None:
        """Masks and sampling that give a usable run (checked before any file is read)."""
        for name in ("center_fractions", "accelerations"):
            values = getattr(self, name)
            if isinstance(values, (int, float, str)):
                values = [values]
            try:
                setattr(self, name, [float(v) for v in values])
            except (TypeError, ValueError):
                raise OptionError(f"{{{name}}} must be a list of numbers, got {_literal(repr(values))}", name) from None
        if not self.accelerations or len(self.accelerations) != len(self.center_fractions):
            raise OptionError(f"{{center_fractions}} and {{accelerations}} must be lists of the same length (one center "
                              f"fraction per acceleration), got {len(self.center_fractions)} and {len(self.accelerations)}",
                              "center_fractions", "accelerations")
        for acc, cf in zip(self.accelerations, self.center_fractions):
            try:
                acc = acceleration(acc, self.mask_type, "{accelerations}")
            except UsageError as err:
                raise OptionError(str(err).replace("--mask ", "{mask_type} "), "accelerations", "mask_type") from None
            try:
                center_fraction(cf, acc, self.mask_type)
            except UsageError as err:
                text = _literal(str(err)).replace("--center-fraction", "{center_fractions}").replace("--mask", "{mask_type}")
                raise OptionError(text, "center_fractions", "mask_type") from None
        if self.sample_rate < 1 and self.volume_sample_rate < 1:
            raise OptionError("set {sample_rate} (random slices) or {volume_sample_rate} (random volumes), not both",
                              "sample_rate", "volume_sample_rate")

    def model_kwargs(self) -> dict[str, Any]:
        """Keywords for `recon.models.VarNet`, or for `recon.models.Unet` when model is unet."""
        if self.model == "unet":
            return {"in_chans": 1, "out_chans": 1, "chans": self.unet_chans, "num_pool_layers": self.unet_pools, "drop_prob": self.drop_prob}
        return {k: getattr(self, k) for k in ("num_cascades", "sens_chans", "sens_pools", "chans", "pools")}

    def to_dict(self) -> dict[str, Any]:
        """JSON/YAML-friendly dict (paths as strings)."""
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "<config>", command_line: Collection[str] = ()) -> "TrainConfig":
        """Build from a dict; unknown keys are an `InputError` naming `source`.

        An option outside its limits is a `UsageError` naming it as `--flag` when it came from
        the command line (`source` is `COMMAND_LINE`, or it is in `command_line`), else an
        `InputError` naming `source` (a YAML file) and the key.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise InputError(source, f"unknown training option(s): {', '.join(unknown)}")
        typed = set(values) if source == COMMAND_LINE else set(command_line)
        try:
            return cls(**values)
        except OptionError as err:
            if typed.intersection(err.options):
                raise UsageError(err.render(lambda o: f"{o} (in {source})" if o in values and o not in typed else flag(o))) from None
            raise InputError(source, err.render(str)) from None
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
        given = {k: v for k, v in overrides.items() if v is not None}
        values.update(given)
        return cls.from_dict(values, str(path), command_line=set(given) - {"data", "out"})


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


#: Help text of every training option (the default is appended from `TrainConfig`).
_HELP: dict[str, str] = {
    "val_data": "validation folder (default: DATA/val when DATA has train/ and val/)",
    "model": "model to train",
    "num_cascades": "VarNet unrolled cascades",
    "sens_chans": "VarNet sensitivity U-Net channels",
    "sens_pools": "VarNet sensitivity U-Net pooling layers",
    "chans": "VarNet cascade U-Net channels",
    "pools": "VarNet cascade U-Net pooling layers",
    "unet_chans": "image U-Net channels (fastMRI's published knee U-Net: 256)",
    "unet_pools": "image U-Net pooling layers",
    "drop_prob": "image U-Net dropout probability",
    "mask_type": "training mask family",
    "center_fractions": "center fractions, one per acceleration",
    "accelerations": "accelerations drawn at random per slice",
    "epochs": "epochs to train (a finished run is left as it is; raise this to continue it)",
    "lr": "learning rate (default: 3e-4 for varnet with Adam, 1e-3 for unet with RMSprop)",
    "lr_step_size": "epochs between learning-rate drops (StepLR)",
    "lr_gamma": "learning-rate factor at each drop",
    "weight_decay": "optimizer weight decay",
    "batch_size": "slices per batch and rank",
    "accumulate": "batches accumulated per optimizer step",
    "num_workers": "DataLoader worker processes",
    "sample_rate": "fraction of the training slices used, drawn at random by --seed (fastMRI's sample_rate)",
    "volume_sample_rate": "fraction of the training volumes used, drawn at random by --seed (exclusive with --sample-rate)",
    "seed": "seed of the initial weights, slice order and masks",
    "max_steps": "stop after this many optimizer steps (default: none)",
    "checkpoint_every": "optimizer steps between resume checkpoints (0: at epoch ends only)",
    "device": "auto | cpu | cuda | cuda:N",
    "mixed_precision": "bf16 runs the VarNet U-Nets in bfloat16",
    "activation_checkpointing": "recompute VarNet U-Net activations in the backward pass",
    "init_weights": "start from these weights (.safetensors, or fastMRI .pt); a VarNet of the same depth with fewer channels is widened to the configured ones, computing the same image at the start (recon.models.widen) (default: random)",
    "tensorboard": "write TensorBoard scalars to OUT/tensorboard",
    "log_samples": "log slices, mask and parameter digests per step (audit)",
}


def _mask_kind(text: str) -> str:
    """`--mask-type` as given, with fastMRI's `_` spellings (`equispaced_fraction`) read as `-`."""
    return text.replace("_", "-")


def _help(f: dataclasses.Field[Any]) -> str:
    """The help of a field's option: its text, its choices (listed once) and its default."""
    text = _HELP.get(f.name, f.name.replace("_", " "))
    if f.name in CHOICES:
        text += "; one of " + ", ".join(CHOICES[f.name])
    if "default" in text:
        return text
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
    if isinstance(default, list):
        default = " ".join(f"{v:g}" for v in default)
    return f"{text} (default: {default})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--data`, `--out`, `--config` and one `--option` per `TrainConfig` field to `parser`.

    Options left unset keep the YAML config's (or the dataclass default) value.
    """
    parser.add_argument("--data", type=Path, help="data folder (train/ and val/ inside, or training files)")
    parser.add_argument("--out", type=Path, help="run folder: checkpoints, logs (rerunning a finished run says so)")
    parser.add_argument("--config", type=Path, help="YAML file of training options (command-line options win)")
    for f in dataclasses.fields(TrainConfig):
        if f.name in ("data", "out"):
            continue
        option = flag(f.name)
        kind = str(f.type)
        common: dict[str, Any] = {"default": None, "dest": f.name, "help": _help(f)}
        if f.name in CHOICES:
            common["choices"] = list(CHOICES[f.name])
            common["metavar"] = f.name.split("_")[-1].upper()
        if f.name == "mask_type":
            parser.add_argument(option, type=_mask_kind, **common)
        elif f.name == "quiet":
            parser.add_argument(option, action="store_true", default=None, help="no progress bar and no line per epoch (the final summary is still printed)")
        elif "list" in kind:
            parser.add_argument(option, type=float, nargs="+", **common)
        elif "bool" in kind:
            parser.add_argument(option, type=_bool, metavar="BOOL", **common)
        elif "int" in kind:
            parser.add_argument(option, type=int, **common)
        elif "float" in kind:
            parser.add_argument(option, type=float, **common)
        elif "Path" in kind:
            parser.add_argument(option, type=Path, **common)
        else:
            parser.add_argument(option, type=str, **common)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """`TrainConfig` from parsed arguments: YAML config (if given) overridden by explicit options."""
    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig)}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if getattr(args, "config", None) is not None:
        return TrainConfig.from_yaml(args.config, **overrides)
    missing = [k for k in ("data", "out") if k not in overrides]
    if missing:
        raise InputError(COMMAND_LINE, f"missing --{' and --'.join(missing)} (or a --config naming them)")
    return TrainConfig.from_dict(overrides, COMMAND_LINE)
