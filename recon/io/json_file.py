"""Strict JSON results files (summary.json, results.json, `evaluate --out`), written atomically.

JSON has no NaN or Infinity; Python writes them as bare `NaN` / `Infinity` that most readers
reject, and `allow_nan=False` turns one such number into an exception that loses the whole file.
The per-file checks of `recon.evaluation` refuse non-finite scores before they get here, so this
is the last guard: a number that still is not finite is written as null and listed, with the
file of its row, so the file is always written and never silently wrong.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from recon.io.atomic import atomic_path

#: Key of the list of values written as null because they were not finite.
NON_FINITE_KEY = "non_finite"


def finite_json(doc: Any, where: str = "", file: str | None = None) -> tuple[Any, list[str]]:
    """A copy of `doc` safe for strict JSON, and where each non-finite number was.

    NumPy scalars and arrays become Python numbers and lists; a NaN or Inf becomes None and its
    place is listed as e.g. `rows[3].psnr = inf (file a.h5)`, the file taken from the nearest
    enclosing dict with a `file` entry.
    """
    if isinstance(doc, np.ndarray):
        doc = doc.tolist()
    elif isinstance(doc, np.generic):
        doc = doc.item()
    if isinstance(doc, float):
        if math.isfinite(doc):
            return doc, []
        return None, [f"{where or 'value'} = {doc}" + (f" (file {file})" if file else "")]
    if isinstance(doc, dict):
        here = doc.get("file")
        owner = str(here) if isinstance(here, (str, os.PathLike)) else file
        out: dict[Any, Any] = {}
        found: list[str] = []
        for k, v in doc.items():
            out[k], bad = finite_json(v, f"{where}.{k}" if where else str(k), owner)
            found += bad
        return out, found
    if isinstance(doc, (list, tuple)):
        items, found = [], []
        for i, v in enumerate(doc):
            item, bad = finite_json(v, f"{where}[{i}]", file)
            items.append(item)
            found += bad
        return items, found
    return doc, []


def write_json(path: str | os.PathLike[str], doc: dict[str, Any]) -> list[str]:
    """Write `doc` to `path` atomically as strict JSON (`allow_nan=False`); returns the places of
    non-finite numbers written as null, which the file also lists under `non_finite`."""
    safe, found = finite_json(doc)
    if found:
        safe[NON_FINITE_KEY] = [f"{f}: not a finite number, written as null" for f in found]
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(safe, indent=2, allow_nan=False, default=str))
    return found
