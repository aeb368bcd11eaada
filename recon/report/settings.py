"""The settings of a benchmark run for its reports: data, masks, methods, device, versions, commit."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

#: Distributions whose versions a report lists (those not installed are left out).
PACKAGES = ("recon", "torch", "numpy", "scipy", "scikit-image", "h5py", "sigpy", "fastmri", "cupy-cuda12x", "matplotlib")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of `names` (missing ones omitted) plus Python's."""
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def git_commit(path: Path | None = None) -> str:
    """The commit of the source tree `recon` runs from ('+dirty' if modified), or 'unknown' outside git."""
    root = path or Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+dirty" if dirty else "") if head else "unknown"


def device_description(device: torch.device) -> str:
    """e.g. 'cpu (8 threads)' or 'cuda:0 (NVIDIA H100 80GB HBM3)'."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"{device} ({torch.get_num_threads()} threads)"


def run_settings(
    *,
    data: Sequence[str],
    files: Sequence[str],
    methods: dict[str, dict[str, Any]],
    accelerations: Sequence[float],
    center_fractions: dict[float, float],
    mask_type: str,
    max_slices: int | None,
    batch_size: int,
    device: torch.device,
    reference: str | None,
    by: str | None,
    note: str = "",
    skipped_methods: dict[str, str] | None = None,
) -> dict[str, Any]:
    """JSON-ready record of everything a benchmark's numbers depend on."""
    return {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join(["recon", *sys.argv[1:]]) if Path(sys.argv[0]).name in ("recon", "__main__.py") else " ".join(sys.argv),
        "note": note,
        "data": list(data),
        "files": list(files),
        "max_slices": max_slices,
        "masks": {
            "type": mask_type,
            "accelerations": [float(a) for a in accelerations],
            "center_fractions": {f"{a:g}x": cf for a, cf in center_fractions.items()},
            "seed": "from the file name (fastMRI validation); identical for every method",
        },
        "methods": methods,
        "skipped_methods": dict(skipped_methods or {}),
        "reference": reference,
        "group_by": by,
        "batch_size": batch_size,
        "device": device_description(device),
        "platform": platform.platform(),
        "versions": package_versions(),
        "git_commit": git_commit(),
    }


def settings_lines(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs of the settings for the reports."""
    masks = settings["masks"]
    cfs = ", ".join(f"{k}: {v:g}" for k, v in masks["center_fractions"].items())
    methods = "; ".join(f"{m} {opts}" if opts else m for m, opts in settings["methods"].items())
    lines = [
        ("date (UTC)", settings["date_utc"]),
        ("command", settings["command"]),
        ("data", f"{', '.join(settings['data'])} ({len(settings['files'])} files"
                 + (f", central {settings['max_slices']} slices each)" if settings["max_slices"] else ")")),
        ("masks", f"{masks['type']}, accelerations {', '.join(f'{a:g}x' for a in masks['accelerations'])}, "
                  f"center fractions {cfs}; seed {masks['seed']}"),
        ("methods", methods),
        ("reference", str(settings["reference"])),
        ("grouped by", str(settings["group_by"])),
        ("device", f"{settings['device']}, batch {settings['batch_size']} slices"),
        ("platform", settings["platform"]),
        ("versions", ", ".join(f"{k} {v}" for k, v in settings["versions"].items())),
        ("git commit", settings["git_commit"]),
    ]
    if settings.get("skipped_methods"):
        lines.insert(5, ("skipped methods", "; ".join(f"{m}: {why}" for m, why in settings["skipped_methods"].items())))
    if settings.get("note"):
        lines.insert(0, ("note", settings["note"]))
    return lines
