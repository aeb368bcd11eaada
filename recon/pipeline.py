"""From a volume's k-space to images with any registered method: what `recon reconstruct` and
`recon benchmark` share.

* `undersample`: a fastMRI volume's own mask, or a file-name-seeded retrospective mask (as
  fastMRI validation does), as an `Undersampled` volume with its acquisition model;
* `slice_batch`: slices of it as a `methods.ReconBatch` on a device;
* `run_method`: all slices through a method in batches, halving the batch on device
  out-of-memory errors;
* `build_method`: a registered method built once per process.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from recon import methods, ops
from recon.acquisition import Acquisition, MaskProvenance, retrospective
from recon.io.fastmri import FastMRIVolume, VolumeInfo
from recon.io.sanity import check_memory
from recon.masks import apply_mask, make_mask, seed_from_filename

DEFAULT_CENTER_FRACTIONS = {4.0: 0.08, 8.0: 0.04}


def default_center_fraction(acceleration: float) -> float:
    """fastMRI's center fraction for an acceleration: 0.08 at 4x, 0.04 at 8x, else 0.32/acc."""
    return DEFAULT_CENTER_FRACTIONS.get(float(acceleration), 0.32 / float(acceleration))


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`auto`/None -> the first CUDA device if there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Undersampled:
    """A volume's k-space as it goes into a method, with its acquisition model.

    kspace: `(S, C, H, W)` complex64, zero where not sampled. acquisition: where it was sampled,
    the calibration region, matrices and geometry. calibration: `(S, C, H, W)` calibration-only
    data (ISMRMRD), None when the image data serve for calibration.
    """

    kspace: np.ndarray
    acquisition: Acquisition
    calibration: np.ndarray | None = None


def undersample(
    kspace: np.ndarray,
    info: VolumeInfo,
    acceleration: float | None = None,
    center_fraction: float | None = None,
    mask_type: str = "random",
    inplace: bool = False,
) -> Undersampled:
    """Apply the file's own mask, a file-name-seeded retrospective mask, or none.

    kspace: `(S, C, H, W)` complex64 (single-coil files get `C = 1`). `inplace` masks `kspace`
    itself instead of a copy (one volume less at peak, for callers that no longer need it).
    """
    base = info.acquisition()
    if info.mask is not None or acceleration is None:
        masked = _masked(kspace, base.column_mask, inplace) if info.mask is not None else kspace
        return Undersampled(masked, base)
    cf = default_center_fraction(acceleration) if center_fraction is None else float(center_fraction)
    seed = seed_from_filename(info.path.name)
    mask, nlow = make_mask(mask_type, base.width, [acceleration], [cf], seed=seed)
    acq = retrospective(base, mask, int(nlow), MaskProvenance(mask_type, float(acceleration), cf, seed))
    masked = _masked(kspace, acq.column_mask, True) if inplace else apply_mask(kspace, acq.column_mask)[0]
    return Undersampled(np.asarray(masked, dtype=np.complex64), acq)


def _masked(kspace: np.ndarray, mask: np.ndarray, inplace: bool) -> np.ndarray:
    """`kspace * mask + 0` (the +0 turns -0.0 into +0.0, as fastMRI's apply_mask), optionally in place."""
    if not inplace:
        return kspace * mask + np.complex64(0)
    kspace *= np.asarray(mask, dtype=np.float32)
    kspace += np.complex64(0)
    return kspace


#: Peak bytes of a file-based reconstruction per complex64 byte of its k-space: the volume read,
#: its masked copy, and the method's working set of one batch.
FASTMRI_MEMORY_FACTOR = 3


def read_kspace(vol: FastMRIVolume, slices: range | None = None, max_memory: int | None = None) -> np.ndarray:
    """Slices (default all) of a fastMRI volume as `(S, C, H, W)` complex64, read one slice at a time
    into a preallocated array (each checked for NaN/Inf).

    Before anything is read, the memory a reconstruction of these slices needs is compared with
    `max_memory` (default: the available memory) and the file is refused when it does not fit.
    """
    info = vol.info
    picked = range(len(vol)) if slices is None else slices
    shape = (len(picked), info.num_coils, *info.shape[-2:])
    check_memory(vol.path, FASTMRI_MEMORY_FACTOR * 8 * int(np.prod(shape, dtype=np.int64)),
                 f"reading {len(picked)} slice(s) of k-space {shape[1:]}", max_memory)
    out = np.empty(shape, dtype=np.complex64)
    for j, i in enumerate(picked):
        out[j] = vol.kspace(i).reshape(shape[1:])
    return out


def is_out_of_memory(err: BaseException) -> bool:
    """Whether `err` is a device allocation failure: torch's CUDA OOM, CuPy's or cuFFT's.

    CuPy is not imported here (it may be absent); its errors are recognized by type name
    (`cupy.cuda.memory.OutOfMemoryError`, `cupy.cuda.cufft.CuFFTError` with
    `CUFFT_ALLOC_FAILED`) and by the messages CUDA libraries raise through torch.
    """
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return True
    name = f"{type(err).__module__}.{type(err).__name__}"
    text = str(err)
    if name.startswith("cupy") and ("OutOfMemoryError" in name or "CUFFT_ALLOC_FAILED" in text):
        return True
    return isinstance(err, RuntimeError) and ("CUFFT_ALLOC_FAILED" in text or "CUDA out of memory" in text)


def slice_batch(data: Undersampled, start: int, stop: int, device: torch.device) -> methods.ReconBatch:
    """Slices `[start, stop)` of a volume as a `ReconBatch` on `device`, from its acquisition model."""
    acq = data.acquisition
    rows, width = data.kspace.shape[-2:]
    if acq.partial_echo:
        mask = np.stack([acq.sampling(rows, i) for i in range(start, stop)])[:, None]
    else:
        mask = np.stack([acq.slice_columns(i) for i in range(start, stop)])[:, None, None, :]
    calib = torch.tensor([acq.calib], dtype=torch.int64).expand(stop - start, 2)
    cal = data.calibration
    return methods.ReconBatch(
        masked_kspace=torch.from_numpy(np.ascontiguousarray(data.kspace[start:stop])).to(device),
        mask=torch.from_numpy(mask).to(device),
        calib=calib,
        crop_size=acq.crop_size,
        calib_kspace=None if cal is None else torch.from_numpy(np.ascontiguousarray(cal[start:stop])).to(device),
    )


def run_method(
    method: methods.Method,
    data: Undersampled,
    device: torch.device,
    batch_size: int = 8,
    backend: str | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Reconstruct all slices in batches on `device`; returns `(S, h, w)` float32.

    `backend` (`torch`, `cupy`, None = automatic) selects the `recon.ops` backend for this run.
    A device allocation failure (torch, CuPy or cuFFT) halves the batch and retries.
    `on_batch(n)` is called after each batch with its number of slices (progress bars).
    """
    num = data.kspace.shape[0]
    out: list[np.ndarray] = []
    start = 0
    size = max(1, int(batch_size))
    with ops.use_backend(backend):
        while start < num:
            stop = min(start + size, num)
            batch = slice_batch(data, start, stop, device)
            try:
                with torch.no_grad():
                    images = method(batch)
            except Exception as err:
                if size == 1 or not is_out_of_memory(err):
                    raise
                del batch
                size = max(1, size // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            out.append(images.detach().float().cpu().numpy())
            if on_batch is not None:
                on_batch(stop - start)
            start = stop
    return np.concatenate(out, axis=0)


@functools.lru_cache(maxsize=4)
def _cached_method(name: str, options_json: str) -> methods.Method:
    return methods.get_method(name, **json.loads(options_json))


def build_method(name: str, options: dict[str, Any] | None = None) -> methods.Method:
    """The method `name` with `options`, built once per process (checkpoints load once)."""
    return _cached_method(name, json.dumps(options or {}, sort_keys=True, default=str))
