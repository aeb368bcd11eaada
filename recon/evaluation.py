"""Score existing reconstructions against fastMRI targets, exactly as `fastmri.evaluate` does.

Per volume: both volumes center-cropped to the target's size, NMSE, PSNR and SSIM with
`data_range = target.max()` (`recon.metrics`). Volumes are grouped by acceleration (from the
prediction's attrs, else the target file's) and by acquisition (CORPD_FBK / CORPDFS_FBK).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import h5py
import numpy as np

from recon.io import InputError
from recon.io.fastmri import read_reconstruction
from recon.metrics import volume_metrics

METRICS = ("ssim", "psnr", "nmse")


@dataclass
class VolumeScore:
    """Metrics of one predicted volume."""

    file: str
    acceleration: float | None
    acquisition: str | None
    ssim: float
    psnr: float
    nmse: float


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_target(path: str | os.PathLike[str], key: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Target volume `(S, h, w)` float32 and root attrs of a fastMRI file (`reconstruction_rss` or `_esc`)."""
    try:
        with h5py.File(path, "r") as f:
            keys = [key] if key else ["reconstruction_rss", "reconstruction_esc"]
            for k in keys:
                if k in f:
                    return np.asarray(f[k], dtype=np.float32), {a: _attr(v) for a, v in f.attrs.items()}
    except OSError as err:
        raise InputError(path, f"cannot read as HDF5 ({err})") from err
    raise InputError(path, f"no target dataset ({' or '.join(keys)})")


def score_volume(target_path: Path, prediction_path: Path, key: str | None = None) -> VolumeScore:
    """Metrics of one prediction file against its target file."""
    target, t_attrs = read_target(target_path, key)
    pred, p_attrs = read_reconstruction(prediction_path)
    if pred.ndim != 3 or pred.shape[0] != target.shape[0]:
        raise InputError(prediction_path, f"shape {pred.shape} does not match target {target.shape}")
    scores = volume_metrics(target, pred)
    acc = p_attrs.get("acceleration", t_attrs.get("acceleration"))
    acq = p_attrs.get("acquisition") or t_attrs.get("acquisition")
    return VolumeScore(prediction_path.name, None if acc is None else float(acc), acq, **{m: float(scores[m]) for m in METRICS})


def aggregate(scores: Iterable[VolumeScore]) -> list[dict[str, Any]]:
    """Mean and sample std (ddof = 1, as fastMRI's runstats; None for one volume) per
    (acceleration, acquisition) group and per acceleration."""
    groups: dict[tuple[Any, Any], list[VolumeScore]] = defaultdict(list)
    for s in scores:
        groups[(s.acceleration, s.acquisition)].append(s)
        groups[(s.acceleration, "all")].append(s)
    rows = []
    for (acc, acq), items in sorted(groups.items(), key=lambda kv: (kv[0][0] or 0, str(kv[0][1]))):
        if acq == "all" and len({s.acquisition for s in items}) == 1 and (acc, items[0].acquisition) in groups:
            continue
        row: dict[str, Any] = {"acceleration": acc, "acquisition": acq, "volumes": len(items)}
        for m in METRICS:
            vals = np.array([getattr(s, m) for s in items], dtype=np.float64)
            row[m] = float(vals.mean())
            row[f"{m}_std"] = float(vals.std(ddof=1)) if vals.size > 1 else None
        rows.append(row)
    return rows


def evaluate_folders(targets: Path, predictions: Path, key: str | None = None) -> tuple[list[VolumeScore], list[tuple[str, str]]]:
    """Score every prediction `*.h5` against the target file of the same name.

    Returns the scores and `(file, reason)` for predictions that could not be scored.
    """
    scores: list[VolumeScore] = []
    failures: list[tuple[str, str]] = []
    preds = sorted(Path(predictions).glob("*.h5"))
    if not preds:
        raise InputError(predictions, "no *.h5 prediction files")
    for pred in preds:
        tgt = Path(targets) / pred.name
        try:
            if not tgt.is_file():
                raise InputError(tgt, "target file missing for this prediction")
            scores.append(score_volume(tgt, pred, key))
        except InputError as err:
            failures.append((str(pred), str(err)))
    return scores, failures


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Plain-text table: fastMRI's mean ± 2·std (ddof 1) per group; no ± for one volume."""
    from recon.stats import format_mean_spread

    head = f"{'accel':>6} {'acquisition':<12} {'vols':>4}  {'SSIM':>15}  {'PSNR (dB)':>13}  {'NMSE':>15}"
    lines = [head]
    for r in rows:
        acc = "-" if r["acceleration"] is None else f"{r['acceleration']:g}x"
        cells = [format_mean_spread(r[m], r[f"{m}_std"], r["volumes"], 2 if m == "psnr" else 4) for m in METRICS]
        lines.append(f"{acc:>6} {str(r['acquisition']):<12} {r['volumes']:>4}  {cells[0]:>15}  {cells[1]:>13}  {cells[2]:>15}")
    lines.append("(mean ± 2·std over volumes, std with ddof = 1 as fastMRI's runstats; no ± for one volume)")
    return "\n".join(lines)


def scores_as_dicts(scores: Iterable[VolumeScore]) -> list[dict[str, Any]]:
    """JSON-ready per-volume rows."""
    return [asdict(s) for s in scores]
