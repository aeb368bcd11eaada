"""Model checkpoints without pickle: safetensors weights plus a JSON model config.

A checkpoint `NAME.safetensors` has its model config in `NAME.json` beside it (the VarNet
constructor keywords under `"model"`). fastMRI's published `.pt`/`.pth` state dicts are read
with `torch.load(..., weights_only=True)`, which never runs pickled code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors.torch import load_file, save_file

from recon.io.atomic import atomic_path
from recon.io.errors import InputError
from recon.models.unet import Unet
from recon.models.varnet import VarNet

VARNET_KEYS = ("num_cascades", "sens_chans", "sens_pools", "chans", "pools", "mask_center")
UNET_KEYS = ("in_chans", "out_chans", "chans", "num_pool_layers", "drop_prob")

#: Weights shipped with the source tree (trained on simulated data; see models/README.md).
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[2] / "models" / "varnet.safetensors"


def shipped_checkpoint_available() -> bool:
    """Whether the shipped simulated-data weights are present (source checkouts; not wheels)."""
    return DEFAULT_CHECKPOINT.is_file()


def resolve_checkpoint(checkpoint: str | os.PathLike[str] | None) -> Path:
    """The given checkpoint path, or the shipped default; ValueError when neither exists."""
    if checkpoint is not None:
        return Path(checkpoint)
    if DEFAULT_CHECKPOINT.is_file():
        return DEFAULT_CHECKPOINT
    raise ValueError(f"varnet needs checkpoint=PATH (no shipped weights at {DEFAULT_CHECKPOINT})")


def config_path(weights: str | os.PathLike[str]) -> Path:
    """The JSON config that belongs to a weights file (`x.safetensors` -> `x.json`)."""
    return Path(weights).with_suffix(".json")


def checkpoint_record(weights: str | os.PathLike[str]) -> dict[str, Any]:
    """The JSON beside `weights` (model and training config, training domain), {} when there is
    none (fastMRI's `.pt` state dicts) or it is not a JSON object."""
    path = config_path(weights)
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(path, f"invalid JSON ({err})") from err
    return record if isinstance(record, dict) else {}


def unet_config(model: Unet) -> dict[str, Any]:
    """Constructor keywords of an image-domain `Unet` plus `"kind": "unet"` (read from its modules)."""
    first = model.down_sample_layers[0].layers
    dropout = first[3].p if isinstance(first[3], torch.nn.Dropout2d) else 0.0
    return {"kind": "unet", "in_chans": first[0].in_channels, "out_chans": model.up_conv[-1][1].out_channels,
            "chans": first[0].out_channels, "num_pool_layers": len(model.down_sample_layers), "drop_prob": float(dropout)}


def model_config(model: VarNet | Unet) -> dict[str, Any]:
    """Constructor keywords that rebuild `model` (read from its modules)."""
    if isinstance(model, Unet):
        return unet_config(model)
    first = model.cascades[0].model.unet if len(model.cascades) else None
    sens = model.sens_net.norm_unet.unet
    return {
        "num_cascades": len(model.cascades),
        "sens_chans": sens.down_sample_layers[0].layers[0].out_channels,
        "sens_pools": len(sens.down_sample_layers),
        "chans": first.down_sample_layers[0].layers[0].out_channels if first else 18,
        "pools": len(first.down_sample_layers) if first else 4,
        "mask_center": model.sens_net.mask_center,
    }


def save_tensors(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor]) -> None:
    """Write tensors to a safetensors file atomically (contiguous CPU copies)."""
    data = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp))


def save_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n")


def save_model(
    model: VarNet | Unet, path: str | os.PathLike[str], extra: dict[str, Any] | None = None
) -> Path:
    """Save weights to `path` (.safetensors) and `{"model": config, **extra}` to its JSON; returns `path`."""
    save_tensors(path, model.state_dict())
    save_json(config_path(path), {"model": model_config(model), **(extra or {})})
    return Path(path)


#: Largest safetensors JSON header the format allows (100 MB).
MAX_HEADER = 100_000_000
#: What to do about a damaged weights file, unless the caller knows better.
RECOPY = "copy or download it again"


def safetensors_problem(path: str | os.PathLike[str]) -> str | None:
    """Why `path` is not a complete safetensors file (cut short, or a header that does not
    parse), or None. Reads the 8-byte header length and the JSON header only, and compares the
    end of the last tensor they describe with the file size."""
    p = Path(path)
    size = p.stat().st_size
    with p.open("rb") as f:
        head = f.read(9)
        if len(head) < 9:
            return f"truncated: {size} bytes, less than a safetensors header"
        length = int.from_bytes(head[:8], "little")
        if head[8:] != b"{" or length > MAX_HEADER:
            return "corrupt or not a safetensors file (no safetensors header at its start)"
        if length > size - 8:
            return f"truncated: {size} bytes, but its header alone says {length + 8}"
        f.seek(8)
        try:
            header = json.loads(f.read(length))
            end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, UnicodeDecodeError):
            return "corrupt: its safetensors header does not parse"
    if size < 8 + length + end:
        return f"truncated: {size} bytes, but its header describes {8 + length + end}"
    return None


def read_tensors(path: str | os.PathLike[str], remedy: str = RECOPY) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; an InputError naming the file when it is missing,
    truncated or corrupt, ending in `remedy` (what the user should do about it)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, f"file not found; {remedy}")
    problem = safetensors_problem(p)
    if problem is None:
        try:
            return load_file(str(p))
        except Exception as err:  # noqa: BLE001 - any reader failure is a damaged file
            problem = f"corrupt ({type(err).__name__}: {err})"
    cause = " (an interrupted write or copy?)" if problem.startswith("truncated") else ""
    raise InputError(p, f"{problem}{cause}; {remedy}")


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state dict from `.safetensors` or (fastMRI) `.pt`/`.pth`/`.ckpt`, never unpickling code."""
    p = Path(path)
    if not p.is_file():
        raise InputError(p, "checkpoint file not found")
    if p.suffix == ".safetensors":
        return read_tensors(p)
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure is a bad input file
        raise InputError(p, f"cannot read checkpoint ({type(err).__name__}: {err}); if it is truncated or corrupt, {RECOPY}") from err
    if isinstance(state, dict) and "state_dict" in state:
        state = {k.removeprefix("varnet."): v for k, v in state["state_dict"].items()}
    if not isinstance(state, dict):
        raise InputError(p, "checkpoint does not hold a state dict")
    return state


def infer_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """VarNet keywords implied by a state dict's keys and shapes (for configless fastMRI weights)."""
    cascades = {k.split(".")[1] for k in state if k.startswith("cascades.")}

    def unet(prefix: str) -> tuple[int, int]:
        chans = state[f"{prefix}.down_sample_layers.0.layers.0.weight"].shape[0]
        pools = len({k.split(".")[len(prefix.split("."))+1] for k in state if k.startswith(f"{prefix}.down_sample_layers.")})
        return int(chans), pools

    sens_chans, sens_pools = unet("sens_net.norm_unet.unet")
    chans, pools = unet("cascades.0.model.unet") if cascades else (18, 4)
    return {"num_cascades": len(cascades), "sens_chans": sens_chans, "sens_pools": sens_pools,
            "chans": chans, "pools": pools}


M = TypeVar("M", bound=torch.nn.Module)


def _loaded(model: M, state: dict[str, torch.Tensor], path: Any, what: str, map_location: Any) -> M:
    """`model` with `state` loaded, on `map_location`; InputError naming `path` when the weights
    do not fit it (missing, unexpected or mis-shaped keys)."""
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise InputError(path, f"weights do not fit {what}: {problem}")
    model.load_state_dict(state)
    return model.to(map_location)


def load_model(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> VarNet:
    """Build a VarNet from weights (+ JSON config if present, else inferred from the weights)."""
    state = load_state_dict(path)
    if config_path(path).is_file():
        cfg = {k: v for k, v in checkpoint_record(path).get("model", {}).items() if k in VARNET_KEYS}
    else:
        try:
            cfg = infer_config(state)
        except KeyError as err:
            raise InputError(path, f"not VarNet weights: missing key {err}; {state_mismatch(VarNet().state_dict(), state)}") from None
    return _loaded(VarNet(**cfg), state, path, "the model config", map_location)


def state_mismatch(expected: dict[str, torch.Tensor], state: dict[str, Any], show: int = 3) -> str:
    """'' when `state` has exactly `expected`'s keys and shapes, else which keys are missing,
    unexpected or of another shape (the first `show` of each, with counts)."""

    def few(keys: list[str]) -> str:
        more = f" and {len(keys) - show} more" if len(keys) > show else ""
        return ", ".join(keys[:show]) + more

    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    shapes = [f"{k} (file {tuple(getattr(state[k], 'shape', ()))}, model {tuple(v.shape)})"
              for k, v in expected.items() if k in state and tuple(getattr(state[k], "shape", ())) != tuple(v.shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {few(missing)}")
    if extra:
        parts.append(f"{len(extra)} unexpected key(s): {few(extra)}")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatch(es): {few(shapes)}")
    return "; ".join(parts)


def infer_unet_config(state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """U-Net keywords implied by a state dict (fastMRI's published U-Nets ship without a config)."""
    first = state["down_sample_layers.0.layers.0.weight"]
    last = max((k for k in state if k.startswith("up_conv.") and k.endswith(".1.weight")), key=lambda k: int(k.split(".")[1]))
    pools = len({k.split(".")[1] for k in state if k.startswith("down_sample_layers.")})
    return {"in_chans": int(first.shape[1]), "out_chans": int(state[last].shape[0]), "chans": int(first.shape[0]), "num_pool_layers": pools}


def load_unet(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> Unet:
    """Build an image-domain U-Net from weights (+ JSON config if present, else inferred).

    Accepts `recon train --model unet` checkpoints and fastMRI's state dicts (`unet.` prefixes
    of Lightning checkpoints are stripped), read without unpickling code.
    """
    state = load_state_dict(path)
    state = {k.removeprefix("unet."): v for k, v in state.items()}
    if "down_sample_layers.0.layers.0.weight" not in state:
        raise InputError(path, f"checkpoint {Path(path).name} is not U-Net weights (no down_sample_layers.0.layers.0.weight)")
    cfg_file = config_path(path)
    cfg: dict[str, Any] = {}
    if cfg_file.is_file():
        cfg = checkpoint_record(path).get("model", {})
        if cfg.get("kind") != "unet":
            raise InputError(cfg_file, f"model config is not a U-Net (kind {cfg.get('kind', 'varnet')!r})")
        cfg = {k: v for k, v in cfg.items() if k in UNET_KEYS}
    else:
        cfg = infer_unet_config(state)
    return _loaded(Unet(**cfg), state, path, "the U-Net config", map_location)
