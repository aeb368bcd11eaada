"""Benchmark figures: image panels per acceleration (target, methods, |error|, zoomed ROI) and an SSIM bar chart.

Every figure is rendered to PNG bytes (for report.html's inline images) and saved beside the
report (for report.md's links). The previewed slice is the middle slice of the first volume.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.ndimage import uniform_filter

from recon.io import atomic_path


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def roi_box(target: np.ndarray) -> tuple[int, int, int]:
    """(top, left, size) of a square region of interest: a quarter of the image side, centred on
    the strongest local edge energy of the target (where reconstructions differ most visibly)."""
    h, w = target.shape
    size = max(8, min(h, w) // 4)
    gy, gx = np.gradient(target.astype(np.float64))
    energy = uniform_filter(np.hypot(gx, gy), size=size, mode="constant")
    cy, cx = np.unravel_index(int(np.argmax(energy)), energy.shape)
    top = int(np.clip(cy - size // 2, 0, h - size))
    left = int(np.clip(cx - size // 2, 0, w - size))
    return top, left, size


def panel_figure(preview: dict[str, Any], acc: float, methods: Sequence[str]) -> Any:
    """Rows: image, |error| (shared colour bar), zoomed ROI; columns: target then each method.

    Titles give each image's SSIM / PSNR against the target slice (data range = the volume's max).
    """
    plt = _plt()
    from matplotlib.patches import Rectangle

    target = np.asarray(preview["target"], dtype=np.float32)
    vmax = float(np.percentile(target, 99.5)) or 1.0
    emax = 0.25 * vmax
    top, left, size = roi_box(target)
    shown = [m for m in methods if f"{m}@{acc:g}" in preview["images"]]
    cols = 1 + len(shown)
    fig, axes = plt.subplots(3, cols, figsize=(2.5 * cols + 0.9, 8.2), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": [1, 1, 1]})
    fig.suptitle(f"{acc:g}x — {preview['file']}, slice {preview['slice']}")
    axes[0, 0].imshow(target, cmap="gray", vmin=0, vmax=vmax)
    axes[0, 0].set_title("target (RSS)\n ", fontsize=9)
    axes[0, 0].add_patch(Rectangle((left - 0.5, top - 0.5), size, size, fill=False, edgecolor="yellow", linewidth=1))
    axes[1, 0].axis("off")
    axes[1, 0].text(0.5, 0.5, f"|error| colour scale\n0 to {emax:.3g}\n(25% of the\ntarget's 99.5th pct)", ha="center", va="center", fontsize=8, transform=axes[1, 0].transAxes)
    axes[2, 0].imshow(target[top : top + size, left : left + size], cmap="gray", vmin=0, vmax=vmax)
    axes[2, 0].set_title("target, zoom", fontsize=9)
    err_im = None
    for j, name in enumerate(shown, start=1):
        key = f"{name}@{acc:g}"
        img = np.asarray(preview["images"][key], dtype=np.float32)
        sc = preview["scores"][key]
        axes[0, j].imshow(img, cmap="gray", vmin=0, vmax=vmax)
        psnr = f"{sc['psnr']:.1f} dB" if np.isfinite(sc["psnr"]) else "inf (slice equals the target)"
        axes[0, j].set_title(f"{name}\nSSIM {sc['ssim']:.3f}, PSNR {psnr}", fontsize=9)
        err_im = axes[1, j].imshow(np.abs(img - target), cmap="inferno", vmin=0, vmax=emax)
        axes[1, j].set_title(f"|error| {name}", fontsize=9)
        axes[2, j].imshow(img[top : top + size, left : left + size], cmap="gray", vmin=0, vmax=vmax)
        axes[2, j].set_title(f"{name}, zoom", fontsize=9)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if err_im is not None:
        fig.colorbar(err_im, ax=list(axes[1, 1:]), shrink=0.9, label="|error|")
    return fig


def bar_figure(summary: Sequence[dict[str, Any]], methods: Sequence[str], accelerations: Sequence[float]) -> Any:
    """Mean SSIM per method and acceleration over all volumes; whiskers ±2·std (ddof 1) when n > 1.

    The legend sits above the axes so that it never covers a bar.
    """
    plt = _plt()
    rows = {(r["method"], r["acceleration"]): r for r in summary if r["group"] == "all"}
    fig, ax = plt.subplots(figsize=(2.0 + 1.3 * len(methods), 3.8), layout="constrained")
    width = 0.8 / max(1, len(accelerations))
    for i, acc in enumerate(accelerations):
        got = [rows.get((m, acc)) for m in methods]
        vals = [r["ssim"] if r else np.nan for r in got]
        errs = [2 * r["ssim_std"] if r and r["volumes"] > 1 else 0.0 for r in got]
        ax.bar(np.arange(len(methods)) + i * width, vals, width, yerr=errs, capsize=3, label=f"{acc:g}x")
    ax.set_xticks(np.arange(len(methods)) + width * (len(accelerations) - 1) / 2, methods)
    ax.set_ylabel("SSIM (mean over volumes)")
    finite = [r["ssim"] for r in rows.values() if np.isfinite(r["ssim"])]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 0.1), min(1.0, max(finite) + 0.05))
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.01), ncol=max(1, len(accelerations)), frameon=False)
    return fig


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; closes it."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def save_png(data: bytes, path: Path) -> Path:
    """Write PNG bytes atomically."""
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)
    return path
