"""recon: MRI k-space reconstruction toolkit (fastMRI / ISMRMRD I/O, challenge masks,
E2E-VarNet on custom CUDA kernels, SENSE / compressed-sensing baselines, challenge metrics)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__version__ = "0.1.0"


def kernels_dir() -> Path:
    """Folder holding the CUDA sources (`*.cu`) of the custom kernels.

    Installed wheels carry them as package data `recon/kernels`; a source checkout
    (editable install) keeps them in the top-level `kernels/` folder.
    """
    packaged = resources.files("recon") / "kernels"
    if packaged.is_dir():
        return Path(str(packaged))
    return Path(__file__).resolve().parent.parent / "kernels"
