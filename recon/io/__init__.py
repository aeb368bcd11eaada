"""Readers and writers: fastMRI HDF5 (and ISMRMRD) in, submission HDF5 / NIfTI / DICOM / PNG out.

`recon.io` imports no other `recon` module.
"""

from recon.io.atomic import atomic_path
from recon.io.errors import InputError
from recon.io.fastmri import (
    FastMRIVolume,
    VolumeInfo,
    read_info,
    read_reconstruction,
    read_volume,
    write_fastmri_volume,
    write_reconstruction,
)
from recon.io.header import HeaderInfo, build_header, parse_header

__all__ = [
    "FastMRIVolume",
    "HeaderInfo",
    "InputError",
    "VolumeInfo",
    "atomic_path",
    "build_header",
    "parse_header",
    "read_info",
    "read_reconstruction",
    "read_volume",
    "write_fastmri_volume",
    "write_reconstruction",
]
