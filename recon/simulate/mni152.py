"""Real-anatomy source: fastMRI-format multi-coil volumes synthesized from the MNI ICBM152 template.

Anatomy comes from the MNI ICBM152 2009a template shipped in `recon/simulate/data/mni152`
(grey- and white-matter probability maps and the skull-stripped T1 template, 1 mm, 197 x 233 x
189; notice in NOTICE.txt there). Nothing is downloaded. Per slice:

1. Tissue fractions: GM and WM from the maps, CSF = brain mask (T1 template > 0, edge softened
   by a 0.7-voxel Gaussian) minus GM and WM.
2. Contrast from tissue relaxation times at 3 T (`TISSUES`) with the spin-echo signal
   PD * (1 - exp(-TR/T1)) * exp(-TE/T2), for T1-, T2- or PD-weighted TR/TE (`SEQUENCES`).
3. Geometry and augmentation: axial, coronal or sagittal plane; in-plane flips, rotation up to
   +-10 degrees, independent scaling of both axes (aspect ratio), random field-of-view position
   (crops), a gamma intensity curve and a weak multiplicative tissue texture.
4. Anti-inverse-crime synthesis: the object (template resampled by cubic splines) and its smooth
   phase are evaluated on a grid twice as fine as the k-space grid in both directions and
   multiplied by the coil maps (`recon.simulate.coil_maps`, computed on the k-space grid and
   upsampled bilinearly: they are smooth), Fourier transformed there, and only the central
   (rows, W) coefficients are kept: an ideal band limit, so the data are not made by the
   discrete operator a reconstruction inverts.
5. Complex Gaussian noise at a stated SNR (mean object RSS / per-coil noise std), zero padding
   columns declared in the header, `reconstruction_rss` from the noisy k-space.

Splits are slabs of the template along the inferior-superior axis with gaps (`SPLIT_SLABS`); every
image of a split is computed from that split's template voxels only (see datasets/mni152.md).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from scipy import ndimage

from recon.core import center_crop, fft2c, ifft2c, rss
from recon.io.fastmri import write_fastmri_volume
from recon.io.header import build_header
from recon.simulate.coil_maps import background_phase, coil_layout, draw_phase_coeffs, knee_coil_maps
from recon.simulate.dataset import SEED_RANGES, seed_split
from recon.simulate.phantom import texture_fields
from recon.simulate.volume import fake_patient_id, padding_limits

DATA_DIR = Path(__file__).resolve().parent / "data" / "mni152"
TEMPLATE_FILES: dict[str, tuple[str, str]] = {
    "t1": ("mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz", "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6"),
    "gm": ("mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz", "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed"),
    "wm": ("mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz", "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db"),
}
TEMPLATE_SHAPE = (197, 233, 189)

#: Template slabs of each split: half-open voxel ranges [lo, hi) of the inferior-superior axis
#: (axis 2; z_mm = index - 72). Gaps of 8 mm separate splits. Frozen before any training or tuning.
SPLIT_SLABS: dict[str, tuple[tuple[int, int], ...]] = {
    "train": ((0, 92),),
    "tune": ((100, 114),),
    "accept": ((122, 160),),
}
#: Axial slices stay below this z index (the vertex is at 154; higher sections are tiny).
AXIAL_TOP = 148
#: Which seed range (`recon.simulate.SEED_RANGES`) draws from which template split.
SEED_SPLIT_TO_TEMPLATE = {"train": "train", "tune": "tune", "accept": "accept"}

#: Orientation probabilities per split. Tuning and acceptance slabs (14 and 38 mm) are too thin
#: for coronal or sagittal views that are not mostly empty, so they are axial only.
ORIENTATIONS: dict[str, dict[str, float]] = {
    "train": {"AX": 0.5, "COR": 0.25, "SAG": 0.25},
    "tune": {"AX": 1.0},
    "accept": {"AX": 1.0},
}


class Tissue(NamedTuple):
    """Relaxation times (ms) at 3 T and relative proton density (water content, CSF = 1)."""

    t1: float
    t2: float
    pd: float


#: 3 T values. GM, WM: Stanisz et al., MRM 54:507 (2005). CSF: T1/T2 of subarachnoid CSF at 3 T
#: (MRM 2023, PMC10696635). PD: water content, Neeb et al., NeuroImage 31:1156 (2006).
TISSUES: dict[str, Tissue] = {
    "gm": Tissue(t1=1820.0, t2=99.0, pd=0.80),
    "wm": Tissue(t1=1084.0, t2=69.0, pd=0.70),
    "csf": Tissue(t1=4309.0, t2=1886.0, pd=1.00),
}

#: Spin-echo (TR, TE) ranges in ms per weighting; one pair is drawn per volume.
SEQUENCES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "T1": ((400.0, 700.0), (8.0, 15.0)),
    "T2": ((3000.0, 6000.0), (80.0, 120.0)),
    "PD": ((2500.0, 4000.0), (10.0, 25.0)),
}

#: Stated SNR levels (mean object RSS over the per-coil complex noise std); one per volume.
SNR_LEVELS: tuple[float, ...] = (8.0, 16.0, 32.0)


def tissue_signal(weighting: str, tr: float, te: float) -> dict[str, float]:
    """Spin-echo signal PD (1 - e^{-TR/T1}) e^{-TE/T2} of each tissue, scaled to a maximum of 1."""
    if weighting not in SEQUENCES:
        raise ValueError(f"unknown weighting {weighting!r}; expected one of {tuple(SEQUENCES)}")
    raw = {n: t.pd * (1.0 - math.exp(-tr / t.t1)) * math.exp(-te / t.t2) for n, t in TISSUES.items()}
    top = max(raw.values())
    return {n: v / top for n, v in raw.items()}


class Template(NamedTuple):
    """Template volumes (x, y, z) float32 in [0, 1]: tissue probabilities and the brain mask."""

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray
    t1: np.ndarray


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@lru_cache(maxsize=1)
def load_template(data_dir: str | None = None) -> Template:
    """Load and verify (SHA-256) the shipped template; CSF = mask - GM - WM clipped to [0, 1].

    Raises:
        FileNotFoundError / ValueError: a file is missing or its checksum differs.
    """
    import nibabel as nib

    root = Path(data_dir) if data_dir else DATA_DIR
    arrays: dict[str, np.ndarray] = {}
    for key, (name, digest) in TEMPLATE_FILES.items():
        path = root / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: MNI152 template file missing (it ships with recon)")
        if _sha256(path) != digest:
            raise ValueError(f"{path}: SHA-256 differs from the shipped MNI152 template file")
        data = np.asarray(nib.load(str(path)).dataobj)
        if data.shape != TEMPLATE_SHAPE:
            raise ValueError(f"{path}: shape {data.shape}, expected {TEMPLATE_SHAPE}")
        arrays[key] = data.astype(np.float32) / np.float32(255.0)
    # The skull-stripped template ends in a hard 1-voxel step; a 0.7-voxel Gaussian gives the
    # brain surface the partial-volume edge a scan has.
    mask = np.clip(ndimage.gaussian_filter((arrays["t1"] > 0).astype(np.float32), 0.7), 0.0, 1.0)
    gm = arrays["gm"] * mask
    wm = arrays["wm"] * mask
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    return Template(gm=gm, wm=wm, csf=csf, mask=mask, t1=arrays["t1"])


def template_split(seed: int) -> str:
    """Template split ("train", "tune", "accept") that volumes of `seed` are drawn from."""
    split = seed_split(seed)
    if split not in SEED_SPLIT_TO_TEMPLATE:
        ranges = ", ".join(f"{n} {r.start}-{r.stop - 1}" for n, r in SEED_RANGES.items() if n in SEED_SPLIT_TO_TEMPLATE)
        raise ValueError(f"seed {seed} is in no MNI152 split; use one of: {ranges}")
    return SEED_SPLIT_TO_TEMPLATE[split]


@dataclass(frozen=True)
class MNIConfig:
    """Size and physics settings of the MNI152 source (sizes as the knee presets).

    Attributes:
        rows: readout samples (2x oversampled; reconSpace rows = rows // 2).
        widths: phase-encode widths W drawn per volume.
        coils, slices: receive channels and slices per volume.
        fov_mm: (low, high) of the square reconSpace field of view in mm.
        slice_spacing_mm: distance between slice centres.
        snr_levels: stated SNR values, one drawn per volume.
        acquired_fraction: (low, high) fraction of the W columns acquired (rest zero padding).
        scale: multiplies all signal (magnitude of real fastMRI k-space).
        upsample: fine-grid factor of the k-space synthesis (>= 2 avoids the inverse crime).
        weightings: contrasts drawn with equal probability.
    """

    rows: int = 640
    widths: tuple[int, ...] = (356, 368, 372)
    coils: int = 15
    slices: int = 8
    fov_mm: tuple[float, float] = (120.0, 170.0)
    slice_spacing_mm: float = 3.0
    snr_levels: tuple[float, ...] = SNR_LEVELS
    acquired_fraction: tuple[float, float] = (0.86, 0.92)
    scale: float = 2e-4
    upsample: int = 2
    weightings: tuple[str, ...] = ("T1", "T2", "PD")
    orientations: dict[str, dict[str, float]] = field(default_factory=lambda: dict(ORIENTATIONS))

    def __post_init__(self) -> None:
        if self.rows % 4 or self.rows < 32:
            raise ValueError(f"rows must be a multiple of 4 and >= 32, got {self.rows}")
        if any(w % 2 or w < self.rows // 2 for w in self.widths):
            raise ValueError(f"widths must be even and >= rows // 2, got {self.widths}")
        if self.upsample < 2:
            raise ValueError(f"upsample must be >= 2 (finer synthesis grid), got {self.upsample}")
        if not all(s > 0 for s in self.snr_levels):
            raise ValueError(f"snr_levels must be positive, got {self.snr_levels}")

    @property
    def recon_size(self) -> tuple[int, int]:
        return (self.rows // 2, self.rows // 2)


MNI_PRESETS: dict[str, MNIConfig] = {
    "knee": MNIConfig(),
    "small": MNIConfig(rows=320, widths=(178, 184, 186), coils=8, slices=4),
}


@dataclass(frozen=True)
class Geometry:
    """Per-volume draws: plane, field of view and augmentation (template voxels / mm / radians)."""

    orientation: str
    slab: tuple[int, int]
    center: tuple[float, float, float]
    pixel_mm: float
    angle: float
    scale: tuple[float, float]
    flip: tuple[bool, bool]
    gamma: float


#: Per orientation: the template axis normal to the plane, the axis along the readout (image
#: rows, drawn top to bottom in decreasing coordinate) and the axis along the phase encode.
PLANES: dict[str, tuple[int, int, int]] = {"AX": (2, 1, 0), "COR": (1, 2, 0), "SAG": (0, 2, 1)}
BRAIN_CENTER = (98.0, 117.0, 80.0)
TAPER_MM = 5.0


def _draw_geometry(rng: np.random.Generator, cfg: MNIConfig, split: str, n_slices: int) -> Geometry:
    probs = cfg.orientations[split]
    names = list(probs)
    orientation = names[int(rng.choice(len(names), p=np.array([probs[n] for n in names]) / sum(probs.values())))]
    slabs = SPLIT_SLABS[split]
    thick = np.array([hi - lo for lo, hi in slabs], dtype=np.float64)
    slab = slabs[int(rng.choice(len(slabs), p=thick / thick.sum()))]
    normal, _, _ = PLANES[orientation]
    center = [c + rng.uniform(-12.0, 12.0) for c in BRAIN_CENTER]
    span = (n_slices - 1) * cfg.slice_spacing_mm
    if orientation == "AX":
        lo, hi = slab[0] + 2 + span / 2, min(slab[1] - 3, AXIAL_TOP) - span / 2
        if hi < lo:
            raise ValueError(f"{n_slices} slices {cfg.slice_spacing_mm} mm apart do not fit the slab {slab}")
        center[2] = float(rng.uniform(lo, hi))
    else:
        center[2] = float((slab[0] + slab[1]) / 2 + rng.uniform(-5.0, 5.0))
        extent = {0: (45.0, 150.0), 1: (60.0, 185.0)}[normal]
        center[normal] = float(rng.uniform(extent[0] + span / 2, extent[1] - span / 2))
    return Geometry(
        orientation=orientation,
        slab=slab,
        center=(center[0], center[1], center[2]),
        pixel_mm=float(rng.uniform(*cfg.fov_mm)) / cfg.recon_size[0],
        angle=float(np.deg2rad(rng.uniform(-10.0, 10.0))),
        scale=(float(rng.uniform(0.9, 1.1)), float(rng.uniform(0.9, 1.1))),
        flip=(bool(rng.random() < 0.25), bool(rng.random() < 0.5)),
        gamma=float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))),
    )


def _raised_cosine(x: np.ndarray, lo: float, hi: float, width: float) -> np.ndarray:
    """1 inside [lo + width, hi - width], 0 outside [lo, hi], raised-cosine ramps between."""
    up = np.clip((x - lo) / width, 0.0, 1.0)
    down = np.clip((hi - x) / width, 0.0, 1.0)
    return (0.5 - 0.5 * np.cos(np.pi * up)) * (0.5 - 0.5 * np.cos(np.pi * down))


def spline_plane_sample(coeffs: np.ndarray, normal: int, coords: np.ndarray) -> np.ndarray:
    """Cubic B-spline interpolation (scipy `map_coordinates`, order 3, mirror) of a 3-D volume at
    points that all share one coordinate along the `normal` axis; 4x cheaper than in 3-D.

    `coeffs` are the 3-D spline coefficients (`ndimage.spline_filter`); the normal direction is
    contracted first with the four cubic B-spline weights, leaving the 2-D coefficients of the plane.
    `coords` (3, ...) as for `map_coordinates`; `coords[normal]` must be constant.
    """
    pos = float(coords[normal].flat[0])
    n = coeffs.shape[normal]
    i0 = math.floor(pos)
    f = pos - i0
    weights = ((1 - f) ** 3 / 6, (3 * f**3 - 6 * f**2 + 4) / 6, (-3 * f**3 + 3 * f**2 + 3 * f + 1) / 6, f**3 / 6)
    plane = np.zeros([d for a, d in enumerate(coeffs.shape) if a != normal], dtype=np.float64)
    period = max(2 * (n - 1), 1)
    for j, wj in zip(range(i0 - 1, i0 + 3), weights):
        k = j % period
        k = period - k if k >= n else k  # scipy's "mirror": reflect about the edge samples
        plane += wj * np.take(coeffs, k, axis=normal)
    rest = [a for a in range(3) if a != normal]
    return ndimage.map_coordinates(plane, coords[rest], order=3, mode="mirror", prefilter=False)


def upsample_maps(maps: np.ndarray, up: int) -> np.ndarray:
    """Bilinear upsampling (C, rows, W) -> (C, up*rows, up*W) of smooth coil maps (complex64)."""
    t = torch.from_numpy(np.ascontiguousarray(maps))
    stacked = torch.cat([t.real, t.imag])[None]
    big = torch.nn.functional.interpolate(stacked, scale_factor=up, mode="bilinear", align_corners=False)[0]
    c = maps.shape[0]
    return torch.complex(big[:c], big[c:]).numpy()


def _plane_coordinates(geom: Geometry, offset_mm: float, shape: tuple[int, int], pixel_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Template voxel coordinates (3, rows, cols) of the fine grid, and the in-plane z (mm) grid."""
    rows, cols = shape
    r = (np.arange(rows, dtype=np.float64) - rows // 2) * pixel_mm
    c = (np.arange(cols, dtype=np.float64) - cols // 2) * pixel_mm
    dr, dc = np.meshgrid(r, c, indexing="ij")
    if geom.flip[0]:
        dr = -dr
    if geom.flip[1]:
        dc = -dc
    ca, sa = math.cos(geom.angle), math.sin(geom.angle)
    pr = (ca * dr - sa * dc) / geom.scale[0]
    pc = (sa * dr + ca * dc) / geom.scale[1]
    normal, axis_r, axis_c = PLANES[geom.orientation]
    coords = np.empty((3, rows, cols), dtype=np.float64)
    coords[normal] = geom.center[normal] + offset_mm
    coords[axis_r] = geom.center[axis_r] - pr
    coords[axis_c] = geom.center[axis_c] - pc
    return coords, coords[2]


def band_limited_kspace(fine: torch.Tensor, shape: tuple[int, int], up: int) -> np.ndarray:
    """k-space (..., rows, W) of an image given on a grid `up` times finer over the same FOV.

    The centred orthonormal FFT of the fine image, cropped to its central `shape` coefficients
    and divided by `up` (the orthonormal scale of `up**2` times more samples): the ideal band
    limit, so a band-limited fine image gives exactly the k-space of its coarse samples.
    """
    rows, cols = shape
    k = fft2c(fine)
    r0, c0 = (k.shape[-2] - rows) // 2, (k.shape[-1] - cols) // 2
    return (k[..., r0 : r0 + rows, c0 : c0 + cols] / float(up)).numpy()


class MNIVolume(NamedTuple):
    """A synthesized volume. kspace (S, C, rows, W) complex64; target (S, h, w) float32;
    header_xml; attrs; padding (left, right); sigma: the complex per-coil noise std added."""

    kspace: np.ndarray
    target: np.ndarray
    header_xml: str
    attrs: dict[str, Any]
    padding: tuple[int, int]
    sigma: float


def simulate_mni152_volume(
    seed: int,
    index: int,
    config: MNIConfig | None = None,
    num_slices: int | None = None,
    num_coils: int | None = None,
    template: Template | None = None,
) -> MNIVolume:
    """Synthesize volume `index` of the dataset with `seed` (deterministic for (seed, index, config)).

    The seed's range picks the template split (`template_split`); only that split's slab of
    `template` (default: the shipped one) is read.
    """
    cfg = config or MNI_PRESETS["small"]
    S = int(num_slices if num_slices is not None else cfg.slices)
    C = int(num_coils if num_coils is not None else cfg.coils)
    if S < 1 or C < 1:
        raise ValueError(f"need slices >= 1 and coils >= 1, got {S}, {C}")
    split = template_split(seed)
    tpl = template if template is not None else load_template()
    rng = np.random.default_rng((seed, index))
    H = cfg.rows
    W = int(rng.choice(cfg.widths))
    h, w = cfg.recon_size
    acquired = 2 * int(round(W * rng.uniform(*cfg.acquired_fraction) / 2))
    center, maximum, pad_l, pad_r = padding_limits(W, acquired)
    weighting = str(cfg.weightings[int(rng.integers(len(cfg.weightings)))])
    (tr_lo, tr_hi), (te_lo, te_hi) = SEQUENCES[weighting]
    tr, te = float(rng.uniform(tr_lo, tr_hi)), float(rng.uniform(te_lo, te_hi))
    signal = tissue_signal(weighting, tr, te)
    snr = float(cfg.snr_levels[int(rng.integers(len(cfg.snr_levels)))])
    geom = _draw_geometry(rng, cfg, split, S)
    layout = coil_layout(C, rng)
    phase_coeffs = draw_phase_coeffs(rng)

    # Only the split's slab of the template is read; splines are fitted inside it alone.
    lo, hi = geom.slab
    coeffs = {
        name: ndimage.spline_filter(np.ascontiguousarray(getattr(tpl, name)[:, :, lo:hi]), order=3, mode="mirror")
        for name in ("gm", "wm", "csf")
    }
    up = cfg.upsample
    Hf, Wf = H * up, W * up
    px = geom.pixel_mm
    pf = px / up
    cols_mm = (np.arange(Wf) - Wf // 2) * pf
    # Phase-encode field of view: the object is faded out in the margin outside the reconSpace
    # so nothing folds over (as a no-phase-wrap acquisition); the readout FOV (2x) holds the brain.
    pe_window = _raised_cosine(cols_mm, -W * px / 2, W * px / 2, (W - w) * px / 2)[None, :]
    scales_px = [(0.7 / pf, 0.7 / pf), (3.0 / pf, 3.0 / pf)]
    smooth_tex = texture_fields(rng, (Hf, Wf), scales_px[1:])[0]

    offsets = (np.arange(S) - (S - 1) / 2) * cfg.slice_spacing_mm
    clean = np.empty((S, C, H, W), np.complex64)
    norm = None
    for s, off in enumerate(offsets):
        coords, zgrid = _plane_coordinates(geom, float(off), (Hf, Wf), pf)
        local = coords.copy()
        local[2] -= lo
        normal = PLANES[geom.orientation][0]
        frac = {n: np.clip(spline_plane_sample(coeffs[n], normal, local), 0.0, 1.0) for n in coeffs}
        mag = sum(frac[n] * np.float32(signal[n]) for n in frac)
        mag = np.power(np.clip(mag, 0.0, None), geom.gamma)
        fine_tex = texture_fields(rng, (Hf, Wf), scales_px[:1])[0]
        mag = mag * np.clip(1.0 + 0.04 * fine_tex + 0.05 * smooth_tex, 0.0, None)
        window = pe_window if geom.orientation == "AX" else pe_window * _raised_cosine(zgrid, lo, hi - 1, TAPER_MM)
        mag = (mag * window).astype(np.float32)
        t = float(off) / 100.0
        obj = mag * np.exp(1j * background_phase(phase_coeffs, Hf, Wf, t))
        maps = upsample_maps(knee_coil_maps(layout, H, W, 1.2 * t), up)
        if norm is None:
            body = np.sum([frac[n] for n in frac], axis=0) > 0.5
            norm = float(np.median(np.sqrt((np.abs(maps) ** 2).sum(0))[body])) if body.any() else 1.0
        coil_img = torch.from_numpy((maps * obj.astype(np.complex64)) * np.float32(cfg.scale / norm))
        clean[s] = band_limited_kspace(coil_img, (H, W), up)

    clean_target = center_crop(rss(ifft2c(torch.from_numpy(clean)), dim=1), (h, w)).numpy()
    body = clean_target > 0.1 * float(np.percentile(clean_target, 99))
    mean_signal = float(clean_target[body].mean()) if body.any() else float(clean_target.mean())
    sigma = mean_signal / snr
    noise = rng.standard_normal((2, S, C, H, W), dtype=np.float32) * np.float32(sigma / math.sqrt(2.0))
    kspace = clean + (noise[0] + 1j * noise[1]).astype(np.complex64)
    kspace[..., :pad_l] = 0
    kspace[..., pad_r:] = 0
    target = center_crop(rss(ifft2c(torch.from_numpy(kspace)), dim=1), (h, w)).contiguous().numpy().astype(np.float32)
    if not (np.isfinite(kspace).all() and np.isfinite(target).all() and target.max() > 0):
        raise RuntimeError(f"MNI152 volume ({seed}, {index}) is not finite or is empty")

    acquisition = f"{geom.orientation}{weighting}"
    attrs: dict[str, Any] = {
        "acquisition": acquisition,
        "max": float(target.max()),
        "norm": float(np.linalg.norm(target)),
        "patient_id": fake_patient_id((152, seed, index)),
        "simulated": "recon.simulate.mni152 (MNI ICBM152 2009a template anatomy, synthesized contrast and coils; not a scan)",
        "source": "mni152",
        "split": split,
        "snr": snr,
        "orientation": geom.orientation,
        "weighting": weighting,
        "TR_ms": tr,
        "TE_ms": te,
        "template_slab_z": np.asarray(geom.slab, dtype=np.int64),
        "pixel_mm": px,
    }
    header = build_header(
        encoded_size=(H, W, 1),
        recon_size=(h, w, 1),
        enc_limits_center=center,
        enc_limits_max=maximum,
        fov_mm=(H * px, W * px, cfg.slice_spacing_mm),
        recon_fov_mm=(h * px, w * px, cfg.slice_spacing_mm),
        extra={"sequenceParameters/TR": round(tr, 2), "sequenceParameters/TE": round(te, 2)},
    )
    return MNIVolume(kspace, target, header, attrs, (pad_l, pad_r), sigma)


def simulate_mni152_dataset(
    out_dir: str | Path,
    volumes: int,
    slices: int,
    coils: int,
    seed: int,
    config: MNIConfig | None = None,
    prefix: str = "mni152",
    progress: bool = False,
) -> list[Path]:
    """Write `volumes` fastMRI-format multi-coil files `file_{prefix}_{seed}_{i:04d}.h5`; return paths.

    A file depends only on (seed, i, slices, coils, config), so more volumes keep earlier files.
    """
    if volumes < 0 or slices < 1 or coils < 1:
        raise ValueError(f"need volumes >= 0, slices >= 1, coils >= 1; got {volumes}, {slices}, {coils}")
    template_split(seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    indices: Any = range(volumes)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="simulate mni152", unit="volume")
    paths = []
    for i in indices:
        vol = simulate_mni152_volume(seed, i, config, num_slices=slices, num_coils=coils)
        path = out / f"file_{prefix}_{seed}_{i:04d}.h5"
        write_fastmri_volume(path, vol.kspace, vol.header_xml, target=vol.target, attrs=vol.attrs)
        paths.append(path)
    return paths
