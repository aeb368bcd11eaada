"""Non-Cartesian 2-D k-space trajectories: units, checks, generators and density compensation.

**The one unit convention.** A trajectory is a float array `(*S, 2)`: `S` is the sample shape
(e.g. `(spokes, readout)`), the last axis is `(k_row, k_col)`, ordered like the image axes
`(-2, -1)`, in **cycles per FOV**: sample `k` of an `(H, W)` image `x` is
`sum_n x[n] exp(-2 pi i (k_row n_row / H + k_col n_col / W))` with centred pixel indices
`n in [-H//2, (H-1)//2]`. The nominal range is `[-N/2, N/2)` per axis; on an integer grid this
is exactly the centered orthonormal `fft2c` (times `sqrt(H W)`). Because the image grid is
discrete, k-space is periodic with period `N`: `+N/2` is the same frequency as `-N/2`, so the
closed interval `[-N/2, N/2]` is accepted (symmetric trajectories reach `+N/2`). SigPy and BART
use the same unit and sign; finufft wants radians, `2 pi k / N` (`radians`).

File conventions (`to_cycles_per_fov`): Gadgetron and the ISMRMRD tools write points
normalised to the matrix, `[-0.5, 0.5)`; BART and SigPy write cycles per FOV. The rule that
decides between them looks at the largest radius measured per axis (the largest
`|coordinate|`, so that the corners of a square trajectory count as radius 0.5): at most 0.5
means normalised, above it cycles per FOV, above `N/2` neither (refused).

Nothing here wraps or clips silently: finufft folds points outside `[-3 pi, 3 pi]` (and in
2.5 even further) back periodically and turns a NaN point into NaN samples, so every
trajectory is checked (`check_trajectory`) before any transform.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, Sequence

import numpy as np
import torch

if TYPE_CHECKING:
    import finufft

GOLDEN_RATIO = (1.0 + math.sqrt(5.0)) / 2.0
# A coordinate up to this fraction of N/2 beyond the edge is float rounding (e.g. a
# normalised float32 trajectory times N) and is clipped to the edge; anything further is refused.
EDGE_TOLERANCE = 1e-6
# Below this many point-vectors (samples x transforms) a finufft call asked for `nthreads=0`
# runs on one thread: starting and joining OpenMP threads costs more than such a transform
# (measured on 2 shared cores: 40 points 0.03 ms on one thread, 3 ms on two).
SMALL_WORK = 100_000

Convention = Literal["cycles", "normalized"]
AngleScheme = Literal["uniform", "golden", "tiny-golden"]


class TrajectoryError(ValueError):
    """A trajectory that cannot be transformed as given; the message names the problem."""


def _as_numpy(array: np.ndarray | torch.Tensor | Sequence[float]) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().numpy()
    return np.asarray(array)


def _image_shape(shape: Sequence[int]) -> tuple[int, int]:
    if len(shape) != 2:
        raise TrajectoryError(f"the image shape must be (rows, cols); got {tuple(shape)}")
    rows, cols = (int(n) for n in shape)
    if rows < 1 or cols < 1 or rows != shape[0] or cols != shape[1]:
        raise TrajectoryError(f"the image shape must be two positive integers; got {tuple(shape)}")
    return rows, cols


def _real_points(coord: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    """`coord` as float64 `(*S, 2)`, refusing complex, non-numeric, empty and wrongly shaped input."""
    points = _as_numpy(coord)
    if points.dtype == object or not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)):
        raise TrajectoryError(f"{name} must hold real numbers; got dtype {points.dtype}")
    if points.ndim < 2 or points.shape[-1] != 2:
        raise TrajectoryError(f"{name} must have shape (..., 2) with (k_row, k_col) last; got shape {points.shape}")
    if points.size == 0:
        raise TrajectoryError(f"{name} holds no points (shape {points.shape})")
    return points.astype(np.float64)


def check_trajectory(
    coord: np.ndarray | torch.Tensor,
    shape: Sequence[int],
    samples: Sequence[int] | None = None,
    name: str = "trajectory",
) -> np.ndarray:
    """Check a cycles-per-FOV trajectory `(*S, 2)` for an `(H, W)` image; return it as float64.

    Refuses (`TrajectoryError`, a `ValueError`) a non-real or wrongly shaped array, any NaN or
    infinite coordinate (counted, the first one located), any coordinate outside `[-N/2, N/2]`
    of its axis (the extreme one named, with a hint when the points look normalised) and, when
    `samples` (the trailing shape of the data) is given, a sample shape that differs from `S`.
    Coordinates within `EDGE_TOLERANCE` of the edge are clipped onto it.
    """
    rows, cols = _image_shape(shape)
    points = _real_points(coord, name)
    bad = ~np.isfinite(points)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0][:-1])
        raise TrajectoryError(f"{name} has {int(bad.any(-1).sum())} point(s) with NaN or infinite coordinates (first at index {first})")
    if samples is not None and tuple(int(s) for s in samples) != points.shape[:-1]:
        raise TrajectoryError(f"{name} has sample shape {points.shape[:-1]} but the k-space data have {tuple(int(s) for s in samples)} samples")
    for axis, size, label in ((0, rows, "row"), (1, cols, "column")):
        half = size / 2.0
        values = points[..., axis]
        worst = int(np.argmax(np.abs(values)))
        extreme = float(values.flat[worst])
        if abs(extreme) > half * (1.0 + EDGE_TOLERANCE):
            where = tuple(int(i) for i in np.unravel_index(worst, values.shape))
            raise TrajectoryError(
                f"{name} reaches k_{label} = {extreme:.6g} cycles/FOV (point {where}), outside [-{half:g}, {half:g}] "
                f"for {size} image {label}s; a trajectory outside the image's k-space would be wrapped silently by finufft"
            )
        np.clip(values, -half, half, out=values)
    return points


def radians(coord: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """finufft's points `(omega_row, omega_col) = 2 pi k / N`, flattened, from a checked trajectory."""
    rows, cols = _image_shape(shape)
    flat = np.asarray(coord, dtype=np.float64).reshape(-1, 2)
    return (2.0 * math.pi / rows) * flat[:, 0], (2.0 * math.pi / cols) * flat[:, 1]


def detect_convention(points: np.ndarray | torch.Tensor, shape: Sequence[int]) -> Convention:
    """Which file convention `points` `(*S, 2)` are in, from the largest radius per axis.

    At most 0.5 (plus float rounding): normalised to the matrix (`[-0.5, 0.5)`, Gadgetron /
    ISMRMRD). Above 0.5: cycles per FOV (BART, SigPy). A cycles-per-FOV trajectory whose
    largest radius is at most 0.5 would cover less than one cycle per FOV, the very centre of
    k-space only, so the rule never misreads a real acquisition. Above `N/2` of an axis fits
    neither and is refused.
    """
    rows, cols = _image_shape(shape)
    values = _real_points(points, "trajectory")
    if not np.isfinite(values).all():
        raise TrajectoryError("trajectory has NaN or infinite coordinates; its convention cannot be decided")
    largest = float(np.abs(values).max())
    if largest <= 0.5 * (1.0 + EDGE_TOLERANCE):
        return "normalized"
    limits = np.array([rows, cols]) / 2.0
    if (np.abs(values).reshape(-1, 2).max(0) > limits * (1.0 + EDGE_TOLERANCE)).any():
        raise TrajectoryError(
            f"trajectory's largest coordinate {largest:.6g} fits neither convention: above 0.5 (normalised to the matrix) "
            f"and above N/2 = ({limits[0]:g}, {limits[1]:g}) cycles/FOV for a {rows}x{cols} image"
        )
    return "cycles"


def to_cycles_per_fov(
    points: np.ndarray | torch.Tensor,
    shape: Sequence[int],
    convention: Convention | Literal["auto"] = "auto",
) -> tuple[np.ndarray, Convention]:
    """Points `(*S, 2)` in a file's convention -> `(checked cycles-per-FOV trajectory, convention)`.

    `"normalized"` points are multiplied by `(H, W)`; `"cycles"` points are taken as they are;
    `"auto"` decides with `detect_convention` and returns the decision, for the caller to
    state (a log line).
    """
    rows, cols = _image_shape(shape)
    if convention == "auto":
        convention = detect_convention(points, (rows, cols))
    if convention not in ("cycles", "normalized"):
        raise TrajectoryError(f"unknown trajectory convention {convention!r} (cycles, normalized or auto)")
    values = _real_points(points, "trajectory")
    if convention == "normalized":
        values = values * np.array([rows, cols], dtype=np.float64)
    return check_trajectory(values, (rows, cols)), convention


def to_normalized(coord: np.ndarray | torch.Tensor, shape: Sequence[int]) -> np.ndarray:
    """A checked cycles-per-FOV trajectory -> normalised to the matrix (`[-0.5, 0.5]`, Gadgetron)."""
    rows, cols = _image_shape(shape)
    return check_trajectory(coord, (rows, cols)) / np.array([rows, cols], dtype=np.float64)


def from_bart(traj: np.ndarray) -> np.ndarray:
    """BART's trajectory array `(3, *S)` (x, y, z; cycles per FOV) -> ours `(*S, 2)`.

    With an image stored in BART's dims `(H, W)` (READ = rows, as `benchmarks/bart_cfl.py`
    does), BART's `x` is `k_row` and `y` is `k_col` (checked against `bart nufft` in
    `tests/test_trajectory.py`); `z` must be zero for 2-D data.
    """
    values = np.asarray(traj)
    if values.ndim < 2 or values.shape[0] != 3:
        raise TrajectoryError(f"a BART trajectory has shape (3, ...); got {values.shape}")
    values = values.real if np.iscomplexobj(values) else values
    if np.any(values[2] != 0):
        raise TrajectoryError("the BART trajectory has non-zero z coordinates; this is 2-D only")
    return np.moveaxis(values[:2], 0, -1).astype(np.float64)


def to_bart(coord: np.ndarray) -> np.ndarray:
    """Ours `(*S, 2)` -> BART's complex64 `(3, *S)` (x = k_row, y = k_col, z = 0), cycles per FOV."""
    values = np.asarray(coord, dtype=np.float64)
    out = np.zeros((3, *values.shape[:-1]), dtype=np.complex64)
    out[0], out[1] = values[..., 0], values[..., 1]
    return out


def radial_angles(spokes: int, scheme: AngleScheme = "golden", tiny: int = 7) -> np.ndarray:
    """Spoke angles in radians for full-diameter spokes (angles modulo pi).

    `uniform`: `pi s / spokes`. `golden`: `s pi / phi` (111.25 degrees, Winkelmann 2007).
    `tiny-golden`: `s pi / (phi + tiny - 1)` (Wundrak 2016; tiny=7 gives 23.63 degrees), for
    shorter gradient steps between spokes with the same near-uniform coverage of any run of
    consecutive spokes.
    """
    if spokes < 1:
        raise TrajectoryError(f"a radial trajectory needs at least one spoke; got {spokes}")
    index = np.arange(spokes, dtype=np.float64)
    if scheme == "uniform":
        return math.pi * index / spokes
    if scheme == "golden":
        return index * (math.pi / GOLDEN_RATIO)
    if scheme == "tiny-golden":
        if tiny < 1:
            raise TrajectoryError(f"the tiny golden angle order must be >= 1; got {tiny}")
        return index * (math.pi / (GOLDEN_RATIO + tiny - 1))
    raise TrajectoryError(f"unknown radial angle scheme {scheme!r} (uniform, golden, tiny-golden)")


def radial(
    spokes: int,
    readout: int,
    shape: Sequence[int],
    scheme: AngleScheme = "golden",
    tiny: int = 7,
    sample_dc: bool = True,
) -> np.ndarray:
    """A 2-D radial trajectory `(spokes, readout, 2)` in cycles per FOV.

    Each spoke is a diameter at angle `theta` (`radial_angles`) from the column axis towards the
    row axis: `k_col = r cos(theta) W`, `k_row = r sin(theta) H` with `r` in units of the matrix.
    `sample_dc=True` puts the samples at `r = (i - readout/2) / readout`, so sample
    `readout//2` is the centre (scanner and SigPy style; `r` in `[-0.5, 0.5)`);
    `sample_dc=False` is symmetric, `(i - (readout-1)/2) / readout`, without a centre sample
    (BART's `traj -r`). A readout of `2 N` samples is the usual 2x readout oversampling;
    `spokes = pi/2 N` samples the edge of k-space at Nyquist.
    """
    rows, cols = _image_shape(shape)
    if readout < 1:
        raise TrajectoryError(f"a radial trajectory needs at least one readout sample; got {readout}")
    centre = readout / 2.0 if sample_dc else (readout - 1) / 2.0
    r = (np.arange(readout, dtype=np.float64) - centre) / readout
    theta = radial_angles(spokes, scheme, tiny)
    coord = np.empty((spokes, readout, 2), dtype=np.float64)
    coord[..., 0] = np.sin(theta)[:, None] * r[None, :] * rows
    coord[..., 1] = np.cos(theta)[:, None] * r[None, :] * cols
    return coord


def spiral(
    interleaves: int,
    samples: int,
    shape: Sequence[int],
    alpha: float = 1.0,
    undersampling: float = 1.0,
) -> np.ndarray:
    """A variable-density spiral `(interleaves, samples, 2)` in cycles per FOV.

    Interleave `l` is `k(tau) = 0.5 tau^alpha exp(i (2 pi turns tau + 2 pi l / interleaves))`
    in units of the matrix (real part along columns), `tau = i / samples` (Kim et al. 2003).
    `alpha = 1` is an Archimedean spiral; `alpha > 1` packs turns densely near the centre
    (the radial spacing at radius fraction `rho` is `rho^((alpha-1)/alpha)` times that at the
    edge). `turns` is chosen so that the spacing between neighbouring interleaves at the
    edge is `undersampling` times Nyquist (1 cycle/FOV of the larger image axis). Samples are
    uniform in `tau`, not a gradient-limited design: the spacing along the path at the edge is
    about `2 pi turns max(H, W) / (2 samples)` cycles/FOV, so choose `samples` accordingly.
    """
    rows, cols = _image_shape(shape)
    if interleaves < 1 or samples < 1:
        raise TrajectoryError(f"a spiral needs at least one interleave and one sample; got {interleaves} x {samples}")
    if not (alpha >= 1.0 and math.isfinite(alpha)) or not (undersampling > 0 and math.isfinite(undersampling)):
        raise TrajectoryError(f"spiral alpha must be >= 1 and undersampling > 0; got alpha={alpha}, undersampling={undersampling}")
    turns = 0.5 * alpha * max(rows, cols) / (interleaves * undersampling)
    tau = np.arange(samples, dtype=np.float64) / samples
    radius = 0.5 * tau**alpha
    phase = 2.0 * math.pi * turns * tau[None, :] + 2.0 * math.pi * np.arange(interleaves)[:, None] / interleaves
    coord = np.empty((interleaves, samples, 2), dtype=np.float64)
    coord[..., 0] = radius * np.sin(phase) * rows
    coord[..., 1] = radius * np.cos(phase) * cols
    return coord


def radial_ramp(coord: np.ndarray, spokes: int, readout: int, shape: Sequence[int]) -> np.ndarray:
    """The analytic density compensation of `radial(spokes, readout, shape)`: `pi |k| dk / spokes`.

    `spokes` full diameters cross the circle of radius `|k|` (cycles per FOV, square matrix)
    `2 spokes` times with samples `dk = N / readout` apart along each spoke, so each sample owns
    the area `2 pi |k| dk / (2 spokes)`: the ramp, 0 at the centre. Valid where the spokes are
    denser than the density kernel is wide (away from the centre and the edge).
    """
    rows, cols = _image_shape(shape)
    if rows != cols:
        raise TrajectoryError(f"the analytic ramp is stated for a square matrix; got {rows}x{cols}")
    radius = np.hypot(coord[..., 0], coord[..., 1])
    return math.pi * radius * (rows / readout) / spokes


def _spreader(grid: tuple[int, int], omega: tuple[np.ndarray, np.ndarray], eps: float, upsampfac: float, nthreads: int) -> finufft.Plan:
    """finufft's spread-only type-1 plan (`spreadinterponly=1`): `execute` spreads the points'
    values onto `grid` with its kernel, `execute_adjoint` interpolates the grid at the points."""
    import finufft

    if nthreads == 0 and omega[0].size < SMALL_WORK:
        nthreads = 1
    plan = finufft.Plan(1, grid, n_trans=1, eps=eps, dtype="complex128", spreadinterponly=1, upsampfac=upsampfac, nthreads=nthreads)
    plan.setpts(omega[0], omega[1])
    return plan


def _gram(plan: finufft.Plan, weights: np.ndarray) -> np.ndarray:
    """`G^H G w`: spread the weights onto the grid, interpolate back at the points (real kernel)."""
    return plan.execute_adjoint(plan.execute(weights.astype(np.complex128))).real


def pipe_menon_dcf(
    coord: np.ndarray | torch.Tensor,
    shape: Sequence[int],
    iterations: int = 30,
    oversamp: float = 2.0,
    eps: float = 1e-6,
    nthreads: int = 0,
) -> np.ndarray:
    """Pipe-Menon iterative density compensation `(*S,)` of a cycles-per-FOV trajectory `(*S, 2)`.

    Iterates `w <- w / (G^H G w)` (Pipe & Menon 1999, as `sigpy.mri.pipe_menon_dcf`) with `G`
    finufft's own spreading kernel in its spread/interpolate-only mode (`spreadinterponly=1`,
    finufft >= 2.4): a grid of `oversamp` times the image (spacing `1/oversamp` cycles/FOV),
    the kernel finufft picks for tolerance `eps` at that upsampling factor (about 3.5
    cycles/FOV wide at the defaults, close to SigPy's 4), periodic in k-space like the NUFFT.
    The result is scaled by the same iteration's fixed point on the fully sampled Cartesian
    grid of `shape`, so the weights are the k-space area per sample in (cycles/FOV)^2: 1 on a
    Cartesian grid, `pi |k| dk / spokes` on radial spokes (`radial_ramp`), and
    `NUFFT.adjoint(w * y)` is then a gridding reconstruction at the image's scale.
    `nthreads` as `recon.nufft.FinufftPlans`.
    """
    rows, cols = _image_shape(shape)
    points = check_trajectory(coord, (rows, cols))
    if iterations < 1:
        raise TrajectoryError(f"density compensation needs at least one iteration; got {iterations}")
    if not (oversamp >= 1.0 and math.isfinite(oversamp)):
        raise TrajectoryError(f"the density grid oversampling must be >= 1; got {oversamp}")
    grid = (math.ceil(oversamp * rows), math.ceil(oversamp * cols))
    plan = _spreader(grid, radians(points, (rows, cols)), eps, oversamp, nthreads)
    weights = np.ones(points.shape[0:-1], dtype=np.float64).ravel()
    for _ in range(iterations):
        weights = weights / np.abs(_gram(plan, weights))
    cartesian = np.stack(np.meshgrid(np.arange(rows) - rows // 2, np.arange(cols) - cols // 2, indexing="ij"), -1)
    lattice = _spreader(grid, radians(cartesian.astype(np.float64), (rows, cols)), eps, oversamp, nthreads)
    fixed_point = float(_gram(lattice, np.ones(rows * cols)).mean())
    return (weights * fixed_point).reshape(points.shape[:-1])
