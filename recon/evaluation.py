"""Score existing reconstructions against fastMRI targets, exactly as `fastmri.evaluate` does.

Per volume: both volumes center-cropped to the target's size, NMSE, PSNR and SSIM with
`data_range = target.max()` (`recon.metrics`). Volumes are grouped by acceleration (from the
prediction's attrs, else the target file's) and by acquisition (CORPD_FBK / CORPDFS_FBK).

A volume is scored only when the numbers can mean something: the target is a real, finite,
non-negative magnitude volume that is not all zero, and the prediction passes the checks
`recon reconstruct` applies to its own outputs (finite, no all-zero slice). Anything else is an
`InputError` naming the file; a bad pair fails alone and the others are still scored.
"""

from __future__ import annotations

import math
import os
import traceback
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from recon.core import image_problem
from recon.io import InputError
from recon.io.fastmri import read_reconstruction
from recon.io.scan import read_target
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


def check_target(path: str | os.PathLike[str], target: np.ndarray, first_slice: int = 0) -> None:
    """InputError unless `target` `(S, h, w)` is a usable magnitude volume.

    It must be finite (the error names the first bad slice, numbered from `first_slice`),
    non-negative (an RSS or ESC image is a magnitude: a negated or signed one makes
    `data_range = target.max()` meaningless) and not all zero (NMSE and PSNR divide by it).
    """
    flat = target.reshape(target.shape[0], -1)
    for s in range(flat.shape[0]):
        bad = ~np.isfinite(flat[s])
        if bad.any():
            raise InputError(path, f"target slice {first_slice + s}: {int(bad.sum())} of {flat[s].size} pixels are NaN or Inf")
    low = float(target.min())
    if low < 0:
        raise InputError(path, f"target has negative values (minimum {low:.4g}); a target is a magnitude image, every pixel >= 0")
    if not np.any(target):
        raise InputError(path, "target is all zero (NMSE and PSNR are undefined)")


def check_prediction(path: str | os.PathLike[str], pred: np.ndarray, target_shape: tuple[int, ...]) -> None:
    """InputError unless `pred` can be scored against a target of `target_shape` `(S, h, w)`.

    Same slice count, at least the target's size (it is center-cropped to it, as fastMRI does),
    and each slice finite and not all zero: the checks `recon reconstruct` applies to every
    image it writes, so a failed or empty reconstruction is never scored as a bad one.
    """
    s, h, w = target_shape
    if pred.ndim != 3 or pred.shape[0] != s or pred.shape[1] < h or pred.shape[2] < w:
        raise InputError(path, f"shape {pred.shape} does not match target {tuple(target_shape)} (same slices, at least the target's size)")
    problem = image_problem(pred)
    if problem is not None:
        raise InputError(path, f"prediction {problem} (a failed or empty reconstruction; recon reconstruct never writes one)")


def check_scores(path: str | os.PathLike[str], scores: dict[str, float], what: str = "prediction", hint: str = "is it a copy of the target?") -> dict[str, float]:
    """`scores` as plain floats, or InputError naming the metric that is not finite.

    After `check_target` / `check_prediction` the only way left is a prediction equal to the
    target over the scored region: its PSNR is +inf, which no mean, table or JSON file can hold.
    `what` names the image in the message, `hint` says what may have caused it.
    """
    values = {m: float(scores[m]) for m in METRICS}
    if values["psnr"] == math.inf:
        raise InputError(path, f"{what} equals the target exactly over the scored region: PSNR is infinite, "
                               f"so there is no error to score ({hint})")
    bad = [f"{m} is {v}" for m, v in values.items() if not math.isfinite(v)]
    if bad:
        raise InputError(path, f"{what}: {', '.join(bad)}; no score recorded")
    return values


def file_acceleration(path: str | os.PathLike[str], value: Any) -> float | None:
    """A file's `acceleration` attribute as a float, None when absent; InputError naming the
    file unless it is a finite number >= 1 (a NaN or Inf would end up in the results JSON)."""
    if value is None:
        return None
    try:
        acc = float(value)
    except (TypeError, ValueError):
        raise InputError(path, f"attribute 'acceleration' is {value!r}; expected a finite number >= 1") from None
    if not math.isfinite(acc) or acc < 1:
        raise InputError(path, f"attribute 'acceleration' is {acc}; expected a finite number >= 1")
    return acc


def score_volume(target_path: Path, prediction_path: Path, key: str | None = None) -> VolumeScore:
    """Metrics of one prediction file against its target file.

    Target and prediction are checked first (`check_target`, `check_prediction`), the metrics
    after (`check_scores`); every problem is an InputError naming the file it comes from.
    """
    target, t_attrs = read_target(target_path, key)
    check_target(target_path, target)
    pred, p_attrs = read_reconstruction(prediction_path)
    check_prediction(prediction_path, pred, target.shape)
    try:
        scores = check_scores(prediction_path, volume_metrics(target, pred))
    except ValueError as err:
        raise InputError(prediction_path, str(err)) from err
    if p_attrs.get("acceleration") is not None:
        acc = file_acceleration(prediction_path, p_attrs["acceleration"])
    else:
        acc = file_acceleration(target_path, t_attrs.get("acceleration"))
    acq = p_attrs.get("acquisition") or t_attrs.get("acquisition")
    return VolumeScore(prediction_path.name, acc, None if acq is None else str(acq), **scores)


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
    predictions that could not be scored; any error while scoring one pair, expected or not,
    fails that pair only, and its reason names the file.
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
        except Exception as err:  # noqa: BLE001 - one unreadable pair must not stop the others
            if os.environ.get("RECON_DEBUG"):
                traceback.print_exc()
            failures.append((str(pred), f"{pred}: {type(err).__name__}: {' '.join(str(err).split())}"))
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
