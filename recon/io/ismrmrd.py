"""ISMRMRD raw data (Cartesian 2-D, multi-slice) -> `(slices, coils, rows, cols)` k-space.

Rows are the readout (ISMRMRD encoded `x`, oversampling included unless removed), columns
the phase encodes (`kspace_encode_step_1`, encoded `y`): the fastMRI layout.

Placement: a line with encode step `e` goes to column `e - center + W // 2`, where `center`
is `encodingLimits/kspace_encoding_step_1/center` (so partial Fourier leaves the unacquired
side zero); its samples go to rows `H // 2 - center_sample + n` (so an asymmetric echo is
zero-filled at the start of the readout). Repeated lines (averages, calibration lines that
coincide with imaging lines) are averaged. Calibration-only lines (ACQ_IS_PARALLEL_CALIBRATION)
are real k-space samples of the same slice and count as acquired.

Readout oversampling: `remove_oversampling=False` (the default) keeps the encoded readout,
as fastMRI files do (640 rows, cropped to reconSpace in image space after reconstruction);
`True` crops the readout in image space to the recon FOV now (Gadgetron-style).

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
from defusedxml import ElementTree

from recon.io.errors import InputError
from recon.io.geometry import SliceGeometry, make_geometry
from recon.io.prewhiten import noise_covariance, prewhitening_matrix
from recon.io.prewhiten import prewhiten as apply_prewhitening
from recon.io.sanity import check_memory

#: Peak bytes of `_grid` per complex64 byte of the gridded k-space: the complex128 grid (2x)
#: plus the prewhitened complex128 copy (2x); the final complex64 copy replaces the first.
GRID_MEMORY_FACTOR = 4
#: Acquisition counters that split a file into separate images; one value is gridded per read.
_COUNTERS = ("repetition", "contrast", "set")

_NS = {"m": "http://www.ismrm.org/ISMRMRD"}


def _bit(flag: int) -> int:
    """ISMRMRD flag numbers are 1-based bit positions in the 64-bit `flags` field."""
    return 1 << (flag - 1)


NOISE = _bit(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
CALIBRATION = _bit(ismrmrd.ACQ_IS_PARALLEL_CALIBRATION) | _bit(
    ismrmrd.ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING
)
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
        kspace: (S, C, H, W) complex64; H readout rows, W phase-encode columns.
        mask: (W,) bool, columns actually acquired (in any slice).
        num_low_frequencies: number of contiguous calibration (ACS) columns around the centre
            (lines flagged PARALLEL_CALIBRATION[_AND_IMAGING]); without such flags, the
            contiguous run of acquired columns around W // 2.
        encoded_size: (x, y, z) encodedSpace matrix (x = readout as stored, after any
            oversampling removal).
        recon_size: (x, y, z) reconSpace matrix (the image crop).
        encoded_fov_mm / recon_fov_mm: (x, y, z) fields of view in mm.
        enc_limits_center / enc_limits_max: kspace_encoding_step_1 centre and maximum.
        geometry: one SliceGeometry per slice, on the recon-space image grid.
        identity: patient identity fields (name, id, birth date, sex) kept apart from the
            rest so that outputs leave them out unless asked.
        meta: other non-identifying header fields (protocol, vendor, field strength, TR, TE).
        prewhitened: whether noise prewhitening was applied.
        noise_cov: (C, C) noise covariance at the imaging bandwidth, or None without a noise scan.
        oversampling_removed: whether the readout was cropped to the recon FOV.
    """

    kspace: np.ndarray
    mask: np.ndarray
    num_low_frequencies: int
    encoded_size: tuple[int, int, int]
    recon_size: tuple[int, int, int]
    encoded_fov_mm: tuple[float, float, float]
    recon_fov_mm: tuple[float, float, float]
    enc_limits_center: int
    enc_limits_max: int
    geometry: list[SliceGeometry]
    identity: dict[str, str] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    prewhitened: bool = False
    noise_cov: np.ndarray | None = None
    oversampling_removed: bool = False


def is_ismrmrd(path: str | os.PathLike[str]) -> bool:
    """True if `path` is an HDF5 file with an ISMRMRD group (`dataset/data` or any `*/xml`)."""
    try:
        with h5py.File(path, "r") as f:
            if "dataset" in f and "data" in f["dataset"]:
                return True
            return any(isinstance(g, h5py.Group) and "xml" in g for g in f.values())
    except (OSError, ValueError):
        return False


def counter_values(path: str | os.PathLike[str], dataset: str = "dataset") -> dict[str, list[int]]:
    """The repetition / contrast / set indices of a file's imaging acquisitions (sorted)."""
    with h5py.File(path, "r") as f:
        heads = f[dataset]["data"]["head"]
        flags = heads["flags"].astype(np.uint64)
        is_image = ((flags & np.uint64(_NOT_IMAGE)) == 0) & (heads["encoding_space_ref"] == 0)
        idx = heads["idx"]
        return {c: np.unique(idx[c][is_image]).astype(int).tolist() for c in _COUNTERS}


@dataclass
class _Header:
    """The parts of the ISMRMRD XML header the reader uses."""

    trajectory: str
    encoded_size: tuple[int, int, int]
    encoded_fov: tuple[float, float, float]
    recon_size: tuple[int, int, int]
    recon_fov: tuple[float, float, float]
    center: int | None
    maximum: int | None
    identity: dict[str, str]
    meta: dict[str, Any]


def _text(root: Any, xpath: str) -> str | None:
    """Stripped text of the first match of `xpath` (ISMRMRD namespace prefix `m:`), or None."""
    node = root.find(xpath, _NS)
    return None if node is None or node.text is None else node.text.strip()


def _triple(root: Any, xpath: str, kind: type) -> tuple:
    """(x, y, z) children of `xpath` converted with `kind`; missing z counts as 1."""
    vals = [_text(root, f"{xpath}/m:{a}") for a in "xyz"]
    return tuple(kind(float(v)) if v is not None else kind(1) for v in vals)


def _parse_header(path: Path, xml: str) -> _Header:
    """Parse the ISMRMRD XML header; InputError on a missing or unparsable encoding."""
    try:
        root = ElementTree.fromstring(xml)
    except Exception as err:  # defusedxml raises several types
        raise InputError(path, f"unreadable ISMRMRD XML header ({err})") from err
    encodings = root.findall("m:encoding", _NS)
    if not encodings:
        raise InputError(path, "ISMRMRD header has no <encoding>")
    enc = encodings[0]
    if enc.find("m:encodedSpace/m:matrixSize", _NS) is None:
        raise InputError(path, "ISMRMRD header has no encodedSpace/matrixSize")
    lim = "m:encodingLimits/m:kspace_encoding_step_1"
    center, maximum = _text(enc, f"{lim}/m:center"), _text(enc, f"{lim}/m:maximum")
    identity = {
        key: value
        for key, value in {
            "patient_name": _text(root, "m:subjectInformation/m:patientName"),
            "patient_id": _text(root, "m:subjectInformation/m:patientID"),
            "patient_birth_date": _text(root, "m:subjectInformation/m:patientBirthdate"),
            "patient_sex": _text(root, "m:subjectInformation/m:patientGender"),
        }.items()
        if value
    }
    meta_raw = {
        "protocol_name": _text(root, "m:measurementInformation/m:protocolName"),
        "system_vendor": _text(root, "m:acquisitionSystemInformation/m:systemVendor"),
        "system_model": _text(root, "m:acquisitionSystemInformation/m:systemModel"),
        "field_strength_T": _text(root, "m:acquisitionSystemInformation/m:systemFieldStrength_T"),
        "TR_ms": _text(root, "m:sequenceParameters/m:TR"),
        "TE_ms": _text(root, "m:sequenceParameters/m:TE"),
    }
    return _Header(
        trajectory=(_text(enc, "m:trajectory") or "cartesian").lower(),
        encoded_size=_triple(enc, "m:encodedSpace/m:matrixSize", int),
        encoded_fov=_triple(enc, "m:encodedSpace/m:fieldOfView_mm", float),
        recon_size=_triple(enc, "m:reconSpace/m:matrixSize", int),
        recon_fov=_triple(enc, "m:reconSpace/m:fieldOfView_mm", float),
        center=None if center is None else int(center),
        maximum=None if maximum is None else int(maximum),
        identity=identity,
        meta={k: v for k, v in meta_raw.items() if v is not None},
    )


def _centered_run(flags: np.ndarray, center: int) -> int:
    """Length of the run of True entries of `flags` (1-D) that contains `center` (0 if none)."""
    if not 0 <= center < flags.size or not flags[center]:
        return 0
    lo, hi = center, center
    while lo > 0 and flags[lo - 1]:
        lo -= 1
    while hi < flags.size - 1 and flags[hi + 1]:
        hi += 1
    return hi - lo + 1


def _crop_readout(kspace: np.ndarray, rows: int) -> np.ndarray:
    """Crop the readout (axis -2) to `rows` in image space: centred iFFT, crop, centred FFT."""
    ax = -2
    img = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(kspace, ax), axis=ax, norm="ortho"), ax)
    start = (img.shape[ax] - rows) // 2
    img = img[..., start : start + rows, :]
    return np.fft.fftshift(np.fft.fft(np.fft.ifftshift(img, ax), axis=ax, norm="ortho"), ax)


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
            as is (`RawScan.prewhitened` says which).
        remove_oversampling: crop the readout to the recon FOV (see module docstring).
        max_memory: bytes the gridding may use (default: the available memory); a header
            claiming more (about 4x the complex64 k-space size) is refused before allocating.

    Raises:
        InputError: not an ISMRMRD file, non-Cartesian trajectory, 3-D encoding, no imaging
            data for the chosen repetition/contrast/set, several of them and none chosen,
            NaN/Inf samples, an empty reconSpace, too much memory, or lines outside the matrix.
    """
    path = Path(path)
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise InputError(path, f"not a readable HDF5 file ({err})") from err
    with f:
        if dataset not in f or "xml" not in f[dataset] or "data" not in f[dataset]:
            raise InputError(path, f"no ISMRMRD group '{dataset}' with 'xml' and 'data'")
        xml = f[dataset]["xml"][0]
        hdr = _parse_header(path, xml.decode() if isinstance(xml, bytes) else str(xml))
        if hdr.trajectory != "cartesian":
            raise InputError(path, f"trajectory '{hdr.trajectory}' is not supported (Cartesian only)")
        if hdr.encoded_size[2] > 1:
            raise InputError(path, f"3-D encoding (encoded z = {hdr.encoded_size[2]}) is not supported")
        heads = f[dataset]["data"]["head"]
        payload = f[dataset]["data"]["data"]
        choice = {"repetition": repetition, "contrast": contrast, "set": set_index}
        return _grid(path, hdr, heads, payload, choice, prewhiten, remove_oversampling, max_memory)


def _grid(
    path: Path,
    hdr: _Header,
    heads: np.ndarray,
    payload: np.ndarray,
    choice: dict[str, int | None],
    prewhiten: bool,
    remove_oversampling: bool,
    max_memory: int | None = None,
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
    center = hdr.center if hdr.center is not None else cols // 2
    if min(rows, cols) < 1 or min(hdr.recon_size[:2]) < 1:
        raise InputError(path, f"header encodedSpace {rows}x{cols} / reconSpace {hdr.recon_size[0]}x{hdr.recon_size[1]} is empty")
    check_memory(path, GRID_MEMORY_FACTOR * 8 * n_slices * n_coils * rows * cols,
                 f"gridding {n_slices} slice(s) x {n_coils} coils x {rows}x{cols} (header encodedSpace)", max_memory)
    longest = int(heads["number_of_samples"][sel].max())
    steps = idx["kspace_encode_step_1"][sel]
    span = int(steps.max()) - int(steps.min()) + 1
    if 2 * longest <= rows or 2 * span <= cols:
        raise InputError(path, f"header encodedSpace {rows}x{cols} disagrees with the data (readouts of {longest} samples, "
                               f"phase encodes spanning {span} columns); the image scale and resolution cannot be trusted")
    ksp = np.zeros((n_slices, n_coils, rows, cols), np.complex128)
    count = np.zeros((n_slices, cols), np.int64)
    is_cal = np.zeros(cols, bool)
    first_of_slice: dict[int, int] = {}
    for a in sel:
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
        ksp[s, :, row0 : row0 + n, col] += data
        count[s, col] += 1
        is_cal[col] |= bool(int(h["flags"]) & CALIBRATION)
        first_of_slice.setdefault(s, int(a))
    ksp /= np.maximum(count, 1)[:, None, None, :]
    mask = count.sum(axis=0) > 0
    acs = is_cal if is_cal.any() else mask
    num_low = _centered_run(acs, cols // 2)

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
        )
    whiten = prewhiten and cov is not None
    if whiten:
        ksp = apply_prewhitening(ksp, prewhitening_matrix(cov), coil_axis=1)

    enc_fov = hdr.encoded_fov
    removed = False
    if remove_oversampling and enc_fov[0] > hdr.recon_fov[0] * 1.001:
        new_rows = int(round(rows * hdr.recon_fov[0] / enc_fov[0]))
        ksp = _crop_readout(ksp, new_rows)
        enc_fov = (hdr.recon_fov[0], enc_fov[1], enc_fov[2])
        rows, removed = new_rows, True

    geometry = []
    for s in range(n_slices):
        h = heads[first_of_slice.get(s, sel[0])]
        geometry.append(
            make_geometry(
                h["position"], h["read_dir"], h["phase_dir"], h["slice_dir"],
                hdr.recon_fov, hdr.recon_size[:2],
            )
        )
    return RawScan(
        kspace=ksp.astype(np.complex64),
        mask=mask,
        num_low_frequencies=num_low,
        encoded_size=(rows, cols, 1),
        recon_size=hdr.recon_size,
        encoded_fov_mm=enc_fov,
        recon_fov_mm=hdr.recon_fov,
        enc_limits_center=center,
        enc_limits_max=hdr.maximum if hdr.maximum is not None else cols - 1,
        geometry=geometry,
        identity=hdr.identity,
        meta=hdr.meta,
        prewhitened=whiten,
        noise_cov=cov,
        oversampling_removed=removed,
    )
