"""Readers and writers: fastMRI HDF5 (and ISMRMRD) in, submission HDF5 / NIfTI / DICOM / PNG out.

`recon.io` imports no other `recon` module.
"""

from recon.io.atomic import atomic_path
from recon.io.errors import InputError

__all__ = ["InputError", "atomic_path"]
