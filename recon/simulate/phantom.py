"""Knee-like anatomical phantoms (coronal view) built from soft-edged signed-distance shapes.

Why not Shepp-Logan: reconstruction quality on ellipses says little about knee data. These
phantoms have the structures that make knee reconstruction hard: subcutaneous fat, muscle with
striated texture and fat septa, femur and tibia with dark cortical rims around textured marrow,
thin cartilage bands, menisci and joint fluid, all varying smoothly from slice to slice.

Coordinates: `u` (columns) and `v` (rows) in units of a quarter of the readout rows, so the
central half of the readout field of view (the reconSpace rows) spans v in [-1, 1]; pixels are
square. All arrays are float32 magnitudes of shape (rows, width).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Relative signal of each tissue class per contrast (fastMRI knee `acquisition` attribute).
#: Proton density: fat and marrow brightest; fat-suppressed: fat dark, fluid bright, lower SNR.
TISSUE_LEVELS: dict[str, dict[str, float]] = {
    "CORPD_FBK": {
        "fat": 1.0, "marrow": 0.85, "muscle": 0.42, "cartilage": 0.62, "fluid": 0.7,
        "cortex": 0.04, "meniscus": 0.08, "ligament": 0.12,
    },
    "CORPDFS_FBK": {
        "fat": 0.1, "marrow": 0.13, "muscle": 0.3, "cartilage": 0.45, "fluid": 0.85,
        "cortex": 0.03, "meniscus": 0.06, "ligament": 0.09,
    },
}


@dataclass(frozen=True)
class KneeAnatomy:
    """Per-volume random anatomy parameters (lengths in normalized units, see module docstring)."""

    body_half_width: float
    body_half_height: float
    fat_thickness: float
    joint_v: float
    condyle_radius: float
    condyle_offset: float
    plateau_half_width: float
    gap: float
    cortex: float
    cartilage: float
    tilt: float
    shift_u: float
    fibula_side: float
    width_waves: tuple[float, float, float, float]

    @staticmethod
    def draw(rng: np.random.Generator) -> "KneeAnatomy":
        """Draw a plausible knee (sizes within about +-10% of a typical adult knee)."""
        return KneeAnatomy(
            body_half_width=float(rng.uniform(0.95, 1.1)),
            body_half_height=float(rng.uniform(1.05, 1.2)),
            fat_thickness=float(rng.uniform(0.06, 0.14)),
            joint_v=float(rng.uniform(-0.08, 0.08)),
            condyle_radius=float(rng.uniform(0.27, 0.33)),
            condyle_offset=float(rng.uniform(0.3, 0.36)),
            plateau_half_width=float(rng.uniform(0.6, 0.7)),
            gap=float(rng.uniform(0.035, 0.05)),
            cortex=float(rng.uniform(0.018, 0.03)),
            cartilage=float(rng.uniform(0.025, 0.04)),
            tilt=float(rng.uniform(-0.08, 0.08)),
            shift_u=float(rng.uniform(-0.05, 0.05)),
            fibula_side=float(rng.choice([-1.0, 1.0])),
            width_waves=tuple(float(a) for a in rng.uniform(-1.0, 1.0, 4)),  # type: ignore[arg-type]
        )


def _fill(sdf: np.ndarray, edge: float) -> np.ndarray:
    """Soft inside-indicator of a signed distance field (negative inside); `edge` ~ 1 pixel."""
    return (0.5 * (1.0 - np.tanh(sdf / (2.0 * edge)))).astype(np.float32)


def _circle(u: np.ndarray, v: np.ndarray, cu: float, cv: float, r: float) -> np.ndarray:
    return np.hypot(u - cu, v - cv) - r


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, a: float, b: float) -> np.ndarray:
    return (np.hypot((u - cu) / a, (v - cv) / b) - 1.0) * min(a, b)


def _round_box(u: np.ndarray, v: np.ndarray, cu: float, cv: float, hu: float, hv: float, r: float) -> np.ndarray:
    qu = np.abs(u - cu) - hu + r
    qv = np.abs(v - cv) - hv + r
    outside = np.hypot(np.maximum(qu, 0.0), np.maximum(qv, 0.0))
    return outside + np.minimum(np.maximum(qu, qv), 0.0) - r


def _smooth_union(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum: unions two shapes with a fillet of size ~k (bone flare)."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1.0 - h) + a * h - k * h * (1.0 - h)


def texture_fields(
    rng: np.random.Generator, shape: tuple[int, int], scales: list[tuple[float, float]]
) -> list[np.ndarray]:
    """Unit-variance Gaussian random fields (float32), one per (sigma_rows, sigma_cols) in pixels.

    Filtering white noise with a Gaussian in k-space gives texture with a chosen correlation
    length; anisotropic sigmas give striated (muscle-fibre-like) texture.
    """
    rows, cols = shape
    ky = np.fft.fftfreq(rows).astype(np.float32)[:, None]
    kx = np.fft.fftfreq(cols).astype(np.float32)[None, :]
    out = []
    for sy, sx in scales:
        white = rng.standard_normal(shape, dtype=np.float32)
        filt = np.exp(-2.0 * np.pi**2 * ((ky * sy) ** 2 + (kx * sx) ** 2)).astype(np.float32)
        field = np.fft.ifft2(np.fft.fft2(white) * filt).real.astype(np.float32)
        field /= field.std() + 1e-12
        out.append(field)
    return out


def knee_slice(
    anatomy: KneeAnatomy,
    contrast: str,
    t: float,
    rows: int,
    width: int,
    textures: list[np.ndarray],
) -> np.ndarray:
    """Magnitude image (rows, width) float32 of one coronal knee slice, roughly in [0, 1.3].

    Args:
        anatomy: per-volume shape parameters.
        contrast: a key of `TISSUE_LEVELS`.
        t: slice position in [-0.5, 0.5] (anterior to posterior); bones shrink toward the ends.
        rows, width: image size; the object lies within the central ~rows/2 rows.
        textures: six unit-variance fields of shape (rows, width) for this slice
            (muscle striation, marrow trabeculae, fine grain, septa, shading, cartilage).
    """
    lev = TISSUE_LEVELS[contrast]
    unit = rows / 4.0
    edge = 1.2 / unit
    a = anatomy
    vv, uu = np.meshgrid(
        (np.arange(rows, dtype=np.float32) - rows / 2) / unit,
        (np.arange(width, dtype=np.float32) - width / 2) / unit,
        indexing="ij",
    )
    c, s = np.cos(a.tilt), np.sin(a.tilt)
    u = (c * uu + s * vv - a.shift_u).astype(np.float32)
    v = (-s * uu + c * vv).astype(np.float32)
    w1, w2, w3, w4 = a.width_waves

    # Body silhouette: half-width varies along the leg (narrower at the joint line).
    half_w = a.body_half_width * (1.0 + 0.05 * w1 * np.sin(2.2 * v + w2) + 0.04 * (v - a.joint_v) ** 2
                                  - 0.05 * np.exp(-((v - a.joint_v) / 0.4) ** 2))
    half_w = half_w * (1.0 - 0.25 * t**2)
    centre_u = 0.04 * w3 * v
    body = np.maximum(np.abs(u - centre_u) - half_w, np.abs(v) - a.body_half_height)
    body_in = _fill(body, edge)
    fat_th = a.fat_thickness * (1.0 + 0.3 * w4 * np.cos(1.7 * v)) * (1.0 + 0.6 * abs(t))
    muscle_in = _fill(body + fat_th, edge)

    # Bones shrink (then vanish) toward anterior/posterior slices.
    bone_scale = float(np.sqrt(max(0.0, 1.0 - (t / 0.48) ** 2)))
    img = np.zeros((rows, width), np.float32)
    tex_muscle, tex_marrow, grain, septa_f, shade, tex_cart = textures
    septa = _fill(np.abs(septa_f) - 0.06, 0.03) * (1.0 - _fill(np.abs(u) - 0.25, 0.2))
    muscle_sig = lev["muscle"] * (1.0 + 0.1 * tex_muscle + 0.05 * shade)
    soft = lev["fat"] * (body_in - muscle_in) + muscle_in * (
        muscle_sig * (1.0 - 0.8 * septa) + lev["fat"] * 0.8 * septa
    )
    img += soft

    if bone_scale > 0.05:
        jv = a.joint_v
        rc = a.condyle_radius * (0.55 + 0.45 * bone_scale)
        off = a.condyle_offset * (0.7 + 0.3 * bone_scale)
        cv = jv - a.gap / 2 - rc
        femur = np.minimum(_circle(u, v, -off, cv, rc), _circle(u, v, off, cv, rc))
        shaft_hw = 0.38 * bone_scale + 0.05
        shaft = _round_box(u, v, 0.0, cv - 0.9, shaft_hw, 0.9, 0.1)
        femur = _smooth_union(femur, shaft, 0.25)
        notch = _ellipse(u, v, 0.0, cv + rc * 0.85, 0.1 + 0.05 * bone_scale, 0.3)
        femur = np.maximum(femur, -notch)
        top = jv + a.gap / 2
        pw = a.plateau_half_width * (0.6 + 0.4 * bone_scale)
        tibia = _round_box(u, v, 0.0, top + 0.3, pw, 0.3, 0.12)
        tibia = _smooth_union(tibia, _round_box(u, v, 0.0, top + 1.0, 0.32 * bone_scale + 0.05, 0.7, 0.1), 0.25)
        fib = _circle(u, v, a.fibula_side * (pw - 0.02), top + 0.62, 0.11 * bone_scale)

        # Joint: fluid in the gap, cartilage bands on both surfaces, dark menisci at the rim.
        joint = _round_box(u, v, 0.0, jv, pw + 0.02, a.gap / 2 + a.cartilage, 0.02)
        fluid = _fill(joint, edge) * _fill(-femur, edge) * _fill(-tibia, edge)
        cart_tex = 1.0 + 0.08 * tex_cart
        cart_f = (_fill(femur - a.cartilage, edge) - _fill(femur, edge)) * _fill(v - (cv + 0.2 * rc), 0.05)
        cart_t = (_fill(tibia - a.cartilage, edge) - _fill(tibia, edge)) * _fill(v - (top + 0.04), 0.01)
        cart_t *= _fill(np.abs(u) - pw + 0.05, 0.03)
        cart = np.clip(cart_f + cart_t, 0.0, 1.0)
        menisci = np.minimum(_ellipse(u, v, -pw + 0.05, jv, 0.13, a.gap / 2 + 0.02),
                             _ellipse(u, v, pw - 0.05, jv, 0.13, a.gap / 2 + 0.02))
        men = _fill(menisci, edge)
        lig = _fill(_ellipse(u, v, 0.0, jv - 0.12, 0.05, 0.16), edge) * bone_scale

        for sdf in (femur, tibia, fib):
            outer = _fill(sdf, edge)
            inner = _fill(sdf + a.cortex, edge)
            marrow = lev["marrow"] * (1.0 + 0.08 * tex_marrow)
            bone = (outer - inner) * lev["cortex"] + inner * marrow
            img = img * (1.0 - outer) + bone
        img = img * (1.0 - fluid) + fluid * lev["fluid"]
        img = img * (1.0 - cart) + cart * lev["cartilage"] * cart_tex
        img = img * (1.0 - men) + men * lev["meniscus"]
        img = img * (1.0 - lig) + lig * lev["ligament"]

    img *= body_in
    img *= 1.0 + 0.04 * grain
    return np.clip(img, 0.0, None).astype(np.float32)
