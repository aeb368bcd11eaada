"""Grouped summaries of per-volume benchmark rows, as text and markdown tables.

Groups: per acceleration and method over all volumes ("all"), and per value of a grouping key
(acquisition, coils or source; or the volumes' SNR bin at the median), so PD and PDFS are reported apart as fastMRI does. Spread is the
sample standard deviation (ddof = 1) shown in fastMRI's mean ± 2·std form; one volume gets no ±.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from recon.stats import PairedResult, describe, format_mean_spread, format_p, paired_notes

METRICS = ("ssim", "psnr", "nmse")
#: Keys a benchmark can be grouped by (fields of every per-volume row). "snr" bins the volumes at
#: the median of their estimated SNR (`snr_bins`).
GROUP_KEYS = ("acquisition", "coils", "source", "snr")
_DIGITS = {"ssim": 4, "psnr": 2, "nmse": 4, "seconds_per_slice": 3}
_LABELS = {"ssim": "SSIM", "psnr": "PSNR (dB)", "nmse": "NMSE", "seconds_per_slice": "s/slice"}


def snr_bins(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """File -> SNR bin: "SNR >= median (m)" or "SNR < median (m)", m the median of the files'
    estimated SNR (row field `snr`), or "SNR unknown" for a file without an estimate.

    The bar issue 21 sets for low-SNR data is met on the volumes at or above the median SNR, so
    this is the binning a benchmark reports by `--by snr`.
    """
    per_file = {r["file"]: r.get("snr") for r in rows}
    known = [v for v in per_file.values() if v is not None]
    if not known:
        return {f: "SNR unknown" for f in per_file}
    median = float(np.median(known))
    return {f: "SNR unknown" if v is None else f"SNR {'>=' if v >= median else '<'} median ({median:.1f})" for f, v in per_file.items()}


def summarize(rows: Sequence[dict[str, Any]], by: str | None = "acquisition") -> list[dict[str, Any]]:
    """Summary rows per (acceleration, group, method): volumes, mean and std (ddof 1) of each metric.

    `<metric>_std` is None for a single volume (JSON null, not NaN).
    `group` is "all" (every volume of that acceleration) or a value of `by`; the per-value rows
    are kept even when there is only one value, so a reader sees which acquisition was scored.
    """
    if by is not None and by not in GROUP_KEYS:
        raise ValueError(f"cannot group by {by!r}; choose one of {', '.join(GROUP_KEYS)}")
    order = {m: i for i, m in enumerate(dict.fromkeys(r["method"] for r in rows))}
    bins = snr_bins(rows) if by == "snr" else {}
    groups: dict[tuple[float, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(float(r["acceleration"]), "all", r["method"])].append(r)
        if by is not None:
            groups[(float(r["acceleration"]), bins[r["file"]] if by == "snr" else str(r.get(by)), r["method"])].append(r)
    out = []
    for (acc, group, method), items in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] != "all", kv[0][1], order[kv[0][2]])):
        row: dict[str, Any] = {"acceleration": acc, "group": group, "by": None if group == "all" else by, "method": method, "volumes": len(items)}
        for m in (*METRICS, "seconds_per_slice"):
            d = describe([it[m] for it in items])
            row[m], row[f"{m}_std"] = d["mean"], (d["std"] if d["n"] > 1 else None)
        out.append(row)
    return out


def _cell(row: dict[str, Any], metric: str) -> str:
    return format_mean_spread(row[metric], row[f"{metric}_std"], row["volumes"], _DIGITS[metric])


def _group_title(row: dict[str, Any]) -> str:
    if row["group"] == "all":
        return "all volumes"
    return row["group"] if row["by"] == "snr" else f"{row['by']} = {row['group']}"


def table_sections(summary: Sequence[dict[str, Any]]) -> list[tuple[float, str, list[dict[str, Any]]]]:
    """(acceleration, group title, rows) per table, in report order."""
    sections: dict[tuple[float, str], list[dict[str, Any]]] = {}
    for r in summary:
        sections.setdefault((r["acceleration"], _group_title(r)), []).append(r)
    return [(acc, title, rows) for (acc, title), rows in sections.items()]


def markdown_tables(summary: Sequence[dict[str, Any]]) -> list[str]:
    """One markdown table per acceleration and group (mean ± 2·std, ddof 1)."""
    lines: list[str] = []
    last_acc = None
    for acc, title, rows in table_sections(summary):
        if acc != last_acc:
            lines += [f"## {acc:g}x", ""]
            last_acc = acc
        lines += [f"### {acc:g}x, {title}", "", "| method | volumes | SSIM | PSNR (dB) | NMSE | s/slice |", "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| {r['method']} | {r['volumes']} | {_cell(r, 'ssim')} | {_cell(r, 'psnr')} | {_cell(r, 'nmse')} | {r['seconds_per_slice']:.3f} |")
        lines.append("")
    return lines


def paired_rows(results: Sequence[PairedResult]) -> list[dict[str, str]]:
    """Display strings of paired comparisons (one dict per table row)."""
    out = []
    for r in results:
        d = _DIGITS.get(r.metric, 4)
        out.append({
            "accel": f"{r.acceleration:g}x",
            "method": r.method,
            "metric": _LABELS.get(r.metric, r.metric),
            "n": str(r.n),
            "mean diff": f"{r.mean_diff:+.{d}f}",
            "95% CI (bootstrap)": f"[{r.ci_low:+.{d}f}, {r.ci_high:+.{d}f}]",
            "improved": f"{r.improved}/{r.n}",
            "W+": f"{r.w_plus:g}",
            "p (Wilcoxon, exact)": format_p(r.p),
            "p (Holm)": format_p(r.p_holm),
            "sig.": r.mark,
        })
    return out


def markdown_paired(results: Sequence[PairedResult]) -> list[str]:
    """Markdown section of the paired statistics with its caveats."""
    if not results:
        return []
    rows = paired_rows(results)
    head = list(rows[0])
    lines = [f"## Paired differences against `{results[0].reference}`", ""]
    lines += [f"- {n}" for n in paired_notes(results)] + [""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r[h] for h in head) + " |" for r in rows]
    return lines + [""]


def text_table(summary: Sequence[dict[str, Any]]) -> str:
    """Plain-text table for the terminal: every group, mean ± 2·std (ddof 1)."""
    width = max([len(r["group"]) for r in summary] + [5])
    lines = [f"{'accel':>5}  {'group':<{width}}  {'method':<12} {'vols':>4}  {'SSIM':>15}  {'PSNR (dB)':>13}  {'NMSE':>15}  {'s/slice':>8}"]
    for r in summary:
        lines.append(
            f"{r['acceleration']:>4g}x  {r['group']:<{width}}  {r['method']:<12} {r['volumes']:>4}  {_cell(r, 'ssim'):>15}  "
            f"{_cell(r, 'psnr'):>13}  {_cell(r, 'nmse'):>15}  {r['seconds_per_slice']:8.3f}"
        )
    lines.append("(mean ± 2·std over volumes, std with ddof = 1 as fastMRI's runstats; no ± for one volume)")
    return "\n".join(lines)


def text_paired(results: Sequence[PairedResult]) -> str:
    """Plain-text paired statistics with their caveats."""
    if not results:
        return ""
    rows = paired_rows(results)
    head = list(rows[0])
    widths = {h: max(len(h), *(len(r[h]) for r in rows)) for h in head}
    lines = ["  ".join(f"{h:<{widths[h]}}" for h in head)]
    lines += ["  ".join(f"{r[h]:<{widths[h]}}" for h in head) for r in rows]
    return "\n".join(lines + paired_notes(results))
