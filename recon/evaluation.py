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
from recon.io.hdf5 import open_h5
from recon.metrics import spread, volume_metrics

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


def read_target(path: str | os.PathLike[str], key: str | None = None, rows: slice | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Target volume `(S, h, w)` float32 and root attrs of a fastMRI file (`reconstruction_rss` or `_esc`).

    `rows` reads only those slices (the rest of the file is never loaded).
    """
    keys = [key] if key else ["reconstruction_rss", "reconstruction_esc"]
    with open_h5(path) as f:
        for k in keys:
            if k in f:
                ds = f[k]
                if not isinstance(ds, h5py.Dataset):
                    raise InputError(path, f"'{k}' is an HDF5 group, not an image dataset")
                data = ds[rows if rows is not None else slice(None)]
                return np.asarray(data, dtype=np.float32), {a: _attr(v) for a, v in f.attrs.items()}
    raise InputError(path, f"no target dataset ({' or '.join(keys)})")


def score_volume(target_path: Path, prediction_path: Path, key: str | None = None) -> VolumeScore:
    """Metrics of one prediction file against its target file.

    The prediction must have the target's slice count, be at least the target's size (it is
    center-cropped to it, as fastMRI does) and be finite; anything else is an InputError.
    """
    target, t_attrs = read_target(target_path, key)
    pred, p_attrs = read_reconstruction(prediction_path)
    if pred.ndim != 3 or pred.shape[0] != target.shape[0] or pred.shape[1] < target.shape[1] or pred.shape[2] < target.shape[2]:
        raise InputError(prediction_path, f"shape {pred.shape} does not match target {target.shape} (same slices, at least the target's size)")
    if not np.isfinite(pred).all():
        raise InputError(prediction_path, "prediction contains NaN or Inf")
    if not np.isfinite(target).all():
        raise InputError(target_path, "target contains NaN or Inf")
    if not np.any(target):
        raise InputError(target_path, "target is all zero (NMSE and PSNR are undefined)")
    try:
        scores = volume_metrics(target, pred)
    except ValueError as err:
        raise InputError(prediction_path, str(err)) from err
    bad = {m: float(scores[m]) for m in METRICS if not np.isfinite(scores[m])}
    if bad:
        raise InputError(target_path, f"metrics are not finite {bad} ")
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
            row[f"{m}_std"] = spread(vals)
        rows.append(row)
    return rows


def evaluate_folders(
    targets: Path, predictions: Path, key: str | None = None, allow_missing: bool = False
) -> tuple[list[VolumeScore], list[tuple[str, str]]]:
    """Score every prediction `*.h5` against the target file of the same name.

    Every target needs a prediction and every prediction a target (g-factor maps beside the
    predictions, `<name>_gfactor.h5`, are not predictions): a missing or extra file is a
    failure, unless `allow_missing` (then targets without a prediction are skipped and counted
    by the caller via `missing_predictions`). Returns the scores and `(file, reason)` for
    predictions that could not be scored.
    """
    scores: list[VolumeScore] = []
    failures: list[tuple[str, str]] = []
    if not Path(targets).is_dir():
        raise InputError(targets, "targets folder not found")
    if not Path(predictions).is_dir():
        raise InputError(predictions, "predictions folder not found")
    preds = [p for p in sorted(Path(predictions).glob("*.h5")) if not _gfactor_map(p, Path(targets))]
    if not preds:
        raise InputError(predictions, "no *.h5 prediction files")
    if not allow_missing:
        for tgt in missing_predictions(targets, predictions):
            failures.append((str(tgt), f"{tgt}: no prediction {Path(predictions) / tgt.name} (use --allow-missing to score the others)"))
    for pred in preds:
        tgt = Path(targets) / pred.name
        try:
            if not tgt.is_file():
                raise InputError(pred, f"extra prediction: no target {tgt}")
            scores.append(score_volume(tgt, pred, key))
        except InputError as err:
            failures.append((str(pred), str(err)))
    return scores, failures


def _gfactor_map(path: Path, targets: Path) -> bool:
    """Whether `path` is a g-factor map written beside a reconstruction (`recon reconstruct
    --gfactor`: `<name>_gfactor.h5`) rather than a prediction (no target of that name)."""
    return path.name.endswith("_gfactor.h5") and not (targets / path.name).is_file()


def missing_predictions(targets: Path, predictions: Path) -> list[Path]:
    """Target files `*.h5` without a prediction of the same name."""
    return [t for t in sorted(Path(targets).glob("*.h5")) if not (Path(predictions) / t.name).is_file()]


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
