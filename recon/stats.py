"""Paired statistics for method comparisons: every method sees the same volumes and masks.

Differences are paired by volume (method minus reference, per file and acceleration):

- mean difference with a percentile bootstrap 95% CI (it under-covers below about 10 volumes);
- exact two-sided Wilcoxon signed-rank p-value, computed by dynamic programming over the
  2^n sign patterns (zero differences dropped, tied magnitudes get average ranks); its floor
  is 2 / 2^n, so n < 6 volumes can never reach p < 0.05;
- Holm's step-down correction over the whole family (methods x accelerations x metrics);
- the number of volumes improved (higher SSIM / PSNR, lower NMSE).

Group summaries use the sample standard deviation (ddof = 1) and fastMRI's mean ± 2·std form
(its `runstats` reports); one sample has no spread, so no ± is given for it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

from recon.metrics import spread

#: Below this many paired volumes the percentile bootstrap CI is known to under-cover.
MIN_VOLUMES_FOR_CI = 10
#: Direction of "better" per metric (+1: higher is better, -1: lower is better).
HIGHER_IS_BETTER = {"ssim": 1, "psnr": 1, "nmse": -1}


def wilcoxon_signed_rank_exact(diffs: Sequence[float]) -> tuple[float, float, int]:
    """Exact two-sided Wilcoxon signed-rank test of paired differences against 0.

    Zero differences are dropped; tied |differences| share their average rank. The null
    distribution of W+ (sum of ranks of positive differences) is built by dynamic programming
    on doubled ranks (integers), so ties are handled exactly.

    Returns (W+, two-sided p-value, n used). With n = 0 the p-value is 1.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if not np.all(np.isfinite(d)):
        raise ValueError("differences must be finite")
    d = d[d != 0]
    n = int(d.size)
    if n == 0:
        return 0.0, 1.0, 0
    ranks2 = np.rint(2 * _average_ranks(np.abs(d))).astype(np.int64)
    w2_obs = int(ranks2[d > 0].sum())
    total = int(ranks2.sum())
    prob = np.zeros(total + 1, dtype=np.float64)
    prob[0] = 1.0
    for r in ranks2:
        shifted = np.zeros_like(prob)
        shifted[r:] = prob[: prob.size - r]
        prob = 0.5 * (prob + shifted)
    # W+ is symmetric about total/2: two-sided p = P(|W+ - total/2| >= |w_obs - total/2|).
    dev_obs = abs(2 * w2_obs - total)
    dev = np.abs(2 * np.arange(total + 1) - total)
    p = float(prob[dev >= dev_obs].sum())
    return w2_obs / 2.0, min(1.0, p), n


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of `x`, ties sharing the average of their ranks."""
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(x.size, dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < x.size:
        j = i
        while j + 1 < x.size and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return ranks


def bootstrap_ci(diffs: Sequence[float], level: float = 0.95, resamples: int = 10000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of `diffs` (deterministic for a given seed).

    Identical differences give the degenerate interval (d, d). One value gives (d, d) too: a
    bootstrap cannot show spread that one sample does not have.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.size == 0:
        return math.nan, math.nan
    if np.ptp(d) == 0:
        return float(d[0]), float(d[0])
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return float(min(low, d.mean())), float(max(high, d.mean()))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given), controlling the family-wise error."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = p.size
    order = np.argsort(p, kind="mergesort")
    adjusted = np.empty(m, dtype=np.float64)
    running = 0.0
    for k, idx in enumerate(order):
        running = max(running, min(1.0, (m - k) * p[idx]))
        adjusted[idx] = running
    return adjusted.tolist()


@dataclass
class PairedResult:
    """One comparison: `method` vs `reference` on `metric` at `acceleration`, over `n` volumes."""

    method: str
    reference: str
    acceleration: float
    metric: str
    n: int
    mean_diff: float
    ci_low: float
    ci_high: float
    improved: int
    w_plus: float
    n_nonzero: int
    p: float
    p_holm: float = math.nan
    significant: bool = False

    @property
    def mark(self) -> str:
        """'*' when significant after Holm at alpha 0.05, else ''."""
        return "*" if self.significant else ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def paired_comparisons(
    rows: Sequence[dict[str, Any]],
    reference: str,
    metrics: Sequence[str] = ("ssim", "psnr"),
    alpha: float = 0.05,
    seed: int = 0,
) -> list[PairedResult]:
    """Paired statistics of every method against `reference`, per acceleration and metric.

    `rows` are per-volume rows with keys file, method, acceleration and the metrics. Volumes
    are paired on (file, acceleration); a volume missing for either method is left out.
    Holm's correction runs over all returned comparisons together.
    """
    by_key: dict[tuple[str, float, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["file"], float(r["acceleration"]), r["method"])
        if key in by_key:
            raise ValueError(f"two rows for file {key[0]}, {key[1]:g}x, {key[2]}: volumes must have unique file names to be paired")
        by_key[key] = r
    methods = [m for m in dict.fromkeys(r["method"] for r in rows) if m != reference]
    accs = sorted({float(r["acceleration"]) for r in rows})
    results: list[PairedResult] = []
    for acc in accs:
        for method in methods:
            files = sorted(f for (f, a, m) in by_key if a == acc and m == method and (f, a, reference) in by_key)
            if not files:
                continue
            for metric in metrics:
                diffs = np.array([by_key[(f, acc, method)][metric] - by_key[(f, acc, reference)][metric] for f in files])
                low, high = bootstrap_ci(diffs, seed=seed)
                w_plus, p, n_nonzero = wilcoxon_signed_rank_exact(diffs)
                better = int(np.sum(HIGHER_IS_BETTER.get(metric, 1) * diffs > 0))
                results.append(PairedResult(method, reference, acc, metric, len(files), float(diffs.mean()), low, high, better, w_plus, n_nonzero, p))
    for res, adj in zip(results, holm([r.p for r in results])):
        res.p_holm = adj
        res.significant = adj < alpha
    return results


def describe(values: Sequence[float]) -> dict[str, float | int]:
    """n, mean, sample std (ddof = 1; NaN for one value) of `values`."""
    v = np.asarray(values, dtype=np.float64)
    std = spread(v)
    return {"n": int(v.size), "mean": float(v.mean()) if v.size else math.nan, "std": math.nan if std is None else std}


def format_mean_spread(mean: float, std: float | None, n: int, digits: int = 4, two_std: bool = True) -> str:
    """'mean ± 2·std' (fastMRI's form; `two_std=False`: ± std), or just 'mean' when n < 2."""
    if n < 2 or std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {(2 * std if two_std else std):.{digits}f}"


def format_p(p: float) -> str:
    """A p-value for tables: 4 significant digits, '<1e-4' below that."""
    if not math.isfinite(p):
        return "-"
    return "<1e-4" if p < 1e-4 else f"{p:.4g}"


def paired_notes(results: Sequence[PairedResult]) -> list[str]:
    """Caveats that hold for these comparisons (few volumes for the CI, the Wilcoxon floor)."""
    if not results:
        return []
    n_min = min(r.n for r in results)
    notes = [
        f"Paired by volume against `{results[0].reference}`: difference = method − reference; "
        f"p = exact two-sided Wilcoxon signed-rank, Holm-corrected over all {len(results)} comparisons "
        "(methods × accelerations × metrics); * = significant at 0.05 after Holm."
    ]
    if n_min < MIN_VOLUMES_FOR_CI:
        notes.append(f"Only {n_min} volume(s) in some comparisons: the bootstrap 95% CI under-covers below about {MIN_VOLUMES_FOR_CI} volumes.")
    floor = 2.0 / 2.0 ** n_min if n_min else 1.0
    if floor >= 0.05:
        notes.append(f"With n = {n_min} the smallest possible Wilcoxon p is {floor:.3g} (2/2^n): no difference can be significant; at least 6 volumes are needed.")
    elif floor * len(results) >= 0.05:
        n_needed = next(n for n in range(n_min, 64) if 2.0 / 2.0**n * len(results) < 0.05)
        notes.append(f"With n = {n_min} and {len(results)} comparisons the smallest possible Holm-adjusted p is "
                     f"{min(1.0, floor * len(results)):.3g}: no difference can be significant; {n_needed} volumes would be needed.")
    return notes
