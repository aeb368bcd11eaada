"""The one dataset of `recon`: fastMRI slices for training, validation, benchmark and reconstruct.

`SliceDataset` indexes every slice of a set of fastMRI files. File metadata (shape, header,
padding, attrs) is scanned once and kept in a JSON cache keyed by absolute path, size and
mtime, so a changed file is rescanned and an unchanged one is never reopened to build the
index. Items read one slice lazily through a cached open handle per file (each DataLoader
worker keeps its own); nothing reads a whole volume. `sample_rate` keeps random slices,
`volume_sample_rate` random volumes, as fastMRI's `SliceDataset`.

Items are fastMRI's raw tuple `(kspace, mask, target, attrs, fname, slice_num)` (attrs carry
fastMRI's `padding_left`, `padding_right`, `encoding_size`, `recon_size` keys), so fastMRI
transforms work on them too; their attrs also carry the file's `Acquisition` under
`acquisition`. `VarNetTransform` turns them into `Sample`s, the one container of a slice (or,
collated, a batch) going into a model: it samples through `recon.masks.undersample`, the
function inference and the benchmarks sample through, and the `Sample` carries the calibration
region of that acquisition, which the model is given as inference gives it. An item addressed as `(index, epoch)` gets
the reproducible training mask of seed `(seed, epoch, index)`: a slice gets a new mask every
epoch, DDP ranks (which see different indices) get different masks, and a resumed run draws
exactly the masks of an uninterrupted one whatever the number of workers.
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

from recon.acquisition import Acquisition
from recon.io import FastMRIVolume, HeaderInfo, VolumeInfo, atomic_path, read_info
from recon.masks import MaskFunc, apply_mask, seed_from_filename, undersample

PathLike = str | os.PathLike[str]
RawSample = tuple[np.ndarray, "np.ndarray | None", "np.ndarray | None", dict[str, Any], str, int]
CACHE_VERSION = 3
#: An item key: a slice index, or `(index, epoch)` for the reproducible training masks.
Key = int | tuple[int, int]
MAX_OPEN_FILES = 64


class Sample(NamedTuple):
    """One slice going into a model, or a batch of them (`collate`: tensors gain a leading B axis).

    masked_kspace: `(C, H, W)` complex64, +0.0 where not sampled. mask: `(1, 1, W)` bool.
    num_low_frequencies: the ACS width fastMRI's samples carry: the width of `calib` for a
    retrospective mask, 0 for a file's own mask (fastMRI's model then detects the center); a
    `(B,)` tensor in a batch. calib: `(2,)` int64 `[start, stop)` calibration columns of the
    acquisition (`(B, 2)` in a batch), what the model is given (`calib=`).
    target: `(h, w)` float32, empty if the file has none. max_value: the volume's attrs `max`
    (the SSIM data range; 0.0 without target). fname, slice_num: where it came from (lists in
    a batch). crop_size: reconSpace `(h, w)`.
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    num_low_frequencies: Any
    target: torch.Tensor
    max_value: Any
    fname: Any
    slice_num: Any
    crop_size: tuple[int, int]
    calib: torch.Tensor

    def to(self, device: torch.device) -> "Sample":
        """This sample with its tensors on `device`; asynchronous copies from pinned memory."""
        return Sample(*(v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for v in self))


def _stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """`torch.stack`, into shared memory when called in a DataLoader worker (saves a copy); one
    tensor is viewed, not copied (a worker's transform output already sits in shared memory)."""
    first = tensors[0]
    if len(tensors) == 1:
        return first.unsqueeze(0)
    out = _worker_output(torch.empty((len(tensors), *first.shape), dtype=first.dtype, device="meta"))
    return torch.stack(list(tensors)) if out is None else torch.stack(list(tensors), out=out)


def collate(samples: Sequence[Sample]) -> Sample:
    """Stack equal-shape samples into a batch (DataLoader `collate_fn`)."""
    crops = {s.crop_size for s in samples}
    if len(crops) != 1:
        raise ValueError(f"samples of different reconSpace sizes {sorted(crops)} cannot share a batch")
    return Sample(
        masked_kspace=_stack([s.masked_kspace for s in samples]),
        mask=torch.stack([s.mask for s in samples]),
        num_low_frequencies=torch.tensor([int(s.num_low_frequencies) for s in samples]),
        target=_stack([s.target for s in samples]),
        max_value=torch.tensor([float(s.max_value) for s in samples]),
        fname=[s.fname for s in samples],
        slice_num=[int(s.slice_num) for s in samples],
        crop_size=crops.pop(),
        calib=torch.stack([s.calib for s in samples]),
    )


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
        "chunk_bytes": info.chunk_bytes,
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
        chunk_bytes=int(d["chunk_bytes"]),
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
        use_cache: bool = True,
    ) -> None:
        """Index the slices.

        Args:
            root: a folder of `*.h5` files, one file, or a list of files.
            transform: called as `transform(kspace, mask, target, attrs, fname, slice_num)`, and
                with `key=(index, epoch)` added for items addressed by such a key.
            sample_rate: keep this fraction of slices (random, by `seed`).
            volume_sample_rate: keep this fraction of volumes (exclusive with sample_rate).
            cache_file: metadata cache JSON; default `default_cache_file()`.
            seed: seed of the sampling (None: nondeterministic).
            use_cache: False reads metadata from the files and leaves the cache alone (one-off
                readers such as `recon reconstruct`).
        """
        if sample_rate is not None and volume_sample_rate is not None and sample_rate < 1.0 and volume_sample_rate < 1.0:
            raise ValueError("set sample_rate (by slice) or volume_sample_rate (by volume), not both")
        for name, rate in (("sample_rate", sample_rate), ("volume_sample_rate", volume_sample_rate)):
            if rate is not None and not 0 < rate <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {rate}")
        self.transform = transform
        self.cache_file = Path(cache_file) if cache_file is not None else default_cache_file()
        self.use_cache = use_cache
        self.scanned: list[Path] = []
        volumes = self._load_metadata(_list_files(root))
        rng = random.Random(seed)
        if volume_sample_rate is not None and volume_sample_rate < 1.0:
            keep = sorted(rng.sample(range(len(volumes)), max(1, round(len(volumes) * volume_sample_rate))))
            volumes = [volumes[i] for i in keep]
        self.volumes: list[VolumeInfo] = volumes
        index = [(v.path, s) for v in volumes for s in range(v.num_slices)]
        if sample_rate is not None and sample_rate < 1.0:
            keep = sorted(rng.sample(range(len(index)), max(1, round(len(index) * sample_rate))))
            index = [index[i] for i in keep]
        self.slice_index: list[tuple[Path, int]] = index
        self._info = {v.path: v for v in volumes}
        self._acquisitions: dict[Path, Acquisition] = {}
        self._handles: OrderedDict[Path, FastMRIVolume] = OrderedDict()
        self._pid = os.getpid()

    def _load_metadata(self, files: list[Path]) -> list[VolumeInfo]:
        """VolumeInfo per file from the cache, rescanning new or changed files; saves the cache
        (without entries of files that no longer exist)."""
        if not self.use_cache:
            self.scanned = list(files)
            return [read_info(f) for f in files]
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
            entries = {k: v for k, v in entries.items() if os.path.exists(k)}
            with atomic_path(self.cache_file) as tmp:
                tmp.write_text(json.dumps({"version": CACHE_VERSION, "files": entries}, allow_nan=False))
        return infos

    def __len__(self) -> int:
        return len(self.slice_index)

    def volume_items(self, volume: int) -> list[int]:
        """Item indices of `self.volumes[volume]`, in slice order (validation per volume)."""
        path = self.volumes[volume].path
        return [i for i, (p, _) in enumerate(self.slice_index) if p == path]

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

    def acquisition(self, path: Path) -> Acquisition:
        """The acquisition of file `path` as its header and mask describe it (`VolumeInfo.acquisition`)."""
        acq = self._acquisitions.get(path)
        if acq is None:
            acq = self._acquisitions[path] = self._info[path].acquisition()
        return acq

    def raw(self, i: int) -> RawSample:
        """Item `i` untransformed: `(kspace, mask, target, attrs, fname, slice_num)`; k-space is
        checked for NaN/Inf (`InputError` naming file and slice)."""
        path, slice_num = self.slice_index[i]
        vol = self._volume(path)
        info = vol.info
        attrs = {
            **info.attrs,
            "padding_left": info.padding[0],
            "padding_right": info.padding[1],
            "encoding_size": info.header.encoded_size,
            "recon_size": info.header.recon_size,
            "acquisition": self.acquisition(path),
        }
        mask = None if info.mask is None else info.mask.copy()
        return vol.kspace(slice_num), mask, vol.target(slice_num), attrs, path.name, slice_num

    def kspace(self, i: int) -> np.ndarray:
        """The k-space of item `i` alone (`(C, H, W)` or `(H, W)` complex64, NaN/Inf-checked)."""
        path, slice_num = self.slice_index[i]
        return self._volume(path).kspace(slice_num)

    def __getitem__(self, key: Key) -> Any:
        index, epoch = (int(key[0]), int(key[1])) if isinstance(key, tuple) else (int(key), None)
        item = self.raw(index)
        if self.transform is None:
            return item
        if epoch is None:
            return self.transform(*item)
        return self.transform(*item, key=(index, epoch))

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
    """Raw slice -> `Sample`, as fastMRI's `VarNetDataTransform` (same masks, +0.0 zeros), sampled
    through `recon.masks.undersample` from the acquisition in the item's attrs."""

    def __init__(self, mask_func: MaskFunc | None = None, use_seed: bool = True, seed: int | None = None) -> None:
        """Args:
        mask_func: retrospective undersampling; None uses the file's own mask (test data).
        use_seed: seed the mask from the file name (validation: one fixed mask per volume).
        seed: with `use_seed` False, items addressed as `(index, epoch)` get the mask of seed
            `(seed, epoch, index)` (training); items addressed by index alone, or with seed
            None, draw from `mask_func`'s own RNG (see `worker_init_fn`).
        """
        self.mask_func = mask_func
        self.use_seed = use_seed
        self.seed = seed

    def __call__(
        self,
        kspace: np.ndarray,
        mask: np.ndarray | None,
        target: np.ndarray | None,
        attrs: dict[str, Any],
        fname: str,
        slice_num: int,
        key: tuple[int, int] | None = None,
    ) -> Sample:
        """kspace (C, H, W) (or (H, W), given a coil axis) complex64; mask (W,) of test files
        (the same columns as `attrs["acquisition"]`, the file's acquisition, which is what is used);
        key: the item's `(index, epoch)` when addressed so."""
        kspace_t = torch.from_numpy(np.ascontiguousarray(kspace, dtype=np.complex64))
        if kspace_t.ndim == 2:
            kspace_t = kspace_t.unsqueeze(0)
        width = kspace_t.shape[-1]
        acq: Acquisition = attrs["acquisition"]
        num_low = 0
        if self.mask_func is not None:
            if self.use_seed:
                seed: Any = seed_from_filename(fname)
            elif self.seed is not None and key is not None:
                seed = (int(self.seed), int(key[1]), int(key[0]))
            else:
                seed = None
            acq = undersample(acq, self.mask_func, seed)
            num_low = acq.num_low_frequencies
        masked, col_mask = apply_mask(kspace_t, acq.slice_columns(int(slice_num)), out=_worker_output(kspace_t))
        if target is not None:
            target_t = torch.from_numpy(np.asarray(target, dtype=np.float32))
            max_value = float(attrs["max"])
        else:
            target_t = torch.empty(0)
            max_value = 0.0
        return Sample(
            masked_kspace=masked,
            mask=torch.from_numpy(col_mask).view(1, 1, width),
            num_low_frequencies=int(num_low),
            target=target_t,
            max_value=max_value,
            fname=fname,
            slice_num=int(slice_num),
            crop_size=(int(attrs["recon_size"][0]), int(attrs["recon_size"][1])),
            calib=torch.tensor(acq.calib, dtype=torch.int64),
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
