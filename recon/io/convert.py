"""Raw data (ISMRMRD, Siemens TWIX) -> fastMRI multi-coil HDF5, so raw scans can feed training and benchmarks.

The readout oversampling is kept by default (fastMRI files keep the 2x oversampled readout,
640 rows, and crop to reconSpace in image space); pass `remove_oversampling=True` to crop it.
Fully sampled scans (one gap-free run of acquired columns; partial Fourier counts as fully
sampled within its acquirable columns, which exclude the never-acquired side) get a
`reconstruction_rss` target (RSS of the coil images, centre-cropped to reconSpace; a partial-Fourier
or partial-echo side is completed per coil by POCS, `recon.partial_fourier`, the default of
`recon reconstruct`); undersampled scans get the acquired `mask` and the challenge-style attrs
`acceleration` and `num_low_frequency` instead. An asymmetric echo is recorded in the root attr
`readout_extent` (`[r0, r1)` acquired rows), which `recon.io.fastmri` reads back, so the
unacquired rows stay unknown rather than zero data. Slices sampled on different columns are
refused (one `mask` per file). Patient identity is left out unless asked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from recon.io.errors import InputError
from recon.io.scan import read_raw, rss_target


def convert_ismrmrd_to_fastmri(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    keep_identity: bool = False,
    **read_options: Any,
) -> Path:
    """Read `in_path` (ISMRMRD or Siemens TWIX, `recon.io.scan.read_raw`) and write `out_path`
    in the fastMRI multi-coil layout.

    Args:
        in_path: ISMRMRD HDF5 file or TWIX `.dat` file.
        out_path: fastMRI HDF5 file to write (atomically, via write_fastmri_volume).
        keep_identity: copy the patient ID into attrs `patient_id` (fastMRI's attribute).
        read_options: passed to the reader (repetition, contrast, set_index, prewhiten,
            remove_oversampling, max_memory; ISMRMRD also dataset).

    Returns:
        `out_path` as a Path.
    """
    from recon.io.fastmri import write_fastmri_volume
    from recon.io.header import build_header

    scan = read_raw(in_path, **read_options)
    acq = scan.acquisition
    if acq.columns.ndim == 2:
        raise InputError(in_path, "slices are sampled on different columns; the fastMRI layout holds one mask per "
                                  "volume: reconstruct the raw file directly")
    left, right = acq.acquirable
    width = acq.width
    header = build_header(
        acq.encoded_size,
        acq.recon_size,
        width // 2 - left,
        right - left - 1,
        fov_mm=acq.encoded_fov_mm or (1.0, 1.0, 1.0),
        recon_fov_mm=acq.recon_fov_mm or (1.0, 1.0, 1.0),
        extra={"measurementInformation/protocolName": scan.meta.get("protocol_name", "ISMRMRD")},
    )
    mask = acq.column_mask
    acquired = np.flatnonzero(mask)
    full = acquired.size > 0 and acquired[-1] - acquired[0] + 1 == acquired.size
    target = rss_target(scan, in_path)
    attrs: dict[str, Any] = {
        "acquisition": str(scan.meta.get("protocol_name", "ISMRMRD")),
        "max": float(target.max()),
        "norm": float(np.linalg.norm(target)),
    }
    if not full:
        attrs["acceleration"] = float(mask.size / max(int(mask.sum()), 1))
        attrs["num_low_frequency"] = int(acq.num_low_frequencies)
    if acq.partial_echo:
        attrs["readout_extent"] = [int(acq.readout[0]), int(acq.readout[1])]
    if keep_identity and "patient_id" in scan.identity:
        attrs["patient_id"] = scan.identity["patient_id"]
    write_fastmri_volume(
        out_path,
        scan.kspace,
        header,
        target=target if full else None,
        attrs=attrs,
        mask=None if full else mask,
    )
    return Path(out_path)
