"""The acquisition model: what was sampled, where the calibration data sit, and on which grid.

Every consumer (ESPIRiT, VarNet's sensitivity estimate, data consistency, the writers) reads an
`Acquisition` instead of re-deriving its parts from a column mask and an ACS width. Both
readers produce one (`recon.io.fastmri`, `recon.io.ismrmrd`), and so does retrospective
undersampling (`retrospective`).

Index conventions, all on the stored k-space grid `(rows H = readout, cols W = phase encodes)`:

* regions are half-open `[start, stop)` index pairs;
* `columns` are the sampled phase-encode columns, `(W,)` or per slice `(S, W)`;
* `readout` is the acquired readout extent (a partial echo leaves `start > 0`): samples
  outside it are unknown, not zero data, so the sampled locations are `readout x columns`;
* `acquirable` is the column extent that could have been sampled (fastMRI's padding and
  partial Fourier leave columns outside it);
* `calib` is the calibration (ACS) column region, `calib_rows` its readout rows.

On symmetric fastMRI masks `calib` is `[(W - n + 1) // 2, (W - n + 1) // 2 + n)`, exactly
fastMRI's placement of `n` low-frequency columns (`centered_region`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from recon.geometry import SliceGeometry

Region = tuple[int, int]


def centered_region(width: int, n: int) -> Region:
    """`[start, stop)` of `n` center columns placed as fastMRI places its low frequencies."""
    start = (int(width) - int(n) + 1) // 2
    return start, start + int(n)


#: An axis is partial Fourier / partial echo when more than this fraction of it is acquired on one
#: side of the k-space centre without its conjugate-symmetric partner (fastMRI's symmetric
#: padding and the edge gaps of uniform undersampling stay below it; a 7/8 partial Fourier
#: leaves 1/8 of the axis unpaired).
PARTIAL_FOURIER_MIN_UNPAIRED = 1.0 / 16.0


def mirror_index(size: int) -> np.ndarray:
    """Index of `-k` for every index `k` of a centered axis of `size` (DC at `size // 2`), `(size,)`."""
    c = int(size) // 2
    return (2 * c - np.arange(int(size))) % int(size)


def symmetric_band(region: Region, size: int) -> Region:
    """`[lo, hi)`: the run around the centre `size // 2` of `region` whose mirrored samples are in `region` too.

    Empty (`(c, c)`) when `region` does not hold the centre.
    """
    inside = np.zeros(int(size), dtype=bool)
    inside[region[0] : region[1]] = True
    return run_around(inside & inside[mirror_index(size)], int(size) // 2)


def unpaired(region: Region, size: int) -> int:
    """Samples of `region` whose mirror about the centre is outside it (0 for a symmetric region)."""
    lo, hi = symmetric_band(region, size)
    return (region[1] - region[0]) - (hi - lo)


def is_partial_fourier(region: Region, size: int) -> bool:
    """Whether an acquired extent `[start, stop)` of a centered axis of `size` is partial Fourier
    (more than `PARTIAL_FOURIER_MIN_UNPAIRED` of the axis acquired without its mirror)."""
    return unpaired(region, size) > PARTIAL_FOURIER_MIN_UNPAIRED * int(size)


def acquired_extent(columns: np.ndarray, limits: Region) -> Region:
    """The acquirable columns of prospectively acquired data.

    The header's `limits`, with the short side narrowed to the first (or last) acquired column
    when the acquired run is partial Fourier (`is_partial_fourier`): headers that declare the
    full matrix while one side of k-space was never acquired (e.g. 5/8 partial Fourier numbered
    on the full grid) then do not count the never-acquired side as acquirable. The long side
    keeps the header's limit (undersampled lines there can still be filled in).
    """
    cols = np.asarray(columns, dtype=bool).reshape(-1)
    index = np.flatnonzero(cols)
    start, stop = int(limits[0]), int(limits[1])
    if index.size == 0:
        return start, stop
    lo, hi = max(start, int(index[0])), min(stop, int(index[-1]) + 1)
    if lo >= hi or not is_partial_fourier((lo, hi), cols.size):
        return start, stop
    centre = cols.size // 2
    return (lo, stop) if centre - lo < hi - centre else (start, hi)


def run_around(flags: np.ndarray, index: int) -> Region:
    """`[start, stop)` of the run of True entries of 1-D `flags` that contains `index` ((index, index) if none)."""
    flags = np.asarray(flags, dtype=bool).reshape(-1)
    if not 0 <= index < flags.size or not flags[index]:
        return index, index
    falses = np.flatnonzero(~flags)
    left = falses[falses < index]
    right = falses[falses > index]
    return (int(left[-1]) + 1 if left.size else 0), (int(right[0]) if right.size else flags.size)


@dataclass(frozen=True)
class MaskProvenance:
    """How the sampling pattern came about (recorded in every output's metadata).

    kind: a `recon.masks` family (`random`, `equispaced`, ...), `file` (a challenge file's own
    mask), `acquired` (prospective raw data) or `none` (fully sampled).
    acceleration: nominal acceleration (W / sampled columns for `file`/`acquired`).
    center_fraction: the mask function's center fraction, None when not made by one.
    seed: the seed the mask was drawn with (fastMRI validation: the file name's code points).
    """

    kind: str
    acceleration: float | None = None
    center_fraction: float | None = None
    seed: tuple[int, ...] | int | None = None

    def attrs(self) -> dict[str, Any]:
        """Output attrs `mask_type`, `acceleration`, `center_fraction` (None = omit)."""
        return {
            "mask_type": self.kind,
            "acceleration": None if self.acceleration is None else float(self.acceleration),
            "center_fraction": None if self.center_fraction is None else float(self.center_fraction),
        }


@dataclass(frozen=True)
class Acquisition:
    """The sampling and geometry of one volume (see the module docstring for the conventions).

    Attributes:
        columns: sampled imaging columns, bool `(W,)`, or `(S, W)` when slices differ.
        calib: calibration column region `[start, stop)`; `(c, c)` (empty) when there is none.
        readout: acquired readout rows `[start, stop)` (partial echo: `start > 0`).
        acquirable: columns that could be sampled `[start, stop)` (padding, partial Fourier).
        calib_rows: readout rows of the calibration region (default: the acquired readout).
        calibration_only: bool `(W,)`, columns that hold calibration lines only (ISMRMRD
            `PARALLEL_CALIBRATION` without `_AND_IMAGING`); they are not image data.
        readout_oversampling: encoded / recon FOV along the readout (2.0 for fastMRI knee).
        encoded_size, recon_size: encodedSpace / reconSpace matrices (x, y, z).
        encoded_fov_mm, recon_fov_mm: the fields of view (x, y, z) in mm, None when unknown.
        geometry: one slice geometry per slice (ISMRMRD), None when the file carries none.
        noise_cov: `(C, C)` receiver noise covariance, None without a noise scan.
        prewhitened: whether the k-space was whitened with `noise_cov`.
        provenance: how the sampling pattern came about.
        trajectory: non-Cartesian sample positions `(S or 1, readouts, samples, 2)` in cycles per
            FOV (`recon.trajectory`), None for Cartesian data; the k-space of such a scan is
            `(S, C, readouts, samples)` samples, not a grid, and `columns` / `calib` describe the
            Cartesian calibration grid its methods calibrate on.
        density: density-compensation weights `(S or 1, readouts, samples)` for `trajectory`, or None.
    """

    columns: np.ndarray
    calib: Region
    readout: Region
    acquirable: Region
    encoded_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    calib_rows: Region | None = None
    calibration_only: np.ndarray | None = None
    readout_oversampling: float = 1.0
    encoded_fov_mm: tuple[float, float, float] | None = None
    recon_fov_mm: tuple[float, float, float] | None = None
    geometry: tuple[SliceGeometry, ...] | None = None
    noise_cov: np.ndarray | None = field(default=None, compare=False)
    prewhitened: bool = False
    provenance: MaskProvenance = MaskProvenance("none")
    trajectory: np.ndarray | None = field(default=None, compare=False)
    density: np.ndarray | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        cols = np.asarray(self.columns, dtype=bool)
        object.__setattr__(self, "columns", cols)
        width = cols.shape[-1]
        for name, (start, stop), size in (
            ("calib", self.calib, width),
            ("acquirable", self.acquirable, width),
            ("readout", self.readout, None),
        ):
            if not 0 <= start <= stop or (size is not None and stop > size):
                raise ValueError(f"{name} region [{start}, {stop}) is not inside [0, {size or 'rows'})")
        if self.trajectory is not None and (self.trajectory.ndim != 4 or self.trajectory.shape[-1] != 2):
            raise ValueError(f"trajectory has shape {self.trajectory.shape}; expected (slices, readouts, samples, 2)")
        if self.density is not None and (self.trajectory is None or self.density.shape != self.trajectory.shape[:-1]):
            raise ValueError("density weights need a trajectory of the same (slices, readouts, samples)")

    @property
    def cartesian(self) -> bool:
        """Whether the samples lie on the stored grid (no `trajectory`)."""
        return self.trajectory is None

    @property
    def width(self) -> int:
        """Number of phase-encode columns W of the stored grid."""
        return int(self.columns.shape[-1])

    @property
    def column_mask(self) -> np.ndarray:
        """Union of the sampled columns over slices, bool `(W,)`."""
        return self.columns if self.columns.ndim == 1 else self.columns.any(axis=0)

    def slice_columns(self, index: int) -> np.ndarray:
        """Sampled columns of slice `index`, bool `(W,)`."""
        return self.columns if self.columns.ndim == 1 else self.columns[index]

    @property
    def num_low_frequencies(self) -> int:
        """Width of the calibration region in columns."""
        return self.calib[1] - self.calib[0]

    @property
    def crop_size(self) -> tuple[int, int]:
        """reconSpace `(rows, cols)`: the size of the output images."""
        return int(self.recon_size[0]), int(self.recon_size[1])

    @property
    def partial_echo(self) -> bool:
        """Whether part of the readout was not acquired."""
        return self.readout != (0, int(self.encoded_size[0]))

    @property
    def kspace_extent(self) -> tuple[Region, Region]:
        """`(readout rows, acquirable columns)`: the rectangle of k-space that was (or could be) acquired.

        Outside it nothing was measured: a side of an axis missing beyond the centre's mirror is
        partial Fourier (columns) or partial echo (readout), see `recon.partial_fourier`.
        """
        return (int(self.readout[0]), int(self.readout[1])), (int(self.acquirable[0]), int(self.acquirable[1]))

    @property
    def partial_fourier(self) -> bool:
        """Whether the readout extent or the acquirable columns are partial Fourier (`is_partial_fourier`)."""
        (r0, r1), cols = self.kspace_extent
        rows = int(self.encoded_size[0])
        return is_partial_fourier((r0, min(r1, rows)), rows) or is_partial_fourier(cols, self.width)

    def sampling(self, rows: int, index: int = 0) -> np.ndarray:
        """Sampled k-space locations of slice `index` as bool `(rows, W)` (readout x columns)."""
        out = np.zeros((rows, self.width), dtype=bool)
        start, stop = self.readout
        out[start : min(stop, rows)] = self.slice_columns(index)
        return out

    def calibration_rows(self) -> Region:
        """Readout rows of the calibration region (the acquired readout unless set)."""
        return self.calib_rows if self.calib_rows is not None else self.readout

    def with_columns(self, columns: np.ndarray, calib: Region, provenance: MaskProvenance) -> Acquisition:
        """A copy with a new sampling pattern (retrospective undersampling of this acquisition)."""
        return replace(self, columns=np.asarray(columns, dtype=bool), calib=calib, provenance=provenance)

    def attrs(self) -> dict[str, Any]:
        """Metadata an output records about the sampling (provenance, ACS region, matrices)."""
        return {
            **self.provenance.attrs(),
            "calib_region": [int(self.calib[0]), int(self.calib[1])],
            "readout_extent": [int(self.readout[0]), int(self.readout[1])],
            "acquirable_columns": [int(self.acquirable[0]), int(self.acquirable[1])],
            "encoded_size": [int(v) for v in self.encoded_size],
            "recon_size": [int(v) for v in self.recon_size],
            "prewhitened": bool(self.prewhitened),
        }


def retrospective(
    base: Acquisition,
    mask: np.ndarray,
    num_low_frequencies: int,
    provenance: MaskProvenance,
) -> Acquisition:
    """`base` undersampled with a `recon.masks` column mask, zeroed outside `base.acquirable`.

    The calibration region is the mask's center block as fastMRI places it, clipped to the
    acquirable columns.
    """
    cols = np.asarray(mask, dtype=bool).reshape(-1) & base.column_mask
    start, stop = centered_region(cols.size, num_low_frequencies)
    left, right = base.acquirable
    start, stop = max(start, left), min(stop, right)
    return base.with_columns(cols, (start, max(start, stop)), provenance)
