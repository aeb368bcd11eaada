"""fastMRI HDF5 volumes: lazy, validated reading; writing raw volumes and submission files.

A fastMRI file holds `kspace` complex64, `(slices, rows, cols)` single-coil or
`(slices, coils, rows, cols)` multi-coil; an `ismrmrd_header` XML; a target
`reconstruction_rss` (multi-coil) or `reconstruction_esc` (single-coil) `(slices, 320, 320)`
float32 when fully sampled; or a `mask` `(cols,)` and attrs `acceleration`,
`num_low_frequency` when it is a test/challenge file. Root attrs: `max`, `norm`,
`acquisition`, `patient_id`.

Reading is lazy: `FastMRIVolume.kspace(i)` reads exactly slice i (HDF5 hyperslab straight into
a complex64 buffer) and checks it for NaN/Inf. Every problem with a file is raised as
`InputError(path, problem)`. Writers go through `atomic_path`: a failed write leaves no
partial file and leaves an existing file untouched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from recon.acquisition import Acquisition, MaskProvenance, run_around
from recon.io.atomic import atomic_path
from recon.io.errors import InputError
from recon.io.hdf5 import chunk_bytes, open_h5
from recon.io.limits import check_fastmri_header
from recon.io.header import HeaderInfo, parse_header

PathLike = str | os.PathLike[str]
TARGET_KEYS: tuple[str, str] = ("reconstruction_rss", "reconstruction_esc")


@dataclass(frozen=True)
class VolumeInfo:
    """Everything about a fastMRI file except its array values.

    shape: per-slice k-space shape, (C, H, W) multi-coil or (H, W) single-coil.
    crop_size: reconSpace (rows, cols). padding: acquired columns [left, right).
    target_key: `reconstruction_rss`/`reconstruction_esc` if present. mask: bool (W,) of
    test/challenge files. attrs: root attrs as plain Python values. chunk_bytes: size of one
    decompressed `kspace` chunk (0 when contiguous), which every read of a slice in it costs.
    """

    path: Path
    num_slices: int
    num_coils: int
    shape: tuple[int, ...]
    multicoil: bool
    header: HeaderInfo
    crop_size: tuple[int, int]
    padding: tuple[int, int]
    target_key: str | None
    mask: np.ndarray | None = field(compare=False)
    acceleration: float | None
    num_low_frequency: int | None
    attrs: dict[str, Any]
    chunk_bytes: int = 0

    @property
    def num_low_frequencies(self) -> int | None:
        """Alias of `num_low_frequency` (the file attribute's fastMRI spelling)."""
        return self.num_low_frequency

    def readout_extent(self) -> tuple[int, int]:
        """Acquired readout rows `[r0, r1)`: the root attr `readout_extent` (written by
        `recon convert` for an asymmetric echo), else all rows. ValueError when it does not fit."""
        rows = int(self.shape[-2])
        extent = self.attrs.get("readout_extent")
        if extent is None:
            return 0, rows
        start, stop = (int(v) for v in extent)
        if not 0 <= start < stop <= rows:
            raise ValueError(f"{self.path}: attr readout_extent {list(extent)} is not inside the {rows} readout rows")
        return start, stop

    def acquisition(self) -> Acquisition:
        """The file's sampling as an `Acquisition`.

        Fully sampled files: every column inside the padding is sampled and is calibration
        data. Test/challenge files: their own `mask` (zeroed outside the padding); the
        calibration region is the run of sampled columns around `W // 2`, the lines that were
        actually acquired there.
        """
        width = int(self.shape[-1])
        left, right = max(0, self.padding[0]), min(width, self.padding[1])
        inside = np.zeros(width, dtype=bool)
        inside[left:right] = True
        rows = int(self.shape[-2])
        header = self.header
        if self.mask is not None:
            columns = self.mask & inside
            calib = run_around(columns, width // 2)
            acceleration = self.acceleration if self.acceleration is not None else width / max(1, int(columns.sum()))
            provenance = MaskProvenance("file", float(acceleration))
        else:
            columns, calib, provenance = inside, (left, right), MaskProvenance("none", 1.0)
        enc_fov, recon_fov = header.fov_mm, header.recon_fov_mm
        if enc_fov is not None and recon_fov is not None and recon_fov[0] > 0:
            oversampling = enc_fov[0] / recon_fov[0]
        else:
            oversampling = rows / max(1, header.recon_size[0])
        return Acquisition(
            columns=columns,
            calib=calib,
            readout=self.readout_extent(),
            acquirable=(left, right),
            encoded_size=(rows, width, 1),
            recon_size=header.recon_size,
            readout_oversampling=float(oversampling),
            encoded_fov_mm=enc_fov,
            recon_fov_mm=recon_fov,
            provenance=provenance,
        )


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as a plain Python value (str, int, float, bool, list)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()] if value.ndim else _plain(value.item())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def _kspace_dataset(hf: h5py.File, path: Path) -> h5py.Dataset:
    """The `kspace` dataset, checked for presence, rank and a complex dtype."""
    ds = hf.get("kspace")
    if ds is None:
        raise InputError(path, "no 'kspace' dataset (not a fastMRI raw file)")
    if not isinstance(ds, h5py.Dataset):
        raise InputError(path, "'kspace' is a group, not a dataset")
    if ds.ndim not in (3, 4):
        raise InputError(path, f"'kspace' has rank {ds.ndim} {ds.shape}; expected (slices, rows, cols) or (slices, coils, rows, cols)")
    if ds.dtype.kind != "c":
        raise InputError(path, f"'kspace' has dtype {ds.dtype}; expected complex64")
    if min(ds.shape) < 1:
        raise InputError(path, f"'kspace' is empty {ds.shape}")
    return ds


def _header(hf: h5py.File, path: Path) -> HeaderInfo:
    """Parsed `ismrmrd_header` (InputError if missing or unusable)."""
    ds = hf.get("ismrmrd_header")
    if not isinstance(ds, h5py.Dataset):
        raise InputError(path, "no 'ismrmrd_header' dataset")
    raw = ds[()]
    if isinstance(raw, np.ndarray):
        raw = raw.item() if raw.size == 1 else b""
    if not isinstance(raw, (bytes, str)):
        raise InputError(path, f"'ismrmrd_header' is not text ({type(raw).__name__})")
    return parse_header(raw, str(path))


def _target_key(hf: h5py.File, path: Path, multicoil: bool, num_slices: int) -> str | None:
    """The target dataset name (preferring the one matching the coil mode), shape-checked."""
    order = TARGET_KEYS if multicoil else TARGET_KEYS[::-1]
    for key in order:
        ds = hf.get(key)
        if ds is None:
            continue
        if not isinstance(ds, h5py.Dataset) or ds.ndim != 3 or ds.shape[0] != num_slices:
            raise InputError(path, f"'{key}' has shape {getattr(ds, 'shape', None)}; expected ({num_slices}, h, w)")
        if ds.dtype.kind != "f":
            raise InputError(path, f"'{key}' has dtype {ds.dtype}; expected float32")
        return key
    return None


#: A file's stated `acceleration` may differ from its mask's (acquirable / sampled columns) by this factor.
ACCELERATION_TOLERANCE = 1.5


def plain_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """An HDF5 object's attrs as plain Python values (`_plain`)."""
    return {str(k): _plain(v) for k, v in obj.attrs.items()}


def _mask(hf: h5py.File, path: Path, width: int) -> np.ndarray | None:
    """A test/challenge file's column mask as bool (W,), or None.

    Only boolean or 0/1 values are a mask: 0.5 or NaN would otherwise turn into "sampled" and
    make undersampled data look fully sampled."""
    ds = hf.get("mask")
    if ds is None:
        return None
    if not isinstance(ds, h5py.Dataset) or ds.shape != (width,):
        raise InputError(path, f"'mask' has shape {getattr(ds, 'shape', 'of a group')}; expected ({width},), one flag per k-space column")
    if ds.dtype.kind not in "biuf":
        raise InputError(path, f"'mask' has dtype {ds.dtype}; expected bool (or 0/1 numbers)")
    values = np.asarray(ds)
    if values.dtype.kind != "b" and not np.isin(values, (0, 1)).all():
        odd = values[~np.isin(values, (0, 1))]
        raise InputError(path, f"'mask' holds values other than 0 and 1 (e.g. {odd.flat[0]!r}); a sampling mask is boolean")
    return values.astype(bool)


def _number(attrs: dict[str, Any], name: str, path: Path, *, integer: bool, minimum: float) -> float | int | None:
    """Root attr `name` as a finite number >= `minimum` (an integer if asked), None when absent."""
    value = attrs.get(name)
    if value is None:
        return None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(path, f"attribute '{name}' is {value!r}; expected a number")
    if not np.isfinite(value) or value < minimum or (integer and value != int(value)):
        kind = "an integer" if integer else "a finite number"
        raise InputError(path, f"attribute '{name}' is {value!r}; expected {kind} >= {minimum:g}")
    return int(value) if integer else float(value)


def _check_sampling(path: Path, mask: np.ndarray, padding: tuple[int, int], acceleration: float | None, nlow: int | None) -> None:
    """A file's own mask must sample something inside the acquirable columns, agree with its
    stated acceleration within `ACCELERATION_TOLERANCE`, and hold its stated centre lines."""
    width = mask.shape[0]
    left, right = max(0, padding[0]), min(width, padding[1])
    sampled = int(mask[left:right].sum())
    if sampled == 0:
        raise InputError(path, f"'mask' samples none of the acquirable columns [{left}, {right}); nothing to reconstruct")
    measured = (right - left) / sampled
    if acceleration is not None and not 1 / ACCELERATION_TOLERANCE <= measured / acceleration <= ACCELERATION_TOLERANCE:
        raise InputError(path, f"attribute 'acceleration' is {acceleration:g} but the mask samples {sampled} of {right - left} "
                               f"acquirable columns ({measured:.2f}x); the file contradicts itself")
    if nlow is not None and nlow > right - left:
        raise InputError(path, f"attribute 'num_low_frequency' is {nlow}, more than the {right - left} acquirable columns")


def _info_from(hf: h5py.File, path: Path) -> VolumeInfo:
    """Validate an open file's structure and collect its VolumeInfo."""
    ds = _kspace_dataset(hf, path)
    header = _header(hf, path)
    check_fastmri_header(path, header.encoded_size, header.recon_size, ds.shape)
    width = int(ds.shape[-1])
    if not 0 <= header.padding_left < header.padding_right <= width:
        raise InputError(path, f"header encodingLimits (kspace_encoding_step_1 centre {header.step1_center}, maximum "
                               f"{header.step1_maximum}) put the acquired columns at [{header.padding_left}, {header.padding_right}), "
                               f"outside the {width} k-space columns")
    if header.trajectory != "cartesian" or header.encoded_size[2] != 1:
        raise InputError(path, f"header describes a {header.trajectory} trajectory with encoded z = {header.encoded_size[2]}; "
                               "a fastMRI file holds Cartesian 2-D k-space")
    multicoil = ds.ndim == 4
    num_slices = int(ds.shape[0])
    attrs = plain_attrs(hf)
    acc = _number(attrs, "acceleration", path, integer=False, minimum=1)
    nlow = _number(attrs, "num_low_frequency", path, integer=True, minimum=0)
    mask = _mask(hf, path, int(ds.shape[-1]))
    if mask is not None:
        _check_sampling(path, mask, (header.padding_left, header.padding_right), acc, nlow)
    elif acc is not None and acc > 1:
        raise InputError(path, f"attribute 'acceleration' is {acc:g} but the file has no 'mask' saying which columns were "
                               "sampled; it cannot be reconstructed as fully sampled")
    return VolumeInfo(
        path=path,
        num_slices=num_slices,
        num_coils=int(ds.shape[1]) if multicoil else 1,
        shape=tuple(int(s) for s in ds.shape[1:]),
        multicoil=multicoil,
        header=header,
        crop_size=(header.recon_size[0], header.recon_size[1]),
        padding=(header.padding_left, header.padding_right),
        target_key=_target_key(hf, path, multicoil, num_slices),
        mask=mask,
        acceleration=acc,
        num_low_frequency=nlow,
        attrs=attrs,
        chunk_bytes=chunk_bytes(ds),
    )


def read_info(path: PathLike) -> VolumeInfo:
    """Open, validate everything except the array values, close. Raises InputError."""
    p = Path(path)
    with open_h5(p) as hf:
        return _info_from(hf, p)


#: HDF5's default chunk cache per dataset (bytes).
DEFAULT_CHUNK_CACHE = 1 << 20


def _cached(ds: h5py.Dataset) -> h5py.Dataset:
    """`ds` reopened with a chunk cache that holds one whole chunk, so that reading the slices of
    a chunk spanning several slices decompresses it once, not once per slice."""
    nbytes = chunk_bytes(ds)
    if nbytes <= DEFAULT_CHUNK_CACHE:
        return ds
    dapl = h5py.h5p.create(h5py.h5p.DATASET_ACCESS)
    dapl.set_chunk_cache(521, nbytes + 1, 0.75)
    return h5py.Dataset(h5py.h5d.open(ds.file.id, ds.name.encode(), dapl))


class FastMRIVolume:
    """A fastMRI file kept open for lazy per-slice reads.

    Use as a context manager (or call `close()`). Pass a known `info` (e.g. from a metadata
    cache) to skip re-validating and re-parsing the header.
    """

    def __init__(self, path: PathLike, info: VolumeInfo | None = None) -> None:
        self.path = Path(path)
        self._file = open_h5(self.path)
        try:
            self.info = info if info is not None else _info_from(self._file, self.path)
            self._kspace = _cached(_kspace_dataset(self._file, self.path))
            self._target = self._file[self.info.target_key] if self.info.target_key else None
        except BaseException:
            self._file.close()
            raise

    def __enter__(self) -> FastMRIVolume:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HDF5 file (idempotent)."""
        if self._file.id.valid:
            self._file.close()

    def __len__(self) -> int:
        return self.info.num_slices

    def _index(self, i: int) -> int:
        n = self.info.num_slices
        if not -n <= i < n:
            raise IndexError(f"slice {i} out of range for {n} slices in {self.path}")
        return i % n

    def kspace(self, i: int) -> np.ndarray:
        """Slice i as complex64, (C, H, W) multi-coil or (H, W) single-coil; NaN/Inf -> InputError."""
        i = self._index(i)
        out = np.empty(self.info.shape, dtype=np.complex64)
        try:
            self._kspace.read_direct(out, source_sel=np.s_[i])
        except (OSError, RuntimeError) as err:
            raise InputError(self.path, f"cannot read k-space slice {i} ({err})") from err
        if not np.isfinite(out.view(np.float32)).all():
            raise InputError(self.path, f"k-space slice {i} contains NaN or Inf")
        return out

    def kspace_all(self) -> np.ndarray:
        """All slices as (S, C, H, W) complex64 (C = 1 for single-coil), slice by slice."""
        out = np.empty((self.info.num_slices, self.info.num_coils, *self.info.shape[-2:]), dtype=np.complex64)
        for i in range(self.info.num_slices):
            out[i] = self.kspace(i).reshape(out.shape[1:])
        return out

    def target(self, i: int) -> np.ndarray | None:
        """Target image of slice i, (h, w) float32, or None for files without one."""
        if self._target is None:
            return None
        i = self._index(i)
        out = np.empty(self._target.shape[1:], dtype=np.float32)
        try:
            self._target.read_direct(out, source_sel=np.s_[i])
        except (OSError, RuntimeError) as err:
            raise InputError(self.path, f"cannot read target slice {i} ({' '.join(str(err).split())})") from err
        return out

    def target_all(self) -> np.ndarray | None:
        """All targets (S, h, w) float32, or None."""
        if self._target is None:
            return None
        try:
            return np.asarray(self._target, dtype=np.float32)
        except (OSError, RuntimeError) as err:
            raise InputError(self.path, f"cannot read the target ({' '.join(str(err).split())})") from err


def read_volume(path: PathLike) -> tuple[np.ndarray, np.ndarray | None, VolumeInfo]:
    """Whole volume: k-space (S, C, H, W) complex64, target (S, h, w) float32 or None, info."""
    with FastMRIVolume(path) as vol:
        return vol.kspace_all(), vol.target_all(), vol.info


def _set_attrs(obj: h5py.HLObject, attrs: Mapping[str, Any]) -> None:
    """Write attrs, skipping None values (HDF5 has no null)."""
    for key, value in attrs.items():
        if value is not None:
            obj.attrs[key] = value


def write_fastmri_volume(
    path: PathLike,
    kspace: np.ndarray,
    header_xml: str,
    target: np.ndarray | None = None,
    attrs: dict[str, Any] | None = None,
    mask: np.ndarray | None = None,
) -> None:
    """Write a raw volume exactly like a fastMRI knee file (readable by fastmri.data.SliceDataset).

    Args:
        path: output `.h5` file (written atomically).
        kspace: (S, C, H, W) multi-coil or (S, H, W) single-coil, stored as complex64.
        header_xml: ISMRMRD XML text (see `recon.io.header.build_header`).
        target: (S, h, w) float32; stored as `reconstruction_rss` (multi-coil) or
            `reconstruction_esc` (single-coil).
        attrs: root attrs, e.g. max, norm, acquisition, patient_id; for challenge-style files
            also acceleration and num_low_frequency.
        mask: bool (W,) column mask of test/challenge files.
    """
    kspace = np.asarray(kspace)
    if kspace.ndim not in (3, 4) or not np.iscomplexobj(kspace):
        raise ValueError(f"kspace must be complex (S, C, H, W) or (S, H, W), got {kspace.dtype} {kspace.shape}")
    if target is not None and (np.ndim(target) != 3 or np.shape(target)[0] != kspace.shape[0]):
        raise ValueError(f"target must be (S, h, w) with S = {kspace.shape[0]}, got {np.shape(target)}")
    if mask is not None and np.shape(mask) != (kspace.shape[-1],):
        raise ValueError(f"mask must have shape ({kspace.shape[-1]},), got {np.shape(mask)}")
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("ismrmrd_header", data=np.bytes_(header_xml.encode("utf-8")))
            hf.create_dataset("kspace", data=kspace.astype(np.complex64, copy=False))
            if target is not None:
                key = TARGET_KEYS[0] if kspace.ndim == 4 else TARGET_KEYS[1]
                hf.create_dataset(key, data=np.asarray(target, dtype=np.float32))
            if mask is not None:
                hf.create_dataset("mask", data=np.asarray(mask, dtype=bool))
            _set_attrs(hf, attrs or {})


def write_reconstruction(
    path: PathLike,
    recon: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    acceleration: float | None = None,
    center_fraction: float | None = None,
    mask_type: str | None = None,
    method: str | None = None,
    acquisition: str | None = None,
    extra_attrs: dict[str, Any] | None = None,
) -> None:
    """Write a fastMRI submission file atomically, recording how it was made.

    Args:
        path: output `.h5` file.
        recon: (S, h, w) magnitude images, stored as `reconstruction` float32 (challenge: h = w = 320).
        mask: bool (W,) column mask used, stored as dataset `mask`.
        acceleration, center_fraction, mask_type, method, acquisition: root attrs (None = omitted).
        extra_attrs: further root attrs.
    """
    recon = np.asarray(recon)
    if recon.ndim != 3:
        raise ValueError(f"reconstruction must be (slices, h, w), got shape {recon.shape}")
    attrs: dict[str, Any] = {
        "acceleration": None if acceleration is None else float(acceleration),
        "center_fraction": None if center_fraction is None else float(center_fraction),
        "mask_type": mask_type,
        "method": method,
        "acquisition": acquisition,
        **(extra_attrs or {}),
    }
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as hf:
            hf.create_dataset("reconstruction", data=recon.astype(np.float32, copy=False))
            if mask is not None:
                hf.create_dataset("mask", data=np.asarray(mask, dtype=bool).reshape(-1))
            _set_attrs(hf, attrs)


def read_reconstruction(path: PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """A submission file's `reconstruction` (S, h, w) float32 and its root attrs.

    The attrs dict also holds `mask` (bool (W,)) when the file recorded one.
    """
    p = Path(path)
    with open_h5(p) as hf:
        ds = hf.get("reconstruction")
        if not isinstance(ds, h5py.Dataset):
            raise InputError(p, "no 'reconstruction' dataset (not a fastMRI submission file)")
        if ds.ndim != 3 or ds.dtype.kind != "f":
            raise InputError(p, f"'reconstruction' is {ds.dtype} {ds.shape}; expected float32 (slices, h, w)")
        recon = np.asarray(ds, dtype=np.float32)
        attrs = plain_attrs(hf)
        if isinstance(hf.get("mask"), h5py.Dataset):
            attrs["mask"] = np.asarray(hf["mask"]).astype(bool)
    return recon, attrs
