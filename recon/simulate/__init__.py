"""`recon.simulate`: the built-in simulated fastMRI-format multi-coil knee-like dataset.

Everything measured on this data is *simulated* and must be labelled so. Splits use disjoint
seed ranges so that training, tuning and reporting never see the same volume:
`TRAIN_SEED` (1000-1999), `TUNE_SEED` (2000-2999), `REPORT_SEED` (3000-3999); volume `i` of a
dataset with seed `k` is drawn from `np.random.default_rng((k, i))`.
"""

from recon.simulate.dataset import (
    REPORT_SEED,
    SEED_RANGES,
    TRAIN_SEED,
    TUNE_SEED,
    seed_split,
    simulate_dataset,
    volume_filename,
)
from recon.simulate.volume import CONTRASTS, PRESETS, SimConfig, SimVolume, simulate_volume

__all__ = [
    "CONTRASTS",
    "PRESETS",
    "REPORT_SEED",
    "SEED_RANGES",
    "TRAIN_SEED",
    "TUNE_SEED",
    "SimConfig",
    "SimVolume",
    "seed_split",
    "simulate_dataset",
    "simulate_volume",
    "volume_filename",
]
