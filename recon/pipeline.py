"""From a file to images with any registered method: what `recon reconstruct` and `recon benchmark` share.

* `open_file`: any raw-data file (fastMRI, ISMRMRD, TWIX, through `recon.io.scan.open_scan`) as
  `FileSlices`: its acquisition model (the file's own sampling, or a file-name-seeded
  retrospective mask as fastMRI validation draws it, for any fully sampled file) and the slices
  picked (`max_slices` central ones); fastMRI k-space is read lazily, raw scans are gridded;
* `slice_batch`: slices of it as a `methods.ReconBatch` on a device, read when asked for;
* `run_method`: the slices through a method batch by batch, each batch read and checked just
  before it runs, halving the batch on device
  out-of-memory errors, so peak memory follows the batch, not the volume;
* `build_method`: a registered method built once per process.
"""

from __future__ import annotations

import functools
import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from recon import method_checks, methods, ops
from recon.acquisition import Acquisition
from recon.io.errors import InputError
from recon.io.ismrmrd import RawScan
from recon.io.scan import RawDataScan, Scan, open_scan
from recon.io.limits import check_memory, format_bytes
from recon.masks import Seed, for_acceleration, seed_from_filename, undersample
from recon.methods.learned import LearnedMethod
from recon.methods.output import OutputError

#: Peak bytes of a method's batch per complex64 byte of its k-space: the slices read, HDF5's
#: decompression buffer, and the method's working set (zero-filled: two FFT copies).
BATCH_MEMORY_FACTOR = 5
#: Most k-space bytes one batch reads: `--batch-size` shrinks for files with large slices
#: (a 15-coil 640 x 368 knee slice is 27 MiB: batches of 4; a 64-coil one 120 MiB: 1).
MAX_BATCH_BYTES = 128 * 2**20


def resolve_device(device: str | torch.device | None) -> torch.device:
    """`auto`/None -> the first CUDA device if there is one, else the CPU."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def file_acquisition(
    scan: Scan,
    acceleration: float | None = None,
    center_fraction: float | None = None,
    mask_type: str = "random",
    seed: Seed = None,
) -> Acquisition:
    """The sampling a scan is reconstructed with: its own (a fastMRI `mask`, a prospectively
    undersampled raw scan), a retrospective mask when `acceleration` is given (fully sampled
    scans of any format; `masks.undersample` with `seed`, by default fastMRI's file-name seed),
    or fully sampled."""
    base = scan.acquisition
    if scan.has_own_sampling or acceleration is None:
        return base
    func = for_acceleration(mask_type, acceleration, center_fraction)
    return undersample(base, func, seed_from_filename(scan.path.name) if seed is None else seed)


def central_slices(num_slices: int, max_slices: int | None) -> range:
    """The `max_slices` central slices of `num_slices` (all when None or not fewer)."""
    if not max_slices or num_slices <= max_slices:
        return range(num_slices)
    start = (num_slices - max_slices) // 2
    return range(start, start + max_slices)


class FileSlices:
    """The slices of one scan as they go into a method, read a batch at a time.

    scan: the opened file (`recon.io.scan.Scan`, any format). acquisition: the sampling the
    method sees (the scan's own, or a retrospective mask of it), indexed by the file's slice
    numbers. slices: the slice numbers picked, in order. masked: whether the k-space read is
    multiplied by the acquisition's sampling (retrospective masks, own masks).
    """

    def __init__(self, scan: Scan, acquisition: Acquisition, slices: Sequence[int], masked: bool = True) -> None:
        self.scan = scan
        self.path = scan.path
        self.acquisition = acquisition
        self.slices = list(slices)
        self.shape = scan.shape
        self._masked = masked

    @classmethod
    def from_scan(cls, raw: RawScan, path: str | Path = "<memory>", max_slices: int | None = None) -> FileSlices:
        """The slices of an in-memory gridded `RawScan` (all, or the `max_slices` central ones)."""
        scan = RawDataScan(path, raw, "ismrmrd")
        return cls(scan, scan.acquisition, central_slices(scan.num_slices, max_slices), masked=False)

    def __len__(self) -> int:
        return len(self.slices)

    def __enter__(self) -> FileSlices:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the file (idempotent)."""
        self.scan.close()

    def batch_slices(self, batch_size: int) -> int:
        """`batch_size`, lowered so that one batch reads at most `MAX_BATCH_BYTES` of k-space."""
        per_slice = 8 * int(np.prod(self.shape, dtype=np.int64))
        return max(1, min(int(batch_size), MAX_BATCH_BYTES // per_slice))

    def memory(self, batch_size: int) -> int:
        """Bytes a reconstruction needs: the output images, one batch's working set and, for a
        chunked file, one decompressed k-space chunk twice (HDF5's chunk cache and the buffer it
        inflates into)."""
        h, w = self.acquisition.crop_size
        per_slice = 8 * int(np.prod(self.shape, dtype=np.int64))
        return 4 * h * w * len(self) + BATCH_MEMORY_FACTOR * per_slice * self.batch_slices(batch_size) + 2 * self.scan.chunk_bytes

    def check_memory(self, batch_size: int, max_memory: int | None = None) -> None:
        """InputError before anything is read when `memory(batch_size)` exceeds `max_memory`
        (default: the available memory)."""
        h, w = self.acquisition.crop_size
        chunk = self.scan.chunk_bytes
        what = (f"reconstructing {len(self)} slice(s) ({format_bytes(4 * h * w * len(self))} of {h}x{w} images, "
                f"batches of {self.batch_slices(batch_size)} slice(s) of k-space {self.shape}"
                + (f", k-space stored in compressed chunks of {format_bytes(chunk)} each" if chunk else "") + ")")
        check_memory(self.path, self.memory(batch_size), what, max_memory)

    def read(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray | None]:
        """Picked slices `[start, stop)`: `(B, C, H, W)` complex64 k-space, zero (+0.0) where not
        sampled, and the `(B, C, H, W)` calibration-only data or None."""
        picked = self.slices[start:stop]
        kspace = self.scan.kspace(picked)
        if self._masked:
            kspace = np.array(kspace, dtype=np.complex64)
            rows = self.shape[-2]
            for j, s in enumerate(picked):
                kspace[j] *= self.acquisition.sampling(rows, s).astype(np.float32)
            kspace += np.complex64(0)
        return kspace, self.scan.calibration(picked)

    def target(self) -> np.ndarray | None:
        """The picked slices' target `(S, h, w)` float32 (`Scan.target`), or None."""
        return self.scan.target(self.slices)


def open_file(
    path: str | Path,
    acceleration: float | None = None,
    center_fraction: float | None = None,
    mask_type: str = "random",
    max_slices: int | None = None,
    seed: Seed = None,
    *,
    choice: dict[str, int | None] | None = None,
    max_memory: int | None = None,
) -> FileSlices:
    """Any raw-data file (`recon.io.scan.open_scan`) as `FileSlices`: the sampling model and the
    slices picked; fastMRI k-space is not read yet, raw scans are gridded.

    A file's own sampling wins; a fully sampled file gets the retrospective mask of
    `acceleration` (or none; `file_acquisition`: seeded by `seed`, by default the file name);
    `max_slices` picks the central slices; `choice` picks one image of a raw file holding
    several (`{"repetition": 1}`); `max_memory` bounds a raw reader's gridding.
    """
    choice = choice or {}
    scan = open_scan(path, repetition=choice.get("repetition"), contrast=choice.get("contrast"),
                     set_index=choice.get("set"), max_memory=max_memory)
    try:
        acq = file_acquisition(scan, acceleration, center_fraction, mask_type, seed)
        own = scan.format == "fastmri" and scan.has_own_sampling
        return FileSlices(scan, acq, central_slices(scan.num_slices, max_slices), masked=own or acq is not scan.acquisition)
    except BaseException:
        scan.close()
        raise


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


def _recon_batch(
    data: FileSlices, start: int, stop: int, kspace: np.ndarray, calibration: np.ndarray | None, device: torch.device
) -> methods.ReconBatch:
    """Read slices `[start, stop)` of `data` (`kspace`, `calibration`) as a `ReconBatch` on `device`."""
    acq = data.acquisition
    picked = data.slices[start:stop]
    rows = kspace.shape[-2]
    if acq.partial_echo:
        mask = np.stack([acq.sampling(rows, s) for s in picked])[:, None]
    else:
        mask = np.stack([acq.slice_columns(s) for s in picked])[:, None, None, :]
    return methods.ReconBatch(
        masked_kspace=torch.from_numpy(np.ascontiguousarray(kspace)).to(device),
        mask=torch.from_numpy(mask).to(device),
        calib=torch.tensor([acq.calib], dtype=torch.int64).expand(len(picked), 2),
        crop_size=acq.crop_size,
        calib_kspace=None if calibration is None else torch.from_numpy(np.ascontiguousarray(calibration)).to(device),
        extent=acq.kspace_extent,
    )


def _as_slices(data: FileSlices | RawScan) -> FileSlices:
    return data if isinstance(data, FileSlices) else FileSlices.from_scan(data)


def slice_batch(data: FileSlices | RawScan, start: int, stop: int, device: torch.device) -> methods.ReconBatch:
    """Picked slices `[start, stop)` of `data`, read now, as a `ReconBatch` on `device`."""
    data = _as_slices(data)
    kspace, calibration = data.read(start, stop)
    return _recon_batch(data, start, stop, kspace, calibration, device)


def run_method(
    method: methods.Method,
    data: FileSlices | RawScan,
    device: torch.device,
    batch_size: int = 8,
    backend: str | None = None,
    on_batch: Callable[[int], None] | None = None,
    check: str | None = None,
    seconds: list[float] | None = None,
) -> np.ndarray:
    """Reconstruct the picked slices batch by batch on `device`; returns `(S, h, w)` float32.

    Each batch is read just before it runs (at most `MAX_BATCH_BYTES` of k-space, see
    `FileSlices.batch_slices`). `check` (a method name) runs `method_checks.check_input` on every batch
    before the method sees it. `backend` (`torch`, `cupy`, None = automatic) selects the
    `recon.ops` backend. A device allocation failure (torch, CuPy or cuFFT) halves the batch
    and retries. `on_batch(n)` is called after each batch with its number of slices (progress
    bars); `seconds` collects the time of each batch from the read k-space to the images on the
    host, reading excluded (benchmark timings).
    """
    data = _as_slices(data)
    if check is not None and not data.acquisition.cartesian and not methods.spec(check).supports.non_cartesian:
        raise InputError(data.path, f"{check}: the data are non-Cartesian (samples on a trajectory); this method "
                                    "reconstructs Cartesian k-space only")
    num = len(data)
    out: list[np.ndarray] = []
    start = 0
    size = data.batch_slices(batch_size)
    with ops.use_backend(backend):
        while start < num:
            stop = min(start + size, num)
            kspace, calibration = data.read(start, stop)
            if check is not None:
                acq = data.acquisition
                method_checks.check_input(data.path, kspace, acq.column_mask, acq.calib, check, calibration,
                                   slice_numbers=data.slices[start:stop])
            if seconds is not None and device.type == "cuda":
                torch.cuda.synchronize(device)
            began = time.perf_counter()
            try:
                batch = _recon_batch(data, start, stop, kspace, calibration, device)
                with torch.no_grad():
                    images = method(batch)
                result = images.detach().float().cpu().numpy()
            except OutputError as err:
                cause = method_checks.output_cause(methods.spec(check).needs, str(err)) if check is not None else ""
                raise InputError(data.path, f"{err} (batch of file slices {data.slices[start]}-{data.slices[stop - 1]}){cause}"
                                            f"{_range_hint(kspace)}") from err
            except Exception as err:
                if size == 1 or not is_out_of_memory(err):
                    raise
                size = max(1, size // 2)
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                continue
            if seconds is not None:
                seconds.append(time.perf_counter() - began)
            out.append(result)
            if on_batch is not None:
                on_batch(stop - start)
            start = stop
    return np.concatenate(out, axis=0)


def _range_hint(kspace: np.ndarray) -> str:
    """Why a method's float32 images may have overflowed or vanished: k-space far outside the
    range float32 images can hold (about 1e-19 to 1e19 after squaring), else nothing."""
    peak = float(np.abs(kspace).max()) if kspace.size else 0.0
    if peak > 1e18:
        return f"; the k-space values reach {peak:.3g}, too large for float32 images"
    if 0 < peak < 1e-18:
        return f"; the k-space values are at most {peak:.3g}, too small for float32 images"
    return ""


@functools.lru_cache(maxsize=4)
def _cached_method(name: str, options_json: str) -> methods.Method:
    return methods.get(name, **json.loads(options_json))


def domain_warnings(method: Any, data: FileSlices) -> list[str]:
    """A learned method's warning when this file lies outside its training data: coils and
    stored k-space matrix `data.shape`, acceleration = acquirable columns / sampled columns.
    `method` as `build_method` returns it (the registry's checked wrapper around the method)."""
    method = getattr(method, "method", method)
    if not isinstance(method, LearnedMethod):
        return []
    coils, rows, cols = data.shape
    start, stop = data.acquisition.acquirable
    sampled = int(np.count_nonzero(data.acquisition.column_mask[start:stop]))
    text = method.domain_warning(coils, rows, cols, (stop - start) / sampled if sampled else None)
    return [] if text is None else [text]


def build_method(name: str, options: dict[str, Any] | None = None) -> methods.Method:
    """The method `name` with `options`, built once per process (checkpoints load once)."""
    return _cached_method(name, json.dumps(options or {}, sort_keys=True, default=str))
