"""Reconstruct one file with any registered method: the per-file job behind `recon reconstruct`.

A fastMRI file with its own `mask` (test / challenge data) is reconstructed from its own
undersampled k-space; a fully sampled file is undersampled retrospectively with the
file-name-seeded mask when an acceleration is given (as fastMRI validation does), and
reconstructed as acquired otherwise. ISMRMRD raw files keep their true sampling.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recon.acquisition import Acquisition
from recon.io.fastmri import FastMRIVolume
from recon.pipeline import Undersampled, build_method, read_kspace, resolve_device, run_method, undersample


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
    backend: str | None = None
    batch_size: int = 8
    skip_existing: bool = False
    keep_identity: bool = False

    def __call__(self, path: Path) -> dict[str, Any]:
        path = Path(path)
        target = output_path(Path(self.out_dir), path, self.fmt)
        if self.skip_existing and target.exists():
            return {"skipped": True, "reason": "output exists", "output": str(target)}
        data, acquisition, identity = self._load(path)
        device = resolve_device(self.device)
        method = build_method(self.method, {"device": str(device), **self.method_options})
        images = run_method(method, data, device, self.batch_size, self.backend)
        attrs = {**data.acquisition.provenance.attrs(), "method": self.method, "acquisition": acquisition}
        outputs = self._write(path, target, images, data.acquisition, attrs, identity)
        return {"output": str(outputs[0]), "slices": int(images.shape[0]), **{k: v for k, v in attrs.items() if v is not None}}

    def _load(self, path: Path) -> tuple[Undersampled, str | None, dict[str, Any]]:
        from recon.io import ismrmrd as raw

        if raw.is_ismrmrd(path):
            scan = raw.read_ismrmrd(path)
            acq = scan.acquisition
            masked = np.stack([scan.kspace[s] * acq.sampling(scan.kspace.shape[-2], s) for s in range(scan.kspace.shape[0])])
            data = Undersampled(masked + np.complex64(0), acq, scan.calibration)
            return data, scan.meta.get("protocol_name"), dict(scan.identity)
        with FastMRIVolume(path) as vol:
            info = vol.info
            kspace = read_kspace(vol)
        data = undersample(kspace, info, self.acceleration, self.center_fraction, self.mask_type)
        identity = {"patient_id": info.attrs.get("patient_id")} if "patient_id" in info.attrs else {}
        return data, info.attrs.get("acquisition"), identity

    def _write(
        self,
        src: Path,
        target: Path,
        images: np.ndarray,
        acq: Acquisition,
        attrs: dict[str, Any],
        identity: dict[str, Any],
    ) -> list[Path]:
        if self.fmt == "h5":
            from recon.io.fastmri import write_reconstruction

            extra = dict(identity) if self.keep_identity else None
            write_reconstruction(
                target,
                images.astype(np.float32),
                mask=acq.column_mask,
                acceleration=attrs.get("acceleration"),
                center_fraction=attrs.get("center_fraction"),
                mask_type=attrs.get("mask_type"),
                method=attrs.get("method"),
                acquisition=attrs.get("acquisition"),
                extra_attrs={**(extra or {}), "calib_region": list(acq.calib)},
            )
            return [target]
        from recon.io.writers import write_output

        meta = {**attrs, "identity": identity, "montage": True}
        return list(write_output(Path(self.out_dir) / src.stem, images.astype(np.float32), self.fmt, geometry=None if acq.geometry is None else list(acq.geometry), meta=meta, keep_identity=self.keep_identity))
