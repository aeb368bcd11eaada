"""The `recon` command: thin argument parsing over library functions.

Subcommands: simulate, reconstruct, evaluate, benchmark, train, convert. Bad input prints one
line naming the file and the problem and exits non-zero; machine-readable results go to JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from recon.io import InputError


def _floats(text: str) -> list[float]:
    return [float(t) for t in text.split(",") if t.strip()]


def _names(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _add_method_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("method options")
    g.add_argument("--checkpoint", help="VarNet weights (.safetensors, or fastMRI .pt loaded with weights_only=True)")
    g.add_argument("--lam", type=float, help="fixed regularization weight of sense / cs / cs-tv on the normalized data scale (default: per slice from its noise level)")
    g.add_argument("--iters", type=int, help="iterations of sense / cs / cs-tv")
    g.add_argument("--backend", choices=["auto", "torch", "cupy"], default="auto", help="operator backend (default: cupy on CUDA when installed)")


def _method_options(args: argparse.Namespace, name: str) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if name == "varnet" and args.checkpoint:
        opts["checkpoint"] = args.checkpoint
    if name in ("sense", "cs", "cs-tv"):
        if args.lam is not None:
            opts["lam"] = args.lam
        if args.iters is not None:
            opts["iters"] = args.iters
    return opts


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, default=8, help="slices per batch (halved on CUDA out-of-memory)")
    p.add_argument("--workers", type=int, default=0, help="run files on a local Dask cluster of N processes")
    p.add_argument("--scheduler", help="run files on an existing Dask cluster, e.g. tcp://host:8786")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_mask_options(p: argparse.ArgumentParser) -> None:
    from recon.masks import MASK_KINDS

    p.add_argument("--mask", default="random", choices=list(MASK_KINDS), help="mask family (default random)")
    p.add_argument("--center-fraction", type=float, help="fraction of center columns (default 0.08 at 4x, 0.04 at 8x)")


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.source == "mni152":
        from recon.simulate.mni152 import MNI_PRESETS, simulate_mni152_dataset

        if args.preset not in MNI_PRESETS:
            raise SystemExit(f"recon simulate: unknown preset {args.preset!r}; available: {', '.join(MNI_PRESETS)}")
        seed = 4000 if args.seed is None else args.seed
        try:
            paths = simulate_mni152_dataset(args.out_dir, args.volumes, args.slices, args.coils, seed, config=MNI_PRESETS[args.preset])
        except ValueError as err:
            raise SystemExit(f"recon simulate: {err}") from None
    else:
        from recon.simulate import simulate_dataset

        config = _sim_preset(args.preset)
        seed = 3000 if args.seed is None else args.seed
        paths = simulate_dataset(args.out_dir, args.volumes, args.slices, args.coils, seed, config=config)
    for p in paths:
        print(p)
    return 0


def _sim_preset(name: str) -> Any:
    from recon import simulate

    presets = getattr(simulate, "PRESETS", {})
    if name not in presets:
        raise SystemExit(f"recon simulate: unknown preset {name!r}; available: {', '.join(presets)}")
    return presets[name]


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from recon.reconstruct import ReconstructJob
    from recon.runner import expand_inputs, run_batch, summary_table, write_summary

    out = Path(args.out)
    files, missing = expand_inputs(args.inputs)
    job = ReconstructJob(
        out_dir=out,
        method=args.method,
        method_options=_method_options(args, args.method),
        acceleration=args.acceleration,
        center_fraction=args.center_fraction,
        mask_type=args.mask,
        fmt=args.format,
        device=args.device,
        backend=args.backend,
        batch_size=args.batch_size,
        skip_existing=args.skip_existing,
        keep_identity=args.keep_identity,
    )
    results = missing + run_batch(job, files, workers=args.workers, scheduler=args.scheduler, progress=not args.quiet, desc="reconstruct")
    out.mkdir(parents=True, exist_ok=True)
    write_summary(results, out / "summary.json", {"method": args.method, "format": args.format})
    failed = [r for r in results if r.status == "failed"]
    if len(results) > 1 or failed:
        print(summary_table(results))
    for r in failed:
        print(f"error: {r.file}: {r.reason}", file=sys.stderr)
    return 1 if failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recon.evaluation import aggregate, evaluate_folders, format_table, scores_as_dicts

    scores, failures = evaluate_folders(Path(args.targets), Path(args.predictions), args.target_key)
    rows = aggregate(scores)
    print(format_table(rows))
    doc = {"volumes": scores_as_dicts(scores), "groups": rows, "failed": [{"file": f, "reason": r} for f, r in failures]}
    if args.out:
        from recon.io import atomic_path

        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(doc, indent=2))
    for _, reason in failures:
        print(f"error: {reason}", file=sys.stderr)
    return 1 if failures or not scores else 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from recon.benchmark import run_benchmark

    methods = _names(args.methods)
    doc = run_benchmark(
        args.data,
        args.out,
        methods,
        _floats(args.accelerations),
        method_options={m: _method_options(args, m) for m in methods},
        device=args.device,
        max_slices=args.max_slices,
        mask_type=args.mask,
        batch_size=args.batch_size,
        backend=args.backend,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet,
        note=args.note,
    )
    print(doc["table"])
    print(f"wrote {Path(args.out) / 'results.json'}, report.md and figures")
    for f in doc["failed"]:
        print(f"error: {f['file']}: {f['reason']}", file=sys.stderr)
    return 1 if doc["failed"] or not doc["rows"] else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from recon.io.convert import convert_ismrmrd_to_fastmri

    out = convert_ismrmrd_to_fastmri(args.input, args.output, keep_identity=args.keep_identity)
    print(out)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from recon.train import config_from_args, train

    train(config_from_args(args))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `recon` argument parser (one subparser per job)."""
    from recon.methods import available

    parser = argparse.ArgumentParser(prog="recon", description="MRI k-space reconstruction toolkit")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write a simulated fastMRI-format multi-coil dataset")
    p.add_argument("out_dir")
    p.add_argument("--volumes", type=int, default=4)
    p.add_argument("--slices", type=int, default=4)
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--seed", type=int, help="dataset seed; its range is the split: train 1000-, tune 2000-, report 3000-, accept 4000- (default 3000 knee, 4000 mni152)")
    p.add_argument("--preset", default="small", help="size preset (small: fast demo size; knee: 640 x ~368 like fastMRI knee)")
    p.add_argument("--source", default="knee", choices=["knee", "mni152"], help="knee: simulated knee phantom (default); mni152: real anatomy from the MNI ICBM152 template")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("reconstruct", help="reconstruct fastMRI HDF5 or ISMRMRD files")
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--method", default="zero-filled", choices=available())
    p.add_argument("--acceleration", type=float, help="undersample fully sampled files retrospectively (file-name-seeded mask)")
    _add_mask_options(p)
    p.add_argument("--format", default="h5", choices=["h5", "nii", "dcm", "png"], help="output format (default: fastMRI submission h5)")
    p.add_argument("--skip-existing", action="store_true", help="skip files whose output exists (resume a killed run)")
    p.add_argument("--keep-identity", action="store_true", help="copy patient identity from the input into outputs")
    _add_method_options(p)
    _add_scale_out(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("evaluate", help="score reconstructions against targets as fastMRI does")
    p.add_argument("--targets", required=True, help="folder of fastMRI files with reconstruction_rss/_esc")
    p.add_argument("--predictions", required=True, help="folder of submission files of the same names")
    p.add_argument("--target-key", help="reconstruction_rss (multi-coil) or reconstruction_esc (single-coil); default: whichever exists")
    p.add_argument("--out", help="write per-volume and grouped results as JSON")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("benchmark", help="compare methods x accelerations, challenge style")
    p.add_argument("--data", nargs="+", required=True, help="fully sampled fastMRI files or folders")
    p.add_argument("--methods", default="zero-filled,sense,cs", help="comma-separated method names")
    p.add_argument("--accelerations", default="4,8", help="comma-separated accelerations")
    p.add_argument("--out", required=True, help="output folder for results.json, report.md, figures")
    p.add_argument("--max-slices", type=int, help="keep the N central slices of each volume")
    p.add_argument("--note", default="", help="a line for the top of report.md (e.g. 'simulated data')")
    _add_mask_options(p)
    _add_method_options(p)
    _add_scale_out(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("convert", help="convert an ISMRMRD raw file to the fastMRI layout")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--keep-identity", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train", help="train an E2E-VarNet (torchrun ... -m recon train for many GPUs)")
    try:
        from recon.train import add_arguments
    except ImportError:
        p.set_defaults(func=lambda _a: _unavailable("train"))
    else:
        add_arguments(p)
        p.set_defaults(func=cmd_train)
    return parser


def _unavailable(what: str) -> int:
    print(f"recon {what}: not available in this installation", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `recon` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
