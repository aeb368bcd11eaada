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

from recon.io.errors import InputError
from recon.models.checkpoint import read_tensors, save_json, save_tensors, state_mismatch

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


def resume_remedy(folder: Path, tensors: str | None = None) -> str:
    """What to do with resume state that cannot be used: start the run over in the same folder
    (deleting the state files) or train into a new `--out`."""
    files = " and ".join(str(folder / n) for n in (tensors, RESUME_JSON) if n)
    return f"delete {files} to train this run again from the start, or train into a new --out"


def load_resume(
    folder: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> dict[str, Any] | None:
    """Restore the state written by `save_resume` into the given objects; return its scalars (None if absent).

    Unusable state (a truncated tensor file after a crash or a full disk, a record that does not
    parse, the state of another model) is an InputError naming the file and what to do.
    """
    record_path = folder / RESUME_JSON
    if not record_path.is_file():
        return None
    try:
        record = json.loads(record_path.read_text())
        name = record["file"]
        if not isinstance(name, str) or Path(name).name != name:
            raise ValueError(f"'file' must name a file in {folder}, got {name!r}")
        missing = [k for k in ("optimizer_groups", "scheduler") if k not in record]
        if missing:
            raise KeyError(", ".join(missing))
    except (OSError, KeyError, TypeError, ValueError) as err:
        problem = f"{type(err).__name__}: {err}"
        raise InputError(record_path, f"resume record is corrupt ({problem}); {resume_remedy(folder)}") from err
    tensors = read_tensors(folder / name, f"the resume state is unusable; {resume_remedy(folder, name)}")
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    problem = state_mismatch(model.state_dict(), weights)
    if problem:
        raise InputError(folder / name, f"holds the state of another model ({problem}); resume with the options the run "
                         f"was started with (its config.json), or train into a new --out")
    model.load_state_dict(weights)
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, item = key.split(".", 2)
            state.setdefault(int(index), {})[item] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": record["optimizer_groups"]})
        scheduler.load_state_dict(record["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise InputError(folder / name, f"optimizer state does not fit this run ({type(err).__name__}: {err}); "
                         f"{resume_remedy(folder, name)}") from err
    return record
