"""The data a learned model was trained on, and a warning when an input lies outside it.

A trained reconstruction network does not extrapolate: given a matrix, coil count or
acceleration it never saw, it returns a plausible-looking image that can be far from the data
(the shipped VarNet, trained on 320-row 8-coil k-space at 4x / 8x, changes a fully sampled 64 x 64
4-coil phantom by up to 40 % of its maximum). `recon train` therefore records the training
folder's k-space shapes in the checkpoint's JSON (`"domain"`), the training config holds its
accelerations, and `recon reconstruct` warns, naming the file, when an input falls outside them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from recon.io.scan import open_scan

#: Matrix sizes up to this factor outside the training range still count as inside.
SIZE_TOLERANCE = 1.25
#: Accelerations up to this factor outside the training range still count as inside.
ACCELERATION_TOLERANCE = 1.5


def folder_domain(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Coil count and k-space rows / columns (min, max) over the fastMRI files in `folder`.

    Reads only the `kspace` dataset shapes `(S, C, H, W)`; ValueError when no file has one.
    """
    shapes = []
    for path in sorted(Path(folder).glob("*.h5")):
        with open_scan(path) as scan:
            if scan.format == "fastmri" and scan.info.multicoil:
                shapes.append(scan.shape)
    if not shapes:
        raise ValueError(f"{folder}: no multi-coil fastMRI file (kspace of 4 dimensions) to describe")
    coils, rows, cols = zip(*shapes)
    return {"files": len(shapes), "coils": [min(coils), max(coils)], "rows": [min(rows), max(rows)], "cols": [min(cols), max(cols)]}


def _outside(value: float, low: float, high: float, tolerance: float) -> bool:
    return value < low / tolerance or value > high * tolerance


def domain_problems(record: dict[str, Any], coils: int, rows: int, cols: int, acceleration: float | None) -> list[str]:
    """What about an input `(coils, rows, cols)` at `acceleration` lies outside the training
    data described by `record` (a checkpoint JSON: `"domain"` and `"train"."accelerations"`);
    empty when inside or when the record says nothing (e.g. fastMRI's published weights)."""
    problems = []
    domain = record.get("domain") or {}
    if "coils" in domain and not domain["coils"][0] <= coils <= domain["coils"][1]:
        problems.append(f"{coils} coils (trained on {_span(domain['coils'])})")
    for name, value in (("rows", rows), ("cols", cols)):
        if name in domain and _outside(value, *domain[name], SIZE_TOLERANCE):
            problems.append(f"{value} k-space {name} (trained on {_span(domain[name])})")
    trained = (record.get("train") or {}).get("accelerations")
    if acceleration is not None and trained and _outside(acceleration, min(trained), max(trained), ACCELERATION_TOLERANCE):
        problems.append(f"acceleration {acceleration:.1f} (trained at {', '.join(f'{a:g}x' for a in trained)})")
    return problems


def domain_warning(method: str, checkpoint: str | os.PathLike[str], problems: list[str]) -> str | None:
    """One-line warning for `problems` (from `domain_problems`), None when there are none."""
    if not problems:
        return None
    return (f"{method}: input outside the training data of {Path(checkpoint).name}: {'; '.join(problems)}; "
            "the image may be wrong (check it against sense or cs)")


def _span(pair: list[int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}-{pair[1]}"
