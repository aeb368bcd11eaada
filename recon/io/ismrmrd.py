"""ISMRMRD raw data (Cartesian 2-D, multi-slice) -> `(slices, coils, rows, cols)` k-space.

Rows are the readout (ISMRMRD encoded `x`, oversampling included unless removed), columns
the phase encodes (`kspace_encode_step_1`, encoded `y`): the fastMRI layout.

Placement: a line with encode step `e` goes to column `e - center + W // 2`, where `center`
is `encodingLimits/kspace_encoding_step_1/center` (so partial Fourier leaves the unacquired
side zero); its samples go to rows `H // 2 - center_sample + n` (so an asymmetric echo is
zero-filled at the start of the readout, and the acquisition's `readout` extent says which rows
were measured). Repeated imaging lines (averages) are averaged. Calibration-only lines
(ACQ_IS_PARALLEL_CALIBRATION without _AND_IMAGING) are kept apart from the image data: they go
to `RawScan.calibration` and are used only to calibrate (coil maps), never as measured data.

A separate reference scan (lines with `encoding_space_ref > 0`, e.g. a GRAPPA pre-scan with
another contrast or TE, described by its own `<encoding>`) is gridded onto the imaging grid by
its own `kspace_encoding_step_1` centre and used as the calibration data instead of any
calibration lines of the imaging encoding; its k-space step (encoded FOV) must equal the
imaging one, since regridding onto another step would need interpolation.

The grid follows the header: along each axis the k-space is zero-padded (or cropped) to
`round(recon matrix x encoded FOV / recon FOV)` points, so the image grid has the recon pixel
size `recon FOV / recon matrix` and the methods' centre crop to reconSpace covers the recon
FOV. A 75% phase resolution (encoded y = 48, reconSpace y = 64, same FOV) thus gives 64 columns
at `FOV / 64`; the padded columns lie outside `acquisition.acquirable`. Slices are stored in
the order of their position along the slice normal (ISMRMRD slice indices need not be).

Readout oversampling: `remove_oversampling=False` (the default) keeps the encoded readout,
as fastMRI files do (640 rows); the classical methods calibrate ESPIRiT on it and solve on
the readout FOV (`recon.methods.classical`). `True` crops it here already in hybrid space
(`recon.core.crop_readout`); a partial echo keeps it (its unacquired samples would be mixed
into every row).

Everything about the sampling and the grid is in `RawScan.acquisition` (`recon.acquisition`).

Headers and acquisitions are read in bulk with h5py using the `ismrmrd` package's on-disk
layout and flag constants (one read per dataset, not per acquisition, which matters for
files with tens of thousands of lines).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import ismrmrd
import numpy as np

from recon.acquisition import Acquisition, MaskProvenance, acquired_extent, run_around
from recon.core import crop_readout
from recon.io.errors import InputError
from recon.io.hdf5 import open_h5
from recon.io.geometry import SliceGeometry, make_geometry
from recon.io.header import EncodingSpace, HeaderInfo, parse_encodings, parse_header
from recon.io.prewhiten import noise_covariance, prewhitening_matrix
from recon.io.prewhiten import prewhiten as apply_prewhitening
from recon.io.sanity import check_memory

#: Peak bytes of `_grid` per complex64 byte of the gridded k-space: the complex128 grid (2x)
#: plus the prewhitened complex128 copy (2x); the final complex64 copy replaces the first.
#: Calibration-only lines double it (their own complex128 grid and whitened copy).
GRID_MEMORY_FACTOR = 4
#: Acquisition counters that split a file into separate images; one value is gridded per read.
_COUNTERS = ("repetition", "contrast", "set")
#: Acquisition-header fields the reader relies on.
_HEAD_FIELDS = ("flags", "idx", "encoding_space_ref", "active_channels", "number_of_samples", "center_sample",
                "trajectory_dimensions", "sample_time_us", "position", "read_dir", "phase_dir", "slice_dir")

def _bit(flag: int) -> int:
    """ISMRMRD flag numbers are 1-based bit positions in the 64-bit `flags` field."""
    return 1 << (flag - 1)


NOISE = _bit(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
CALIBRATION = _bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION) | _bit(
    ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
)
CALIBRATION_ONLY = _bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION)  # without _AND_IMAGING: not image data
REVERSE = _bit(ismrmrd.ACQ_IS_REVERSE)
# Acquisitions that are not image lines; distinct bits, so their sum is their OR.
_NOT_IMAGE = NOISE + sum(
    _bit(flag)
    for flag in (
        ismrmrd.ACQ_IS_DUMMYSCAN_DATA,
        ismrmrd.ACQ_IS_NAVIGATION_DATA,
        ismrmrd.ACQ_IS_PHASECORR_DATA,
        ismrmrd.ACQ_IS_HPFEEDBACK_DATA,
        ismrmrd.ACQ_IS_RTFEEDBACK_DATA,
        ismrmrd.ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
        ismrmrd.ACQ_IS_PHASE_STABILIZATION,
        ismrmrd.ACQ_IS_PHASE_STABILIZATION_REFERENCE,
    )
)


@dataclass
class RawScan:
    """One ISMRMRD acquisition, gridded.

    Attributes:
        kspace: (S, C, H, W) complex64 image data; H readout rows, W phase-encode columns;
            zero where not sampled (`acquisition` says where that is).
        acquisition: sampling, calibration region, matrices, FOV, geometry, noise covariance.
        calibration: (S, C, H, W) complex64 k-space of the calibration lines when the file has
            calibration-only lines, else None (the image data then serve for calibration).
        identity: patient identity fields (name, id, birth date, sex) kept apart from the
            rest so that outputs leave them out unless asked.
        meta: other non-identifying header fields (protocol, vendor, field strength, TR, TE).
    """

    kspace: np.ndarray
    acquisition: Acquisition
    calibration: np.ndarray | None = None
    identity: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)


def is_ismrmrd(path: str | os.PathLike[str]) -> bool:
    """True if `path` is an HDF5 file holding an ISMRMRD group `dataset` with `xml` and `data`
    and no fastMRI `kspace` dataset (a fastMRI file with a stray `/dataset/xml` stays fastMRI).

    Files that are not HDF5 or that reach outside themselves give False; the fastMRI reader then
    refuses them with the reason."""
    try:
        with open_h5(path) as f:
            if isinstance(f.get("kspace"), h5py.Dataset):
                return False
            group = f.get("dataset")
            return isinstance(group, h5py.Group) and "data" in group and "xml" in group
    except (InputError, OSError, ValueError, TypeError):
        return False


def _ismrmrd_datasets(f: h5py.File, path: Path, dataset: str) -> tuple[h5py.Dataset, h5py.Dataset]:
    """The `xml` and `data` datasets of ISMRMRD group `dataset`, checked for kind and layout."""
    group = f.get(dataset)
    if not isinstance(group, h5py.Group) or "xml" not in group or "data" not in group:
        raise InputError(path, f"no ISMRMRD group '{dataset}' with 'xml' and 'data'")
    xml, data = group.get("xml"), group.get("data")
    if not isinstance(xml, h5py.Dataset) or xml.ndim != 1 or xml.shape[0] < 1:
        raise InputError(path, f"'{dataset}/xml' is not a text dataset holding the ISMRMRD header")
    if not isinstance(data, h5py.Dataset) or data.ndim != 1 or data.dtype.names is None or not {"head", "data"} <= set(data.dtype.names):
        raise InputError(path, f"'{dataset}/data' is not an ISMRMRD acquisition table (fields head, traj, data)")
    missing = [name for name in _HEAD_FIELDS if name not in (data.dtype["head"].names or ())]
    if missing:
        raise InputError(path, f"'{dataset}/data' acquisition headers lack {', '.join(missing)}; not an ISMRMRD file")
    return xml, data


def counter_values(path: str | os.PathLike[str], dataset: str = "dataset") -> dict[str, list[int]]:
    """The repetition / contrast / set indices of a file's imaging acquisitions (sorted)."""
    p = Path(path)
    with open_h5(p) as f:
        _, data = _ismrmrd_datasets(f, p, dataset)
        heads = data["head"]
        flags = heads["flags"].astype(np.uint64)
        is_image = ((flags & np.uint64(_NOT_IMAGE)) == 0) & (heads["encoding_space_ref"] == 0)
        idx = heads["idx"]
        return {c: np.unique(idx[c][is_image]).astype(int).tolist() for c in _COUNTERS}


def _grid_points(n_enc: int, fov_enc: float, n_rec: int, fov_rec: float) -> int:
    """Points along one axis of the image grid: the recon pixel size (`fov_rec / n_rec`) over the
    encoded FOV, `round(n_rec * fov_enc / fov_rec)`; more points than `n_enc` mean k-space
    zero-padding (phase resolution < 100%), fewer a k-space crop (a coarser recon matrix). Within
    1% of `n_enc` (fields of view rounded in the header) the encoded grid is kept as it is."""
    if not (fov_enc > 0 and fov_rec > 0):
        return n_enc
    points = max(1, int(round(n_rec * fov_enc / fov_rec)))
    return n_enc if abs(points - n_enc) <= 0.01 * n_enc else points


def _fit_axis(k: np.ndarray, axis: int, n: int) -> np.ndarray:
    """Zero-pad or crop k-space along `axis` to `n` points, centre `size // 2` kept at `n // 2`."""
    size = k.shape[axis]
    if n == size:
        return k
    shape = list(k.shape)
    shape[axis] = n
    out = np.zeros(shape, k.dtype)
    shift = n // 2 - size // 2
    src = [slice(None)] * k.ndim
    dst = [slice(None)] * k.ndim
    src[axis] = slice(max(0, -shift), max(0, -shift) + min(n, size))
    dst[axis] = slice(max(0, shift), max(0, shift) + min(n, size))
    out[tuple(dst)] = k[tuple(src)]
    return out


def _shift_region(region: tuple[int, int], shift: int, n: int) -> tuple[int, int]:
    """`[start, stop)` moved by `shift` and clipped to `[0, n)` (empty regions stay empty)."""
    start = min(max(region[0] + shift, 0), n)
    return start, max(start, min(max(region[1] + shift, 0), n))


def _slice_geometry(head: np.void, fov: tuple[float, float, float], matrix: tuple[int, ...]) -> SliceGeometry:
    """Geometry of a slice from one of its acquisition headers, on the recon grid."""
    return make_geometry(head["position"], head["read_dir"], head["phase_dir"], head["slice_dir"], fov, matrix[:2])


def _grid_reference(
    path: Path,
    hdr: HeaderInfo,
    encodings: tuple[EncodingSpace, ...],
    heads: np.ndarray,
    payload: np.ndarray,
    ref_sel: np.ndarray,
    calib: np.ndarray,
    cal_count: np.ndarray,
    has_cal: np.ndarray,
) -> None:
    """Add the reference-scan lines `ref_sel` (`encoding_space_ref > 0`) to `calib` (S, C, H, W)
    on the imaging grid, counting them in `cal_count` and flagging their columns in `has_cal`.

    A line with encode step `e` of encoding `r` goes to column `e - center_r + W // 2`, its
    samples to rows `H // 2 - center_sample + n`: both encodings share the k-space origin, and
    the k-space step must be the same (equal encoded FOVs), or InputError.
    """
    _, n_coils, rows, cols = calib.shape
    enc_fov = hdr.fov_mm
    for a in ref_sel:
        h = heads[a]
        ref = int(h["encoding_space_ref"])
        if ref >= len(encodings):
            raise InputError(path, f"acquisition {a} refers to encoding {ref}, but the header has {len(encodings)} <encoding>")
        space = encodings[ref]
        fov = space.fov_mm
        if enc_fov is not None and fov is not None and not np.allclose(fov[:2], enc_fov[:2], rtol=1e-3):
            raise InputError(path, f"reference scan (encoding {ref}) has encoded FOV {fov[0]:g}x{fov[1]:g} mm, the image "
                                   f"{enc_fov[0]:g}x{enc_fov[1]:g} mm; regridding onto another k-space step is not supported")
        if int(h["active_channels"]) != n_coils:
            raise InputError(path, f"reference scan has {int(h['active_channels'])} coils, the image {n_coils}")
        center = space.step1_center if space.step1_center is not None else space.encoded_size[1] // 2
        n = int(h["number_of_samples"])
        data = np.asarray(payload[a]).view(np.complex64).reshape(n_coils, n)
        if not np.isfinite(data.view(np.float32)).all():
            raise InputError(path, f"reference acquisition {a} contains NaN or Inf")
        if int(h["flags"]) & REVERSE:
            data = data[:, ::-1]
        col = int(h["idx"]["kspace_encode_step_1"]) - center + cols // 2
        row0 = rows // 2 - int(h["center_sample"])
        if not (0 <= col < cols and 0 <= row0 and row0 + n <= rows):
            raise InputError(path, f"reference acquisition {a} falls outside the imaging matrix {rows}x{cols}")
        s = int(h["idx"]["slice"])
        calib[s, :, row0 : row0 + n, col] += data
        cal_count[s, col] += 1
        has_cal[col] = True


def read_ismrmrd(
    path: str | os.PathLike[str],
    *,
    dataset: str = "dataset",
    repetition: int | None = None,
    contrast: int | None = None,
    set_index: int | None = None,
    prewhiten: bool = True,
    remove_oversampling: bool = False,
    max_memory: int | None = None,
) -> RawScan:
    """Read a Cartesian 2-D (multi-slice) ISMRMRD file into a RawScan.

    Args:
        path: the ISMRMRD HDF5 file.
        dataset: name of the ISMRMRD group in the file.
        repetition, contrast, set_index: which repetition / contrast / set to grid. None
            means the file's only one; a file holding several is refused, naming them, so
            none is dropped silently.
        prewhiten: whiten coil noise with the file's noise scan (ACQ_IS_NOISE_MEASUREMENT),
            scaled by the noise vs imaging dwell times; a file without a noise scan is read
            as is (`RawScan.acquisition.prewhitened` says which).
        remove_oversampling: crop the readout to the recon FOV (see module docstring).
        max_memory: bytes the gridding may use (default: the available memory); a header
            claiming more (about 4x the complex64 k-space size) is refused before allocating.

    Raises:
        InputError: not an ISMRMRD file, non-Cartesian trajectory, 3-D encoding, no imaging
            data for the chosen repetition/contrast/set, several of them and none chosen,
            NaN/Inf samples, an empty reconSpace, an encodedSpace the data do not fill, too
            much memory, or lines outside the matrix.
    """
    path = Path(path)
    with open_h5(path) as f:
        xml_ds, data_ds = _ismrmrd_datasets(f, path, dataset)
        xml = xml_ds[0]
        xml = xml if isinstance(xml, (bytes, str)) else str(xml)
        hdr = parse_header(xml, str(path), require_limits=False)
        encodings = parse_encodings(xml, str(path))
        if hdr.trajectory != "cartesian":
            raise InputError(path, f"trajectory '{hdr.trajectory}' is not supported (Cartesian only)")
        if hdr.encoded_size[2] > 1:
            raise InputError(path, f"3-D encoding (encoded z = {hdr.encoded_size[2]}) is not supported")
        heads = data_ds["head"]
        payload = data_ds["data"]
        choice = {"repetition": repetition, "contrast": contrast, "set": set_index}
        return _grid(path, hdr, heads, payload, choice, prewhiten, remove_oversampling, max_memory, encodings)


def _grid(
    path: Path,
    hdr: HeaderInfo,
    heads: np.ndarray,
    payload: np.ndarray,
    choice: dict[str, int | None],
    prewhiten: bool,
    remove_oversampling: bool,
    max_memory: int | None = None,
    encodings: tuple[EncodingSpace, ...] = (),
) -> RawScan:
    """Place the selected acquisitions on the (S, C, H, W) grid; whiten; crop; describe."""
    flags = heads["flags"].astype(np.uint64)
    idx = heads["idx"]
    is_noise = (flags & np.uint64(NOISE)) != 0
    is_image = ((flags & np.uint64(_NOT_IMAGE)) == 0) & (heads["encoding_space_ref"] == 0)
    for counter in _COUNTERS:
        present = np.unique(idx[counter][is_image])
        wanted = choice.get(counter)
        if wanted is None and present.size > 1:
            option = "--set" if counter == "set" else f"--{counter}"
            raise InputError(path, f"holds {present.size} {counter} indices ({', '.join(map(str, present.tolist()))}); "
                                   f"choose one ({option} N on the command line)")
        if wanted is not None:
            is_image &= idx[counter] == wanted
    sel = np.flatnonzero(is_image)
    if sel.size == 0:
        chosen = ", ".join(f"{k} {v}" for k, v in choice.items() if v is not None) or "any index"
        raise InputError(path, f"no imaging acquisitions for {chosen}")
    if np.any(heads["trajectory_dimensions"][sel] > 0):
        raise InputError(path, "acquisitions carry k-space trajectories (non-Cartesian); not supported")
    if np.any(idx["kspace_encode_step_2"][sel] > 0):
        raise InputError(path, "kspace_encode_step_2 > 0: 3-D encoding is not supported")
    for counter in ("phase",):
        if np.unique(idx[counter][sel]).size > 1:
            raise InputError(path, f"several '{counter}' indices (e.g. cine); not supported")
    coils = np.unique(heads["active_channels"][sel])
    if coils.size != 1:
        raise InputError(path, f"acquisitions differ in coil count {coils.tolist()}")
    n_coils = int(coils[0])
    rows, cols = hdr.encoded_size[0], hdr.encoded_size[1]
    n_slices = int(idx["slice"][sel].max()) + 1
    center = hdr.step1_center if hdr.step1_center is not None else cols // 2
    maximum = hdr.step1_maximum if hdr.step1_maximum is not None else cols - 1
    cal_flags = (flags[sel] & np.uint64(CALIBRATION)) != 0
    cal_only = (flags[sel] & np.uint64(CALIBRATION)) == np.uint64(CALIBRATION_ONLY)
    ref_sel = np.flatnonzero(((flags & np.uint64(_NOT_IMAGE)) == 0) & (heads["encoding_space_ref"] > 0))
    ref_sel = ref_sel[idx["slice"][ref_sel] < n_slices] if ref_sel.size else ref_sel
    if min(rows, cols) < 1 or min(hdr.recon_size[:2]) < 1:
        raise InputError(path, f"header encodedSpace {rows}x{cols} / reconSpace {hdr.recon_size[0]}x{hdr.recon_size[1]} is empty")
    factor = GRID_MEMORY_FACTOR * (2 if cal_only.any() or ref_sel.size else 1)
    check_memory(path, factor * 8 * n_slices * n_coils * rows * cols,
                 f"gridding {n_slices} slice(s) x {n_coils} coils x {rows}x{cols} (header encodedSpace)", max_memory)
    longest = int(heads["number_of_samples"][sel].max())
    steps = idx["kspace_encode_step_1"][sel]
    span = int(steps.max()) - int(steps.min()) + 1
    if 2 * longest <= rows or 2 * span <= cols:
        raise InputError(path, f"header encodedSpace {rows}x{cols} disagrees with the data (readouts of {longest} samples, "
                               f"phase encodes spanning {span} columns); the image scale and resolution cannot be trusted")
    ksp = np.zeros((n_slices, n_coils, rows, cols), np.complex128)
    count = np.zeros((n_slices, cols), np.int64)
    use_ref = ref_sel.size > 0
    calib = np.zeros_like(ksp) if cal_only.any() or use_ref else None
    cal_count = np.zeros((n_slices, cols), np.int64)
    has_cal = np.zeros(cols, bool)
    readout = [rows, 0]
    first_of_slice: dict[int, int] = {}
    for a, is_cal, only_cal in zip(sel, cal_flags, cal_only):
        h = heads[a]
        n = int(h["number_of_samples"])
        data = np.asarray(payload[a]).view(np.complex64).reshape(n_coils, n)
        if not np.isfinite(data.view(np.float32)).all():
            raise InputError(path, f"acquisition {a} (slice {int(h['idx']['slice'])}, line {int(h['idx']['kspace_encode_step_1'])}) contains NaN or Inf")
        if int(h["flags"]) & REVERSE:
            data = data[:, ::-1]
        col = int(h["idx"]["kspace_encode_step_1"]) - center + cols // 2
        row0 = rows // 2 - int(h["center_sample"])
        if not (0 <= col < cols and 0 <= row0 and row0 + n <= rows):
            raise InputError(path, f"acquisition {a} falls outside the encoded matrix {rows}x{cols}")
        s = int(h["idx"]["slice"])
        has_cal[col] |= bool(is_cal) and not use_ref
        if calib is not None and is_cal and not use_ref:
            calib[s, :, row0 : row0 + n, col] += data
            cal_count[s, col] += 1
        if only_cal:
            continue
        ksp[s, :, row0 : row0 + n, col] += data
        count[s, col] += 1
        readout = [min(readout[0], row0), max(readout[1], row0 + n)]
        first_of_slice.setdefault(s, int(a))
    if not count.any():
        raise InputError(path, "only calibration lines, no imaging lines")
    if use_ref:
        _grid_reference(path, hdr, encodings, heads, payload, ref_sel, calib, cal_count, has_cal)
    ksp /= np.maximum(count, 1)[:, None, None, :]
    if calib is not None:
        calib /= np.maximum(cal_count, 1)[:, None, None, :]
    sampled = count > 0
    union = sampled.any(axis=0)
    calib_region = run_around(has_cal if has_cal.any() else union, cols // 2)

    cov = None
    noise_idx = np.flatnonzero(is_noise)
    if noise_idx.size:
        noise = np.concatenate(
            [
                np.asarray(payload[a]).view(np.complex64).reshape(n_coils, -1)
                for a in noise_idx
                if int(heads["active_channels"][a]) == n_coils
            ],
            axis=1,
        )
        cov = noise_covariance(
            noise,
            noise_dwell_us=float(heads["sample_time_us"][noise_idx[0]]),
            data_dwell_us=float(heads["sample_time_us"][sel[0]]),
            noise_bandwidth=hdr.noise_bandwidth,
        )
    whiten = prewhiten and cov is not None
    if whiten:
        matrix = prewhitening_matrix(cov)
        ksp = apply_prewhitening(ksp, matrix, coil_axis=1)
        if calib is not None:
            calib = apply_prewhitening(calib, matrix, coil_axis=1)

    recon_fov = hdr.recon_fov_mm or hdr.fov_mm or (float(rows), float(cols), 1.0)
    enc_fov = hdr.fov_mm or recon_fov
    n_rec_x, n_rec_y = int(hdr.recon_size[0]), int(hdr.recon_size[1])
    grid_x = _grid_points(rows, enc_fov[0], n_rec_x, recon_fov[0])
    grid_y = _grid_points(cols, enc_fov[1], n_rec_y, recon_fov[1])
    if grid_x < n_rec_x or grid_y < n_rec_y:
        raise InputError(path, f"reconSpace {n_rec_x}x{n_rec_y} over {recon_fov[0]:g}x{recon_fov[1]:g} mm is larger than "
                               f"the encoded FOV {enc_fov[0]:g}x{enc_fov[1]:g} mm; not supported")
    dx, dy = grid_x // 2 - rows // 2, grid_y // 2 - cols // 2
    ksp = _fit_axis(_fit_axis(ksp, -2, grid_x), -1, grid_y)
    if calib is not None:
        calib = _fit_axis(_fit_axis(calib, -2, grid_x), -1, grid_y)
    sampled = _fit_axis(sampled, -1, grid_y)
    has_cal = _fit_axis(has_cal, -1, grid_y)
    union = sampled.any(axis=0)
    calib_region = _shift_region(calib_region, dy, grid_y)
    readout = list(_shift_region((readout[0], readout[1]), dx, grid_x))
    left = max(0, cols // 2 - center)
    acquirable = _shift_region((left, min(cols, left + maximum + 1)), dy, grid_y)
    acceleration = float(cols) / max(1, int(count.astype(bool).any(axis=0).sum()))
    spacing = (enc_fov[0] / grid_x, enc_fov[1] / grid_y)
    rows, cols = grid_x, grid_y
    enc_fov = (spacing[0] * rows, spacing[1] * cols, enc_fov[2])
    oversampling = enc_fov[0] / (spacing[0] * n_rec_x)
    if remove_oversampling and rows > n_rec_x and tuple(readout) == (0, rows):
        ksp = crop_readout(ksp, n_rec_x)
        if calib is not None:
            calib = crop_readout(calib, n_rec_x)
        rows, oversampling, readout = n_rec_x, 1.0, [0, n_rec_x]
        enc_fov = (spacing[0] * rows, enc_fov[1], enc_fov[2])

    fov = (spacing[0] * n_rec_x, spacing[1] * n_rec_y, recon_fov[2])
    geometry = [_slice_geometry(heads[first_of_slice.get(s, sel[0])], fov, hdr.recon_size) for s in range(n_slices)]
    normal = np.asarray(geometry[0].slice_dir)
    order = np.argsort([float(np.dot(g.position, normal)) for g in geometry], kind="stable")
    if (order != np.arange(n_slices)).any():
        ksp, sampled = ksp[order], sampled[order]
        calib = None if calib is None else calib[order]
        geometry = [geometry[i] for i in order]
    per_slice = bool((sampled != union).any())
    acquisition = Acquisition(
        columns=sampled if per_slice else union,
        calib=calib_region,
        readout=(int(readout[0]), int(readout[1])),
        acquirable=acquired_extent(union, acquirable),
        encoded_size=(rows, cols, 1),
        recon_size=hdr.recon_size,
        calibration_only=(has_cal & ~union) if calib is not None else None,
        readout_oversampling=float(oversampling),
        encoded_fov_mm=enc_fov,
        recon_fov_mm=recon_fov,
        geometry=tuple(geometry),
        noise_cov=cov,
        prewhitened=whiten,
        provenance=MaskProvenance("acquired", acceleration),
    )
    return RawScan(
        kspace=ksp.astype(np.complex64),
        acquisition=acquisition,
        calibration=None if calib is None else calib.astype(np.complex64),
        identity=dict(hdr.identity),
        meta=dict(hdr.meta),
    )
