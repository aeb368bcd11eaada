"""Clinical output formats for reconstructed magnitude images: NIfTI, DICOM, PNG (+ h5 dispatch).

All writers take `images` as (S, h, w) float32 magnitude, rows along the readout (`read_dir`),
columns along the phase encodes (`phase_dir`), and one SliceGeometry per slice (patient LPS,
see recon.geometry). Geometry of a different matrix than the images is recentred on the
images' grid at the same pixel size. Without geometry a nominal one is used: identity
directions, 0.5 x 0.5 mm pixels, 3 mm slices along +z — documented as such, not a scanner
position; fastMRI inputs pass `nominal_geometry` with their header's recon FOV / recon matrix.
NIfTI needs one evenly spaced stack (`geometry.stack_problem`); DICOM writes each slice's own
position. PNG previews are turned into radiological display orientation when a geometry is
given (`geometry.display_transform`), and left in the array layout without one.

Patient identity (`meta["identity"]`: patient_name, patient_id, patient_birth_date,
patient_sex) is written only with `keep_identity=True`. Every output is written atomically.
"""

from __future__ import annotations

import contextlib
import datetime
import gzip
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from recon.core import image_problem
from recon.io.atomic import atomic_path
from recon.geometry import SliceGeometry, geometry_problem, nifti_affine, nominal_geometry, to_display

FORMATS = ("h5", "nii", "dcm", "png")
_SUFFIXES = (".nii.gz", ".nii", ".h5", ".dcm", ".png", "_dicom")
#: Input suffixes an h5 output keeps (any other input, e.g. a TWIX `.dat`, gives `<stem>.h5`).
_HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")


def _stem(path: str | os.PathLike[str]) -> Path:
    """`path` without a known output suffix (so 'x.nii.gz', 'x.h5' and 'x' all give 'x')."""
    p = Path(path)
    for suffix in _SUFFIXES:
        if p.name.endswith(suffix):
            return p.with_name(p.name[: -len(suffix)])
    return p


def _check_images(images: np.ndarray) -> np.ndarray:
    """Images as a (S, h, w) float32 array that passes `recon.core.image_problem`; ValueError otherwise."""
    arr = np.asarray(images, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    problem = image_problem(arr)
    if problem is not None:
        raise ValueError(f"refusing to write {problem}")
    return arr


def _fit_geometry(
    geometry: Sequence[SliceGeometry] | None, images: np.ndarray
) -> list[SliceGeometry]:
    """One geometry per slice on the images' (h, w) grid; nominal geometry when None.

    ValueError for a geometry that cannot place an image (`geometry.geometry_problem`: a NaN
    position or direction, directions that are not orthonormal, a field of view that is not
    > 0): it would be written as a NaN or singular affine, or a PixelSpacing of 0.
    """
    n, h, w = images.shape
    if geometry is None:
        return nominal_geometry(n, (h, w))
    if len(geometry) != n:
        raise ValueError(f"{len(geometry)} slice geometries for {n} slices")
    for s, g in enumerate(geometry):
        problem = geometry_problem(g.position, g.read_dir, g.phase_dir, g.slice_dir, g.fov_mm)
        if problem is not None:
            raise ValueError(f"slice {s}: {problem}; refusing to write an image that cannot be placed")
    return [g if g.matrix == (h, w) else g.resized((h, w)) for g in geometry]


def _identity(meta: dict[str, Any], keep_identity: bool) -> dict[str, str]:
    """The patient identity fields to write: those in `meta['identity']` if kept, else none."""
    return {k: str(v) for k, v in (meta.get("identity") or {}).items()} if keep_identity else {}


def name_suffix(choice: dict[str, int | None]) -> str:
    """`{"repetition": 1, "contrast": None}` -> `_rep1`: the output-name suffix of one image of a
    raw file holding several (ISMRMRD repetition / contrast / set)."""
    names = {"repetition": "rep", "contrast": "contrast", "set": "set"}
    return "".join(f"_{names[k]}{v}" for k, v in choice.items() if v is not None)


def output_path(out_dir: str | os.PathLike[str], src: str | os.PathLike[str], fmt: str,
                choice: dict[str, int | None] | None = None, quantity: str | None = None) -> Path:
    """Where the image of `src` goes: `out/<name>.h5` (an HDF5 input keeps its suffix, e.g. `.hdf5`;
    `meas.dat` gives `meas.h5`), `<stem>.nii.gz`, `<stem>_dicom/`, `<stem>.png`.

    `choice` adds its suffix after the stem (`_rep1`); `quantity` (e.g. `gfactor`) names a map
    written beside the image, always as h5 (`<stem>_rep1_gfactor.h5`). The one place output
    names are made, so the duplicate-output check sees exactly what is written.
    """
    source = Path(src)
    stem = source.stem + name_suffix(choice or {})
    out = Path(out_dir)
    if quantity is not None:
        return out / f"{stem}_{quantity}.h5"
    if fmt == "h5":
        suffix = source.suffix if source.suffix.lower() in _HDF5_SUFFIXES else ".h5"
        return out / f"{stem}{suffix}"
    if fmt == "nii":
        return out / f"{stem}.nii.gz"
    if fmt == "dcm":
        return out / f"{stem}_dicom"
    if fmt == "png":
        return out / f"{stem}.png"
    raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")


def image_attrs(acq: Any, choice: dict[str, int | None] | None = None) -> dict[str, Any]:
    """The sampling and grid attributes every image output carries: `Acquisition.attrs` (how it
    was sampled, calibration region, matrices), the image's FOV and pixel spacing (mm, the
    header's recon FOV / recon matrix) and the raw-file counters of this image."""
    attrs: dict[str, Any] = dict(acq.attrs())
    if acq.recon_fov_mm is not None:
        from recon.geometry import header_voxel

        attrs["recon_fov_mm"] = [float(v) for v in acq.recon_fov_mm]
        attrs["pixel_spacing_mm"] = [float(v) for v in header_voxel(acq.recon_fov_mm, acq.crop_size)[:2]]
    attrs.update({k: int(v) for k, v in (choice or {}).items() if v is not None})
    return attrs


def write_image(
    path: str | os.PathLike[str],
    images: np.ndarray,
    fmt: str,
    acq: Any,
    attrs: dict[str, Any],
    *,
    choice: dict[str, int | None] | None = None,
    identity: dict[str, Any] | None = None,
    keep_identity: bool = False,
    series: str = "recon",
) -> list[Path]:
    """Write one reconstructed image `(S, h, w)` of a scan as `fmt` at `path` (from
    `output_path`), with its `Acquisition` `acq`, the raw-file `choice` it is and `attrs` (method,
    acquisition name, ...).

    h5: the fastMRI submission layout (`reconstruction`, the `mask` used, `image_attrs` and
    `attrs` as root attrs; identity only with `keep_identity`). nii / dcm / png: geometry from
    the scan's slice positions, or (fastMRI, no positions) a nominal one with the header's pixel
    spacing; `series` names the DICOM series and the NIfTI description.
    """
    images = _check_images(images)
    if fmt == "h5":
        from recon.io.fastmri import write_reconstruction

        extra = {**image_attrs(acq, choice), **{k: v for k, v in attrs.items() if k not in ("method", "acquisition")},
                 **({k: v for k, v in (identity or {}).items() if v is not None} if keep_identity else {})}
        write_reconstruction(path, images, mask=acq.column_mask, method=attrs.get("method"), acquisition=attrs.get("acquisition"),
                             extra_attrs=extra)
        return [Path(path)]
    from recon.geometry import header_voxel

    meta = {**image_attrs(acq, choice), **attrs, "identity": identity or {}, "montage": True, "series_description": series}
    if acq.geometry is not None:
        geometry: list[SliceGeometry] | None = list(acq.geometry)
    elif acq.recon_fov_mm is not None and fmt != "png":  # fastMRI: spacing from the header, no positions
        geometry = nominal_geometry(images.shape[0], acq.crop_size, header_voxel(acq.recon_fov_mm, acq.crop_size))
    else:
        geometry = None
    return write_output(path, images, fmt, geometry=geometry, meta=meta, keep_identity=keep_identity)


def write_output(
    path: str | os.PathLike[str],
    images: np.ndarray,
    fmt: str,
    geometry: Sequence[SliceGeometry] | None = None,
    meta: dict[str, Any] | None = None,
    keep_identity: bool = False,
) -> list[Path]:
    """Write `images` (S, h, w) float32 as `fmt` next to `path` (suffix optional); list the files.

    Formats: "h5" (fastMRI submission, via recon.io.fastmri.write_reconstruction), "nii"
    (`<stem>.nii.gz`), "dcm" (folder `<stem>_dicom/` of one MR image per slice), "png"
    (`<stem>_s000.png`, ... windowed previews; `meta["montage"]=True` for one `<stem>.png`;
    in display orientation when `geometry` is given).
    """
    meta = dict(meta or {})
    stem = _stem(path)
    if fmt == "h5":
        from recon.io.fastmri import write_reconstruction

        out = stem.with_name(stem.name + ".h5")
        write_reconstruction(
            out, _check_images(images), method=meta.get("method"), acquisition=meta.get("acquisition")
        )
        return [out]
    if fmt == "nii":
        return [write_nifti(stem.with_name(stem.name + ".nii.gz"), images, geometry, meta, keep_identity)]
    if fmt == "dcm":
        return write_dicom(stem.with_name(stem.name + "_dicom"), images, geometry, meta, keep_identity)
    if fmt == "png":
        return write_png(stem, images, montage=bool(meta.get("montage", False)),
                         identity=_identity(meta, keep_identity), geometry=geometry)
    raise ValueError(f"unknown output format {fmt!r}; choose from {', '.join(FORMATS)}")


def write_nifti(
    path: str | os.PathLike[str],
    images: np.ndarray,
    geometry: Sequence[SliceGeometry] | None = None,
    meta: dict[str, Any] | None = None,
    keep_identity: bool = False,
) -> Path:
    """Write a gzipped NIfTI-1 volume indexed (row, col, slice), RAS+ affine in mm (q/sform 1).

    Voxel (h//2, w//2, k) is slice k's acquisition position. The description holds the
    method / series description; identity goes into a JSON comment extension only if kept.
    """
    import nibabel as nib

    meta = meta or {}
    arr = _check_images(images)
    geo = _fit_geometry(geometry, arr)
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(arr, (1, 2, 0))), nifti_affine(geo))
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    img.header.set_xyzt_units(xyz="mm")
    img.header["descrip"] = str(meta.get("series_description", meta.get("method", "recon")))[:79].encode()
    ident = _identity(meta, keep_identity)
    if ident:
        img.header.extensions.append(nib.nifti1.Nifti1Extension(6, json.dumps(ident, allow_nan=False).encode()))
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(img.to_bytes(), mtime=0))
    return Path(path)


@contextlib.contextmanager
def _atomic_folder(folder: Path):
    """Yield a temporary folder beside `folder`; on success it replaces `folder` atomically."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    tmp.chmod(0o755)  # mkdtemp makes it owner-only; a results folder is for sharing
    try:
        yield tmp
        if folder.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old.", dir=folder.parent))
            os.replace(folder, old / folder.name)
            os.replace(tmp, folder)
            shutil.rmtree(old)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _to_uint16(x: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Quantise a float slice to uint16 with `value = stored * slope + intercept`."""
    lo = min(0.0, float(x.min()))
    span = float(x.max()) - lo
    slope = span / 65535.0 if span > 0 else 1.0
    stored = np.clip(np.rint((x - lo) / slope), 0, 65535).astype(np.uint16)
    return stored, slope, lo


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters)."""
    text = f"{value:.10g}"
    return text if len(text) <= 16 else f"{value:.6e}"


def write_dicom(
    folder: str | os.PathLike[str],
    images: np.ndarray,
    geometry: Sequence[SliceGeometry] | None = None,
    meta: dict[str, Any] | None = None,
    keep_identity: bool = False,
) -> list[Path]:
    """Write one MR Image Storage file per slice into `folder` (replaced atomically).

    Geometry: ImagePositionPatient is pixel (0, 0)'s centre in LPS; ImageOrientationPatient
    is (row direction = phase_dir, column direction = read_dir); PixelSpacing is
    (row spacing = readout pixel, column spacing = phase pixel); SliceThickness from the FOV.
    Pixels are 16-bit unsigned with per-slice RescaleSlope / RescaleIntercept.
    """
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = meta or {}
    arr = _check_images(images)
    geo = _fit_geometry(geometry, arr)
    ident = _identity(meta, keep_identity)
    now = datetime.datetime.now()
    study_uid, series_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    folder = Path(folder)
    names = [f"IM{s + 1:04d}.dcm" for s in range(arr.shape[0])]
    with _atomic_folder(folder) as tmp:
        for s, g in enumerate(geo):
            fm = FileMetaDataset()
            fm.MediaStorageSOPClassUID = MRImageStorage
            fm.MediaStorageSOPInstanceUID = generate_uid()
            fm.TransferSyntaxUID = ExplicitVRLittleEndian
            ds = pydicom.Dataset()
            ds.file_meta = fm
            ds.SOPClassUID = MRImageStorage
            ds.SOPInstanceUID = fm.MediaStorageSOPInstanceUID
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
            ds.InstanceCreationDate = now.strftime("%Y%m%d")
            ds.InstanceCreationTime = now.strftime("%H%M%S")
            ds.PatientName = ident.get("patient_name", "")
            ds.PatientID = ident.get("patient_id", "")
            ds.PatientBirthDate = ident.get("patient_birth_date", "").replace("-", "")
            sex = ident.get("patient_sex", "")[:1].upper()
            ds.PatientSex = sex if sex in ("M", "F", "O") else ""
            ds.StudyInstanceUID = study_uid
            ds.StudyDate = now.strftime("%Y%m%d")
            ds.StudyTime = now.strftime("%H%M%S")
            ds.ReferringPhysicianName = ""
            ds.StudyID = ""
            ds.AccessionNumber = ""
            ds.Modality = "MR"
            ds.SeriesInstanceUID = series_uid
            ds.Laterality = ""
            ds.PatientPosition = ""
            ds.SeriesNumber = int(meta.get("series_number", 1))
            ds.SeriesDescription = str(meta.get("series_description", meta.get("method", "recon")))[:64]
            ds.Manufacturer = str(meta.get("manufacturer", "recon"))[:64]
            ds.FrameOfReferenceUID = frame_uid
            ds.PositionReferenceIndicator = ""
            ds.InstanceNumber = s + 1
            ds.PatientOrientation = ""
            ds.ContentDate = now.strftime("%Y%m%d")
            ds.ContentTime = now.strftime("%H%M%S")
            dr, dp, thick = g.voxel_mm
            ds.ImagePositionPatient = [_ds(v) for v in g.corner_lps()]
            ds.ImageOrientationPatient = [_ds(v) for v in (*g.phase_dir, *g.read_dir)]
            ds.PixelSpacing = [_ds(dr), _ds(dp)]
            ds.SliceThickness = _ds(thick)
            ds.SliceLocation = _ds(float(np.dot(g.position, g.slice_dir)))
            ds.ScanningSequence = "RM"
            ds.SequenceVariant = "NONE"
            ds.ScanOptions = ""
            ds.MRAcquisitionType = "2D"
            ds.RepetitionTime = _ds(float(meta["TR_ms"])) if meta.get("TR_ms") else None
            ds.EchoTime = _ds(float(meta["TE_ms"])) if meta.get("TE_ms") else None
            ds.EchoTrainLength = None
            ds.MagneticFieldStrength = (
                _ds(float(meta["field_strength_T"])) if meta.get("field_strength_T") else None
            )
            stored, slope, intercept = _to_uint16(arr[s])
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = stored.shape
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 0
            ds.RescaleIntercept = _ds(intercept)
            ds.RescaleSlope = _ds(slope)
            ds.RescaleType = "US"
            center = float(arr.max() + intercept) / 2
            ds.WindowCenter = _ds(center)
            ds.WindowWidth = _ds(max(float(arr.max()) - intercept, 1e-6))
            ds.PixelData = stored.tobytes()
            ds.save_as(tmp / names[s], enforce_file_format=True)
    return [folder / n for n in names]


def _window(images: np.ndarray) -> np.ndarray:
    """uint8 previews: 0 (or the minimum, if negative) to the volume's 99.5th percentile."""
    lo = min(0.0, float(images.min()))
    hi = float(np.percentile(images, 99.5))
    hi = hi if hi > lo else lo + 1.0
    return np.clip(np.rint((images - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def write_png(
    stem: str | os.PathLike[str],
    images: np.ndarray,
    montage: bool = False,
    identity: dict[str, str] | None = None,
    geometry: Sequence[SliceGeometry] | None = None,
) -> list[Path]:
    """Windowed 8-bit PNG previews: `<stem>_s000.png` per slice, or one `<stem>.png` montage.

    With `geometry` (one per slice, from the scanner's direction cosines) each slice is shown in
    radiological display orientation (`recon.geometry.to_display`; the montage uses slice
    0's); without it the array layout (rows = readout) is kept. The montage tiles slices
    row-major on a near-square grid. `identity` (only when the caller keeps it) goes into PNG
    text chunks.
    """
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    stem = _stem(stem)
    arr = _check_images(images)
    previews = _window(arr)
    if geometry is not None:
        geo = _fit_geometry(geometry, arr)
        shown = [to_display(p, geo[0] if montage else g) for p, g in zip(previews, geo)]
        previews = np.stack(shown) if montage else shown
    info = PngInfo()
    for key, value in (identity or {}).items():
        info.add_text(key, value)
    if montage:
        n, h, w = np.shape(previews)
        ncol = math.ceil(math.sqrt(n))
        nrow = math.ceil(n / ncol)
        tiles = np.zeros((nrow * h, ncol * w), np.uint8)
        for s in range(n):
            r, c = divmod(s, ncol)
            tiles[r * h : (r + 1) * h, c * w : (c + 1) * w] = previews[s]
        frames, paths = [tiles], [stem.with_name(stem.name + ".png")]
    else:
        frames = list(previews)
        paths = [stem.with_name(f"{stem.name}_s{s:03d}.png") for s in range(len(frames))]
    for frame, out in zip(frames, paths):
        with atomic_path(out) as tmp:
            Image.fromarray(frame).save(tmp, format="PNG", pnginfo=info)
    return paths
