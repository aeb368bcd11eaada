"""Realism statistics of both simulated sources, per split, against `REALISM_BANDS`.

For each source (knee phantom, MNI152 template) and split it synthesizes `--volumes` volumes of
the `small` preset in memory and records `recon.simulate.realism.realism_metrics` (SNR from the
k-space noise estimate, k-space power-law slope, background fraction), the estimated / true noise
sigma, and whether each statistic is inside its band. Writes results/realism.json and .md. Usage:

    OMP_NUM_THREADS=1 python benchmarks/realism.py [--volumes 6] [--slices 2]
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from _common import write_results
from recon.simulate import ACCEPT_SEED, PRESETS, REPORT_SEED, TRAIN_SEED, TUNE_SEED, simulate_volume
from recon.simulate.mni152 import MNI_PRESETS, simulate_mni152_volume
from recon.simulate.realism import REALISM_BANDS, check_bands, realism_metrics

STATS = ("snr", "kspace_slope", "background_fraction")


def rows_for(source: str, split: str, seed: int, volumes: int, slices: int) -> list[dict[str, Any]]:
    """One row per volume: its realism metrics, true and estimated sigma, band checks."""
    rows = []
    for i in range(volumes):
        if source == "knee":
            cfg = PRESETS["small"]
            vol = simulate_volume((seed, i), num_slices=slices, config=cfg, keep_maps=False)
            kspace, target, sigma, label = vol.kspace, vol.target, cfg.noise * cfg.scale, vol.attrs["acquisition"]
        else:
            mvol = simulate_mni152_volume(seed, i, MNI_PRESETS["small"], num_slices=slices)
            kspace, target, sigma, label = mvol.kspace, mvol.target, mvol.sigma, f"{mvol.attrs['acquisition']} snr{mvol.attrs['snr']:g}"
        m = realism_metrics(kspace, target)
        rows.append({"source": source, "split": split, "seed": seed, "index": i, "acquisition": label, **m,
                     "sigma_true": sigma, "sigma_ratio": m["sigma"] / sigma, "in_band": check_bands(m)})
    return rows


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    """Bands, then min / median / max of each statistic per (source, split)."""
    lines = ["# Realism statistics of the simulated sources", "",
             "Simulated data only: knee-like phantom (`recon simulate`) and real-anatomy template (MNI152,",
             "`recon simulate --source mni152`), `small` preset. Statistics from `recon.simulate.realism`.", "",
             "| statistic | band |", "| --- | --- |"]
    lines += [f"| {k} | {lo:g} to {hi:g} |" for k, (lo, hi) in REALISM_BANDS.items()]
    lines += ["", "| source | split | volumes | SNR min / median / max | slope min / median / max | background min / median / max | est./true sigma (max dev.) | all in band |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["split"]), []).append(r)
    for (source, split), items in groups.items():
        cells = []
        for s in STATS:
            v = np.array([it[s] for it in items])
            cells.append(f"{v.min():.2f} / {np.median(v):.2f} / {v.max():.2f}")
        dev = max(abs(it["sigma_ratio"] - 1.0) for it in items)
        ok = sum(all(it["in_band"].values()) for it in items)
        name = "real-anatomy template (MNI152)" if source == "mni152" else "simulated phantom (knee)"
        lines.append(f"| {name} | {split} | {len(items)} | {' | '.join(cells)} | {100 * dev:.1f}% | {ok}/{len(items)} |")
    lines += ["", "Command:", "", "```sh", command, "```", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--volumes", type=int, default=6)
    p.add_argument("--slices", type=int, default=2)
    args = p.parse_args()
    plan = [("knee", "train", TRAIN_SEED), ("knee", "tune", TUNE_SEED), ("knee", "report", REPORT_SEED), ("knee", "accept", ACCEPT_SEED),
            ("mni152", "train", TRAIN_SEED), ("mni152", "tune", TUNE_SEED), ("mni152", "accept", ACCEPT_SEED)]
    rows = [r for source, split, seed in plan for r in rows_for(source, split, seed, args.volumes, args.slices)]
    command = f"OMP_NUM_THREADS=1 python benchmarks/realism.py --volumes {args.volumes} --slices {args.slices}"
    write_results("realism", {"bands": REALISM_BANDS, "rows": rows, "command": command}, markdown(rows, command))
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
