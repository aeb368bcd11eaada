"""`recon.simulate`: the built-in simulated fastMRI-format multi-coil knee-like dataset.

Everything measured on this data is *simulated* and must be labelled so. Splits use disjoint
seed ranges so that training, tuning and reporting never see the same volume:
`TRAIN_SEED` (1000-1999), `TUNE_SEED` (2000-2999), `REPORT_SEED` (3000-3999), `ACCEPT_SEED`
(4000-4999); volume `i` of a dataset with seed `k` is drawn from `np.random.default_rng((k, i))`.

Two sources: the knee-like phantom (default) and `recon.simulate.mni152`, real anatomy from the
MNI ICBM152 template (train / tune / accept seeds only).
"""

from recon.simulate.dataset import (
    ACCEPT_SEED,
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
    "ACCEPT_SEED",
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
