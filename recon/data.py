"""PyTorch datasets over fastMRI slices, the E2E-VarNet sample transform, and a metadata cache.

`SliceDataset` indexes every slice of a set of fastMRI files. File metadata (shape, header,
padding, attrs) is scanned once and kept in a JSON cache keyed by absolute path, size and
mtime, so a changed file is rescanned and an unchanged one is never reopened to build the
index. Items read one slice lazily; each DataLoader worker keeps its own open file handles.

Items are fastMRI's raw tuple `(kspace, mask, target, attrs, fname, slice_num)` (attrs carry
fastMRI's `padding_left`, `padding_right`, `encoding_size`, `recon_size` keys), so fastMRI
transforms work on them too; `VarNetTransform` turns them into `VarNetSample`s.
"""

from __future__ import annotations

import json
import os
import random
from collections import OrderedDict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.distributed as dist

from recon.io import FastMRIVolume, HeaderInfo, VolumeInfo, atomic_path, read_info
from recon.masks import MaskFunc, apply_mask, seed_from_filename

PathLike = str | os.PathLike[str]
RawSample = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None", dict[str, Any], str, int]
CACHE_VERSION = 2
MAX_OPEN_FILES = 64


class VarNetSample(NamedTuple):
    """One E2E-VarNet training/validation sample.

    masked_kspace: (C, H, W) complex64, +0.0 where not sampled. mask: (1, 1, W) bool.
    num_low_frequencies: ACS width (0: the model detects the center). target: (h, w) float32,
    empty if none. max_value: the volume's attrs `max` (0.0 without target). crop_size: reconSpace.
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    num_low_frequencies: int
    target: torch.Tensor
    fname: str
    slice_num: int
    max_value: float
    crop_size: tuple[int, int]


def default_cache_file() -> Path:
    """`$XDG_CACHE_HOME/recon/dataset_cache.json` (default `~/.cache/recon/...`)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "recon" / "dataset_cache.json"


def _info_to_json(info: VolumeInfo) -> dict[str, Any]:
    """A VolumeInfo as JSON-able values."""
    h = info.header
    return {
        "num_slices": info.num_slices,
        "num_coils": info.num_coils,
        "shape": list(info.shape),
        "multicoil": info.multicoil,
        "header": {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(h).items()},
        "target_key": info.target_key,
        "mask": None if info.mask is None else info.mask.astype(int).tolist(),
        "acceleration": info.acceleration,
        "num_low_frequency": info.num_low_frequency,
        "attrs": info.attrs,
    }


def _info_from_json(path: Path, d: dict[str, Any]) -> VolumeInfo:
    """Inverse of `_info_to_json`."""
    header = HeaderInfo(**{key: tuple(v) if isinstance(v, list) else v for key, v in d["header"].items()})
    return VolumeInfo(
        path=path,
        num_slices=int(d["num_slices"]),
        num_coils=int(d["num_coils"]),
        shape=tuple(d["shape"]),
        multicoil=bool(d["multicoil"]),
        header=header,
        crop_size=(header.recon_size[0], header.recon_size[1]),
        padding=(header.padding_left, header.padding_right),
        target_key=d["target_key"],
        mask=None if d["mask"] is None else np.asarray(d["mask"], dtype=bool),
        acceleration=d["acceleration"],
        num_low_frequency=d["num_low_frequency"],
        attrs=dict(d["attrs"]),
    )


def _stamp(path: Path) -> dict[str, int]:
    """What makes a cache entry stale: size and mtime (ns)."""
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _list_files(root: PathLike | Sequence[PathLike]) -> list[Path]:
    """`*.h5` files of a folder (sorted), or the given list of files."""
    if isinstance(root, (str, os.PathLike)):
        p = Path(root)
        return sorted(f.absolute() for f in p.glob("*.h5")) if p.is_dir() else [p.absolute()]
    return [Path(f).absolute() for f in root]


class SliceDataset(torch.utils.data.Dataset):
    """Every slice of a set of fastMRI files, read lazily, metadata cached.

    Attributes:
        volumes: VolumeInfo of each file kept after volume sampling.
        slice_index: (file path, slice number) of each item.
        scanned: files whose metadata was read from the file (not the cache) when built.
    """

    def __init__(
        self,
        root: PathLike | Sequence[PathLike],
        transform: Callable[..., Any] | None = None,
        sample_rate: float | None = None,
        volume_sample_rate: float | None = None,
        cache_file: PathLike | None = None,
        seed: int | None = None,
    ) -> None:
        """Index the slices.

        Args:
            root: a folder of `*.h5` files, one file, or a list of files.
            transform: called as `transform(kspace, mask, target, attrs, fname, slice_num)`.
            sample_rate: keep this fraction of slices (random, by `seed`).
            volume_sample_rate: keep this fraction of volumes (exclusive with sample_rate).
            cache_file: metadata cache JSON; default `default_cache_file()`.
            seed: seed of the sampling (None: nondeterministic).
        """
        if sample_rate is not None and volume_sample_rate is not None:
            raise ValueError("set sample_rate (by slice) or volume_sample_rate (by volume), not both")
        self.transform = transform
        self.cache_file = Path(cache_file) if cache_file is not None else default_cache_file()
        self.scanned: list[Path] = []
        volumes = self._load_metadata(_list_files(root))
        rng = random.Random(seed)
        if volume_sample_rate is not None and volume_sample_rate < 1.0:
            keep = sorted(rng.sample(range(len(volumes)), round(len(volumes) * volume_sample_rate)))
            volumes = [volumes[i] for i in keep]
        self.volumes: list[VolumeInfo] = volumes
        index = [(v.path, s) for v in volumes for s in range(v.num_slices)]
        if sample_rate is not None and sample_rate < 1.0:
            keep = sorted(rng.sample(range(len(index)), round(len(index) * sample_rate)))
            index = [index[i] for i in keep]
        self.slice_index: list[tuple[Path, int]] = index
        self._info = {v.path: v for v in volumes}
        self._handles: OrderedDict[Path, FastMRIVolume] = OrderedDict()
        self._pid = os.getpid()

    def _load_metadata(self, files: list[Path]) -> list[VolumeInfo]:
        """VolumeInfo per file from the cache, rescanning new or changed files; saves the cache."""
        try:
            cache = json.loads(self.cache_file.read_text())
            if cache.get("version") != CACHE_VERSION:
                cache = {}
        except (OSError, ValueError):
            cache = {}
        entries: dict[str, Any] = cache.get("files", {})
        infos: list[VolumeInfo] = []
        for f in files:
            stamp = _stamp(f) if f.exists() else None
            entry = entries.get(str(f))
            if entry is not None and stamp is not None and entry["stamp"] == stamp:
                infos.append(_info_from_json(f, entry["info"]))
                continue
            info = read_info(f)
            self.scanned.append(f)
            entries[str(f)] = {"stamp": _stamp(f), "info": _info_to_json(info)}
            infos.append(info)
        if self.scanned:
            with atomic_path(self.cache_file) as tmp:
                tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": entries}, allow_nan=False))
        return infos

    def __len__(self) -> int:
        return len(self.slice_index)

    def _volume(self, path: Path) -> FastMRIVolume:
        """This process's open handle of `path` (LRU of MAX_OPEN_FILES; reopened after fork)."""
        if os.getpid() != self._pid:
            self._handles = OrderedDict()
            self._pid = os.getpid()
        vol = self._handles.get(path)
        if vol is None:
            vol = FastMRIVolume(path, info=self._info[path])
            self._handles[path] = vol
            while len(self._handles) > MAX_OPEN_FILES:
                self._handles.popitem(last=False)[1].close()
        else:
            self._handles.move_to_end(path)
        return vol

    def __getitem__(self, i: int) -> Any:
        path, slice_num = self.slice_index[i]
        vol = self._volume(path)
        info = vol.info
        kspace = vol.kspace(slice_num)
        target = vol.target(slice_num)
        attrs = {
            **info.attrs,
            "padding_left": info.padding[0],
            "padding_right": info.padding[1],
            "encoding_size": info.header.encoded_size,
            "recon_size": info.header.recon_size,
        }
        mask = None if info.mask is None else info.mask.copy()
        if self.transform is None:
            return kspace, mask, target, attrs, path.name, slice_num
        return self.transform(kspace, mask, target, attrs, path.name, slice_num)

    def close(self) -> None:
        """Close this process's open files."""
        for vol in self._handles.values():
            vol.close()
        self._handles.clear()

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without open file handles (spawned DataLoader workers reopen their own)."""
        state = self.__dict__.copy()
        state["_handles"] = OrderedDict()
        return state


def _worker_output(like: torch.Tensor) -> torch.Tensor | None:
    """In a DataLoader worker, an empty tensor like `like` in shared memory, else None.

    A worker hands tensors to the main process through shared memory; a tensor that is not
    there yet is copied into it first. Writing the masked k-space straight into shared memory
    saves that copy (27 MiB for a 15-coil 640 x 368 slice).
    """
    if torch.utils.data.get_worker_info() is None:
        return None
    return torch.empty(like.shape, dtype=like.dtype).share_memory_()


class VarNetTransform:
    """Raw slice -> `VarNetSample`, as fastMRI's `VarNetDataTransform` (same masks, +0.0 zeros)."""

    def __init__(self, mask_func: MaskFunc | None = None, use_seed: bool = True) -> None:
        """Args:
        mask_func: retrospective undersampling; None uses the file's own mask (test data).
        use_seed: seed the mask from the file name (validation: one fixed mask per volume);
            False draws from `mask_func`'s own RNG (training; see `worker_init_fn`).
        """
        self.mask_func = mask_func
        self.use_seed = use_seed

    def __call__(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None,
        target: np.ndarray | None,
        attrs: dict[str, Any],
        fname: str,
        slice_num: int,
    ) -> VarNetSample:
        """kspace (C, H, W) (or (H, W), given a coil axis) complex64; mask (W,) of test files."""
        kspace_t = torch.from_numpy(np.ascontiguousarray(kspace, dtype=np.complex64))
        if kspace_t.ndim == 2:
            kspace_t = kspace_t.unsqueeze(0)
        width = kspace_t.shape[-1]
        padding = (int(attrs["padding_left"]), int(attrs["padding_right"]))
        if self.mask_func is not None:
            seed = seed_from_filename(fname) if self.use_seed else None
            col_mask, num_low = self.mask_func(width, None, seed)
        else:
            col_mask = np.ones(width, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
            num_low = 0
        masked, col_mask = apply_mask(kspace_t, col_mask, padding, out=_worker_output(kspace_t))
        if target is not None:
            target_t = torch.from_numpy(np.asarray(target, dtype=np.float32))
            max_value = float(attrs["max"])
        else:
            target_t = torch.empty(0)
            max_value = 0.0
        return VarNetSample(
            masked_kspace=masked,
            mask=torch.from_numpy(col_mask).view(1, 1, width),
            num_low_frequencies=int(num_low),
            target=target_t,
            fname=fname,
            slice_num=int(slice_num),
            max_value=max_value,
            crop_size=(int(attrs["recon_size"][0]), int(attrs["recon_size"][1])),
        )


def distributed_rank() -> int:
    """This process's DDP rank: torch.distributed if initialized, else `RANK` (torchrun), else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def worker_seed(initial_seed: int, rank: int) -> int:
    """A 32-bit mask seed, distinct per (torch initial seed, DDP rank) pair."""
    return int(np.random.SeedSequence([initial_seed % 2**64, rank]).generate_state(1)[0])


def _mask_funcs(obj: Any, depth: int = 0) -> list[MaskFunc]:
    """Mask functions reachable from a dataset (through Subset/ConcatDataset and transforms)."""
    if depth > 4 or obj is None:
        return []
    if isinstance(obj, MaskFunc):
        return [obj]
    found: list[MaskFunc] = []
    for name in ("mask_func", "transform", "dataset"):
        found += _mask_funcs(getattr(obj, name, None), depth + 1)
    for child in getattr(obj, "datasets", []) or []:
        found += _mask_funcs(child, depth + 1)
    return found


def worker_init_fn(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: reseed each worker's mask RNG from torch's seed and the rank.

    `torch.initial_seed()` in a worker is the loader's base seed + worker_id, so workers differ;
    the DDP rank is mixed in because every rank usually shares the same base seed. Only
    unseeded (training) masks are affected; filename-seeded validation masks stay fixed.
    """
    info = torch.utils.data.get_worker_info()
    if info is None:
        return
    seed = worker_seed(torch.initial_seed(), distributed_rank())
    for func in _mask_funcs(info.dataset):
        func.reseed(seed)
