"""Challenge-style comparison of methods x accelerations on fastMRI-format files.

For every volume and acceleration the mask is seeded from the file name (identical across
methods), every method reconstructs the same undersampled k-space, and each volume is scored
with `recon.metrics` (fastMRI's SSIM / PSNR / NMSE) and timed (seconds per slice). Files are
independent tasks on `recon.runner` (in-process, or on Dask). Outputs: `results.json` (every
per-volume row), `report.md` (a table per acceleration) and PNG figures.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from recon import checks
from recon.evaluation import read_target
from recon.io import InputError, atomic_path
from recon.io.fastmri import FastMRIVolume
from recon.metrics import mean_pm, spread, volume_metrics
from recon.pipeline import build_method, read_kspace, resolve_device, run_method, undersample
from recon.runner import expand_inputs, run_batch, summary_table
from recon.validate import keep_previous

METRICS = ("ssim", "psnr", "nmse")


@dataclass
class BenchmarkJob:
    """Picklable per-file benchmark task: `job(path) -> {"rows": [...], "preview": {...}}`."""

    methods: list[str]
    accelerations: list[float]
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    device: str = "auto"
    max_slices: int | None = None
    mask_type: str = "random"
    batch_size: int = 8
    backend: str | None = None
    max_memory: int | None = None
    center_fraction: float | None = None

    def __call__(self, path: Path) -> dict[str, Any]:
        path = Path(path)
        with FastMRIVolume(path) as vol:
            info = vol.info
            if info.mask is not None:
                raise InputError(path, "already undersampled (has a mask); the benchmark needs fully sampled files")
            picked = range(info.num_slices)
            if self.max_slices and info.num_slices > self.max_slices:
                start = (info.num_slices - self.max_slices) // 2
                picked = range(start, start + self.max_slices)
            kspace = read_kspace(vol, picked, self.max_memory)
        target, _ = read_target(path, rows=slice(picked.start, picked.stop))
        device = resolve_device(self.device)
        rows: list[dict[str, Any]] = []
        preview: dict[str, Any] = {"target": target[target.shape[0] // 2].tolist(), "images": {}}
        for i, acc in enumerate(self.accelerations):
            last = i == len(self.accelerations) - 1  # the volume is not needed after the last mask: mask it in place
            data = undersample(kspace, info, acc, self.center_fraction, self.mask_type, inplace=last)
            for name in self.methods:
                method = build_method(name, {"device": str(device), **self.method_options.get(name, {})})
                _sync(device)
                start = time.perf_counter()
                checks.check_input(path, data.kspace, data.acquisition.column_mask, data.acquisition.calib, name)
                images = run_method(method, data, device, self.batch_size, self.backend)
                _sync(device)
                seconds = time.perf_counter() - start
                images = checks.check_images(path, images, f"{name} at {acc:g}x", data.kspace.shape[0])
                scores = volume_metrics(target, images)
                rows.append(
                    {
                        "file": path.name,
                        "method": name,
                        "acceleration": float(acc),
                        "acquisition": info.attrs.get("acquisition"),
                        "slices": int(images.shape[0]),
                        **{m: float(scores[m]) for m in METRICS},
                        "seconds_per_slice": seconds / images.shape[0],
                    }
                )
                preview["images"][f"{name}@{acc:g}"] = images[images.shape[0] // 2].tolist()
        return {"rows": rows, "preview": preview}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def summarize(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean and std of every metric and of seconds per slice, per (acceleration, method)."""
    groups: dict[tuple[float, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["acceleration"], r["method"])].append(r)
    out = []
    for (acc, method), items in sorted(groups.items(), key=lambda kv: kv[0][0]):
        row: dict[str, Any] = {"acceleration": acc, "method": method, "volumes": len(items)}
        for m in (*METRICS, "seconds_per_slice"):
            vals = np.array([it[m] for it in items], dtype=np.float64)
            row[m], row[f"{m}_std"] = float(vals.mean()), spread(vals)
        out.append(row)
    return out


def report_markdown(summary: Sequence[dict[str, Any]], note: str = "") -> str:
    """`report.md`: one table per acceleration (mean ± std over volumes)."""
    lines = ["# Benchmark report", ""]
    if note:
        lines += [note, ""]
    for acc in sorted({r["acceleration"] for r in summary}):
        lines += [f"## {acc:g}x", "", "| method | volumes | SSIM | PSNR (dB) | NMSE | s/slice |", "|---|---|---|---|---|---|"]
        for r in (r for r in summary if r["acceleration"] == acc):
            lines.append(
                f"| {r['method']} | {r['volumes']} | {mean_pm(r['ssim'], r['ssim_std'], '.4f')} | "
                f"{mean_pm(r['psnr'], r['psnr_std'], '.2f')} | {mean_pm(r['nmse'], r['nmse_std'], '.4f')} | "
                f"{r['seconds_per_slice']:.3f} |"
            )
        lines.append("")
    return "\n".join(lines)


def format_table(summary: Sequence[dict[str, Any]]) -> str:
    """Plain-text table for the terminal."""
    lines = [f"{'accel':>5}  {'method':<12} {'vols':>4}  {'SSIM':>15}  {'PSNR (dB)':>13}  {'NMSE':>15}  {'s/slice':>8}"]
    for r in summary:
        lines.append(
            f"{r['acceleration']:>4g}x  {r['method']:<12} {r['volumes']:>4}  {mean_pm(r['ssim'], r['ssim_std'], '.4f'):>15}  "
            f"{mean_pm(r['psnr'], r['psnr_std'], '5.2f'):>13}  {mean_pm(r['nmse'], r['nmse_std'], '.4f'):>15}  {r['seconds_per_slice']:8.3f}"
        )
    return "\n".join(lines)


def save_figures(preview: dict[str, Any], summary: Sequence[dict[str, Any]], out: Path, methods: Sequence[str], accelerations: Sequence[float]) -> list[Path]:
    """One panel per acceleration (target, each method, error maps) and an SSIM bar chart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths: list[Path] = []
    target = np.asarray(preview["target"], dtype=np.float32)
    vmax = float(np.percentile(target, 99.5)) or 1.0
    for acc in accelerations:
        cols = 1 + len(methods)
        fig, axes = plt.subplots(2, cols, figsize=(2.6 * cols, 5.4), squeeze=False)
        axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
        axes[0, 0].set_title("target")
        axes[1, 0].axis("off")
        for j, name in enumerate(methods, start=1):
            img = np.asarray(preview["images"][f"{name}@{acc:g}"], dtype=np.float32)
            axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
            axes[0, j].set_title(name)
            axes[1, j].imshow(np.abs(img - target), cmap="inferno", vmin=0, vmax=0.25 * vmax)
            axes[1, j].set_title("|error|")
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        fig.suptitle(f"{acc:g}x")
        fig.tight_layout()
        paths.append(_save(fig, out / f"panel_{acc:g}x.png"))
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(1.5 + 1.2 * len(methods), 3.5))
    width = 0.8 / max(1, len(accelerations))
    for i, acc in enumerate(accelerations):
        vals = [next((r["ssim"] for r in summary if r["method"] == m and r["acceleration"] == acc), np.nan) for m in methods]
        errs = [next((r["ssim_std"] or 0.0 for r in summary if r["method"] == m and r["acceleration"] == acc), 0.0) for m in methods]
        ax.bar(np.arange(len(methods)) + i * width, vals, width, yerr=errs, label=f"{acc:g}x")
    ax.set_xticks(np.arange(len(methods)) + width * (len(accelerations) - 1) / 2, methods)
    ax.set_ylabel("SSIM")
    ax.legend()
    fig.tight_layout()
    paths.append(_save(fig, out / "ssim_by_method.png"))
    plt.close(fig)
    return paths


def _save(fig: Any, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    return path


def run_benchmark(
    data: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    methods: Sequence[str],
    accelerations: Sequence[float],
    *,
    method_options: dict[str, dict[str, Any]] | None = None,
    device: str = "auto",
    max_slices: int | None = None,
    mask_type: str = "random",
    batch_size: int = 8,
    backend: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = True,
    note: str = "",
    max_memory: int | None = None,
    center_fraction: float | None = None,
) -> dict[str, Any]:
    """Run the benchmark over files/folders `data`; write results.json, report.md, figures to `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files, missing = expand_inputs(data)
    job = BenchmarkJob(list(methods), [float(a) for a in accelerations], dict(method_options or {}), device, max_slices, mask_type,
                       batch_size, backend, max_memory, center_fraction)
    results = missing + run_batch(job, files, workers=workers, scheduler=scheduler, progress=progress, desc="benchmark")
    rows = [row for r in results if r.status == "ok" for row in r.result["rows"]]
    summary = summarize(rows)
    doc = {
        "config": {**asdict(job), "data": [str(d) for d in data], "note": note},
        "rows": rows,
        "summary": summary,
        "failed": [{"file": r.file, "reason": r.reason} for r in results if r.status == "failed"],
    }
    keep_previous(out / "results.json")
    with atomic_path(out / "results.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=2, allow_nan=False))
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text(report_markdown(summary, note))
    ok = [r for r in results if r.status == "ok"]
    if ok:
        save_figures(ok[0].result["preview"], summary, out, methods, job.accelerations)
    doc["table"] = format_table(summary)
    doc["files_table"] = summary_table(results)
    return doc
