"""Record the masks and calibration regions that inference, training and the benchmarks draw.

For small simulated files of both sources (`recon simulate DIR --preset small --volumes 2
--slices 1 --seed 4000`, with and without `--source mni152`), accelerations 4 and 8 and the
mask kinds random / equispaced / equispaced-fraction / magic, each sampling path is asked for
the sampled columns and the calibration region it hands a method or a model:

* `inference`: the batch `recon reconstruct` / `recon benchmark` reconstruct (file-name seed);
* `validation`: a training run's validation sample (file-name seed);
* `training`: training samples addressed as `(index, epoch)` (seed `(0, epoch, index)`), one
  setting per acceleration; `training-mixed`: the same with `recon train`'s default settings
  (both accelerations, the pair drawn from the same seed; acceleration recorded as null);
* `benchmark`: the batch of the baseline benchmark scripts (file-name seed, random masks);
* `benchmark-int-seed`: the integer-seeded masks of the in-memory scripts (`bench_grappa.py`:
  equispaced at 4x and 8x, `bench_coil_compression.py`: random and equispaced at 4x; seed 1).

The result, `tests/data/sampling_golden.json`, is what `tests/test_sampling_path.py` compares
the live paths against, so that any change of a mask or of a random stream shows.

Usage:
    python benchmarks/golden_sampling.py [--out tests/data/sampling_golden.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import calib_region, column_mask, undersampled  # noqa: E402

from recon.cli import main as recon_main  # noqa: E402
from recon.data import SliceDataset, VarNetTransform  # noqa: E402
from recon.masks import create_mask_func, default_center_fraction  # noqa: E402
from recon.pipeline import open_file, slice_batch  # noqa: E402
from recon.train.config import TrainConfig  # noqa: E402

GOLDEN = Path(__file__).parents[1] / "tests" / "data" / "sampling_golden.json"
KINDS = ("random", "equispaced", "equispaced-fraction", "magic")
ACCELERATIONS = (4.0, 8.0)
SIMULATE = {"knee": ["--preset", "small", "--volumes", "2", "--slices", "1", "--seed", "4000"],
            "mni152": ["--source", "mni152", "--preset", "small", "--volumes", "2", "--slices", "1", "--seed", "4000"]}
#: The training seed of the recorded training samples, and the epochs recorded.
TRAINING_SEED = 0
EPOCHS = (0, 1)
#: The integer seed of the in-memory benchmark scripts and the (acceleration, kind) pairs they use.
INT_SEED = 1
INT_SEEDED = ((4.0, "random"), (4.0, "equispaced"), (8.0, "equispaced"))
FILE_NAME = "file name"
CPU = torch.device("cpu")


def simulate(root: Path) -> dict[str, Path]:
    """The simulated folders under `root`, one per source."""
    folders = {}
    for source, options in SIMULATE.items():
        folders[source] = root / source
        if recon_main(["simulate", str(folders[source]), *options]) != 0:
            raise RuntimeError(f"recon simulate failed for {source}")
    return folders


def _entry(path: str, file: Path, padding: tuple[int, int], acceleration: float | None, kind: str,
           center_fraction: float | None, seed: Any, columns: Any, calib: Any) -> dict[str, Any]:
    """One recorded draw: the sampled columns as indices, the calibration region `[start, stop)`."""
    cols = np.asarray(columns, dtype=bool).reshape(-1)
    return {"path": path, "file": Path(file).name, "width": int(cols.size), "padding": [int(p) for p in padding],
            "acceleration": acceleration, "kind": kind, "center_fraction": center_fraction, "seed": seed,
            "columns": np.flatnonzero(cols).tolist(), "calib": [int(v) for v in calib]}


def inference(folder: Path, acceleration: float, kind: str) -> Iterator[dict[str, Any]]:
    """The batch a method gets from `recon.pipeline` (file-name seed)."""
    for path in sorted(folder.glob("*.h5")):
        with open_file(path, acceleration, None, kind) as data:
            batch = slice_batch(data, 0, 1, CPU)
        yield _entry("inference", path, batch.extent[1], acceleration, kind, default_center_fraction(acceleration), FILE_NAME,
                     column_mask(batch), calib_region(batch))


def _samples(folder: Path, transform: VarNetTransform, keys: list[Any]) -> Iterator[tuple[Any, Any, tuple[int, int]]]:
    """(key, sample, padding) of the training dataset of `folder` for `keys` (all items when empty)."""
    dataset = SliceDataset(folder, transform, use_cache=False)
    padding = {v.path: v.padding for v in dataset.volumes}
    try:
        for key in keys or range(len(dataset)):
            index = key[0] if isinstance(key, tuple) else key
            yield key, dataset[key], padding[dataset.slice_index[index][0]]
    finally:
        dataset.close()


def _calib(sample: Any) -> list[int]:
    """The calibration region a training sample hands the model (`calib=`)."""
    return [int(v) for v in sample.calib]


def validation(folder: Path, acceleration: float, kind: str) -> Iterator[dict[str, Any]]:
    """A training run's validation samples (file-name seed)."""
    cf = default_center_fraction(acceleration)
    transform = VarNetTransform(create_mask_func(kind, [cf], [acceleration]), use_seed=True)
    for _, sample, padding in _samples(folder, transform, []):
        yield _entry("validation", Path(sample.fname), padding, acceleration, kind, cf, FILE_NAME, sample.mask.numpy(), _calib(sample))


def _training_keys(folder: Path) -> list[tuple[int, int]]:
    count = len(sorted(folder.glob("*.h5")))
    return [(index, epoch) for epoch in EPOCHS for index in range(count)]


def training(folder: Path, acceleration: float, kind: str) -> Iterator[dict[str, Any]]:
    """Training samples addressed as `(index, epoch)`, one setting."""
    cf = default_center_fraction(acceleration)
    transform = VarNetTransform(create_mask_func(kind, [cf], [acceleration]), use_seed=False, seed=TRAINING_SEED)
    for (index, epoch), sample, padding in _samples(folder, transform, _training_keys(folder)):
        yield _entry("training", Path(sample.fname), padding, acceleration, kind, cf, [TRAINING_SEED, epoch, index],
                     sample.mask.numpy(), _calib(sample))


def training_mixed(folder: Path, kind: str) -> Iterator[dict[str, Any]]:
    """Training samples with `recon train`'s default settings (the pair drawn per sample)."""
    defaults = TrainConfig(data=folder, out=folder)
    func = create_mask_func(kind, defaults.center_fractions, defaults.accelerations)
    transform = VarNetTransform(func, use_seed=False, seed=TRAINING_SEED)
    for (index, epoch), sample, padding in _samples(folder, transform, _training_keys(folder)):
        yield _entry("training-mixed", Path(sample.fname), padding, None, kind, None, [TRAINING_SEED, epoch, index],
                     sample.mask.numpy(), _calib(sample))


def benchmark(folder: Path, acceleration: float) -> Iterator[dict[str, Any]]:
    """The batches of the baseline benchmark scripts (`benchmarks/_common.py`, random masks)."""
    for path in sorted(folder.glob("*.h5")):
        batch = undersampled(path, acceleration).batch
        yield _entry("benchmark", path, batch.extent[1], acceleration, "random", default_center_fraction(acceleration), FILE_NAME,
                     column_mask(batch), calib_region(batch))


def benchmark_int_seed(folder: Path, acceleration: float, kind: str) -> Iterator[dict[str, Any]]:
    """The integer-seeded masks of `bench_grappa.py` / `bench_coil_compression.py`."""
    cf = default_center_fraction(acceleration)
    for path in sorted(folder.glob("*.h5")):
        batch = undersampled(path, acceleration, kind, INT_SEED).batch
        yield _entry("benchmark-int-seed", path, batch.extent[1], acceleration, kind, cf, INT_SEED, column_mask(batch),
                     calib_region(batch))


def record(folders: dict[str, Path]) -> list[dict[str, Any]]:
    """Every recorded draw, in a fixed order, each tagged with its source."""
    entries: list[dict[str, Any]] = []
    for source, folder in folders.items():
        found: list[dict[str, Any]] = []
        for acceleration in ACCELERATIONS:
            for kind in KINDS:
                found += inference(folder, acceleration, kind)
                found += validation(folder, acceleration, kind)
                found += training(folder, acceleration, kind)
            found += benchmark(folder, acceleration)
        for kind in KINDS:
            found += training_mixed(folder, kind)
        for acceleration, kind in INT_SEEDED:
            found += benchmark_int_seed(folder, acceleration, kind)
        entries += [{"source": source, **e} for e in found]
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GOLDEN)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        entries = record(simulate(Path(tmp)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"simulate": SIMULATE, "entries": entries}
    args.out.write_text(json.dumps(payload, separators=(",", ":")) + "\n")
    print(f"{len(entries)} entries -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
