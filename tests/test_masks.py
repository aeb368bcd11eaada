"""recon.masks against fastmri.data.subsample 0.3.0, bit for bit, and apply_mask's sign/padding rules."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from fastmri.data import subsample as fm_subsample
from fastmri.data import transforms as fm_transforms

from recon import masks

FASTMRI_CLASSES = {
    "random": fm_subsample.RandomMaskFunc,
    "equispaced": fm_subsample.EquiSpacedMaskFunc,
    "equispaced-fraction": fm_subsample.EquispacedMaskFractionFunc,
    "magic": fm_subsample.MagicMaskFunc,
    "magic-fraction": fm_subsample.MagicMaskFractionFunc,
}
WIDTHS = (356, 368, 372, 367, 33, 101, 320)
SETTINGS = ((4, 0.08), (8, 0.04))
INT_SEEDS = tuple(range(8)) + (2**31 - 1,)
FILENAMES = ("file1000000.h5", "file1001344.h5", "file_brain_AXT2_200_2000019.h5")


def fastmri_mask(func: fm_subsample.MaskFunc, width: int, offset: int | None = None, seed=None) -> tuple[np.ndarray, int]:
    """Call a fastMRI mask function the way its datasets do and flatten its (1,1,W,1) float mask."""
    mask, num_low = func((1, 1, width, 1), offset, seed)
    assert tuple(mask.shape) == (1, 1, width, 1)
    values = mask.numpy().reshape(-1)
    assert set(np.unique(values)) <= {0.0, 1.0}
    return values.astype(bool), int(num_low)


def assert_same(ours: tuple[np.ndarray, int], theirs: tuple[np.ndarray, int], case: str) -> None:
    """Masks equal column for column and the same num_low_frequencies."""
    assert ours[0].dtype == bool and ours[0].shape == theirs[0].shape, case
    assert ours[1] == theirs[1], case
    assert np.array_equal(ours[0], theirs[0]), case


def test_mask_kinds_listed() -> None:
    assert masks.MASK_KINDS == tuple(FASTMRI_CLASSES)


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_make_mask_matches_fastmri_seeded(kind: str) -> None:
    """Every width x setting x (int and filename) seed: make_mask == fastMRI with a per-call seed."""
    seeds = list(INT_SEEDS) + [masks.seed_from_filename(n) for n in FILENAMES]
    cases = 0
    for width, (acc, cf), seed in itertools.product(WIDTHS, SETTINGS, seeds):
        theirs = fastmri_mask(FASTMRI_CLASSES[kind]([cf], [acc]), width, seed=seed)
        ours = masks.make_mask(kind, width, acc, cf, seed=seed)
        assert_same(ours, theirs, f"{kind} W={width} acc={acc} cf={cf} seed={seed}")
        cases += 1
    assert cases == len(WIDTHS) * len(SETTINGS) * len(seeds)


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_float_accelerations_equal_int(kind: str) -> None:
    """Callers pass 4.0 / 8.0 as floats; the masks equal fastMRI's with int accelerations."""
    for width, (acc, cf) in itertools.product((368, 33), SETTINGS):
        theirs = fastmri_mask(FASTMRI_CLASSES[kind]([cf], [acc]), width, seed=(1, 2, 3))
        ours = masks.make_mask(kind, width, [float(acc)], [cf], seed=(1, 2, 3))
        assert_same(ours, theirs, f"{kind} W={width} acc={acc}")


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_mixed_lists_draw_sequence_matches_fastmri(kind: str) -> None:
    """One constructor-seeded object, many unseeded calls (pair drawn each call), seeded calls interleaved."""
    cfs, accs = [0.08, 0.04], [4, 8]
    for ctor_seed, width in itertools.product((0, 7, 12345), (368, 367, 101)):
        theirs_func = FASTMRI_CLASSES[kind](cfs, accs, seed=ctor_seed)
        ours_func = masks.create_mask_func(kind, cfs, accs, seed=ctor_seed)
        nlows = set()
        for call in range(12):
            seed = masks.seed_from_filename(FILENAMES[call % 3]) if call % 4 == 3 else None
            theirs = fastmri_mask(theirs_func, width, seed=seed)
            ours = ours_func(width, seed=seed)
            assert_same(ours, theirs, f"{kind} ctor_seed={ctor_seed} W={width} call={call}")
            nlows.add(ours[1])
        assert len(nlows) == 2, "both (cf, acc) pairs should be drawn over 12 calls"


@pytest.mark.parametrize("kind", masks.MASK_KINDS)
def test_any_combination_matches_fastmri(kind: str) -> None:
    """allow_any_combination draws fraction and acceleration independently, in fastMRI's order."""
    cfs, accs = [0.08, 0.04, 0.06], [4, 8]
    theirs_func = FASTMRI_CLASSES[kind](cfs, accs, allow_any_combination=True, seed=3)
    ours_func = type(masks.create_mask_func(kind, 0.08, 4))(cfs, accs, allow_any_combination=True, seed=3)
    for call in range(15):
        width = (368, 372, 33)[call % 3]
        assert_same(ours_func(width), fastmri_mask(theirs_func, width), f"{kind} call={call}")


@pytest.mark.parametrize("kind", ["equispaced", "equispaced-fraction", "magic", "magic-fraction"])
def test_explicit_offset_matches_fastmri(kind: str) -> None:
    for width, offset in itertools.product((368, 101), (0, 1, 2, 3)):
        theirs = fastmri_mask(FASTMRI_CLASSES[kind]([0.08], [4]), width, offset=offset, seed=5)
        ours = masks.create_mask_func(kind, 0.08, 4)(width, offset=offset, seed=5)
        assert_same(ours, theirs, f"{kind} W={width} offset={offset}")


def test_per_call_seed_restores_state_and_reseed() -> None:
    """A per-call seed leaves the object's sequence unchanged; reseed(s) equals a fresh object seeded s."""
    plain = masks.RandomMask([0.08, 0.04], [4, 8], seed=11)
    interrupted = masks.RandomMask([0.08, 0.04], [4, 8], seed=11)
    for _ in range(5):
        interrupted(368, seed=(9, 9))
        assert_same(interrupted(368), plain(368), "sequence after a seeded call")
    plain.reseed(42)
    fresh = masks.RandomMask([0.08, 0.04], [4, 8], seed=42)
    for _ in range(3):
        assert_same(plain(372), fresh(372), "after reseed")


def test_global_numpy_rng_untouched() -> None:
    np.random.seed(2024)
    before = np.random.get_state()
    for kind in masks.MASK_KINDS:
        masks.make_mask(kind, 368, [4, 8], [0.08, 0.04], seed=1)
        masks.make_mask(kind, 368, 4, 0.08)
        func = masks.create_mask_func(kind, [0.08, 0.04], [4, 8])
        func(367)
        func.reseed(5)
        func(367, seed=masks.seed_from_filename("file1000000.h5"))
    after = np.random.get_state()
    assert before[0] == after[0] and np.array_equal(before[1], after[1]) and before[2:] == after[2:]


def test_seed_from_filename_uses_basename_with_extension() -> None:
    expected = tuple(map(ord, "file1000000.h5"))
    assert masks.seed_from_filename("file1000000.h5") == expected
    assert masks.seed_from_filename(Path("/data/knee/val") / "file1000000.h5") == expected
    assert masks.seed_from_filename("/data/knee/val/file1000000.h5") == expected


def test_random_mask_acceleration_only_on_average() -> None:
    """Random masks keep W/acc columns in expectation, not exactly."""
    width = 368
    counts = np.array([masks.make_mask("random", width, 4, 0.08, seed=s)[0].sum() for s in range(300)])
    assert abs(counts.mean() - width / 4) < 1.5
    assert counts.min() < width / 4 < counts.max()


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="unknown mask kind"):
        masks.make_mask("spiral", 368, 4, 0.08)
    with pytest.raises(ValueError, match="match"):
        masks.RandomMask([0.08, 0.04], [4])
    with pytest.raises(ValueError, match="whole number"):
        masks.make_mask("equispaced", 368, 4.5, 0.08, seed=0)
    assert masks.create_mask_func("equispaced_fraction", 0.08, 4).__class__ is masks.EquispacedFractionMask


def _signed_kspace(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Complex64 k-space whose real and imaginary parts are all strictly negative (worst case for -0.0)."""
    return (-(rng.random(shape) + 0.1) - 1j * (rng.random(shape) + 0.1)).astype(np.complex64)


def test_apply_mask_numpy_no_negative_zero_and_padding() -> None:
    rng = np.random.default_rng(0)
    kspace = _signed_kspace(rng, (2, 3, 8, 20))
    mask, _ = masks.make_mask("random", 20, 4, 0.08, seed=1)
    mask[:] = True
    masked, used = masks.apply_mask(kspace, mask, padding=(3, 17))
    assert masked.dtype == np.complex64 and masked.shape == kspace.shape
    expected = np.zeros(20, dtype=bool)
    expected[3:17] = True
    assert np.array_equal(used, expected)
    assert np.array_equal(masked[..., 3:17], kspace[..., 3:17])
    assert np.all(masked[..., :3] == 0) and np.all(masked[..., 17:] == 0)
    assert not np.signbit(masked.real[..., ~used]).any()
    assert not np.signbit(masked.imag[..., ~used]).any()
    assert mask.all(), "the caller's mask must not be modified"


def test_apply_mask_torch_no_negative_zero() -> None:
    rng = np.random.default_rng(1)
    kspace = torch.from_numpy(_signed_kspace(rng, (3, 16, 33)))
    mask, _ = masks.make_mask("equispaced", 33, 4, 0.08, seed=2)
    masked, used = masks.apply_mask(kspace, mask)
    assert isinstance(masked, torch.Tensor) and masked.dtype == torch.complex64
    assert np.array_equal(used, mask)
    parts = torch.view_as_real(masked).numpy()
    assert not np.signbit(parts[..., ~used, :]).any()
    assert np.array_equal(masked.numpy()[..., used], kspace.numpy()[..., used])


def test_apply_mask_matches_fastmri_apply_mask() -> None:
    """Same k-space, seed and padding: our output equals fastmri.data.transforms.apply_mask bit for bit."""
    rng = np.random.default_rng(2)
    width = 372
    kspace = _signed_kspace(rng, (4, 12, width))
    seed = masks.seed_from_filename("file1000000.h5")
    padding = (17, 355)
    theirs, their_mask, their_nlow = fm_transforms.apply_mask(
        fm_transforms.to_tensor(kspace), fm_subsample.RandomMaskFunc([0.08], [4]), seed=seed, padding=padding
    )
    mask, nlow = masks.make_mask("random", width, 4, 0.08, seed=seed)
    ours, used = masks.apply_mask(torch.from_numpy(kspace), mask, padding)
    assert nlow == their_nlow
    assert np.array_equal(used, their_mask.numpy().reshape(-1).astype(bool))
    theirs_np = theirs.numpy()
    ours_np = torch.view_as_real(ours).numpy()
    assert np.array_equal(ours_np, theirs_np)
    assert np.array_equal(np.signbit(ours_np), np.signbit(theirs_np))
