"""Issue 21's VarNet bar, checked from `recon benchmark` results on the acceptance split.

For each source, acceleration and group (all volumes, then each SNR bin of `--by snr`), the bar is
max(best classical SSIM + 0.03, zero-filled SSIM + 0.05); the table gives the learned method's SSIM,
the bar and the margin. Reads the `results.json` that `recon benchmark --out DIR` writes, one per
source, so the check is made from the same run that the committed tables come from.

    python benchmarks/acceptance_bar.py "simulated phantom=/tmp/acc/bench_knee/results.json" \
        "real-anatomy template (MNI152)=/tmp/acc/bench_mni152/results.json" --out benchmarks/results/acceptance_bar
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

CLASSICAL = ("sense", "cs", "cs-tv", "spirit", "grappa")
CLASSICAL_MARGIN = 0.03
ZERO_FILLED_MARGIN = 0.05


@dataclass(frozen=True)
class BarRow:
    """One cell of the bar check: SSIM means over the group's volumes."""

    source: str
    acceleration: float
    group: str
    volumes: int
    method: str
    ssim: float
    best_classical: str
    best_classical_ssim: float
    zero_filled_ssim: float
    bar: float

    @property
    def margin(self) -> float:
        return self.ssim - self.bar


def bar_rows(source: str, results: dict, method: str = "varnet") -> list[BarRow]:
    """Bar rows of one source's `recon benchmark` results (its `groups` table)."""
    cells: dict[tuple[float, str], dict[str, dict]] = {}
    for group in results["groups"]:
        cells.setdefault((group["acceleration"], group["group"]), {})[group["method"]] = group
    rows = []
    for (acceleration, name), by_method in cells.items():
        missing = {method, "zero-filled"} - set(by_method)
        classical = {m: g for m, g in by_method.items() if m in CLASSICAL}
        if missing or not classical:
            raise ValueError(f"{source}: group {name!r} at {acceleration:g}x lacks {sorted(missing) or 'a classical method'}")
        best = max(classical, key=lambda m: classical[m]["ssim"])
        zero = by_method["zero-filled"]["ssim"]
        bar = max(classical[best]["ssim"] + CLASSICAL_MARGIN, zero + ZERO_FILLED_MARGIN)
        learned = by_method[method]
        rows.append(BarRow(source, acceleration, name, learned["volumes"], method, learned["ssim"], best, classical[best]["ssim"], zero, bar))
    return rows


def markdown(rows: list[BarRow]) -> str:
    lines = [
        "| source | acceleration | group | volumes | zero-filled | best classical | bar | learned | margin | holds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r.source} | {r.acceleration:g}x | {r.group} | {r.volumes} | {r.zero_filled_ssim:.4f} | "
            f"{r.best_classical_ssim:.4f} ({r.best_classical}) | {r.bar:.4f} | {r.ssim:.4f} | {r.margin:+.4f} | "
            f"{'yes' if r.margin >= 0 else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sources", nargs="+", help="LABEL=path/to/results.json, one per source")
    parser.add_argument("--method", default="varnet", help="learned method to check (default varnet)")
    parser.add_argument("--out", type=Path, help="write OUT.json and OUT.md")
    args = parser.parse_args(argv)
    rows: list[BarRow] = []
    for spec in args.sources:
        label, sep, path = spec.partition("=")
        if not sep or not label or not path:
            parser.error(f"{spec!r}: expected LABEL=path/to/results.json")
        try:
            results = json.loads(Path(path).read_text())
            rows += bar_rows(label, results, args.method)
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            return 2
    text = markdown(rows)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"rows": [asdict(r) | {"margin": r.margin} for r in rows], "sources": args.sources}
        args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(
            "# Issue 21's VarNet bar on the acceptance split\n\n"
            f"bar = max(best classical SSIM + {CLASSICAL_MARGIN}, zero-filled SSIM + {ZERO_FILLED_MARGIN}), "
            "per source, acceleration and SNR bin; SSIM means over volumes from one `recon benchmark` run per source.\n\n"
            "```sh\npython benchmarks/acceptance_bar.py " + " ".join(f'"{s}"' for s in args.sources) + "\n```\n\n" + text
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
