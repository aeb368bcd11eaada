"""Gridding of Cartesian 2-D raw acquisitions onto `(slices, coils, rows, cols)` k-space: one
implementation for every raw format (ISMRMRD, and Siemens TWIX, whose readouts are described
in ISMRMRD's acquisition-header layout first).

Rows are the readout (encoded `x`, oversampling included unless removed), columns the phase
encodes (`kspace_encode_step_1`, encoded `y`): the fastMRI layout.

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
the order of their position along the slice normal (acquisition slice indices need not be).

Readout oversampling: `remove_oversampling=False` (the default) keeps the encoded readout,
as fastMRI files do (640 rows); the classical methods calibrate ESPIRiT on it and solve on
the readout FOV (`recon.methods.classical`). `True` crops it here already in hybrid space
(`recon.core.crop_readout`); a partial echo keeps it (its unacquired samples would be mixed
into every row).

Noise acquisitions give the coil noise covariance (`recon.io.prewhiten`), scaled by the dwell
times of the noise and imaging acquisitions and the header's relative receiver noise bandwidth,
and whiten the data. Everything about the sampling and the grid is in `RawScan.acquisition`
(`recon.acquisition`).

What would make a mis-placed or mis-scaled image is refused with an `InputError` naming the
file and the field, never patched over: a position or direction cosines that are not finite or
not orthonormal, a missing slice, samples that do not fill `active_channels x
number_of_samples`, and a noise scan that cannot whiten the data (another coil count, NaN, no
dwell time, all zero). Direction cosines left unset (all zero, as simulators write them) are
read as the identity axes, and `RawScan.warnings` says so once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import ismrmrd
import numpy as np

from recon.acquisition import Acquisition, MaskProvenance, acquired_extent, run_around
from recon.core import crop_readout
from recon.io.errors import InputError
from recon.geometry import SliceGeometry, header_directions, make_geometry
from recon.io.header import USHORT_MAX, EncodingSpace, HeaderInfo
from recon.io.prewhiten import noise_covariance, prewhitening_matrix
from recon.io.prewhiten import prewhiten as apply_prewhitening
from recon.io.limits import MIN_RECON_MATRIX, check_memory

#: The acquisition-header layout the gridding reads (ISMRMRD's, as stored in its HDF5 files).
HEAD_DTYPE = ismrmrd.hdf5.acquisition_header_dtype

#: Peak bytes of `grid_acquisitions` per complex64 byte of the gridded k-space: the complex128 grid (2x)
#: plus the prewhitened complex128 copy (2x); the final complex64 copy replaces the first.
#: Calibration-only lines double it (their own complex128 grid and whitened copy).
GRID_MEMORY_FACTOR = 4
#: Acquisition counters that split a file into separate images; one value is gridded per read.
COUNTERS = ("repetition", "contrast", "set")
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
NOT_IMAGE = NOISE + sum(
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
    """One raw acquisition (ISMRMRD or TWIX), gridded.

    Attributes:
        kspace: (S, C, H, W) complex64 image data; H readout rows, W phase-encode columns;
            zero where not sampled (`acquisition` says where that is).
        acquisition: sampling, calibration region, matrices, FOV, geometry, noise covariance.
        calibration: (S, C, H, W) complex64 k-space of the calibration lines when the file has
            calibration-only lines, else None (the image data then serve for calibration).
        identity: patient identity fields (name, id, birth date, sex) kept apart from the
            rest so that outputs leave them out unless asked.
        meta: other non-identifying header fields (protocol, vendor, field strength, TR, TE).
        warnings: what the reader assumed for missing header values (e.g. identity axes for
            unset direction cosines), one line each, for the caller to show once per file.
    """

    kspace: np.ndarray
    acquisition: Acquisition
    calibration: np.ndarray | None = None
    identity: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def grid_memory(n_slices: int, n_coils: int, rows: int, cols: int, calibration: bool) -> int:
    """Peak bytes `grid_acquisitions` needs for `n_slices x n_coils x rows x cols` k-space (the
    larger of the encoded and the image grid per axis), calibration-only data included."""
    return GRID_MEMORY_FACTOR * (2 if calibration else 1) * 8 * int(n_slices) * int(n_coils) * int(rows) * int(cols)


def image_acquisitions(heads: np.ndarray) -> np.ndarray:
    """bool per acquisition: an imaging line of the imaging encoding (not noise, navigator,
    phase correction, feedback or reference-scan data)."""
    flags = heads["flags"].astype(np.uint64)
    return ((flags & np.uint64(NOT_IMAGE)) == 0) & (heads["encoding_space_ref"] == 0)


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


def _samples(path: Path, heads: np.ndarray, payload: Sequence[np.ndarray], a: int, what: str) -> np.ndarray:
    """Acquisition `a`'s samples as `(active_channels, number_of_samples)` complex64.

    InputError naming `what` (e.g. "acquisition 5 (slice 0, line 5)") when the stored values do
    not fill exactly that shape, or when any of them is NaN or Inf.
    """
    coils, n = int(heads["active_channels"][a]), int(heads["number_of_samples"][a])
    values = np.asarray(payload[a], dtype=np.float32).reshape(-1)
    if values.size != 2 * coils * n:
        raise InputError(path, f"{what} holds {values.size / 2:g} complex samples, but its header says active_channels {coils} "
                               f"x number_of_samples {n} = {coils * n}")
    if not np.isfinite(values).all():
        raise InputError(path, f"{what} contains NaN or Inf")
    return values.view(np.complex64).reshape(coils, n)


def _slice_geometry(
    path: Path, a: int, head: np.void, fov: tuple[float, float, float], matrix: tuple[int, ...], notes: list[str]
) -> SliceGeometry:
    """Geometry of a slice from its acquisition header `a`, on the recon grid; InputError naming
    the acquisition and the field when the position or directions cannot place an image. What is
    assumed for unset directions is added to `notes` (once)."""
    where = f"acquisition {a} (slice {int(head['idx']['slice'])})"
    try:
        read, phase, normal, assumed = header_directions(head["read_dir"], head["phase_dir"], head["slice_dir"])
        geometry = make_geometry(head["position"], read, phase, normal, fov, matrix[:2])
    except ValueError as err:
        raise InputError(path, f"{where}: {err}; the image cannot be placed in the patient") from None
    if assumed is not None and assumed not in notes:
        notes.append(assumed)
    return geometry


def _grid_reference(
    path: Path,
    hdr: HeaderInfo,
    encodings: tuple[EncodingSpace, ...],
    heads: np.ndarray,
    payload: Sequence[np.ndarray],
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
        data = _samples(path, heads, payload, int(a), f"reference acquisition {a}")
        if not data.any():
            raise InputError(path, f"reference acquisition {a} is all zero; coil sensitivities cannot be calibrated from it")
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


def _check_slices(path: Path, slices: np.ndarray, cal_only: np.ndarray, n_slices: int) -> None:
    """InputError unless each of the `n_slices` slices (`max(slice index) + 1`) holds imaging
    lines: a missing slice would be an empty image placed at another slice's position, and a
    stray index such as 65535 would allocate that many slices. Runs after the memory check (a
    header claiming more than the memory is refused as such) and before anything is allocated."""
    imaging = np.unique(slices[~cal_only])
    if imaging.size == 0:
        raise InputError(path, "only calibration lines, no imaging lines")
    if imaging.size != n_slices:
        gaps = np.flatnonzero(imaging != np.arange(imaging.size))
        first = int(gaps[0]) if gaps.size else int(imaging.size)
        raise InputError(path, f"slice indices run to {n_slices - 1}, but slice {first} has no imaging lines "
                               f"({imaging.size} of {n_slices} slices have); its image would be empty")


def _noise_covariance(
    path: Path,
    hdr: HeaderInfo,
    heads: np.ndarray,
    payload: Sequence[np.ndarray],
    noise_idx: np.ndarray,
    imaging: np.ndarray,
    n_coils: int,
) -> np.ndarray:
    """The coil noise covariance from the noise acquisitions `noise_idx`, scaled to the dwell time
    of the imaging acquisitions `imaging` (`recon.io.prewhiten.noise_covariance`).

    InputError, naming the noise scan, for another coil count than the image, NaN/Inf samples,
    fewer than 2 samples, or dwell times that are not > 0 or differ within either scan: the
    covariance, and so the scale of the whitened data, would be wrong.
    """
    for a in noise_idx:
        coils = int(heads["active_channels"][a])
        if coils != n_coils:
            raise InputError(path, f"noise scan (acquisition {a}) has {coils} coils, the imaging data {n_coils}; it cannot whiten them")
    noise = np.concatenate([_samples(path, heads, payload, int(a), f"noise scan (acquisition {a})") for a in noise_idx], axis=1)
    if noise.shape[1] < 2:
        raise InputError(path, f"noise scan holds {noise.shape[1]} sample(s) per coil; a noise covariance needs at least 2")
    dwell: list[float] = []
    for what, rows in (("noise scan", noise_idx), ("imaging data", imaging)):
        values = heads["sample_time_us"][rows].astype(np.float64)
        bad = values[~(np.isfinite(values) & (values > 0))]
        if bad.size:
            raise InputError(path, f"{what} has dwell time (sample_time_us) {bad[0]:g}; without it the noise covariance "
                                   "cannot be scaled to the imaging bandwidth")
        if np.unique(values).size > 1:
            raise InputError(path, f"{what} has several dwell times ({', '.join(f'{v:g}' for v in np.unique(values)[:4])} us); "
                                   "the noise covariance cannot be scaled to one imaging bandwidth")
        dwell.append(float(values[0]))
    return noise_covariance(noise, noise_dwell_us=dwell[0], data_dwell_us=dwell[1], noise_bandwidth=hdr.noise_bandwidth)


def grid_acquisitions(
    path: Path,
    hdr: HeaderInfo,
    heads: np.ndarray,
    payload: Sequence[np.ndarray],
    choice: dict[str, int | None],
    prewhiten: bool,
    remove_oversampling: bool,
    max_memory: int | None = None,
    encodings: tuple[EncodingSpace, ...] = (),
) -> RawScan:
    """Place the selected acquisitions on the (S, C, H, W) grid; whiten; crop; describe.

    `heads` are acquisition headers in `HEAD_DTYPE` layout; `payload[a]` gives acquisition
    `a`'s samples as interleaved float32 (real, imaginary) per coil, coil after coil; `choice`
    picks one repetition / contrast / set (None: the only one). InputError for anything that
    would give a mis-placed, mis-scaled or incomplete image (module docstring).
    """
    flags = heads["flags"].astype(np.uint64)
    idx = heads["idx"]
    is_noise = (flags & np.uint64(NOISE)) != 0
    is_image = image_acquisitions(heads)
    for counter in COUNTERS:
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
    if n_coils < 1:
        raise InputError(path, "imaging acquisitions have active_channels 0: no coil data")
    empty = sel[heads["number_of_samples"][sel] == 0]
    if empty.size:
        raise InputError(path, f"acquisition {empty[0]} has number_of_samples 0: an imaging line without samples")
    rows, cols = hdr.encoded_size[0], hdr.encoded_size[1]
    n_slices = int(idx["slice"][sel].max()) + 1
    center = hdr.step1_center if hdr.step1_center is not None else cols // 2
    maximum = hdr.step1_maximum if hdr.step1_maximum is not None else cols - 1
    cal_flags = (flags[sel] & np.uint64(CALIBRATION)) != 0
    cal_only = (flags[sel] & np.uint64(CALIBRATION)) == np.uint64(CALIBRATION_ONLY)
    ref_sel = np.flatnonzero(((flags & np.uint64(NOT_IMAGE)) == 0) & (heads["encoding_space_ref"] > 0))
    ref_sel = ref_sel[idx["slice"][ref_sel] < n_slices] if ref_sel.size else ref_sel
    if min(rows, cols) < 1 or min(hdr.recon_size[:2]) < 1:
        raise InputError(path, f"header encodedSpace {rows}x{cols} / reconSpace {hdr.recon_size[0]}x{hdr.recon_size[1]} is empty")
    if min(hdr.recon_size[:2]) < MIN_RECON_MATRIX:
        raise InputError(path, f"header reconSpace {hdr.recon_size[0]}x{hdr.recon_size[1]} is too small to be an image "
                               f"(at least {MIN_RECON_MATRIX}x{MIN_RECON_MATRIX}: a pixel on either side of the FOV centre)")
    recon_fov = hdr.recon_fov_mm or hdr.fov_mm or (float(rows), float(cols), 1.0)
    enc_fov = hdr.fov_mm or recon_fov
    n_rec_x, n_rec_y = int(hdr.recon_size[0]), int(hdr.recon_size[1])
    grid_x = _grid_points(rows, enc_fov[0], n_rec_x, recon_fov[0])
    grid_y = _grid_points(cols, enc_fov[1], n_rec_y, recon_fov[1])
    if max(grid_x, grid_y) > USHORT_MAX:
        raise InputError(path, f"header fields of view ({enc_fov[0]:g}x{enc_fov[1]:g} mm encoded, {recon_fov[0]:g}x{recon_fov[1]:g} mm "
                               f"recon, recon matrix {n_rec_x}x{n_rec_y}) give a {grid_x}x{grid_y} image grid; the header is corrupt")
    big_x, big_y = max(rows, grid_x), max(cols, grid_y)
    check_memory(path, grid_memory(n_slices, n_coils, big_x, big_y, bool(cal_only.any() or ref_sel.size)),
                 f"gridding {n_slices} slice(s) x {n_coils} coils x {big_x}x{big_y} (header encodedSpace {rows}x{cols}"
                 + (f", zero-filled to the recon pixel size: {grid_x}x{grid_y})" if (grid_x, grid_y) != (rows, cols) else ")"), max_memory)
    _check_slices(path, idx["slice"][sel], cal_only, n_slices)
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
        what = f"acquisition {a} (slice {int(h['idx']['slice'])}, line {int(h['idx']['kspace_encode_step_1'])})"
        data = _samples(path, heads, payload, int(a), what)
        if only_cal and not data.any():
            raise InputError(path, f"calibration {what} is all zero; coil sensitivities cannot be calibrated from it")
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

    noise_idx = np.flatnonzero(is_noise)
    cov = _noise_covariance(path, hdr, heads, payload, noise_idx, sel[~cal_only], n_coils) if noise_idx.size else None
    whiten = prewhiten and cov is not None
    if whiten:
        try:
            matrix = prewhitening_matrix(cov)
        except ValueError as err:
            raise InputError(path, f"the noise scan cannot whiten the coils: {err}") from None
        ksp = apply_prewhitening(ksp, matrix, coil_axis=1)
        if calib is not None:
            calib = apply_prewhitening(calib, matrix, coil_axis=1)

    notes: list[str] = []
    if hdr.recon_fov_mm is None:
        assumed = "the encodedSpace one" if hdr.fov_mm is not None else "1 mm pixels and 1 mm slices"
        notes.append(f"the header has no reconSpace fieldOfView_mm; assuming {assumed}: the written pixel spacing is nominal")
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
    geometry = [_slice_geometry(path, first_of_slice[s], heads[first_of_slice[s]], fov, hdr.recon_size, notes)
                for s in range(n_slices)]
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
        warnings=notes,
    )
