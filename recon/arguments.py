"""Argument and output-path checks that run before any input file is opened.

Every check raises `UsageError` (a bad option: the CLI prints `recon <cmd>: error: ...` and exits
2, as argparse does) or `InputError` (a file that cannot be used). Output paths are checked
against the inputs with `os.path.samefile`, so a hard link or a bind mount of an input counts as
the input: no run ever writes over the data it reads.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from recon.io.errors import InputError

#: Mask families whose acceleration is a column step, so it must be a whole number.
INTEGER_ACCELERATION_MASKS = ("equispaced", "magic")
#: Mask families that draw the outer columns at rate (W/acc - nlow) / (W - nlow): it must stay > 0.
FRACTION_LIMITED_MASKS = ("random", "equispaced-fraction", "magic-fraction")


class UsageError(Exception):
    """A command-line option that cannot be used; `str(err)` names the option and the problem."""


def acceleration(value: float, mask_type: str = "random", option: str = "--acceleration") -> float:
    """A usable acceleration: finite, > 1, a whole number for step-based masks."""
    acc = float(value)
    if not math.isfinite(acc) or acc <= 1:
        raise UsageError(f"{option} must be a finite number > 1, got {value!r}")
    if mask_type in INTEGER_ACCELERATION_MASKS and acc != int(acc):
        raise UsageError(f"{option} must be a whole number for --mask {mask_type}, got {value!r}")
    return acc


def center_fraction(value: float | None, acc: float | None, mask_type: str = "random") -> float | None:
    """A usable center fraction: in (0, 1), and below 1/acceleration for fraction-limited masks."""
    if value is None:
        return None
    cf = float(value)
    if not math.isfinite(cf) or not 0 < cf < 1:
        raise UsageError(f"--center-fraction must be in (0, 1), got {value!r}")
    if acc is not None and mask_type in FRACTION_LIMITED_MASKS and cf >= 1 / acc:
        raise UsageError(
            f"--center-fraction {cf:g} must be below 1/acceleration = {1 / acc:.4g} for --mask {mask_type} "
            "(otherwise no column outside the center can be drawn)"
        )
    return cf


def at_least(value: float | int | None, minimum: float, option: str, integer: bool = False) -> None:
    """UsageError unless `value` is None or a finite number >= `minimum`."""
    if value is None:
        return
    if not math.isfinite(float(value)) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise UsageError(f"{option} must be {kind} >= {minimum:g}, got {value!r}")


def _number(value: float) -> str:
    """A limit as the user would type it: `4294967295`, `0.5`."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e15 else f"{value:g}"


@dataclass(frozen=True)
class Bounds:
    """The values a numeric option may take: from `low` to `high` (`>`/`<` where the end
    is open), whole numbers if `integer`, None too if `optional`; `why` explains a maximum."""

    low: float
    high: float | None = None
    integer: bool = False
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    why: str = ""

    def describe(self) -> str:
        """`an integer >= 1`, `a finite number > 0 and <= 1`, ..."""
        span = f"{'>' if self.low_open else '>='} {_number(self.low)}"
        if self.high is not None:
            span += f" and {'<' if self.high_open else '<='} {_number(self.high)}"
        return f"{'an integer' if self.integer else 'a finite number'} {span}"

    def normalize(self, value: Any) -> int | float | None:
        """`value` as an int or float within the bounds; ValueError (the problem after the
        option's name) otherwise. Numeric strings count (YAML reads `1e-3` as a string)."""
        if value is None and self.optional:
            return None
        number = _parse_number(value, self.integer)
        if number is None or not self.admits(number):
            raise ValueError(f"must be {self.describe()}{f' ({self.why})' if self.why else ''}, got {value!r}")
        return number

    def admits(self, number: float) -> bool:
        """Whether the finite `number` lies within the bounds."""
        below = number <= self.low if self.low_open else number < self.low
        above = self.high is not None and (number >= self.high if self.high_open else number > self.high)
        return not (below or above)


def _parse_number(value: Any, integer: bool) -> int | float | None:
    """A finite int (whole values only, when `integer`) or float from a number or numeric
    string; None for anything else (booleans, lists, NaN, infinities, 2.5 for an integer)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    if integer:
        return int(number) if number.is_integer() else None
    return number


#: Deepest U-Net accepted before the data are read: 8 halvings already need 256 x 512 pixels.
MAX_POOLS = 8
_POOLS = Bounds(1, MAX_POOLS, integer=True, why="each pooling layer halves the image")
_COUNTER = Bounds(0, 2**16 - 1, integer=True)

#: Limits of the training options (`recon.train.config.TrainConfig` fields), from the command line
#: or a YAML config.
TRAIN_NUMERIC = ("num_cascades", "sens_chans", "sens_pools", "chans", "pools", "unet_chans", "unet_pools", "drop_prob",
                 "epochs", "lr", "lr_step_size", "lr_gamma", "weight_decay", "batch_size", "accumulate", "num_workers",
                 "sample_rate", "volume_sample_rate", "seed", "max_steps", "checkpoint_every")

#: Every numeric option of every command, by argparse `dest` (= training config field): the one
#: table their limits live in. `check_options` applies it to a parsed command line, and
#: `recon.train.config` to a training config from the command line or YAML.
OPTION_LIMITS: dict[str, Bounds] = {
    "iters": Bounds(1, 100_000, integer=True),
    "lam": Bounds(0, 1e6),
    "virtual_coils": Bounds(1, 1024, integer=True),
    "batch_size": Bounds(1, 4096, integer=True),
    "workers": Bounds(0, 1024, integer=True),
    "max_slices": Bounds(1, integer=True),
    "repetition": _COUNTER,
    "contrast": _COUNTER,
    "set_index": _COUNTER,
    "volumes": Bounds(1, 10_000, integer=True),
    "slices": Bounds(1, 1_000, integer=True),
    "coils": Bounds(1, 128, integer=True),
    "seed": Bounds(0, 2**32 - 1, integer=True),
    "num_cascades": Bounds(1, 64, integer=True),
    "sens_chans": Bounds(1, 512, integer=True),
    "sens_pools": _POOLS,
    "chans": Bounds(1, 512, integer=True),
    "pools": _POOLS,
    "unet_chans": Bounds(1, 1024, integer=True),
    "unet_pools": _POOLS,
    "drop_prob": Bounds(0, 1, high_open=True),
    "epochs": Bounds(1, 1_000_000, integer=True),
    "lr": Bounds(0, low_open=True),
    "lr_step_size": Bounds(1, integer=True),
    "lr_gamma": Bounds(0, 1, low_open=True),
    "weight_decay": Bounds(0),
    "accumulate": Bounds(1, 4096, integer=True),
    "num_workers": Bounds(0, 256, integer=True),
    "sample_rate": Bounds(0, 1, low_open=True),
    "volume_sample_rate": Bounds(0, 1, low_open=True),
    "max_steps": Bounds(1, integer=True, optional=True),
    "checkpoint_every": Bounds(0, integer=True),
}


def check_options(args: Any, flags: dict[str, str]) -> None:
    """UsageError for the first option of `args` (a parsed namespace) outside `OPTION_LIMITS`.

    `flags` maps each `dest` to the option as the user typed it (`set_index` -> `--set`).
    """
    for dest, bounds in OPTION_LIMITS.items():
        value = getattr(args, dest, None)
        if value is None or dest not in flags:
            continue
        try:
            bounds.normalize(value)
        except ValueError as err:
            raise UsageError(f"{flags[dest]} {err}") from None


def parse_floats(text: str, option: str) -> list[float]:
    """`"4,8"` -> `[4.0, 8.0]`; UsageError naming the bad item, or an empty list."""
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise UsageError(f"{option} is empty; give a comma-separated list, e.g. 4,8")
    values = []
    for item in items:
        try:
            values.append(float(item))
        except ValueError:
            raise UsageError(f"{option}: {item!r} is not a number") from None
    return values


def parse_methods(text: str, known: Sequence[str]) -> list[str]:
    """`"zero-filled,sense"` -> names, all registered; UsageError naming the unknown ones."""
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise UsageError(f"--methods is empty; choose from {', '.join(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--methods: unknown method(s) {', '.join(unknown)}; available: {', '.join(known)}")
    return list(dict.fromkeys(names))


def device(text: str) -> str:
    """`--device`: auto, cpu, cuda or cuda:N, and CUDA only where it exists."""
    if text == "auto":
        return text
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {text!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {text}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UsageError(f"--device {text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type != "cpu":
        raise UsageError(f"--device {text!r} is not supported; use auto, cpu, cuda or cuda:N")
    return text


def memory(text: str | None) -> int | None:
    """`--max-memory` as bytes (None = the machine's available memory at read time)."""
    if text is None:
        return None
    from recon.io.limits import parse_size

    try:
        return parse_size(text)
    except ValueError as err:
        raise UsageError(f"--max-memory: {err}") from None


# ---------------------------------------------------------------------------------------------
# Output paths


def output_folder(path: str | os.PathLike[str], option: str = "--out") -> Path:
    """Create the output folder if needed and prove it writable (a probe file); one-line errors."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UsageError(f"{option} {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".recon-write-test-", dir=out)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UsageError(f"{option} {out} is not writable ({err.strerror or err})") from None
    return out


def output_file(path: str | os.PathLike[str], option: str = "output") -> Path:
    """An output file's folder must be writable and the path must not be a folder."""
    out = Path(path)
    if out.is_dir():
        raise UsageError(f"{option} {out} is a folder; give a file name")
    output_folder(out.parent if str(out.parent) else Path("."), f"folder of {option}")
    return out


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def not_inputs(outputs: Iterable[Path], inputs: Sequence[Path]) -> None:
    """InputError if any existing output path is the same file as an input (hard links count)."""
    ids: dict[tuple[int, int], Path] = {}
    for p in inputs:
        with contextlib.suppress(OSError):
            st = os.stat(p)
            ids[(st.st_dev, st.st_ino)] = p
    for out in outputs:
        try:
            st = os.stat(out)
        except OSError:
            continue
        src = ids.get((st.st_dev, st.st_ino))
        if src is not None:
            raise InputError(src, f"the output {out} is this input file; refusing to overwrite an input (choose another --out)")


def unique_outputs(pairs: Sequence[tuple[Path, Path]]) -> None:
    """InputError when two inputs would write the same output, naming both inputs."""
    seen: dict[str, Path] = {}
    for src, out in pairs:
        key = os.path.normpath(os.path.abspath(out))
        if key in seen:
            raise InputError(src, f"writes the same output {out} as {seen[key]}; rename one or run them into separate --out folders")
        seen[key] = src


def keep_previous(path: str | os.PathLike[str]) -> Path | None:
    """Rename an existing `path` to `<stem>-<its mtime, UTC>.<suffix>` so a new run cannot replace it.

    Returns the new name of the earlier file, or None when there was none.
    """
    p = Path(path)
    if not p.is_file():
        return None
    stamp = _dt.datetime.fromtimestamp(p.stat().st_mtime, _dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    target = p.with_name(f"{p.stem}-{stamp}{p.suffix}")
    n = 1
    while target.exists():
        target = p.with_name(f"{p.stem}-{stamp}-{n}{p.suffix}")
        n += 1
    os.replace(p, target)
    return target
