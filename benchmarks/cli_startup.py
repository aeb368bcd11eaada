"""Start-up time of the `recon` command beside BART's: how long `--help` takes to answer.

Times, as fresh processes (median of `--repeats` runs, wall clock): `recon --help`,
`recon reconstruct --help`, and `python -X importtime -c "import recon.cli; recon.cli.build_parser()"`
(which also yields the import time it reports and whether torch / CuPy were loaded), each for
this source tree and, with `--before DIR`, for another one (e.g. `git archive` of an earlier
commit unpacked in DIR, run with the same interpreter); beside BART's `bart` (its command list)
and `bart pics -h` (one command's help). Writes benchmarks/results/cli_startup.{json,md}.

    python benchmarks/cli_startup.py --before /tmp/recon_before --before-label "HEAD (abc1234)"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MAIN = "import sys; from recon.cli import main; sys.argv[0] = 'recon'; sys.exit(main())"
PARSER = "import recon.cli; recon.cli.build_parser()"
HEAVY = ("torch", "cupy")


def timed(argv: list[str], env: dict[str, str], repeats: int, cwd: Path = ROOT, check: bool = True) -> dict[str, Any]:
    """Wall seconds of `argv` run `repeats` times as a fresh process in `cwd` (`check`: it must exit 0):
    every sample and the median."""
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=check)
        samples.append(time.perf_counter() - start)
    return {"median_s": statistics.median(samples), "samples_s": samples}


def import_profile(env: dict[str, str], cwd: Path) -> dict[str, Any]:
    """`-X importtime` of building the parser: total reported import seconds, modules, heavy ones loaded."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", PARSER], env=env, cwd=cwd, capture_output=True, text=True, check=True)
    rows = [re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line) for line in done.stderr.splitlines()]
    rows = [r for r in rows if r]
    top = sum(int(r.group(2)) for r in rows if r.group(3) == " ")
    names = {r.group(4) for r in rows}
    return {"import_s": top / 1e6, "modules": len(names), "heavy_loaded": [m for m in HEAVY if m in names]}


def measure_tree(tree: Path, repeats: int) -> dict[str, Any]:
    """The three recon timings with `recon` imported from `tree` (run there, and first on the path)."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return {
        "tree": str(tree),
        "recon --help": timed([sys.executable, "-c", MAIN, "--help"], env, repeats, tree),
        "recon reconstruct --help": timed([sys.executable, "-c", MAIN, "reconstruct", "--help"], env, repeats, tree),
        "build_parser (python -X importtime)": {**timed([sys.executable, "-X", "importtime", "-c", PARSER], env, repeats, tree),
                                                **import_profile(env, tree)},
    }


def bart_version() -> str | None:
    done = subprocess.run(["bart", "version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or None


def markdown(doc: dict[str, Any]) -> str:
    sides = [(label, doc["recon"][label]) for label in doc["recon"]]
    bart = doc["bart"]
    lines = [
        "# `recon --help` start-up beside BART",
        "",
        f"{doc['machine']['cpus']} CPU cores shared with other jobs (load average {doc['machine']['load_average']}), "
        f"Python {doc['machine']['python']}, {doc['machine']['bart'] or 'no bart'}; wall seconds, median of {doc['repeats']} "
        "fresh processes each (`python benchmarks/cli_startup.py`).",
        "",
        "| command | " + " | ".join(label for label, _ in sides) + (" | bart |" if bart else " |"),
        "| --- | " + " | ".join("---:" for _ in sides) + (" | ---: |" if bart else " |"),
    ]
    bart_ref = bart.get("bart pics -h", {}).get("median_s") if bart else None
    for key in ("recon --help", "recon reconstruct --help", "build_parser (python -X importtime)"):
        cells = [f"{res[key]['median_s']:.3f}" for _, res in sides]
        ref = {"recon --help": "bart", "recon reconstruct --help": "bart pics -h"}.get(key)
        bart_cell = f" | {bart[ref]['median_s']:.4f} (`{ref}`)" if bart and ref else (" | " if bart else "")
        lines.append(f"| `{key}` | " + " | ".join(cells) + bart_cell + " |")
    lines += ["", "Import profile of building the parser (`-X importtime`):", "",
              "| tree | reported import s | modules | torch / CuPy loaded |", "| --- | ---: | ---: | --- |"]
    for label, res in sides:
        prof = res["build_parser (python -X importtime)"]
        lines.append(f"| {label} | {prof['import_s']:.3f} | {prof['modules']} | {', '.join(prof['heavy_loaded']) or 'neither'} |")
    lines += ["", "Ratios (medians):", ""]
    for name, value in doc["ratios"].items():
        lines.append(f"- {name}: {value:.1f}x")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per command (default: 5)")
    parser.add_argument("--before", type=Path, help="another source tree to time beside this one (e.g. an earlier commit)")
    parser.add_argument("--before-label", default="before", help="its name in the results (default: before)")
    parser.add_argument("--label", default="after", help="this tree's name in the results (default: after)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for cli_startup.json / .md (default: benchmarks/results)")
    args = parser.parse_args()
    recon: dict[str, Any] = {}
    if args.before is not None:
        recon[args.before_label] = measure_tree(args.before, args.repeats)
    recon[args.label] = measure_tree(ROOT, args.repeats)
    bart: dict[str, Any] = {}
    if shutil.which("bart"):
        env = dict(os.environ)
        # `bart` alone lists its commands (exit 1): the counterpart of `recon --help`
        bart = {"bart": timed(["bart"], env, args.repeats, check=False), "bart pics -h": timed(["bart", "pics", "-h"], env, args.repeats)}
    ratios: dict[str, float] = {}
    now = recon[args.label]
    if args.before is not None:
        then = recon[args.before_label]
        for key in ("recon --help", "recon reconstruct --help"):
            ratios[f"`{key}`, {args.before_label} / {args.label}"] = then[key]["median_s"] / now[key]["median_s"]
    if bart:
        ratios[f"`recon --help` ({args.label}) / `bart`"] = now["recon --help"]["median_s"] / bart["bart"]["median_s"]
        ratios[f"`recon reconstruct --help` ({args.label}) / `bart pics -h`"] = now["recon reconstruct --help"]["median_s"] / bart["bart pics -h"]["median_s"]
    doc = {
        "repeats": args.repeats,
        "machine": {"cpus": os.cpu_count(), "load_average": [round(v, 2) for v in os.getloadavg()], "python": platform.python_version(),
                    "platform": platform.platform(), "bart": bart_version() if bart else None},
        "recon": recon,
        "bart": bart,
        "ratios": ratios,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "cli_startup.json").write_text(json.dumps(doc, indent=2) + "\n")
    (args.out / "cli_startup.md").write_text(markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
