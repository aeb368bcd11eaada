"""Write a benchmark's reports: results are already in `results.json`; this adds the figures,
report.md (tables, paired statistics, settings, links to the figures) and report.html."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from recon.io import atomic_path
from recon.report.figures import bar_figure, panel_figure, png_bytes, save_png
from recon.report.html import report_html
from recon.report.settings import settings_lines
from recon.report.tables import markdown_paired, markdown_tables
from recon.stats import PairedResult


def write_reports(
    out: Path,
    summary: Sequence[dict[str, Any]],
    rows: Sequence[dict[str, Any]],
    paired: Sequence[PairedResult],
    settings: dict[str, Any],
    preview: dict[str, Any] | None,
    methods: Sequence[str],
    accelerations: Sequence[float],
    failed: Sequence[dict[str, str]] = (),
    warnings: Sequence[dict[str, str]] = (),
) -> list[Path]:
    """Write figures (PNG), report.md and report.html into `out`; returns the written paths.
    `warnings`: `{"file", "warning"}` per scored file a method warned about (e.g. outside the
    weights' training data), listed before the tables so no number is read without them."""
    figures: dict[str, bytes] = {}
    files: dict[str, str] = {}
    if preview is not None:
        for acc in accelerations:
            name = f"panel_{acc:g}x.png"
            caption = f"{acc:g}x: target, each method, |error| and a zoomed region ({preview['file']}, slice {preview['slice']})"
            figures[caption] = png_bytes(panel_figure(preview, acc, methods))
            files[caption] = name
    if rows:
        caption = "Mean SSIM per method and acceleration (whiskers ±2·std when n > 1)"
        figures[caption] = png_bytes(bar_figure(summary, methods, accelerations))
        files[caption] = "ssim_by_method.png"
    written = [save_png(figures[c], out / files[c]) for c in figures]
    lines = ["# Benchmark report", ""]
    note = settings.get("note") or ""
    if note:
        lines += [f"> {note}", ""]
    lines += ["Tables: mean ± 2·std over volumes (std with ddof = 1, as fastMRI's runstats); no ± where a group has one volume.", ""]
    if failed:
        lines += ["## Failed files", ""] + [f"- `{f['file']}`: {f['reason']}" for f in failed] + [""]
    if warnings:
        lines += ["## Warnings", ""] + [f"- `{w['file']}`: {w['warning']}" for w in warnings] + [""]
    lines += markdown_tables(summary)
    lines += markdown_paired(paired)
    if figures:
        lines += ["## Figures", ""] + [f"- [{c}]({files[c]})" for c in figures] + [""]
        lines += [f"![{c}]({files[c]})" for c in figures] + [""]
    lines += ["## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in settings_lines(settings)]
    lines += ["", "Per-volume rows: `results.json` (`rows`) and the sortable table in `report.html`.", ""]
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines))
    page = report_html(summary, rows, paired, settings_lines(settings), figures, failed, note, warnings)
    with atomic_path(out / "report.html") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return [*written, out / "report.md", out / "report.html"]
