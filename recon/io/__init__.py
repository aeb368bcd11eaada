"""Readers and writers: fastMRI HDF5, ISMRMRD and Siemens TWIX in, submission HDF5 / NIfTI / DICOM / PNG out.

`recon.io` imports no other `recon` module. Its names are imported from their modules when first
asked for (`from recon.io import read_info`), so `recon.io.errors` (what the command line needs
before any file is read) loads without h5py, ISMRMRD or torch. (`prewhiten` is the submodule
`recon.io.prewhiten`; its function of that name is imported from there.)
"""

from __future__ import annotations

import importlib
from typing import Any

from recon.io.errors import InputError

#: Public name -> the module that defines it, imported on first use.
_LAZY = {
    "FORMATS": "recon.io.writers",
    "RawScan": "recon.io.ismrmrd",
    "SliceGeometry": "recon.geometry",
    "convert_ismrmrd_to_fastmri": "recon.io.convert",
    "is_ismrmrd": "recon.io.ismrmrd",
    "noise_covariance": "recon.io.prewhiten",
    "nominal_geometry": "recon.geometry",
    "prewhitening_matrix": "recon.io.prewhiten",
    "read_ismrmrd": "recon.io.ismrmrd",
    "read_twix": "recon.io.twix",
    "is_twix": "recon.io.twix",
    "read_raw": "recon.io.scan",
    "write_output": "recon.io.writers",
    "FastMRIVolume": "recon.io.fastmri",
    "HeaderInfo": "recon.io.header",
    "VolumeInfo": "recon.io.fastmri",
    "atomic_path": "recon.io.atomic",
    "build_header": "recon.io.header",
    "parse_header": "recon.io.header",
    "read_info": "recon.io.fastmri",
    "read_reconstruction": "recon.io.fastmri",
    "read_volume": "recon.io.fastmri",
    "write_fastmri_volume": "recon.io.fastmri",
    "write_reconstruction": "recon.io.fastmri",
}

__all__ = ["InputError", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'recon.io' has no attribute {name!r}")
