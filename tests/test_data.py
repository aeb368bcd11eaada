"""recon.data: slice dataset + metadata cache, sampling, VarNet transform vs fastMRI, worker masks."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from fastmri.data.mri_data import SliceDataset as FastMRISliceDataset
from fastmri.data.subsample import RandomMaskFunc
from fastmri.data.transforms import VarNetDataTransform

from recon.data import Sample, SliceDataset, VarNetTransform, collate, worker_init_fn, worker_seed
from recon.masks import create_mask_func
from tests.fastmri_files import COILS, COLS, CROP, PADDING, ROWS, SLICES, write_multicoil

NAMES = ("file1000001.h5", "file1000007.h5", "file1000033.h5")


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "multicoil_val"
    folder.mkdir()
    for seed, name in enumerate(NAMES):
        write_multicoil(folder / name, seed=seed)
    return folder


def _ds(root: Path, **kw: object) -> SliceDataset:
    return SliceDataset(root, cache_file=root.parent / "cache.json", **kw)


def test_raw_items(root: Path) -> None:
    ds = _ds(root)
    assert len(ds) == len(NAMES) * SLICES
    assert [(p.name, s) for p, s in ds.slice_index[:4]] == [(NAMES[0], 0), (NAMES[0], 1), (NAMES[0], 2), (NAMES[1], 0)]
    kspace, mask, target, attrs, fname, slice_num = ds[4]
    assert kspace.shape == (COILS, ROWS, COLS) and kspace.dtype == np.complex64
    assert mask is None and target.shape == CROP and (fname, slice_num) == (NAMES[1], 1)
    assert (attrs["padding_left"], attrs["padding_right"]) == PADDING and attrs["max"] == 2.5
    assert tuple(attrs["recon_size"]) == (*CROP, 1)


def test_cache_reused_and_invalidated(root: Path) -> None:
    first = _ds(root)
    assert [p.name for p in first.scanned] == list(NAMES)
    cache = json.loads((root.parent / "cache.json").read_text())
    assert sorted(Path(k).name for k in cache["files"]) == sorted(NAMES)
    again = _ds(root)
    assert again.scanned == []
    assert [v.num_slices for v in again.volumes] == [SLICES] * 3
    assert again.volumes[1].attrs == first.volumes[1].attrs and again.volumes[1].header == first.volumes[1].header
    np.testing.assert_array_equal(again[5][0], first[5][0])

    changed = root / NAMES[1]  # size change: rewritten with 5 slices
    write_multicoil(changed, seed=1, slices=5)
    resized = _ds(root)
    assert resized.scanned == [changed.absolute()] and len(resized) == 3 * SLICES + 2

    touched = root / NAMES[2]  # same bytes, new mtime
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert _ds(root).scanned == [touched.absolute()]
    assert _ds(root).scanned == []


def test_sample_rates(root: Path) -> None:
    by_slice = _ds(root, sample_rate=0.5, seed=1)
    assert len(by_slice) == round(9 * 0.5)
    assert by_slice.slice_index == _ds(root, sample_rate=0.5, seed=1).slice_index
    by_volume = _ds(root, volume_sample_rate=2 / 3, seed=1)
    assert len(by_volume.volumes) == 2 and len(by_volume) == 2 * SLICES
    kept = {p for p, _ in by_volume.slice_index}
    assert kept == {v.path for v in by_volume.volumes}
    with pytest.raises(ValueError):
        _ds(root, sample_rate=0.5, volume_sample_rate=0.5)


def test_validation_masks_fixed_per_volume(root: Path) -> None:
    ds = _ds(root, transform=VarNetTransform(create_mask_func("random", [0.08], [4]), use_seed=True))
    masks: dict[str, list[torch.Tensor]] = {}
    for i in range(len(ds)):
        sample = ds[i]
        assert isinstance(sample, Sample)
        masks.setdefault(sample.fname, []).append(sample.mask)
    for name in NAMES:
        assert all(torch.equal(m, masks[name][0]) for m in masks[name])
        assert torch.equal(ds[NAMES.index(name) * SLICES].mask, masks[name][0])  # again: same
    assert not torch.equal(masks[NAMES[0]][0], masks[NAMES[1]][0])


def test_masking_gives_positive_zero_and_padding(root: Path) -> None:
    ds = _ds(root, transform=VarNetTransform(create_mask_func("random", [0.08], [4])))
    sample = ds[0]
    mask = sample.mask.view(-1)
    assert sample.mask.shape == (1, 1, COLS) and sample.mask.dtype == torch.bool
    assert not mask[: PADDING[0]].any() and not mask[PADDING[1] :].any()
    zeros = sample.masked_kspace[..., ~mask]
    assert torch.all(zeros == 0) and not torch.signbit(torch.view_as_real(zeros)).any()
    assert sample.masked_kspace.dtype == torch.complex64 and sample.masked_kspace.shape == (COILS, ROWS, COLS)


def _compare(ours: Sample, theirs: object) -> None:
    np.testing.assert_array_equal(ours.masked_kspace.numpy(), torch.view_as_complex(theirs.masked_kspace).numpy())
    assert torch.equal(ours.mask.view(-1), theirs.mask.view(-1)) and theirs.mask.shape == (1, 1, COLS, 1)
    assert ours.num_low_frequencies == theirs.num_low_frequencies
    if ours.target.numel():
        assert torch.equal(ours.target, theirs.target)
    assert ours.max_value == theirs.max_value
    assert ours.crop_size == tuple(theirs.crop_size)
    assert (ours.fname, ours.slice_num) == (theirs.fname, theirs.slice_num)


@pytest.mark.parametrize("use_seed", [True, False])
def test_same_samples_as_fastmri(root: Path, tmp_path: Path, use_seed: bool) -> None:
    theirs = FastMRISliceDataset(
        root, "multicoil", VarNetDataTransform(RandomMaskFunc([0.08, 0.04], [4, 8], seed=11), use_seed=use_seed),
        use_dataset_cache=False, dataset_cache_file=tmp_path / "fm.pkl",
    )
    ours = _ds(root, transform=VarNetTransform(create_mask_func("random", [0.08, 0.04], [4, 8], seed=11), use_seed))
    assert len(ours) == len(theirs)
    for i in range(len(ours)):
        _compare(ours[i], theirs[i])


def test_same_samples_as_fastmri_challenge_file(tmp_path: Path) -> None:
    folder = tmp_path / "multicoil_challenge"
    folder.mkdir()
    mask = np.zeros(COLS, bool)
    mask[::3] = True
    mask[:4] = True  # inside the padding: must be zeroed
    write_multicoil(folder / "file1000100_v2.h5", mask=mask)
    theirs = FastMRISliceDataset(folder, "multicoil", VarNetDataTransform(), use_dataset_cache=False)
    ours = _ds(folder, transform=VarNetTransform())
    for i in range(SLICES):
        sample = ours[i]
        _compare(sample, theirs[i])
        assert sample.num_low_frequencies == 0 and sample.target.numel() == 0 and sample.max_value == 0.0
        assert not sample.mask.view(-1)[: PADDING[0]].any()


def _loader_masks(root: Path, seed: int) -> list[torch.Tensor]:
    """Masks of every item through a real 2-worker DataLoader with unseeded (training) masks."""
    ds = _ds(root, transform=VarNetTransform(create_mask_func("random", [0.08], [4], seed=0), use_seed=False))
    loader = torch.utils.data.DataLoader(
        ds, batch_size=None, num_workers=2, worker_init_fn=worker_init_fn,
        generator=torch.Generator().manual_seed(seed), multiprocessing_context="fork",
    )
    return [s.mask.view(-1).clone() for s in loader]


def test_masks_differ_across_workers_and_ranks(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "0")
    rank0 = _loader_masks(root, seed=123)
    # Items alternate between the 2 workers: worker 0 gets 0, 2, 4..., worker 1 gets 1, 3, 5...
    assert not any(torch.equal(rank0[k], rank0[k + 1]) for k in range(0, 8, 2))
    assert all(torch.equal(a, b) for a, b in zip(rank0, _loader_masks(root, seed=123)))  # reproducible
    monkeypatch.setenv("RANK", "1")
    rank1 = _loader_masks(root, seed=123)
    assert sum(torch.equal(a, b) for a, b in zip(rank0, rank1)) < 2
    assert worker_seed(5, 0) != worker_seed(5, 1) != worker_seed(6, 1)


def test_without_worker_init_workers_repeat_masks(root: Path) -> None:
    """The failure worker_init_fn prevents: forked workers inherit one RNG state."""
    ds = _ds(root, transform=VarNetTransform(create_mask_func("random", [0.08], [4], seed=0), use_seed=False))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")
    masks = [s.mask.view(-1) for s in loader]
    assert all(torch.equal(masks[k], masks[k + 1]) for k in range(0, 8, 2))


def test_worker_samples_equal_in_process_samples(root: Path) -> None:
    """Workers write masked k-space straight into shared memory; the samples must not change."""
    ds = _ds(root, transform=VarNetTransform(create_mask_func("random", [0.08], [4]), use_seed=True))
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork")
    seen = 0
    for i, sample in enumerate(loader):
        assert sample.masked_kspace.is_shared()
        ref = ds[i]
        assert torch.equal(sample.masked_kspace, ref.masked_kspace) and torch.equal(sample.mask, ref.mask)
        assert torch.equal(torch.view_as_real(sample.masked_kspace).signbit(), torch.view_as_real(ref.masked_kspace).signbit())
        seen += 1
    assert seen == len(ds)


def test_epoch_keys_give_reproducible_training_masks(root: Path) -> None:
    """Items addressed as (index, epoch) get the mask of seed (seed, epoch, index), in or out of workers."""
    func = create_mask_func("random", [0.08, 0.04], [4, 8])
    ds = _ds(root, transform=VarNetTransform(func, use_seed=False, seed=7))
    width = ds[0].masked_kspace.shape[-1]
    for index, epoch in ((0, 0), (4, 0), (4, 3)):
        want, nlow = func(width, None, (7, epoch, index))
        sample = ds[(index, epoch)]
        want[: PADDING[0]] = False
        want[PADDING[1]:] = False
        assert torch.equal(sample.mask.view(-1), torch.from_numpy(want)) and sample.num_low_frequencies == nlow
    assert len({tuple(ds[(4, epoch)].mask.view(-1).tolist()) for epoch in range(4)}) > 1  # a new mask per epoch
    keys = [(i, 1) for i in range(len(ds))]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, sampler=keys, collate_fn=collate, num_workers=2,
                                         multiprocessing_context="fork")
    batches = list(loader)
    assert all(b.masked_kspace.shape[0] == 2 and isinstance(b.fname, list) for b in batches[:-1])
    got = torch.cat([b.mask for b in batches])
    assert torch.equal(got, torch.stack([ds[k].mask for k in keys]))


def test_volume_items_and_one_off_reads_leave_the_cache_alone(root: Path) -> None:
    ds = _ds(root, volume_sample_rate=2 / 3, seed=3)
    for v, volume in enumerate(ds.volumes):
        items = ds.volume_items(v)
        assert [ds.slice_index[i] for i in items] == [(volume.path, s) for s in range(SLICES)]
    one = SliceDataset(root / NAMES[0], cache_file=root.parent / "other.json", use_cache=False)
    assert not (root.parent / "other.json").exists() and len(one) == SLICES
    np.testing.assert_array_equal(one.kspace(2), _ds(root)[2][0])
    with pytest.raises(ValueError, match="not both"):
        _ds(root, sample_rate=0.5, volume_sample_rate=0.5)
