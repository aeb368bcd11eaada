"""Undersampling masks over phase-encode columns, reproducing fastMRI 0.3.0 bit for bit.

A mask is a 1-D boolean array of shape ``(W,)`` over the phase-encode (last) axis of k-space,
together with ``num_low_frequencies``, the width of the fully sampled center (ACS) block.
Same seed -> same mask as ``fastmri.data.subsample``: each mask object owns its own
``np.random.RandomState`` (the global NumPy RNG is never touched) and follows fastMRI's RNG
call order: first draw the (center fraction, acceleration) pair, then sample the outer
columns. A per-call ``seed`` (an int, or a tuple such as ``tuple(map(ord, fname))`` as the
fastMRI validation sets use) reseeds the generator temporarily and restores its state after.

Families (``MASK_KINDS``):

- ``random``: the center block plus every other column kept independently with probability
  ``(W / acc - nlow) / (W - nlow)``. The acceleration (4x, 8x) is reached only ON AVERAGE;
  a single mask may keep a few more or fewer columns.
- ``equispaced``: every ``acc``-th column from a random offset, plus the center. With the
  center added, the true acceleration is below the nominal one.
- ``equispaced-fraction``: spacing adjusted for the center so the count matches ``W / acc``;
  positions are rounded, so the spacing is not exactly equal (kept, as in fastMRI, to match
  the public multi-coil data).
- ``magic`` / ``magic-fraction``: Defazio's offset sampling (arXiv:1912.01101), different
  offsets for the two halves of k-space; the fraction variant adjusts the spacing so the
  count matches ``W / acc``.

``undersample`` is the one retrospective sampling of ``recon``: inference, training and the
benchmarks all turn a fully sampled ``Acquisition`` into an undersampled one through it, so the
same file, mask function and seed give the same columns and calibration region everywhere.
``DEFAULT_CENTER_FRACTIONS`` is the one table of fastMRI's centre fractions.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING, Iterator, NamedTuple, Sequence, TypeVar

import numpy as np

from recon.acquisition import Acquisition, MaskProvenance, retrospective

if TYPE_CHECKING:
    import torch

Seed = int | tuple[int, ...] | None
KSpace = TypeVar("KSpace", np.ndarray, "torch.Tensor")

MASK_KINDS: tuple[str, ...] = ("random", "equispaced", "equispaced-fraction", "magic", "magic-fraction")
#: fastMRI's centre fraction per acceleration (knee challenge: 8 % of the columns at 4x, 4 % at 8x).
DEFAULT_CENTER_FRACTIONS: dict[float, float] = {4.0: 0.08, 8.0: 0.04}


def default_center_fraction(acceleration: float) -> float:
    """The centre fraction of `DEFAULT_CENTER_FRACTIONS` for `acceleration`, else 0.32 / acceleration
    (the same number of centre columns times the acceleration as at 4x and 8x)."""
    return DEFAULT_CENTER_FRACTIONS.get(float(acceleration), 0.32 / float(acceleration))


class MaskDraw(NamedTuple):
    """One draw of a mask function: the columns, the width of the centre block, and the
    (center fraction, acceleration) pair drawn for it."""

    columns: np.ndarray
    num_low_frequencies: int
    center_fraction: float
    acceleration: float


def seed_from_filename(name: str | os.PathLike) -> tuple[int, ...]:
    """fastMRI's per-volume validation seed: code points of the base name (with ``.h5``)."""
    return tuple(map(ord, os.path.basename(os.fspath(name))))


def _as_list(values: float | Sequence[float]) -> list[float]:
    """A scalar becomes a one-element list; a sequence becomes a list."""
    if isinstance(values, (int, float, np.integer, np.floating)):
        return [values]
    return list(values)


def _as_step(acceleration: float) -> int:
    """An acceleration used as a slice step must be a whole number; return it as an int."""
    step = int(round(float(acceleration)))
    if step != float(acceleration) or step < 1:
        raise ValueError(f"acceleration {acceleration} must be a positive whole number for this mask kind")
    return step


@contextlib.contextmanager
def _temporary_seed(rng: np.random.RandomState, seed: Seed) -> Iterator[None]:
    """Reseed ``rng`` for the duration of the block, then restore its previous state."""
    if seed is None:
        yield
        return
    state = rng.get_state()
    rng.seed(seed)
    try:
        yield
    finally:
        rng.set_state(state)


class MaskFunc:
    """Base of the mask families: owns an RNG, picks (center fraction, acceleration), samples.

    Subclasses set ``kind`` (their ``MASK_KINDS`` name) and implement ``_outer_mask`` (the columns
    outside the center block).
    """

    kind = ""

    def __init__(
        self,
        center_fractions: float | Sequence[float],
        accelerations: float | Sequence[float],
        allow_any_combination: bool = False,
        seed: Seed = None,
    ) -> None:
        """Store the candidate settings and create this object's own RandomState.

        Args:
            center_fractions: fraction(s) of columns kept in the center; one is chosen per call.
            accelerations: nominal acceleration(s), paired with ``center_fractions`` by index
                unless ``allow_any_combination`` draws both independently.
            allow_any_combination: draw fraction and acceleration independently.
            seed: seed of the object's RNG (int, tuple of ints, or None for OS entropy).
        """
        self.center_fractions = _as_list(center_fractions)
        self.accelerations = _as_list(accelerations)
        if len(self.center_fractions) != len(self.accelerations) and not allow_any_combination:
            raise ValueError(
                "number of center fractions must match number of accelerations "
                "unless allow_any_combination is True"
            )
        self.allow_any_combination = allow_any_combination
        self.rng = np.random.RandomState(seed)

    def reseed(self, seed: Seed) -> None:
        """Reseed this object's RNG (per DataLoader worker or DDP rank)."""
        self.rng.seed(seed)

    def __call__(self, width: int, offset: int | None = None, seed: Seed = None) -> tuple[np.ndarray, int]:
        """Sample a mask for ``width`` columns.

        Args:
            width: number of phase-encode columns W.
            offset: first sampled outer column (equispaced / magic kinds); random if None.
            seed: temporary seed for this call only (the RNG state is restored afterwards).

        Returns:
            (bool mask of shape (W,), num_low_frequencies).
        """
        draw = self.draw(width, offset, seed)
        return draw.columns, draw.num_low_frequencies

    def draw(self, width: int, offset: int | None = None, seed: Seed = None) -> MaskDraw:
        """Like calling the object, with the drawn (center fraction, acceleration) pair returned too."""
        width = int(width)
        if width < 1:
            raise ValueError(f"width must be positive, got {width}")
        with _temporary_seed(self.rng, seed):
            center, outer, num_low, center_fraction, acceleration = self._sample(width, offset)
        return MaskDraw(center | outer, num_low, float(center_fraction), float(acceleration))

    def _choose(self) -> tuple[float, float]:
        """Draw the (center fraction, acceleration) pair, in fastMRI's RNG order."""
        if self.allow_any_combination:
            return self.rng.choice(self.center_fractions), self.rng.choice(self.accelerations)
        index = self.rng.randint(len(self.center_fractions))
        return self.center_fractions[index], self.accelerations[index]

    def _sample(self, width: int, offset: int | None) -> tuple[np.ndarray, np.ndarray, int, float, float]:
        """Center block, outer columns, the number of low frequencies and the drawn pair for one draw."""
        center_fraction, acceleration = self._choose()
        num_low = round(width * center_fraction)
        outer = self._outer_mask(width, acceleration, offset, num_low)
        return _center_mask(width, num_low), outer, num_low, center_fraction, acceleration

    def _outer_mask(self, width: int, acceleration: float, offset: int | None, num_low: int) -> np.ndarray:
        """Bool mask (W,) of the sampled columns outside the center block."""
        raise NotImplementedError


def _center_mask(width: int, num_low: int) -> np.ndarray:
    """Bool mask (W,) of the ``num_low`` contiguous center columns, placed as fastMRI does."""
    mask = np.zeros(width, dtype=bool)
    start = (width - num_low + 1) // 2
    mask[start : start + num_low] = True
    return mask


class RandomMask(MaskFunc):
    """Outer columns kept independently with the probability that gives W/acc on average."""

    kind = "random"

    def _outer_mask(self, width: int, acceleration: float, offset: int | None, num_low: int) -> np.ndarray:
        prob = (width / acceleration - num_low) / (width - num_low)
        return self.rng.uniform(size=width) < prob


class EquispacedMask(MaskFunc):
    """Every ``acc``-th column from an offset in [0, acc)."""

    kind = "equispaced"

    def _outer_mask(self, width: int, acceleration: float, offset: int | None, num_low: int) -> np.ndarray:
        step = _as_step(acceleration)
        if offset is None:
            offset = self.rng.randint(0, high=step)
        mask = np.zeros(width, dtype=bool)
        mask[offset::step] = True
        return mask


class EquispacedFractionMask(MaskFunc):
    """Equispaced with the spacing stretched so the total count matches W/acc (rounded positions)."""

    kind = "equispaced-fraction"

    def _outer_mask(self, width: int, acceleration: float, offset: int | None, num_low: int) -> np.ndarray:
        spacing = (acceleration * (num_low - width)) / (num_low * acceleration - width)
        if offset is None:
            offset = self.rng.randint(0, high=round(spacing))
        positions = np.around(np.arange(offset, width - 1, spacing)).astype(np.uint)
        mask = np.zeros(width, dtype=bool)
        mask[positions] = True
        return mask


class MagicMask(MaskFunc):
    """Offset sampling: separate offsets for the positive and negative halves, then fftshift."""

    kind = "magic"

    def _outer_mask(self, width: int, acceleration: float, offset: int | None, num_low: int) -> np.ndarray:
        step = _as_step(acceleration)
        if offset is None:
            offset = self.rng.randint(0, high=step)
        if offset % 2 == 0:
            offset_pos, offset_neg = offset + 1, offset + 2
        else:
            offset_pos, offset_neg = offset + 2, offset - 1
        positive = np.zeros((width + 1) // 2, dtype=bool)
        negative = np.zeros(width - (width + 1) // 2, dtype=bool)
        positive[offset_pos::step] = True
        negative[offset_neg::step] = True
        return np.fft.fftshift(np.concatenate((positive, negative[::-1])))


class MagicFractionMask(MagicMask):
    """Magic mask whose spacing is adjusted so center + outer columns total round(W/acc)."""

    kind = "magic-fraction"

    def _sample(self, width: int, offset: int | None) -> tuple[np.ndarray, np.ndarray, int, float, float]:
        center_fraction, acceleration = self._choose()
        target = round(width / acceleration)
        num_low = max(min(round(width * center_fraction), target), 1)
        remaining = target - num_low
        if remaining <= 0:
            raise ValueError(
                f"magic-fraction: width {width} at acceleration {acceleration} leaves no outer columns to sample"
            )
        step = round(width / remaining)
        return _center_mask(width, num_low), self._outer_mask(width, step, offset, num_low), num_low, center_fraction, acceleration


_KIND_CLASSES: dict[str, type[MaskFunc]] = {
    "random": RandomMask,
    "equispaced": EquispacedMask,
    "equispaced-fraction": EquispacedFractionMask,
    "magic": MagicMask,
    "magic-fraction": MagicFractionMask,
}


def create_mask_func(
    kind: str,
    center_fractions: float | Sequence[float],
    accelerations: float | Sequence[float],
    seed: Seed = None,
) -> MaskFunc:
    """Mask object of family ``kind`` (one of ``MASK_KINDS``; fastMRI's ``_`` spellings accepted)."""
    cls = _KIND_CLASSES.get(kind.replace("_", "-"))
    if cls is None:
        raise ValueError(f"unknown mask kind {kind!r}; expected one of {', '.join(MASK_KINDS)}")
    return cls(center_fractions, accelerations, seed=seed)


def make_mask(
    kind: str,
    width: int,
    accelerations: float | Sequence[float],
    center_fractions: float | Sequence[float],
    seed: Seed = None,
) -> tuple[np.ndarray, int]:
    """One mask: bool (W,) over phase-encode columns and num_low_frequencies.

    Equal to ``create_mask_for_mask_type(kind, cfs, accs)((1, 1, W, 1), None, seed)`` in
    fastMRI (the pair is drawn from ``seed`` too when several are given).
    """
    return create_mask_func(kind, center_fractions, accelerations)(width, seed=seed)


def for_acceleration(kind: str, acceleration: float, center_fraction: float | None = None) -> MaskFunc:
    """The mask function of one setting: `kind` at `acceleration` with `center_fraction`
    (default: `default_center_fraction(acceleration)`), as inference and the benchmarks use it."""
    cf = default_center_fraction(acceleration) if center_fraction is None else float(center_fraction)
    return create_mask_func(kind, [cf], [float(acceleration)])


def undersample(base: Acquisition, func: MaskFunc, seed: Seed = None) -> Acquisition:
    """`base` retrospectively undersampled by one draw of `func`: the one sampling path of `recon`.

    The draw is `func(base.width, seed=seed)` (fastMRI's RNG order; `seed` None draws from the
    function's own RNG, as training workers do); the columns are kept inside `base`'s sampled
    columns and the calibration region is the drawn centre block (`retrospective`). The
    provenance records the kind, the drawn (acceleration, center fraction) pair and the seed.
    """
    draw = func.draw(base.width, seed=seed)
    provenance = MaskProvenance(func.kind, draw.acceleration, draw.center_fraction, seed)
    return retrospective(base, draw.columns, draw.num_low_frequencies, provenance)


def apply_mask(
    kspace: KSpace,
    mask: np.ndarray,
    padding: tuple[int, int] | None = None,
    out: torch.Tensor | None = None,
) -> tuple[KSpace, np.ndarray]:
    """Undersample k-space with a column mask, as fastMRI's ``apply_mask`` does.

    Args:
        kspace: complex k-space (..., H, W), NumPy array or torch tensor; columns on the last axis.
        mask: bool (or 0/1) mask of shape (W,).
        padding: (left, right) of the acquired columns; the mask is zeroed outside [left, right).
        out: for torch k-space, a tensor of the same shape and dtype to write the result into
            (e.g. one in shared memory).

    Returns:
        (``kspace * mask + 0.0`` of kspace's type, dtype and device; the +0.0 turns every -0.0
        into +0.0 so no sign information leaks from unsampled entries, and the bool mask (W,)
        after padding was applied).
    """
    mask = np.asarray(mask).astype(bool).reshape(-1)
    if mask.shape[0] != kspace.shape[-1]:
        raise ValueError(f"mask has {mask.shape[0]} columns but k-space has {kspace.shape[-1]}")
    if padding is not None:
        left, right = int(padding[0]), int(padding[1])
        mask = mask.copy()
        mask[: max(left, 0)] = False
        mask[max(right, 0) :] = False
    import torch  # here, not at the top: the command line reads MASK_KINDS without loading torch

    if isinstance(kspace, torch.Tensor):
        real_dtype = kspace.real.dtype if kspace.is_complex() else kspace.dtype
        weights = torch.from_numpy(mask).to(device=kspace.device, dtype=real_dtype)
        if out is None:
            return kspace * weights + 0.0, mask
        return torch.mul(kspace, weights, out=out).add_(0.0), mask
    real_dtype = np.real(kspace).dtype if np.iscomplexobj(kspace) else np.asarray(kspace).dtype
    masked = kspace * mask.astype(real_dtype) + real_dtype.type(0.0)
    return masked, mask
