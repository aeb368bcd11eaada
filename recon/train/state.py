"""Resume checkpoints without pickle: tensors in safetensors, scalars in JSON.

`checkpoints/resume.json` is the commit record: it names the safetensors file of the same
step (model weights, Adam moments and steps, torch RNG) and holds the scalars (epoch, step in
epoch, global step, best score, optimizer hyper-parameters, scheduler state). Both are written
atomically, the tensors first, so a kill at any moment leaves the previous consistent state.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from recon.io.errors import InputError
from recon.models.checkpoint import save_json, save_tensors

RESUME_JSON = "resume.json"


def save_resume(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scalars: dict[str, Any],
) -> Path:
    """Write the full training state of step `scalars["global_step"]`; remove older state files."""
    step = int(scalars["global_step"])
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt = optimizer.state_dict()
    for index, state in opt["state"].items():
        for name, value in state.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value)
    tensors["rng.torch"] = torch.get_rng_state()
    name = f"resume-{step:08d}.safetensors"
    save_tensors(folder / name, tensors)
    record = {**scalars, "file": name, "optimizer_groups": opt["param_groups"], "scheduler": scheduler.state_dict()}
    save_json(folder / RESUME_JSON, record)
    for old in folder.glob("resume-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return folder / RESUME_JSON


def load_resume(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any] | None:
    """Restore the state written by `save_resume` into the given objects; return its scalars (None if absent)."""
    record_path = folder / RESUME_JSON
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        tensors = load_file(str(folder / record["file"]))
    except (OSError, KeyError, ValueError, json.JSONDecodeError) as err:
        raise InputError(record_path, f"cannot resume ({type(err).__name__}: {err})") from err
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": record["optimizer_groups"]})
    scheduler.load_state_dict(record["scheduler"])
    torch.set_rng_state(tensors["rng.torch"])
    return record
