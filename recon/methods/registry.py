"""The one list of reconstruction methods: name -> the module that holds its `SPEC`.

A method's file is imported when something first asks for its spec; it imports no torch (its
`build` does), so listing methods, their options and their flags stays light. Adding a method
= its file in `recon/methods/` (a `MethodSpec` named `SPEC`) plus one line in `_REGISTRY`.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from recon.methods.spec import Flag, MethodSpec, flags

if TYPE_CHECKING:
    import torch

    from recon.methods.output import CheckedMethod

_REGISTRY: dict[str, str | MethodSpec] = {
    "zero-filled": "recon.methods.zero_filled",
    "sense": "recon.methods.sense",
    "cs": "recon.methods.cs",
    "cs-tv": "recon.methods.cs_tv",
    "varnet": "recon.methods.varnet",
    "unet": "recon.methods.unet",
    "grappa": "recon.methods.grappa",
    "spirit": "recon.methods.spirit",
}

#: The methods `recon benchmark` compares unless told otherwise.
DEFAULT_BENCHMARK = ("zero-filled", "sense", "cs", "spirit")


def register(name: str, spec: str | MethodSpec) -> None:
    """Register a method under `name`: its `MethodSpec`, or the module path of the file holding `SPEC`."""
    _REGISTRY[name] = spec


@contextlib.contextmanager
def scoped() -> Iterator[None]:
    """Registrations made inside the block are undone at its end (tests; trying a method out)."""
    before = dict(_REGISTRY)
    try:
        yield
    finally:
        _REGISTRY.clear()
        _REGISTRY.update(before)


def available() -> list[str]:
    """Registered method names."""
    return sorted(_REGISTRY)


def spec(name: str) -> MethodSpec:
    """The `MethodSpec` of method `name`; ValueError naming the registered ones for an unknown name."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown method {name!r}; available: {', '.join(available())}")
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        entry = importlib.import_module(entry).SPEC
        if entry.name != name:
            raise ValueError(f"method {name!r} is registered with the spec of {entry.name!r}")
        _REGISTRY[name] = entry
    return entry


def get(name: str, device: str | torch.device | None = None, **options: Any) -> CheckedMethod:
    """The method `name` built with `options` (checked against its options dataclass: an option it
    does not take is a ValueError naming the valid ones) on `device` (None: each batch's), its
    every output checked (`recon.methods.output.check_images`)."""
    method_spec = spec(name)
    checked = method_spec.make_options(options)
    from recon.methods.output import CheckedMethod

    return CheckedMethod(name, method_spec.build(checked, device), checked)


get_method = get


def all_flags() -> list[Flag]:
    """The command-line flags of every registered method's options (`recon.methods.spec.flags`)."""
    return flags([spec(n) for n in available()])


def flag_options(given: dict[str, Any], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per method of `names`, the options set by the flags in `given` (flag -> value; None: not
    given); ValueError naming a given flag that none of them takes and the methods that do."""
    known = {f.flag: f for f in all_flags()}
    out: dict[str, dict[str, Any]] = {n: {} for n in names}
    for flag, value in given.items():
        if value is None:
            continue
        takers = [(m, o) for m, o, _ in known[flag].takers if m in out]
        if not takers:
            raise ValueError(f"{flag}: applies to {', '.join(known[flag].methods())}, not to {', '.join(names)}")
        for method, name in takers:
            out[method][name] = value
    return out
