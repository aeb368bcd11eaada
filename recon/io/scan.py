"""One way to open a scan: `open_scan(path)` gives the same `Scan` for every raw-data format.

A `Scan` is what every consumer needs of a file, whatever it was stored as: its sampling model
(`Acquisition`: sampled columns, calibration region, grids, FOV, geometry, noise covariance),
the per-slice k-space `(C, H, W)` read on demand, calibration-only data where the file keeps
them apart, the target image where one exists (a fastMRI `reconstruction_rss` / `_esc`, or the
RSS of a fully sampled raw scan), and metadata with patient identity kept apart.

Formats plug in here and nowhere else: `sniff` names a file's format from its bytes, `open_scan`
dispatches to the reader. fastMRI files are read lazily, a slice at a time
(`recon.io.fastmri.FastMRIVolume`); raw scanner data (ISMRMRD, Siemens TWIX `.dat`) are
gridded whole by their reader (`recon.io.ismrmrd`, `recon.io.twix`, both through
`recon.io.gridding`) into a `RawScan` and served from memory. A non-Cartesian reader
will hand over its samples with the trajectory and density weights in the `Acquisition`, so
the consumers below do not change.

A raw file may hold several images (repetitions, contrasts / echoes, sets): `image_choices`
lists them, and `open_scan(path, repetition=..., ...)` opens one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recon.acquisition import Acquisition
from recon.core import center_crop, rss
from recon.io.errors import InputError
from recon.io.fastmri import FastMRIVolume, VolumeInfo, plain_attrs
from recon.io.hdf5 import open_h5

PathLike = str | os.PathLike[str]
#: Formats `open_scan` reads.
FORMATS = ("fastmri", "ismrmrd", "twix")
#: Target datasets of a fastMRI file, multi-coil first.
TARGET_KEYS = ("reconstruction_rss", "reconstruction_esc")


def sniff(path: PathLike) -> str:
    """The format of `path` ("fastmri", "ismrmrd" or "twix"), or InputError saying what it is not.

    A file that starts like a Siemens TWIX file (`recon.io.twix.is_twix`, from its first bytes,
    whatever its name) is TWIX. An HDF5 file with a root `kspace` dataset is fastMRI (even with
    a stray `dataset/xml`); one with an ISMRMRD `dataset` group holding `xml` and `data` is
    ISMRMRD. A `.dat` file that is neither is refused as not a TWIX file.
    """
    from recon.io import ismrmrd, twix
    from recon.io.hdf5 import HDF5_SIGNATURE

    p = Path(path)
    if p.is_file():
        with open(p, "rb") as f:
            hdf5 = f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE
        if not hdf5 and twix.is_twix(p):
            return "twix"
        if not hdf5 and p.suffix.lower() == ".dat":
            size = p.stat().st_size
            if size < 8:
                raise InputError(p, f"{size} bytes: too short to be a Siemens TWIX file")
            raise InputError(p, "not a Siemens TWIX file (its first bytes are neither a VD/VE multi-RAID header nor a VB "
                                "measurement header) and not HDF5")
    with open_h5(path):
        pass
    return "ismrmrd" if ismrmrd.is_ismrmrd(path) else "fastmri"


class Scan:
    """A raw-data file opened for reconstruction (see the module docstring).

    path: the file. format: one of `FORMATS`. acquisition: its sampling model as stored.
    shape: `(C, H, W)` per slice (C = 1 for single-coil data). num_slices: slices in the file.
    attrs: non-identifying metadata (`acquisition` names the protocol; fastMRI root attrs).
    identity: patient identity fields, written to outputs only when asked. warnings: what the
    reader assumed (e.g. identity axes for unset direction cosines). chunk_bytes: size of one
    decompressed storage chunk a slice read costs (0 when not chunked or held in memory).
    """

    path: Path
    format: str
    acquisition: Acquisition
    shape: tuple[int, int, int]
    num_slices: int
    attrs: dict[str, Any]
    identity: dict[str, Any]
    warnings: list[str]
    chunk_bytes: int = 0

    def kspace(self, slices: Sequence[int]) -> np.ndarray:
        """`(len(slices), C, H, W)` complex64 k-space of those slices, zero where not sampled."""
        raise NotImplementedError

    def calibration(self, slices: Sequence[int]) -> np.ndarray | None:
        """`(len(slices), C, H, W)` calibration-only k-space, or None (the image data serve)."""
        return None

    def target(self, slices: Sequence[int] | None = None) -> np.ndarray | None:
        """`(S, h, w)` float32 target of those slices (all when None), or None without one."""
        return None

    @property
    def has_own_sampling(self) -> bool:
        """Whether the file was undersampled when acquired (a fastMRI `mask`, or ISMRMRD lines
        left out inside the acquirable columns); such a file keeps its sampling."""
        acq = self.acquisition
        left, right = acq.acquirable
        return not bool(np.all(np.asarray(acq.columns, dtype=bool)[..., left:right]))

    def close(self) -> None:
        """Release the file (idempotent)."""

    def __enter__(self) -> Scan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FastMRIScan(Scan):
    """A fastMRI file, read a slice at a time (`FastMRIVolume`)."""

    format = "fastmri"

    def __init__(self, path: PathLike, info: VolumeInfo | None = None) -> None:
        self.path = Path(path)
        self.volume = FastMRIVolume(self.path, info=info)
        self.info = self.volume.info
        self.acquisition = self.info.acquisition()
        self.shape = (self.info.num_coils, *self.info.shape[-2:])
        self.num_slices = self.info.num_slices
        self.attrs = {k: v for k, v in self.info.attrs.items() if k != "patient_id"}
        self.identity = {"patient_id": self.info.attrs["patient_id"]} if "patient_id" in self.info.attrs else {}
        self.warnings = []
        self.chunk_bytes = self.info.chunk_bytes

    @property
    def has_own_sampling(self) -> bool:
        return self.info.mask is not None

    def kspace(self, slices: Sequence[int]) -> np.ndarray:
        out = np.empty((len(slices), *self.shape), dtype=np.complex64)
        for j, s in enumerate(slices):
            out[j] = self.volume.kspace(s).reshape(self.shape)
        return out

    def target(self, slices: Sequence[int] | None = None) -> np.ndarray | None:
        if self.info.target_key is None:
            return None
        if slices is None:
            return self.volume.target_all()
        return np.stack([self.volume.target(s) for s in slices]) if len(slices) else np.zeros((0, *self.info.crop_size), np.float32)

    def close(self) -> None:
        self.volume.close()


class RawDataScan(Scan):
    """Raw scanner data (ISMRMRD, TWIX) gridded by their reader into a `RawScan`, in memory."""

    def __init__(self, path: PathLike, raw: Any, fmt: str) -> None:
        self.path = Path(path)
        self.format = fmt
        self.raw = raw
        self.acquisition = raw.acquisition
        self.shape = tuple(int(n) for n in raw.kspace.shape[1:])
        self.num_slices = int(raw.kspace.shape[0])
        protocol = raw.meta.get("protocol_name")
        self.attrs = {**{k: v for k, v in raw.meta.items()}, **({"acquisition": protocol} if protocol else {})}
        self.identity = dict(raw.identity)
        self.warnings = list(getattr(raw, "warnings", []))
        self._target: np.ndarray | None = None

    def kspace(self, slices: Sequence[int]) -> np.ndarray:
        return self.raw.kspace[list(slices)]

    def calibration(self, slices: Sequence[int]) -> np.ndarray | None:
        return None if self.raw.calibration is None else self.raw.calibration[list(slices)]

    def target(self, slices: Sequence[int] | None = None) -> np.ndarray | None:
        """The RSS of the fully sampled coil images (partial-Fourier side completed by POCS),
        cropped to reconSpace, as fastMRI forms `reconstruction_rss`; None when undersampled."""
        if self.has_own_sampling:
            return None
        if self._target is None:
            self._target = rss_target(self.raw, self.path)
        return self._target if slices is None else self._target[list(slices)]


def rss_target(raw: Any, path: PathLike = "<scan>") -> np.ndarray:
    """`(S, rx, ry)` float32 RSS of a gridded scan's coil images, centre-cropped to reconSpace;
    a partial-Fourier side is completed per coil by POCS first.

    Raises InputError when the recon matrix is larger than the image grid, or when the partial
    Fourier leaves too little of k-space for POCS.
    """
    from recon import partial_fourier

    try:
        img = rss(partial_fourier.reconstruct(raw.kspace, raw.acquisition.kspace_extent, partial_fourier.DEFAULT_MODE), 1)
        return np.ascontiguousarray(center_crop(img, raw.acquisition.crop_size)).astype(np.float32)
    except ValueError as err:
        raise InputError(path, f"reconSpace does not fit the encoded grid, or no target can be made ({err})") from None


def image_choices(path: PathLike) -> list[dict[str, int]]:
    """The images a file holds: one `{}` for a fastMRI file; for raw data (ISMRMRD, TWIX) one
    `{"repetition": r, "contrast": c, "set": s}` (only the counters with several values) per
    image (TWIX echoes are contrasts)."""
    import itertools

    from recon.io import ismrmrd, twix

    fmt = sniff(path)
    if fmt == "fastmri":
        return [{}]
    present = ismrmrd.counter_values(path) if fmt == "ismrmrd" else twix.counter_values(path)
    axes = [[(name, v) for v in values] for name, values in present.items() if len(values) > 1]
    return [dict(combo) for combo in itertools.product(*axes)]


def open_scan(
    path: PathLike,
    *,
    repetition: int | None = None,
    contrast: int | None = None,
    set_index: int | None = None,
    max_memory: int | None = None,
) -> Scan:
    """Open `path` as a `Scan`, whatever its format (InputError for anything unusable).

    repetition / contrast / set_index pick one image of a raw file that holds several (None:
    the file's only one; several and none chosen is an InputError naming them). max_memory:
    bytes a raw reader may use to grid the file (default: the available memory).
    """
    fmt = sniff(path)
    if fmt == "fastmri":
        return FastMRIScan(path)
    return RawDataScan(path, read_raw(path, fmt, repetition=repetition, contrast=contrast, set_index=set_index,
                                      max_memory=max_memory), fmt)


def read_raw(path: PathLike, fmt: str | None = None, **options: Any) -> Any:
    """The gridded `RawScan` of a raw-data file (ISMRMRD or TWIX; `fmt` from `sniff` when None).

    `options` go to the reader (`repetition`, `contrast`, `set_index`, `prewhiten`,
    `remove_oversampling`, `max_memory`). InputError for a fastMRI file (no raw data).
    """
    fmt = sniff(path) if fmt is None else fmt
    if fmt == "ismrmrd":
        from recon.io.ismrmrd import read_ismrmrd

        return read_ismrmrd(path, **options)
    if fmt == "twix":
        from recon.io.twix import read_twix

        return read_twix(path, **options)
    raise InputError(path, "a fastMRI file holds gridded k-space, not raw acquisitions (ISMRMRD or Siemens TWIX)")


def read_target(path: PathLike, key: str | None = None, rows: slice | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Target volume `(S, h, w)` float32 and root attrs of a fastMRI file, without its k-space.

    key: `reconstruction_rss` or `reconstruction_esc` (default: whichever exists). rows: read
    only those slices. A complex, text or compound target is refused rather than silently cast
    (NumPy would keep only the real part of a complex one), as is one that is not 3-D.
    """
    keys = [key] if key else list(TARGET_KEYS)
    with open_h5(path) as f:
        for k in keys:
            if k not in f:
                continue
            ds = f[k]
            if not hasattr(ds, "dtype"):
                raise InputError(path, f"'{k}' is an HDF5 group, not an image dataset")
            if ds.dtype.kind not in "fiu":
                raise InputError(path, f"'{k}' holds {ds.dtype} values; a target is a real magnitude image (float32, as fastMRI stores it)")
            if ds.ndim != 3 or 0 in ds.shape:
                raise InputError(path, f"'{k}' has shape {ds.shape}; a target is a volume (slices, h, w) with every size >= 1")
            try:
                data = np.asarray(ds[rows if rows is not None else slice(None)], dtype=np.float32)
            except (OSError, RuntimeError) as err:
                raise InputError(path, f"cannot read '{k}' ({' '.join(str(err).split())})") from err
            return data, plain_attrs(f)
    raise InputError(path, f"no target dataset ({' or '.join(keys)})")
