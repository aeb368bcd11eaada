"""One sampling path: inference, training and the benchmark scripts draw the same masks and
calibration regions through `recon.masks.undersample`, and the masks recorded before the paths
were unified (`tests/data/sampling_golden.json`, `benchmarks/golden_sampling.py`) are unchanged."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from recon.data import SliceDataset, VarNetTransform
from recon.masks import DEFAULT_CENTER_FRACTIONS, create_mask_func, for_acceleration, seed_from_filename, undersample
from recon.io.fastmri import read_info
from recon.io.scan import open_scan
from recon.pipeline import file_acquisition, open_file
from recon.train.config import TrainConfig

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import golden_sampling as golden  # noqa: E402
from _common import calib_region, column_mask, undersampled  # noqa: E402


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return golden.simulate(tmp_path_factory.mktemp("sampling"))


def test_every_path_draws_the_recorded_masks(folders: dict[str, Path]) -> None:
    """Same columns and calibration region as recorded from the three separate paths of before."""
    recorded = json.loads(golden.GOLDEN.read_text())
    assert recorded["simulate"] == golden.SIMULATE
    live = golden.record(folders)
    assert len(live) == len(recorded["entries"]) == 180
    for got, want in zip(live, recorded["entries"]):
        assert got == want, {k: want[k] for k in ("path", "source", "file", "acceleration", "kind", "seed")}


def _training(folder: Path, transform: VarNetTransform, key: Any) -> tuple[np.ndarray, tuple[int, int]]:
    dataset = SliceDataset(folder, transform, use_cache=False)
    try:
        sample = dataset[key]
    finally:
        dataset.close()
    return sample.mask.reshape(-1).numpy(), tuple(int(v) for v in sample.calib)


def _inference(path: Path, acceleration: float, kind: str, seed: Any) -> tuple[np.ndarray, tuple[int, int]]:
    with open_scan(path) as scan:
        acq = file_acquisition(scan, acceleration, None, kind, seed)
    with open_file(path, acceleration, None, kind, seed=seed) as data:
        assert np.array_equal(data.acquisition.columns, acq.columns) and data.acquisition.calib == acq.calib
    return acq.columns, acq.calib


def _benchmark(path: Path, acceleration: float, kind: str, seed: Any) -> tuple[np.ndarray, tuple[int, int]]:
    batch = undersampled(path, acceleration, kind, seed).batch
    return column_mask(batch), calib_region(batch)


@pytest.mark.parametrize("kind", golden.KINDS)
def test_training_inference_and_benchmarks_agree(folders: dict[str, Path], kind: str) -> None:
    """For each file, acceleration and seed (the file name; a training key's `(seed, epoch,
    index)`; an integer, which training reaches as the first draw of a function seeded with it),
    the three paths give the same sampled columns and calibration region."""
    compared = 0
    for folder in folders.values():
        paths = sorted(folder.glob("*.h5"))
        for acceleration in golden.ACCELERATIONS:
            for index, path in enumerate(paths):
                func = for_acceleration(kind, acceleration)
                cases = [
                    (seed_from_filename(path.name), VarNetTransform(func, use_seed=True), index),
                    ((7, 2, index), VarNetTransform(func, use_seed=False, seed=7), (index, 2)),
                    (5, VarNetTransform(create_mask_func(kind, func.center_fractions, func.accelerations, seed=5), use_seed=False), index),
                ]
                for seed, transform, key in cases:
                    train_cols, train_calib = _training(folder, transform, key)
                    for cols, calib in (_inference(path, acceleration, kind, seed), _benchmark(path, acceleration, kind, seed)):
                        assert np.array_equal(cols, train_cols) and calib == train_calib, (path.name, acceleration, seed)
                    compared += 1
    assert compared == 2 * 2 * 2 * 3


def test_undersample_records_the_drawn_setting(folders: dict[str, Path]) -> None:
    """With several settings the pair is drawn from the seed; the acquisition records it and its
    centre block is the drawn one, inside the acquirable columns."""
    base = read_info(sorted(folders["knee"].glob("*.h5"))[0]).acquisition()
    defaults = TrainConfig(data=Path("."), out=Path("."))
    func = create_mask_func("random", defaults.center_fractions, defaults.accelerations)
    drawn = set()
    for epoch in range(8):
        acq = undersample(base, func, (0, epoch, 3))
        prov = acq.provenance
        assert (prov.kind, prov.seed) == ("random", (0, epoch, 3))
        assert DEFAULT_CENTER_FRACTIONS[prov.acceleration] == prov.center_fraction
        assert acq.num_low_frequencies == round(base.width * prov.center_fraction)
        assert base.acquirable[0] <= acq.calib[0] and acq.calib[1] <= base.acquirable[1]
        assert acq.columns[acq.calib[0]:acq.calib[1]].all() and not acq.columns[: base.acquirable[0]].any()
        drawn.add(prov.acceleration)
    assert drawn == set(DEFAULT_CENTER_FRACTIONS)


def test_center_fraction_defaults_live_in_one_table() -> None:
    defaults = TrainConfig(data=Path("."), out=Path("."))
    assert dict(zip(defaults.accelerations, defaults.center_fractions)) == DEFAULT_CENTER_FRACTIONS
    assert for_acceleration("random", 8.0).draw(368, seed=1).center_fraction == DEFAULT_CENTER_FRACTIONS[8.0]
