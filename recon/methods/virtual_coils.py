"""`virtual_coils`: SVD coil compression of a batch before a classical method calibrates.

The compression matrix of each slice comes from its calibration region (`batch.calib`, all
readout rows) of its calibration data (`recon.calib.compression`); the masked k-space, separate
calibration data and given maps are all mixed by it. Data are prewhitened before they reach a
method (`recon.io.ismrmrd` with a noise scan), so the compression acts on white noise. A
request of as many or more virtual coils than the data have is a no-op.

`kind`: `svd` (one mixing per slice) or `gcc` (geometric: one mixing per readout position,
aligned along the readout; needs a fully sampled readout, so not with a partial echo).
"""

from __future__ import annotations

from typing import get_args

from recon.calib.compression import compress, compress_geometric, compress_geometric_images, compression_matrix, geometric_matrices
from recon.methods.batch import ReconBatch
from recon.methods.options import Compression

#: Coil compression kinds.
KINDS: tuple[str, ...] = get_args(Compression)


def check_virtual_coils(virtual_coils: int | None, kind: str = "svd") -> int | None:
    """`virtual_coils` as int, or None; ValueError below 1 or for an unknown `kind`."""
    if kind not in KINDS:
        raise ValueError(f"coil compression must be one of {', '.join(KINDS)}, got {kind!r}")
    if virtual_coils is None:
        return None
    if int(virtual_coils) != virtual_coils or int(virtual_coils) < 1:
        raise ValueError(f"virtual coils must be an integer >= 1, got {virtual_coils}")
    return int(virtual_coils)


def compress_batch(batch: ReconBatch, virtual_coils: int | None, kind: str = "svd") -> ReconBatch:
    """The batch with `virtual_coils` virtual coils of `kind` (None, or >= the coils: unchanged)."""
    coils = batch.masked_kspace.shape[1]
    if virtual_coils is None or virtual_coils >= coils:
        return batch
    data = batch.calibration_data
    calib = batch.calib.reshape(-1, 2).expand(data.shape[0], 2)
    if kind == "gcc":
        if batch.mask.shape[-2] > 1:
            raise ValueError("geometric coil compression (gcc) needs a fully sampled readout; this batch has a partial echo (use svd)")
        rows = geometric_matrices(data, calib, virtual_coils).to(data.device)
        return batch._replace(
            masked_kspace=compress_geometric(batch.masked_kspace, rows),
            calib_kspace=None if batch.calib_kspace is None else compress_geometric(batch.calib_kspace, rows),
            maps=None if batch.maps is None else compress_geometric_images(batch.maps, rows),
        )
    matrix = compression_matrix(data, calib, virtual_coils).to(data.device)
    return batch._replace(
        masked_kspace=compress(batch.masked_kspace, matrix),
        calib_kspace=None if batch.calib_kspace is None else compress(batch.calib_kspace, matrix),
        maps=None if batch.maps is None else compress(batch.maps, matrix),
    )
