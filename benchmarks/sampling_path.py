"""One sampling path (issue 29, part 2): the training and acceptance measurements before and after.

`train`: 50 optimizer steps of `recon.train` on small simulated data (`recon simulate --preset
small`: training split seed 1000, 4 volumes x 4 slices; validation split seed 2000, 1 volume x
2 slices) with the shipped VarNet's architecture, 1 torch thread,
`torch.use_deterministic_algorithms(True)` and seed 0; writes the loss of every step (from the
run's TensorBoard scalars, float32 as TensorBoard stores them) and each epoch's validation
metrics to a JSON file.

`scripts`: what changes for the baseline benchmark scripts. Their masks and calibration regions
are unchanged (`tests/test_sampling_path.py`); their batches now come from `recon.pipeline` and so
carry the acquired extent (`ReconBatch.extent`), which keeps the zero padding columns zero in the
output of sense / cs as in `recon benchmark`. Scores of zero-filled, sense and cs on the first
acceptance volume of each source, with the same batch without and with the extent.

`compare`: the training losses and validation metrics of two `train` files, the varnet and
zero-filled rows of `recon benchmark` results against the committed acceptance results, and a
`scripts` file; writes `benchmarks/results/sampling_path.json` / `.md`.

Usage:
    python benchmarks/sampling_path.py train --work /tmp/sp_train --out /tmp/sp_train/before.json
    python benchmarks/sampling_path.py scripts --data /tmp/acc --out /tmp/scripts.json
    python benchmarks/sampling_path.py compare --before B.json --after A.json --scripts S.json \
        --bench knee:before=/tmp/bench_knee_before/results.json --bench knee:after=... [...]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import RESULTS, machine, scores, undersampled, write_results  # noqa: E402

from recon.cli import main as recon_main  # noqa: E402
from recon.methods import get_method  # noqa: E402
from recon.train import TrainConfig, train  # noqa: E402

STEPS = 50
TOLERANCE = 1e-4
#: The shipped VarNet's architecture (models/varnet.json).
MODEL = {"num_cascades": 4, "chans": 16, "pools": 3, "sens_chans": 8, "sens_pools": 3}
SIMULATE = {"train": ["--preset", "small", "--volumes", "4", "--slices", "4", "--seed", "1000"],
            "val": ["--preset", "small", "--volumes", "1", "--slices", "2", "--seed", "2000"]}
GOLDEN = Path(__file__).parents[1] / "tests" / "data" / "sampling_golden.json"
COMMITTED = {"knee": RESULTS / "benchmark_accept_phantom.json", "mni152": RESULTS / "benchmark_accept_mni152.json"}
METRICS = ("ssim", "psnr", "nmse")


def step_losses(run: Path) -> list[float]:
    """The `train/loss` scalar of every optimizer step of a run, in step order."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return [float(e.value) for e in sorted(events.Scalars("train/loss"), key=lambda e: e.step)]


def run_training(work: Path) -> dict[str, Any]:
    """Simulate the data (once) and train `STEPS` steps deterministically in `work/run`."""
    for split, options in SIMULATE.items():
        folder = work / "data" / split
        if not folder.is_dir() and recon_main(["simulate", str(folder), *options]) != 0:
            raise RuntimeError(f"recon simulate failed for {split}")
    run = work / "run"
    if run.exists():
        raise SystemExit(f"{run} exists: give a new --work folder")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    config = TrainConfig(data=work / "data", out=run, max_steps=STEPS, seed=0, device="cpu", quiet=True, **MODEL)
    train(config)
    validation = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {"config": config.to_dict(), "simulate": SIMULATE, "losses": step_losses(run), "validation": validation,
            "machine": machine()}


def scripts_check(data: Path) -> list[dict[str, Any]]:
    """SSIM / PSNR of zero-filled, sense and cs on the first acceptance volume of each source
    (`data/knee`, `data/mni152`) at 4x and 8x, from the same batch without and with its extent."""
    torch.set_num_threads(1)
    rows = []
    for source in ("knee", "mni152"):
        path = sorted((data / source).glob("*.h5"))[0]
        for acceleration in (4.0, 8.0):
            batch, target = undersampled(path, acceleration)
            for name in ("zero-filled", "sense", "cs"):
                before = scores(target, get_method(name)(batch._replace(extent=None)).numpy())
                after = scores(target, get_method(name)(batch).numpy())
                rows.append({"file": path.name, "acceleration": acceleration, "method": name,
                             **{f"{m}_before": before[m] for m in ("ssim", "psnr")}, **{f"{m}_after": after[m] for m in ("ssim", "psnr")}})
    return rows


def _rows(results: dict[str, Any], method: str) -> dict[tuple[str, float], dict[str, float]]:
    return {(r["file"], float(r["acceleration"])): {m: float(r[m]) for m in METRICS}
            for r in results["rows"] if r["method"] == method}


def compare_benchmark(label: str, path: Path) -> dict[str, Any]:
    """Per-volume varnet and zero-filled scores of `path` against the committed acceptance results."""
    ours = json.loads(path.read_text())
    committed = json.loads(COMMITTED[label].read_text())
    out: dict[str, Any] = {"results": str(path), "committed": str(COMMITTED[label].relative_to(RESULTS.parent.parent)),
                           "command": ours["settings"]["command"], "methods": {}}
    for method in ("zero-filled", "varnet"):
        mine, theirs = _rows(ours, method), _rows(committed, method)
        worst = max(abs(mine[k][m] - theirs[k][m]) for k in theirs for m in METRICS) if mine.keys() == theirs.keys() else None
        out["methods"][method] = {"rows": len(theirs), "same_rows": mine.keys() == theirs.keys(),
                                  "identical": mine == theirs, "max_abs_difference": worst}
    return out


def before_after(runs: dict[str, Path]) -> dict[str, bool]:
    """Per method: whether every per-volume score after the change equals the one before, bit for bit."""
    first, second = (json.loads(runs[w].read_text()) for w in ("before", "after"))
    return {method: _rows(first, method) == _rows(second, method) for method in ("zero-filled", "varnet")}


def compare(before: dict[str, Any], after: dict[str, Any], benches: dict[str, dict[str, Path]],
            scripts: list[dict[str, Any]]) -> dict[str, Any]:
    """Training losses and validation metrics, before against after; benchmark rows against the committed ones."""
    diffs = [abs(a - b) for a, b in zip(after["losses"], before["losses"])]
    val = [{m: abs(a[m] - b[m]) for m in METRICS} for a, b in zip(after["validation"], before["validation"])]
    return {
        "training": {
            "steps": len(before["losses"]),
            "config": before["config"],
            "simulate": before["simulate"],
            "losses_before": before["losses"],
            "losses_after": after["losses"],
            "identical": before["losses"] == after["losses"],
            "max_abs_loss_difference": max(diffs) if diffs else None,
            "within_tolerance": len(diffs) == STEPS and max(diffs) <= TOLERANCE,
            "validation_before": before["validation"],
            "validation_after": after["validation"],
            "max_abs_validation_difference": {m: max(v[m] for v in val) for m in METRICS} if val else None,
        },
        "benchmark": {label: {when: compare_benchmark(label, path) for when, path in runs.items()}
                      for label, runs in benches.items()},
        "benchmark_after_equals_before": {label: before_after(runs) for label, runs in benches.items() if {"before", "after"} <= runs.keys()},
        "scripts": scripts,
        "golden": {"file": str(GOLDEN.relative_to(GOLDEN.parents[2])), "entries": len(json.loads(GOLDEN.read_text())["entries"])},
    }


def render(result: dict[str, Any]) -> str:
    """The markdown report."""
    t = result["training"]
    lines = [
        "# One sampling path (issue 29, part 2): before and after",
        "",
        "Training, inference and the benchmark scripts now draw masks through one function",
        "(`recon.masks.undersample`); training samples carry the calibration region and VarNet is",
        "called with `calib=` in training as in inference. Nothing was retrained.",
        "",
        "## Golden masks",
        "",
        f"`{result['golden']['file']}` holds {result['golden']['entries']} draws (sampled columns and calibration region)",
        "recorded from the three separate paths before they were unified (`python benchmarks/golden_sampling.py`:",
        "inference, validation, training with one and with the default mixed settings, the benchmark scripts' file-name-",
        "and integer-seeded masks; two simulated files of each source, 4x and 8x, random / equispaced /",
        "equispaced-fraction / magic). Recorded again through the unified path, the file is byte for byte the same;",
        "`tests/test_sampling_path.py` checks it, and that training, inference and the benchmark scripts agree for",
        "the same file, acceleration and seed. No random stream changed.",
        "",
        f"## {t['steps']} training steps",
        "",
        "```sh",
        *(f"recon simulate DATA/{split} {' '.join(opts)}" for split, opts in t["simulate"].items()),
        "python benchmarks/sampling_path.py train --work WORK --out before.json   # before the change, then after",
        "```",
        "",
        "VarNet of the shipped architecture (4 cascades, 16 channels, 3 pools; sensitivity net 8 / 3),",
        "seed 0, 1 torch thread, `torch.use_deterministic_algorithms(True)`, CPU, recon train's",
        "default masks (random, 4x/0.08 and 8x/0.04 drawn per sample).",
        "",
        "The masks come from the same seeds `(0, epoch, index)` through the same RNG calls, and the region VarNet",
        "now gets as `calib=` is the centre block it derived from `num_low_frequencies` before (clipped to the",
        "acquirable columns, which never cut it on these files), so the losses are expected to be identical.",
        "",
        f"- losses identical: **{t['identical']}**; largest difference {t['max_abs_loss_difference']:.3g} "
        f"(tolerance {TOLERANCE:g})",
        f"- validation metrics per epoch, largest difference: {t['max_abs_validation_difference']}",
        "",
        "| step | loss before | loss after |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {i + 1} | {b:.6f} | {a:.6f} |" for i, (b, a) in enumerate(zip(t["losses_before"], t["losses_after"]))]
    same = result["benchmark_after_equals_before"]
    lines += ["", "## Acceptance benchmark (shipped VarNet)", "",
              "```sh",
              "recon simulate /tmp/acc/knee --preset small --volumes 6 --slices 2 --seed 4000",
              "recon simulate /tmp/acc/mni152 --source mni152 --preset small --volumes 6 --slices 2 --seed 4000",
              "OMP_NUM_THREADS=1 recon benchmark --data /tmp/acc/knee --methods zero-filled,varnet --accelerations 4,8 --out OUT --quiet",
              "OMP_NUM_THREADS=1 recon benchmark --data /tmp/acc/mni152 --methods zero-filled,varnet --accelerations 4,8 --out OUT --quiet",
              "```", "",
              "Run before and after the change on the same machine. After equals before, every per-volume "
              "SSIM / PSNR / NMSE bit for bit: " + ", ".join(f"{label} {m}: **{v}**" for label, d in same.items() for m, v in d.items()) + ".",
              "Against the committed results (`benchmark_accept_*.json`, run with more methods and `--by snr` on an",
              "earlier tree) both runs differ by a few 1e-8, zero-filled as much as varnet: float32 rounding of this",
              "machine and tree, the same before and after, not a change of the sampling.", "",
              "| split | run | command | method | rows | identical to committed | largest difference |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for label, runs in result["benchmark"].items():
        for when, b in runs.items():
            for method, m in b["methods"].items():
                worst = "n/a" if m["max_abs_difference"] is None else f"{m['max_abs_difference']:.3g}"
                lines.append(f"| {label} | {when} | `{b['command']}` | {method} | {m['rows']} | {m['identical']} | {worst} |")
    lines += ["", "## Baseline benchmark scripts", "",
              "Same masks and calibration regions as before (`tests/test_sampling_path.py`); the batches now come from",
              "`recon.pipeline` and carry the acquired extent, so sense / cs keep the zero padding columns zero as",
              "`recon benchmark` does. First acceptance volume of each source (`python benchmarks/sampling_path.py scripts --data /tmp/acc`):", "",
              "| file | accel | method | SSIM before | SSIM after | PSNR before | PSNR after |", "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r['file']} | {r['acceleration']:g}x | {r['method']} | {r['ssim_before']:.4f} | {r['ssim_after']:.4f} | "
              f"{r['psnr_before']:.2f} | {r['psnr_after']:.2f} |" for r in result["scripts"]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train")
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("scripts")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("compare")
    p.add_argument("--before", type=Path, required=True)
    p.add_argument("--after", type=Path, required=True)
    p.add_argument("--scripts", type=Path, required=True)
    p.add_argument("--bench", action="append", default=[], help="LABEL:WHEN=results.json (LABEL knee or mni152)")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "train":
        args.out.write_text(json.dumps(run_training(args.work), indent=1) + "\n")
        return 0
    if args.command == "scripts":
        args.out.write_text(json.dumps(scripts_check(args.data), indent=1) + "\n")
        return 0
    benches: dict[str, dict[str, Path]] = {}
    for item in args.bench:
        key, path = item.split("=", 1)
        label, when = key.split(":", 1)
        benches.setdefault(label, {})[when] = Path(path)
    result = compare(json.loads(args.before.read_text()), json.loads(args.after.read_text()), benches,
                     json.loads(args.scripts.read_text()))
    write_results("sampling_path", result, render(result), args.out_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
