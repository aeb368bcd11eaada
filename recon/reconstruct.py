"""Reconstruct one file with any registered method: the per-file job behind `recon reconstruct`.

A fastMRI file with its own `mask` (test / challenge data) is reconstructed from its own
undersampled k-space; a fully sampled file is undersampled retrospectively with the
file-name-seeded mask when an acceleration is given (as fastMRI validation does), and
reconstructed as acquired otherwise. ISMRMRD raw files keep their true sampling.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch

from recon import methods
from recon.io.fastmri import FastMRIVolume, VolumeInfo
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
    """A volume's k-space as it goes into a method.

    kspace: `(S, C, H, W)` complex64, zero where not sampled. mask: `(W,)` bool.
    num_low_frequencies: ACS width (0 = let the method detect it). crop_size: output `(h, w)`.
    meta: how it was made (acceleration, center_fraction, mask_type), for the output's attrs.
    """

    kspace: np.ndarray
    mask: np.ndarray
    num_low_frequencies: int
    crop_size: tuple[int, int]
    meta: dict[str, Any] = field(default_factory=dict)


def undersample(
    kspace: np.ndarray,
    info: VolumeInfo,
    acceleration: float | None = None,
    center_fraction: float | None = None,
    mask_type: str = "random",
) -> Undersampled:
    """Apply the file's own mask, a file-name-seeded retrospective mask, or none.

    kspace: `(S, C, H, W)` complex64 (single-coil files get `C = 1`).
    """
    width = kspace.shape[-1]
    if info.mask is not None:
        mask = np.asarray(info.mask, dtype=bool).copy()
        left, right = info.padding
        mask[:left] = False
        mask[right:] = False
        meta = {"acceleration": info.acceleration, "center_fraction": None, "mask_type": "file"}
        return Undersampled(kspace * mask + np.complex64(0), mask, 0, info.crop_size, meta)
    if acceleration is None:
        mask = np.ones(width, dtype=bool)
        meta = {"acceleration": 1.0, "center_fraction": None, "mask_type": "none"}
        return Undersampled(kspace, mask, width, info.crop_size, meta)
    cf = default_center_fraction(acceleration) if center_fraction is None else float(center_fraction)
    mask, nlow = make_mask(mask_type, width, [acceleration], [cf], seed=seed_from_filename(info.path.name))
    masked, mask = apply_mask(kspace, mask, info.padding)
    meta = {"acceleration": float(acceleration), "center_fraction": cf, "mask_type": mask_type}
    return Undersampled(np.asarray(masked, dtype=np.complex64), np.asarray(mask, dtype=bool), int(nlow), info.crop_size, meta)


def read_kspace(vol: FastMRIVolume) -> np.ndarray:
    """All slices of a fastMRI volume as `(S, C, H, W)` complex64 (checked for NaN/Inf per slice)."""
    slices = [vol.kspace(i) for i in range(len(vol))]
    data = np.stack(slices).astype(np.complex64, copy=False)
    return data[:, None] if data.ndim == 3 else data


def _batches(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


def run_method(
    method: methods.Method,
    data: Undersampled,
    device: torch.device,
    batch_size: int = 8,
    on_batch: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Reconstruct all slices in batches on `device`; returns `(S, h, w)` float32.

    A CUDA out-of-memory error halves the batch and retries instead of failing.
    `on_batch(n)` is called after each batch with its number of slices (progress bars).
    """
    num = data.kspace.shape[0]
    mask = torch.from_numpy(data.mask).to(device).view(1, 1, 1, -1)
    out: list[np.ndarray] = []
    start = 0
    size = max(1, int(batch_size))
    while start < num:
        stop = min(start + size, num)
        k = torch.from_numpy(np.ascontiguousarray(data.kspace[start:stop])).to(device)
        batch = methods.ReconBatch(
            masked_kspace=k,
            mask=mask.expand(stop - start, 1, 1, -1),
            num_low_frequencies=torch.full((stop - start,), data.num_low_frequencies, dtype=torch.int64),
            crop_size=tuple(data.crop_size),
        )
        try:
            with torch.no_grad():
                images = method(batch)
        except torch.cuda.OutOfMemoryError:
            if size == 1:
                raise
            size = max(1, size // 2)
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


def output_path(out_dir: Path, src: Path, fmt: str) -> Path:
    """Where the reconstruction of `src` goes: `out/<name>.h5`, `<stem>.nii.gz`, `<stem>_dicom/`, `<stem>.png`."""
    if fmt == "h5":
        return out_dir / src.name
    if fmt == "nii":
        return out_dir / f"{src.stem}.nii.gz"
    if fmt == "dcm":
        return out_dir / f"{src.stem}_dicom"
    if fmt == "png":
        return out_dir / f"{src.stem}.png"
    raise ValueError(f"unknown output format {fmt!r}; expected h5, nii, dcm or png")


@dataclass
class ReconstructJob:
    """Picklable per-file job: `job(path) -> dict` (run in-process or on a Dask worker)."""

    out_dir: Path
    method: str = "zero-filled"
    method_options: dict[str, Any] = field(default_factory=dict)
    acceleration: float | None = None
    center_fraction: float | None = None
    mask_type: str = "random"
    fmt: str = "h5"
    device: str = "auto"
    batch_size: int = 8
    skip_existing: bool = False
    keep_identity: bool = False
    progress: bool = False

    def __call__(self, path: Path) -> dict[str, Any]:
        path = Path(path)
        target = output_path(Path(self.out_dir), path, self.fmt)
        if self.skip_existing and target.exists():
            return {"skipped": True, "reason": "output exists", "output": str(target)}
        data, acquisition, geometry, identity = self._load(path)
        device = resolve_device(self.device)
        method = build_method(self.method, self.method_options)
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(total=data.kspace.shape[0], desc=path.name, unit="slice", leave=False)
        try:
            images = run_method(method, data, device, self.batch_size, None if bar is None else bar.update)
        finally:
            if bar is not None:
                bar.close()
        attrs = {**data.meta, "method": self.method, "acquisition": acquisition}
        outputs = self._write(path, target, images, data.mask, attrs, geometry, identity)
        return {"output": str(outputs[0]), "slices": int(images.shape[0]), **{k: v for k, v in attrs.items() if v is not None}}

    def _load(self, path: Path) -> tuple[Undersampled, str | None, Any, dict[str, Any]]:
        from recon.io import ismrmrd as raw

        if raw.is_ismrmrd(path):
            scan = raw.read_ismrmrd(path)
            acceleration = float(scan.mask.size) / max(1, int(scan.mask.sum()))
            data = Undersampled(
                scan.kspace * scan.mask + np.complex64(0),
                scan.mask,
                int(scan.num_low_frequencies),
                (int(scan.recon_size[0]), int(scan.recon_size[1])),
                {"acceleration": acceleration, "center_fraction": None, "mask_type": "acquired"},
            )
            return data, scan.meta.get("protocol_name"), scan.geometry, dict(scan.identity)
        with FastMRIVolume(path) as vol:
            info = vol.info
            kspace = read_kspace(vol)
        data = undersample(kspace, info, self.acceleration, self.center_fraction, self.mask_type)
        identity = {"patient_id": info.attrs.get("patient_id")} if "patient_id" in info.attrs else {}
        return data, info.attrs.get("acquisition"), None, identity

    def _write(
        self,
        src: Path,
        target: Path,
        images: np.ndarray,
        mask: np.ndarray,
        attrs: dict[str, Any],
        geometry: Any,
        identity: dict[str, Any],
    ) -> list[Path]:
        if self.fmt == "h5":
            from recon.io.fastmri import write_reconstruction

            extra = dict(identity) if self.keep_identity else None
            write_reconstruction(
                target,
                images.astype(np.float32),
                mask=mask,
                acceleration=attrs.get("acceleration"),
                center_fraction=attrs.get("center_fraction"),
                mask_type=attrs.get("mask_type"),
                method=attrs.get("method"),
                acquisition=attrs.get("acquisition"),
                extra_attrs=extra,
            )
            return [target]
        from recon.io.writers import write_output

        meta = {**attrs, "identity": identity, "montage": True}
        return list(write_output(Path(self.out_dir) / src.stem, images.astype(np.float32), self.fmt, geometry=geometry, meta=meta, keep_identity=self.keep_identity))
