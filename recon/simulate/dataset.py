"""Write simulated volumes as fastMRI multi-coil HDF5 files, one seed per volume, disjoint splits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recon.io.fastmri import write_fastmri_volume
from recon.simulate.volume import SimConfig, simulate_volume

#: First seed of each split; each split owns the 1000 seeds from its first one.
TRAIN_SEED = 1000
TUNE_SEED = 2000
REPORT_SEED = 3000
#: Acceptance split (issue 21): nothing is trained or tuned on it, and no number was reported on it
#: before the split was frozen.
ACCEPT_SEED = 4000
SEED_RANGES: dict[str, range] = {
    "train": range(TRAIN_SEED, TRAIN_SEED + 1000),
    "tune": range(TUNE_SEED, TUNE_SEED + 1000),
    "report": range(REPORT_SEED, REPORT_SEED + 1000),
    "accept": range(ACCEPT_SEED, ACCEPT_SEED + 1000),
}


def seed_split(seed: int) -> str | None:
    """Name of the split ("train", "tune", "report", "accept") that owns `seed`, or None outside all."""
    for name, r in SEED_RANGES.items():
        if seed in r:
            return name
    return None


def volume_filename(prefix: str, seed: int, index: int) -> str:
    """File name of volume `index` of a dataset with `seed`, e.g. `file_sim_3000_0000.h5`."""
    return f"file_{prefix}_{seed}_{index:04d}.h5"


def simulate_dataset(
    out_dir: str | Path,
    volumes: int,
    slices: int,
    coils: int,
    seed: int,
    config: SimConfig | None = None,
    prefix: str = "sim",
    progress: bool = False,
) -> list[Path]:
    """Write `volumes` fastMRI-format multi-coil files to `out_dir`; return their paths.

    Volume `i` is `simulate_volume((seed, i), slices, coils, config=config)`, so a file depends
    only on (seed, i, sizes, config): rerunning with more volumes keeps the earlier files.
    The split that `seed` belongs to (see `SEED_RANGES`) is recorded in the `split` attribute.
    """
    if volumes < 0 or slices < 1 or coils < 1:
        raise ValueError(f"need volumes >= 0, slices >= 1, coils >= 1; got {volumes}, {slices}, {coils}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    indices: Any = range(volumes)
    if progress:
        from tqdm import tqdm

        indices = tqdm(indices, desc="simulate", unit="volume")
    for i in indices:
        vol = simulate_volume((seed, i), slices, coils, config=config, keep_maps=False)
        vol.attrs["split"] = seed_split(seed) or "none"
        path = out / volume_filename(prefix, seed, i)
        write_fastmri_volume(path, vol.kspace, vol.header_xml, target=vol.target, attrs=vol.attrs)
        paths.append(path)
    return paths
