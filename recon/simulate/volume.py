"""One simulated fastMRI-format multi-coil volume: k-space, coil maps, RSS target, header, attrs.

The relationship between k-space and target is the real fastMRI one:
`reconstruction_rss = center_crop(rss(ifft2c(kspace)), reconSpace)`, computed after the zero
padding columns outside `encodingLimits` have been zeroed, and after noise has been added.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
import torch

from recon.core import center_crop, fft2c, ifft2c, rss
from recon.io.header import build_header
from recon.simulate.coil_maps import background_phase, coil_layout, draw_phase_coeffs, knee_coil_maps
from recon.simulate.phantom import TISSUE_LEVELS, KneeAnatomy, knee_slice, texture_fields

CONTRASTS = ("CORPD_FBK", "CORPDFS_FBK")


@dataclass(frozen=True)
class SimConfig:
    """Size and physics settings of the simulator.

    Attributes:
        rows: readout samples (2x oversampled; the reconSpace has rows // 2 rows).
        widths: phase-encode widths W to draw from per volume (real knee: 356 / 368 / 372).
        crop: reconSpace size (rows // 2, rows // 2) unless set.
        coils: receive channels (fastMRI knee: 15).
        slices: slices per volume.
        noise: complex k-space noise std relative to a unit-signal RSS pixel (fat in PD = 1);
            the same absolute level for both contrasts, so fat-suppressed data has lower SNR.
        fs_probability: probability that a volume is fat-suppressed (CORPDFS_FBK).
        acquired_fraction: (low, high) fraction of the W columns that are acquired; the rest
            is zero padding split evenly at both edges, declared in `encodingLimits`.
        scale: multiplies all signal so values are of the magnitude of real fastMRI files.
        coverage: fraction of the knee depth spanned by the slices (1.0 reaches the edges
            where bones vanish).
    """

    rows: int = 640
    widths: tuple[int, ...] = (356, 368, 372)
    crop: tuple[int, int] | None = None
    coils: int = 15
    slices: int = 8
    noise: float = 0.03
    fs_probability: float = 0.5
    acquired_fraction: tuple[float, float] = (0.86, 0.92)
    scale: float = 2e-4
    coverage: float = 0.85

    def __post_init__(self) -> None:
        if self.rows % 4 or self.rows < 32:
            raise ValueError(f"rows must be a multiple of 4 and >= 32, got {self.rows}")
        if any(w % 2 or w < self.recon_size[1] for w in self.widths):
            raise ValueError(f"widths must be even and >= the crop width, got {self.widths}")

    @property
    def recon_size(self) -> tuple[int, int]:
        """reconSpace (rows, cols): half the readout rows, square (the 2x oversampling)."""
        return self.crop if self.crop is not None else (self.rows // 2, self.rows // 2)


#: Named size presets. `knee`: fastMRI knee size. `small`: the test/demo size (runs in seconds),
#: same 2x readout oversampling and the same anatomy scaled down.
PRESETS: dict[str, SimConfig] = {
    "knee": SimConfig(),
    "small": SimConfig(rows=320, widths=(178, 184, 186), coils=8, slices=4),
}


class SimVolume(NamedTuple):
    """A simulated volume (NumPy arrays).

    kspace: (S, C, rows, W) complex64, zero in the padding columns.
    target: (S, h, w) float32, the RSS reconstruction cropped to the reconSpace.
    maps: (S, C, rows, W) complex64 coil sensitivities (they vary with slice depth), or None.
    image: (S, rows, W) complex64 noiseless object (magnitude x background phase), or None.
    header_xml: ISMRMRD header text.
    attrs: root attributes (acquisition, max, norm, patient_id, ...).
    padding: (padding_left, padding_right) as fastMRI derives them from the header.
    """

    kspace: np.ndarray
    target: np.ndarray
    maps: np.ndarray | None
    image: np.ndarray | None
    header_xml: str
    attrs: dict[str, Any]
    padding: tuple[int, int]


def padding_limits(width: int, acquired: int) -> tuple[int, int, int, int]:
    """(center, maximum, padding_left, padding_right) of `encodingLimits/kspace_encoding_step_1`
    for `acquired` columns centred at W // 2, with fastMRI's rule padding_left = W//2 - center."""
    center = acquired // 2
    maximum = acquired - 1
    left = width // 2 - center
    return center, maximum, left, left + maximum + 1


def fake_patient_id(rng_seed: int | tuple[int, ...]) -> str:
    """A 64-hex-digit pseudonymous id like fastMRI's, derived from the volume's seed (not a person)."""
    return hashlib.sha256(f"recon.simulate:{rng_seed}".encode()).hexdigest()


RECON_FOV_MM = 140.0
SLICE_MM = 3.0


def _header(cfg: SimConfig, width: int, center: int, maximum: int) -> str:
    """ISMRMRD header: a 140 mm square reconSpace, 2x oversampled readout, 3 mm slices."""
    h, w = cfg.recon_size
    px = RECON_FOV_MM / h
    return build_header(
        encoded_size=(cfg.rows, width, 1),
        recon_size=(h, w, 1),
        enc_limits_center=center,
        enc_limits_max=maximum,
        fov_mm=(cfg.rows * px, width * px, SLICE_MM),
        recon_fov_mm=(h * px, w * px, SLICE_MM),
    )


def simulate_volume(
    rng_seed: int | tuple[int, ...],
    num_slices: int | None = None,
    num_coils: int | None = None,
    rows: int | None = None,
    width: int | None = None,
    config: SimConfig | None = None,
    contrast: str | None = None,
    keep_maps: bool = True,
    patient_id: str | None = None,
) -> SimVolume:
    """Simulate one knee-like multi-coil volume, deterministic for `rng_seed`.

    Args:
        rng_seed: seed (int or tuple) of `np.random.default_rng`.
        num_slices, num_coils, rows: override `config.slices`, `config.coils`, `config.rows`.
        width: phase-encode width W; drawn from `config.widths` when None.
        config: sizes and physics (default `SimConfig()`, fastMRI knee size).
        contrast: "CORPD_FBK" or "CORPDFS_FBK"; drawn with `config.fs_probability` when None.
        keep_maps: return coil maps and the noiseless image (memory: 2x the k-space).
        patient_id: the `patient_id` attribute (default: a hash of the seed).
    """
    cfg = config or SimConfig()
    overrides: dict[str, Any] = {}
    if rows is not None:
        overrides["rows"] = rows
        if cfg.crop is None or rows != cfg.rows:
            overrides["crop"] = None
    if overrides:
        cfg = replace(cfg, **overrides)
    S = int(num_slices if num_slices is not None else cfg.slices)
    C = int(num_coils if num_coils is not None else cfg.coils)
    H = cfg.rows
    rng = np.random.default_rng(rng_seed)
    W = int(width if width is not None else rng.choice(cfg.widths))
    if contrast is None:
        contrast = CONTRASTS[int(rng.random() < cfg.fs_probability)]
    if contrast not in TISSUE_LEVELS:
        raise ValueError(f"unknown contrast {contrast!r}; expected one of {CONTRASTS}")
    acquired = 2 * int(round(W * rng.uniform(*cfg.acquired_fraction) / 2))
    center, maximum, pad_l, pad_r = padding_limits(W, acquired)

    anatomy = KneeAnatomy.draw(rng)
    layout = coil_layout(C, rng)
    phase_coeffs = draw_phase_coeffs(rng)
    px = H / 640.0
    scales = [(12 * px, 2.5 * px), (2.0 * px, 2.0 * px), (1.0, 1.0), (25 * px, 10 * px), (60 * px, 60 * px),
              (3.0 * px, 3.0 * px)]
    base_a = texture_fields(rng, (H, W), scales)
    base_b = texture_fields(rng, (H, W), scales)
    ts = ((np.arange(S) + 0.5) / S - 0.5) * cfg.coverage

    # Normalize maps once per volume: median RSS over the body of the middle slice is 1.
    mid_maps = knee_coil_maps(layout, H, W, 0.0)
    mid_img = knee_slice(anatomy, "CORPD_FBK", 0.0, H, W, base_a)
    body = mid_img > 0.05
    map_norm = float(np.median(np.sqrt((np.abs(mid_maps) ** 2).sum(0))[body]))
    sigma = cfg.noise * cfg.scale

    kspace = np.empty((S, C, H, W), np.complex64)
    maps_all = np.empty((S, C, H, W), np.complex64) if keep_maps else None
    image_all = np.empty((S, H, W), np.complex64) if keep_maps else None
    for s, t in enumerate(ts):
        theta = np.pi * (t + 0.5)
        tex = [np.cos(theta) * a + np.sin(theta) * b for a, b in zip(base_a, base_b)]
        tex[2] = texture_fields(rng, (H, W), [scales[2]])[0]
        mag = knee_slice(anatomy, contrast, float(t), H, W, tex)
        obj = (mag * np.exp(1j * background_phase(phase_coeffs, H, W, float(t)))).astype(np.complex64)
        maps = knee_coil_maps(layout, H, W, float(t) * 1.2) / np.float32(map_norm)
        coil_img = torch.from_numpy(maps * obj * np.float32(cfg.scale))
        noise = rng.standard_normal((2, C, H, W), dtype=np.float32) * np.float32(sigma / np.sqrt(2.0))
        k = fft2c(coil_img).numpy() + (noise[0] + 1j * noise[1])
        k[..., :pad_l] = 0
        k[..., pad_r:] = 0
        kspace[s] = k
        if maps_all is not None and image_all is not None:
            maps_all[s] = maps
            image_all[s] = obj

    full = rss(ifft2c(torch.from_numpy(kspace)), dim=1)
    target = center_crop(full, cfg.recon_size).contiguous().numpy().astype(np.float32)
    attrs: dict[str, Any] = {
        "acquisition": contrast,
        "max": float(target.max()),
        "norm": float(np.linalg.norm(target)),
        "patient_id": patient_id or fake_patient_id(rng_seed),
        "simulated": "recon.simulate (knee-like phantom; not real data)",
    }
    header = _header(cfg, W, center, maximum)
    return SimVolume(kspace, target, maps_all, image_all, header, attrs, (pad_l, pad_r))
