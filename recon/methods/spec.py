"""What a method is, read without running it: its options, what it needs, what it supports.

Every method file (`recon/methods/<name>.py`) defines `SPEC`, a `MethodSpec`: a keyword-only
options dataclass (an `Options` subclass whose fields are made by `option`, each with a doc
giving units and default and, when the command line sets it, a flag), what the method needs
from the data (`Needs`), what it supports (`Supports`), which option names its weights when it
is learned, and `build(options, device)`, which imports the numerics (torch) only when called.
The CLI (flags and help), the input checks, the benchmark and `recon.methods.get` read these.
This module and the method files import no torch, so `recon --help` does not load it.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Literal, Sequence

if TYPE_CHECKING:
    from recon.methods.base import Device
    from recon.methods.batch import Method

#: Field metadata keys of an option.
DOC, FLAG = "doc", "flag"


def option(default: Any, doc: str, flag: str | None = None) -> Any:
    """A field of an options dataclass: its default, its doc (units, default) and its command-line
    flag (`--lam`; None: set from Python only)."""
    return field(default=default, metadata={DOC: doc, FLAG: flag})


@dataclass(frozen=True, kw_only=True)
class Options:
    """Base of the options dataclasses: refuses a value outside a `Literal` field's choices."""

    def __post_init__(self) -> None:
        for name, allowed in _choices(type(self)).items():
            value = getattr(self, name)
            if value is not None and value not in allowed:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(map(str, allowed))}")


@functools.cache
def _hints(options: type) -> dict[str, Any]:
    """The type of each field of `options`, with `None` removed from a union."""
    out = {}
    for name, hint in typing.get_type_hints(options).items():
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            hint = args[0] if len(args) == 1 else typing.Union[tuple(args)]
        out[name] = hint
    return out


@functools.cache
def _choices(options: type) -> dict[str, tuple[Any, ...]]:
    """The allowed values of each `Literal` field of `options`."""
    return {name: typing.get_args(hint) for name, hint in _hints(options).items() if typing.get_origin(hint) is Literal}


@dataclass(frozen=True)
class Needs:
    """What a method needs from the data; `recon.method_checks.check_input` refuses input without it.

    acs: fewest calibration (ACS) columns, and signal in them (0: needs none). matrix: smallest
    image matrix (rows, cols). uniform_mask: uniformly undersampled columns (`--mask equispaced`;
    the method refuses other masks itself). multi_coil: at least two receive coils. coil_maps:
    the method estimates coil maps from the ACS, so an all-zero image means it found none.
    """

    acs: int = 0
    matrix: tuple[int, int] = (1, 1)
    uniform_mask: bool = False
    multi_coil: bool = False
    coil_maps: bool = False


@dataclass(frozen=True)
class Supports:
    """What a method offers beyond its options (its options say the rest: `partial_fourier`,
    `virtual_coils`, `combine`). gfactor: how its g-factor maps are computed (`--gfactor`), None
    when it has none. gpu: it runs on a CUDA device. non_cartesian: it takes k-space samples on a
    trajectory (`Acquisition.trajectory`); the others are refused such data up front."""

    gfactor: str | None = None
    gpu: bool = True
    non_cartesian: bool = False


@dataclass(frozen=True)
class MethodSpec:
    """A reconstruction method as the CLI, the checks, the benchmark and the Python API see it.

    name: the registered name. summary: one line for help texts. options: its `Options`
    dataclass. build: `(options, device) -> Method` (device None: each batch's). checkpoint: the
    option naming the weights file of a learned method (None: not learned). baseline: the method
    the benchmark compares the others with when it runs.
    """

    name: str
    summary: str
    options: type[Options]
    build: Callable[[Any, Device], Method]
    needs: Needs = Needs()
    supports: Supports = Supports()
    checkpoint: str | None = None
    baseline: bool = False

    @property
    def learned(self) -> bool:
        """Whether the method runs trained weights (its `checkpoint` option names them)."""
        return self.checkpoint is not None

    def option_names(self) -> list[str]:
        """The names of its options, in declaration order."""
        return [f.name for f in dataclasses.fields(self.options)]

    def takes(self, name: str) -> bool:
        """Whether it has the option `name`."""
        return name in self.option_names()

    def make_options(self, values: dict[str, Any]) -> Options:
        """Its options from `values`; ValueError naming an option it does not take and the valid
        ones, or a value outside an option's choices."""
        valid = self.option_names()
        unknown = [k for k in values if k not in valid]
        if unknown:
            raise ValueError(f"method {self.name!r} takes no option {unknown[0]!r}; valid options: {', '.join(valid)}")
        try:
            return self.options(**values)
        except ValueError as err:
            raise ValueError(f"method {self.name!r}: {err}") from None


@dataclass(frozen=True)
class Flag:
    """One command-line flag of the method options, shared by every method that declares it.

    flag: `--lam`. dest: the argparse destination (`lam`). kind: int, float or str. choices: the
    allowed values of a `Literal` option, else None. takers: `(method, option, doc)` of each
    method that takes it.
    """

    flag: str
    dest: str
    kind: type
    choices: tuple[Any, ...] | None
    takers: tuple[tuple[str, str, str], ...]

    def methods(self) -> list[str]:
        """The methods that take the flag."""
        return [m for m, _, _ in self.takers]

    def help(self) -> str:
        """Help text from the option docs: one doc when the methods agree, else one per method."""
        docs = {doc for _, _, doc in self.takers}
        if len(docs) == 1:
            return f"{docs.pop()} ({', '.join(self.methods())})"
        return "; ".join(f"{m}: {doc}" for m, _, doc in self.takers)


def _flag_type(options: type, name: str) -> tuple[type, tuple[Any, ...] | None]:
    """The argparse type and choices of option `name` (`int`, `float`, a `Literal` as str, else str)."""
    hint = _hints(options)[name]
    if typing.get_origin(hint) is Literal:
        return str, typing.get_args(hint)
    if hint is bool:
        raise ValueError(f"{options.__name__}.{name}: a bool option cannot be a command-line flag")
    if hint in (int, float):
        return hint, None
    return str, None


def flags(specs: Sequence[MethodSpec]) -> list[Flag]:
    """One `Flag` per flag name over the options of `specs`, in first-seen order; ValueError when
    two methods give one flag different types or choices."""
    found: dict[str, Flag] = {}
    for spec in specs:
        for f in dataclasses.fields(spec.options):
            name = f.metadata.get(FLAG)
            if name is None:
                continue
            kind, choices = _flag_type(spec.options, f.name)
            taker = (spec.name, f.name, f.metadata[DOC])
            known = found.get(name)
            if known is None:
                found[name] = Flag(name, name.lstrip("-").replace("-", "_"), kind, choices, (taker,))
            elif (known.kind, known.choices) != (kind, choices):
                raise ValueError(f"{name}: {spec.name} declares it as {kind.__name__} {choices or ''}, "
                                 f"{known.methods()[0]} as {known.kind.__name__} {known.choices or ''}")
            else:
                found[name] = dataclasses.replace(known, takers=known.takers + (taker,))
    return list(found.values())

