"""ISMRMRD raw data -> fastMRI multi-coil HDF5, so raw scans can feed training and benchmarks.

The readout oversampling is kept by default (fastMRI files keep the 2x oversampled readout,
640 rows, and crop to reconSpace in image space); pass `remove_oversampling=True` to crop it.
Fully sampled scans (one gap-free run of acquired columns; partial Fourier counts as fully
sampled, its missing side zero-filled) get a `reconstruction_rss` target (RSS of the coil images, centre-cropped
to reconSpace); undersampled scans get the acquired `mask` and the challenge-style attrs
`acceleration` and `num_low_frequency` instead. Patient identity is left out unless asked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from recon.io.ismrmrd import RawScan, read_ismrmrd


def _ifft2c(k: np.ndarray) -> np.ndarray:
    """Centred orthonormal 2-D inverse FFT over the last two axes."""
    axes = (-2, -1)
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes), axes=axes, norm="ortho"), axes)


def rss_target(scan: RawScan) -> np.ndarray:
    """(S, rx, ry) float32 RSS of the coil images, centre-cropped to reconSpace (rx, ry).

    A crop larger than the grid keeps the whole axis.
    """
    img = np.sqrt((np.abs(_ifft2c(scan.kspace)) ** 2).sum(axis=1))
    rows, cols = img.shape[-2:]
    rx, ry = min(scan.recon_size[0], rows), min(scan.recon_size[1], cols)
    r0, c0 = (rows - rx) // 2, (cols - ry) // 2
    return np.ascontiguousarray(img[:, r0 : r0 + rx, c0 : c0 + ry]).astype(np.float32)


def convert_ismrmrd_to_fastmri(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    keep_identity: bool = False,
    **read_options: Any,
) -> Path:
    """Read `in_path` (ISMRMRD) and write `out_path` in the fastMRI multi-coil layout.

    Args:
        in_path: ISMRMRD HDF5 file.
        out_path: fastMRI HDF5 file to write (atomically, via write_fastmri_volume).
        keep_identity: copy the patient ID into attrs `patient_id` (fastMRI's attribute).
        read_options: passed to `read_ismrmrd` (dataset, repetition, contrast, prewhiten,
            remove_oversampling).

    Returns:
        `out_path` as a Path.
    """
    from recon.io.fastmri import write_fastmri_volume
    from recon.io.header import build_header

    scan = read_ismrmrd(in_path, **read_options)
    header = build_header(
        scan.encoded_size,
        scan.recon_size,
        scan.enc_limits_center,
        scan.enc_limits_max,
        fov_mm=scan.encoded_fov_mm,
        recon_fov_mm=scan.recon_fov_mm,
        extra={"measurementInformation/protocolName": scan.meta.get("protocol_name", "ISMRMRD")},
    )
    acquired = np.flatnonzero(scan.mask)
    full = acquired.size > 0 and acquired[-1] - acquired[0] + 1 == acquired.size
    rss = rss_target(scan)
    attrs: dict[str, Any] = {
        "acquisition": str(scan.meta.get("protocol_name", "ISMRMRD")),
        "max": float(rss.max()),
        "norm": float(np.linalg.norm(rss)),
    }
    if not full:
        attrs["acceleration"] = float(scan.mask.size / max(int(scan.mask.sum()), 1))
        attrs["num_low_frequency"] = int(scan.num_low_frequencies)
    if keep_identity and "patient_id" in scan.identity:
        attrs["patient_id"] = scan.identity["patient_id"]
    write_fastmri_volume(
        out_path,
        scan.kspace,
        header,
        target=rss if full else None,
        attrs=attrs,
        mask=None if full else scan.mask,
    )
    return Path(out_path)
