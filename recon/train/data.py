"""Training and validation slices from fastMRI multi-coil HDF5 files, with reproducible masks.

Each training item is addressed by `(index, epoch)`; its mask is drawn with the seed
`(seed, epoch, index)`, so a slice gets a different mask every epoch, different ranks (which
see different indices) get different masks, and a resumed run draws exactly the masks of an
uninterrupted one whatever the number of DataLoader workers. Validation masks are seeded from
the file name, as fastMRI validation does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import h5py
import numpy as np
import torch

from recon.io.errors import InputError
from recon.io.header import parse_header
from recon.masks import MaskFunc, apply_mask, seed_from_filename


class TrainSample(NamedTuple):
    """One slice ready for VarNet.

    masked_kspace: `(C, H, W)` complex64; mask: `(1, 1, W)` bool; num_low_frequencies: int;
    target: `(h, w)` float32 RSS target; max_value: float (file attr `max`, the SSIM data range).
    """

    masked_kspace: torch.Tensor
    mask: torch.Tensor
    num_low_frequencies: int
    target: torch.Tensor
    max_value: float
    fname: str
    slice_num: int

    def to(self, device: torch.device) -> "TrainSample":
        """This sample (or collated batch) with its tensors on `device`; the copies are
        asynchronous where the tensors sit in pinned memory."""
        return TrainSample(*(v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for v in self))


@dataclass(frozen=True)
class _SliceRef:
    path: Path
    slice_num: int
    padding: tuple[int, int]


def list_h5(folder: Path) -> list[Path]:
    """Sorted `*.h5` files of a folder (InputError when it has none)."""
    files = sorted(Path(folder).glob("*.h5"))
    if not files:
        raise InputError(folder, "no .h5 files found")
    return files


def _index(files: Sequence[Path], sample_rate: float) -> list[_SliceRef]:
    refs: list[_SliceRef] = []
    for path in files:
        try:
            with h5py.File(path, "r") as f:
                n = f["kspace"].shape[0]
                if "reconstruction_rss" not in f:
                    raise InputError(path, "no reconstruction_rss target (test files cannot be used for training)")
                header = parse_header(f["ismrmrd_header"][()], str(path))
        except (OSError, KeyError) as err:
            raise InputError(path, f"not a fastMRI multi-coil file ({err})") from err
        refs.extend(_SliceRef(path, s, (header.padding_left, header.padding_right)) for s in range(n))
    if sample_rate < 1.0:
        keep = max(1, round(len(refs) * sample_rate))
        refs = refs[:keep]
    return refs


def _load(ref: _SliceRef, mask_func: MaskFunc, seed: int | tuple[int, ...]) -> TrainSample:
    with h5py.File(ref.path, "r") as f:
        kspace = torch.from_numpy(np.asarray(f["kspace"][ref.slice_num], dtype=np.complex64))
        target = torch.from_numpy(np.asarray(f["reconstruction_rss"][ref.slice_num], dtype=np.float32))
        max_value = float(f.attrs["max"])
    mask, nlow = mask_func(kspace.shape[-1], seed=seed)
    masked, mask = apply_mask(kspace, mask, ref.padding)
    return TrainSample(masked, torch.from_numpy(mask).view(1, 1, -1), int(nlow), target, max_value, ref.path.name, ref.slice_num)


class TrainSlices(torch.utils.data.Dataset):
    """Slices of training files, item `(index, epoch)` masked with seed `(seed, epoch, index)`."""

    def __init__(self, files: Sequence[Path], mask_func: MaskFunc, seed: int, sample_rate: float = 1.0) -> None:
        self.refs = _index(files, sample_rate)
        self.mask_func = mask_func
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.refs)

    def __getitem__(self, key: tuple[int, int]) -> TrainSample:
        index, epoch = key
        return _load(self.refs[index], self.mask_func, (self.seed, int(epoch), int(index)))


class ValVolumes:
    """Whole validation volumes: `volume(i)` -> list of slices masked with the file-name seed."""

    def __init__(self, files: Sequence[Path], mask_func: MaskFunc) -> None:
        self.files = list(files)
        self.mask_func = mask_func
        self._refs = {p: [r for r in _index([p], 1.0)] for p in self.files}

    def __len__(self) -> int:
        return len(self.files)

    def volume(self, i: int) -> list[TrainSample]:
        path = self.files[i]
        seed = seed_from_filename(path.name)
        return [_load(r, self.mask_func, seed) for r in self._refs[path]]


def collate(samples: Sequence[TrainSample]) -> TrainSample:
    """Stack equal-shape samples into a batch (tensors gain a leading B axis)."""
    return TrainSample(
        torch.stack([s.masked_kspace for s in samples]),
        torch.stack([s.mask for s in samples]),
        torch.tensor([s.num_low_frequencies for s in samples]),
        torch.stack([s.target for s in samples]),
        torch.tensor([s.max_value for s in samples]),
        [s.fname for s in samples],
        [s.slice_num for s in samples],
    )
