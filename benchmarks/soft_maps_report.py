"""Before / after a change of the classical methods on the same volumes, slices and masks.

Reads the per-volume rows of two `recon benchmark` results.json files (or, for before, of a
`benchmarks/bart_compare.py` result: its `ours <method>` rows), and writes results/<stem>.json and .md:
per acceleration and method the mean ± std over volumes (ddof 0, as the README table) of SSIM
and PSNR before and after, and the paired SSIM difference (mean, smallest, volumes improved).
Usage:

    python benchmarks/soft_maps_report.py BEFORE.json AFTER_results.json --stem soft_maps_accept_mni152 \\
        --title "..." --command "..." [--methods sense,cs,cs-tv]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from _common import write_results


def _by_volume(rows: list[dict[str, Any]], method: str, accel: float, prefix: str = "") -> dict[str, dict[str, float]]:
    out = {}
    for r in rows:
        acc = float(r.get("acceleration", r.get("accel")))
        if r["method"] == prefix + method and acc == accel:
            out[r["file"]] = {"ssim": float(r["ssim"]), "psnr": float(r["psnr"])}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--stem", required=True)
    p.add_argument("--title", required=True)
    p.add_argument("--command", required=True, help="the commands that made AFTER (stated in the report)")
    p.add_argument("--methods", default="sense,cs,cs-tv")
    args = p.parse_args()
    before = json.loads(Path(args.before).read_text())
    after = json.loads(Path(args.after).read_text())
    methods = [m for m in args.methods.split(",") if m]
    accels = sorted({float(r["acceleration"]) for r in after["rows"]})
    table: list[dict[str, Any]] = []
    lines = [f"# {args.title}", ""]
    for acc in accels:
        lines += [f"## {acc:g}x", "", "| method | volumes | SSIM before | SSIM after | SSIM after - before (min, improved) | PSNR before | PSNR after |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for m in methods:
            prefix = "ours " if any(str(r["method"]).startswith("ours ") for r in before["rows"]) else ""
            b, a = _by_volume(before["rows"], m, acc, prefix), _by_volume(after["rows"], m, acc)
            files = sorted(set(b) & set(a))
            if not files:
                continue
            sb, sa = np.array([b[f]["ssim"] for f in files]), np.array([a[f]["ssim"] for f in files])
            pb, pa = np.array([b[f]["psnr"] for f in files]), np.array([a[f]["psnr"] for f in files])
            d = sa - sb
            table.append({"method": m, "acceleration": acc, "volumes": len(files), "ssim_before": sb.mean(), "ssim_before_std": sb.std(),
                          "ssim_after": sa.mean(), "ssim_after_std": sa.std(), "psnr_before": pb.mean(), "psnr_after": pa.mean(),
                          "psnr_after_std": pa.std(), "ssim_diff": d.mean(), "ssim_diff_min": d.min(), "improved": int((d > 0).sum()),
                          "per_volume": {f: {"before": b[f], "after": a[f]} for f in files}})
            lines.append(f"| {m} | {len(files)} | {sb.mean():.4f} ± {sb.std():.4f} | {sa.mean():.4f} ± {sa.std():.4f} | "
                         f"{d.mean():+.4f} ({d.min():+.4f}, {(d > 0).sum()}/{len(files)}) | {pb.mean():.2f} | {pa.mean():.2f} |")
        lines.append("")
    lines += ["## SSIM per volume (before / after)", "", "| file | " + " | ".join(f"{m} {acc:g}x" for acc in accels for m in methods) + " |",
              "| --- |" + " --- |" * (len(accels) * len(methods))]
    files = sorted({f for t in table for f in t["per_volume"]})
    for f in files:
        cells = []
        for acc in accels:
            for m in methods:
                t = next((t for t in table if t["method"] == m and t["acceleration"] == acc), None)
                v = t["per_volume"].get(f) if t else None
                cells.append(f"{v['before']['ssim']:.3f} / {v['after']['ssim']:.3f}" if v else "-")
        lines.append(f"| {f} | " + " | ".join(cells) + " |")
    lines += ["", "Before / after: the `recon benchmark` results.json files made by:", "", "```sh", args.command, "```", ""]
    write_results(args.stem, {"command": args.command, "table": table, "before_results": before, "after_results": after}, "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
