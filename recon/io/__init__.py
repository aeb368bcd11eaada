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
from recon.io.convert import convert_ismrmrd_to_fastmri
from recon.io.geometry import SliceGeometry, nominal_geometry
from recon.io.header import HeaderInfo, build_header, parse_header
from recon.io.ismrmrd import RawScan, is_ismrmrd, read_ismrmrd
from recon.io.prewhiten import noise_covariance, prewhiten, prewhitening_matrix
from recon.io.writers import FORMATS, write_output

__all__ = [
    "FORMATS",
    "RawScan",
    "SliceGeometry",
    "convert_ismrmrd_to_fastmri",
    "is_ismrmrd",
    "noise_covariance",
    "nominal_geometry",
    "prewhiten",
    "prewhitening_matrix",
    "read_ismrmrd",
    "write_output",
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
