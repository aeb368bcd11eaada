"""The `recon` command: thin argument parsing over library functions.

Subcommands: simulate, reconstruct, evaluate, benchmark, train, convert. Bad input prints one
line naming the file and the problem and exits non-zero; machine-readable results go to JSON.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import traceback
from pathlib import Path
from typing import Any, NoReturn, Sequence

from recon import arguments
from recon.io import InputError
from recon.arguments import UsageError


def _add_method_options(p: argparse.ArgumentParser) -> None:
    """One flag per option flag of the registered methods (`recon.methods.spec.Flag`), help from their docs."""
    from recon.methods.registry import all_flags

    g = p.add_argument_group("method options", "each applies to the methods its help names; given for none of the chosen methods, it is refused")
    for flag in all_flags():
        g.add_argument(flag.flag, dest=flag.dest, type=flag.kind, choices=flag.choices, help=flag.help())


def _options_from_flags(args: argparse.Namespace, methods: Sequence[str], command: str) -> dict[str, dict[str, Any]]:
    """Per method, its options set by the method-option flags, checked up front against its spec
    (before any input is opened): UsageError for a flag none of `methods` takes, a value an
    option refuses or a CUDA device for a CPU-only method. A learned method's weights are loaded
    once here: always for `reconstruct`, for `benchmark` when given (without them it skips the method)."""
    from recon.methods.registry import all_flags, flag_options, spec

    arguments.device(args.device)
    try:
        options = flag_options({f.flag: getattr(args, f.dest, None) for f in all_flags()}, methods)
        for name, given in options.items():
            method = spec(name)
            method.make_options(given)
            if not method.supports.gpu and str(args.device).startswith("cuda"):
                raise ValueError(f"--device {args.device}: method {name} runs on the CPU only")
            if method.learned and (command == "reconstruct" or method.checkpoint in given):
                from recon.pipeline import build_method

                build_method(name, given)
    except ValueError as err:
        raise UsageError(str(err)) from None
    return options


def _add_scale_out(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    p.add_argument("--backend", choices=["auto", "torch", "cupy"], default="auto", help="operator backend (default: cupy on CUDA when installed)")
    p.add_argument("--batch-size", type=int, default=8, help="slices per batch, at most 128 MiB of k-space (halved on CUDA out-of-memory)")
    p.add_argument("--workers", type=int, default=0, help="run files on a local Dask cluster of N processes (0: in this process)")
    p.add_argument("--scheduler", help="run files on an existing Dask cluster, e.g. tcp://host:8786 (default: none)")
    p.add_argument("--quiet", action="store_true", help="no progress bars (per file, and per slice batch with ETA)")


def _add_mask_options(p: argparse.ArgumentParser) -> None:
    from recon.masks import MASK_KINDS

    p.add_argument("--mask", default="random", choices=list(MASK_KINDS), help="mask family (default random)")
    p.add_argument("--center-fraction", type=float, help="fraction of center columns (default 0.08 at 4x, 0.04 at 8x)")


def _add_raw_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-memory", help="memory a file may need, e.g. 16G (default: the available memory); larger claims are refused before allocating")
    p.add_argument("--repetition", type=int, help="ISMRMRD: reconstruct only this repetition (default: each one, a separate output named _repN)")
    p.add_argument("--contrast", type=int, help="ISMRMRD: reconstruct only this contrast (default: each one, a separate output named _contrastN)")
    p.add_argument("--set", type=int, dest="set_index", help="ISMRMRD: reconstruct only this set (default: each one, a separate output named _setN)")


def _check_raw_options(args: argparse.Namespace) -> int | None:
    return arguments.memory(getattr(args, "max_memory", None))


def cmd_simulate(args: argparse.Namespace) -> int:
    out = Path(args.out_dir)
    if out.is_dir() and not args.overwrite and any(out.iterdir()):
        raise UsageError(f"out_dir {out} is not empty; simulate would replace files there: choose an empty or new folder, "
                         "or give --overwrite")
    arguments.output_folder(args.out_dir, "out_dir")
    if args.source == "mni152":
        from recon.simulate.mni152 import MNI_PRESETS, simulate_mni152_dataset

        if args.preset not in MNI_PRESETS:
            raise UsageError(f"--preset: unknown preset {args.preset!r} for --source mni152; available: {', '.join(MNI_PRESETS)}")
        seed = 4000 if args.seed is None else args.seed
        try:
            paths = simulate_mni152_dataset(args.out_dir, args.volumes, args.slices, args.coils, seed, config=MNI_PRESETS[args.preset])
        except ValueError as err:
            raise UsageError(str(err)) from None
    else:
        from recon.simulate import simulate_dataset

        seed = 3000 if args.seed is None else args.seed
        paths = simulate_dataset(args.out_dir, args.volumes, args.slices, args.coils, seed, config=_sim_preset(args.preset))
    for p in paths:
        print(p)
    return 0


def _sim_preset(name: str) -> Any:
    from recon import simulate

    presets = getattr(simulate, "PRESETS", {})
    if name not in presets:
        raise UsageError(f"unknown --preset {name!r}; available: {', '.join(presets)}")
    return presets[name]


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from recon.reconstruct import ReconstructJob
    from recon.runner import expand_inputs, run_batch, summary_table, write_summary

    acc = None if args.acceleration is None else arguments.acceleration(args.acceleration, args.mask)
    arguments.center_fraction(args.center_fraction, acc, args.mask)
    options = _options_from_flags(args, [args.method], "reconstruct")
    if args.gfactor:
        from recon.methods.gfactor import check_gfactor

        try:
            check_gfactor(args.method)
        except ValueError as err:
            raise UsageError(str(err)) from None
    max_memory = _check_raw_options(args)
    out = Path(args.out)
    files, missing = expand_inputs(args.inputs)
    job = ReconstructJob(
        out_dir=out,
        method=args.method,
        method_options=options[args.method],
        acceleration=args.acceleration,
        center_fraction=args.center_fraction,
        mask_type=args.mask,
        fmt=args.format,
        device=args.device,
        backend=args.backend,
        batch_size=args.batch_size,
        skip_existing=args.skip_existing,
        keep_identity=args.keep_identity,
        max_memory=max_memory,
        repetition=args.repetition,
        contrast=args.contrast,
        set_index=args.set_index,
        progress=_progress(args) and not args.scheduler and not args.workers,
        gfactor=args.gfactor,
        max_slices=args.max_slices,
    )
    targets = [(f, t) for f in files for t in job.outputs(f)]
    arguments.unique_outputs(targets)
    arguments.not_inputs([t for _, t in targets] + [out / "summary.json"], files)
    arguments.output_folder(out)
    results = missing + run_batch(job, files, workers=args.workers, scheduler=args.scheduler, progress=_progress(args), desc="reconstruct")
    full = [r for r in results if r.status == "ok" and r.result.get("mask_type") == "none"]
    if full:
        print(f"note: {len(full)} fully sampled file(s) and no --acceleration: reconstructed the fully sampled k-space "
              "(no undersampling); give --acceleration 4 (or 8) for a retrospectively undersampled reconstruction")
    kept = arguments.keep_previous(out / "summary.json")
    write_summary(results, out / "summary.json", {"method": args.method, "format": args.format})
    failed = [r for r in results if r.status == "failed"]
    if len(results) > 1:
        print(summary_table(results))
    if not args.quiet:
        print(wrote_line(results, out))
    _print_warnings(results)
    if kept is not None:
        print(f"note: the earlier summary.json is kept as {kept}", file=sys.stderr)
    for r in failed:
        print(f"error: {r.file}: {r.reason}", file=sys.stderr)
    return 1 if failed else 0


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars unless --quiet, and only on a terminal (not in logs or pipes)."""
    return not args.quiet and sys.stderr.isatty()


def wrote_line(results: Sequence[Any], out: Path) -> str:
    """One line saying what a reconstruct run wrote: the count, and the names (first few)."""
    names = [Path(o).name for r in results if r.status == "ok" for o in r.result.get("outputs", [r.result.get("output")]) if o]
    skipped = sum(r.status == "skipped" for r in results)
    failed = sum(r.status == "failed" for r in results)
    shown = ", ".join(names[:6]) + (f", ... ({len(names) - 6} more)" if len(names) > 6 else "")
    tail = "".join([f"; {skipped} skipped (output exists)" if skipped else "", f"; {failed} failed" if failed else ""])
    return f"wrote {len(names)} output(s) to {out}{': ' + shown if names else ''}{tail}"


def _print_warnings(results: Sequence[Any]) -> None:
    for r in results:
        for text in r.result.get("warnings", []):
            print(f"warning: {r.file}: {text}", file=sys.stderr)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from recon.evaluation import aggregate, evaluate_folders, format_table, scores_as_dicts

    from recon.evaluation import missing_predictions

    targets, predictions = Path(args.targets), Path(args.predictions)
    if args.out:
        arguments.output_file(args.out, "--out")
        arguments.not_inputs([Path(args.out)], [*targets.glob("*.h5"), *predictions.glob("*.h5")])
    scores, failures = evaluate_folders(targets, predictions, args.target_key, allow_missing=args.allow_missing)
    rows = aggregate(scores)
    print(format_table(rows))
    skipped = missing_predictions(targets, predictions) if args.allow_missing else []
    doc = {
        "volumes": scores_as_dicts(scores),
        "groups": rows,
        "failed": [{"file": f, "reason": r} for f, r in failures],
        "missing_predictions": [str(t) for t in skipped],
    }
    if args.out:
        from recon.io.json_file import write_json

        kept = arguments.keep_previous(args.out)
        non_finite = write_json(args.out, doc)
        if kept is not None:
            print(f"note: the earlier {Path(args.out).name} is kept as {kept}", file=sys.stderr)
        if non_finite:
            print(f"warning: {args.out}: {len(non_finite)} non-finite number(s) written as null: {'; '.join(non_finite)}", file=sys.stderr)
    if skipped:
        print(f"warning: {len(skipped)} of {len(skipped) + len(scores) + len(failures)} target(s) have no prediction and were not scored (--allow-missing)", file=sys.stderr)
    for _, reason in failures:
        print(f"error: {reason}", file=sys.stderr)
    if not scores and not failures:
        print(f"error: {predictions}: no volume could be scored", file=sys.stderr)
    return 1 if failures or not scores else 0


def cmd_benchmark(args: argparse.Namespace) -> int:
    from recon.benchmark import check_accelerations, run_benchmark
    from recon.methods import available

    methods = arguments.parse_methods(args.methods, available())
    accelerations = [arguments.acceleration(a, args.mask, "--accelerations") for a in arguments.parse_floats(args.accelerations, "--accelerations")]
    try:
        accelerations = check_accelerations(accelerations)
    except InputError as err:
        raise UsageError(str(err)) from None
    for acc in accelerations:
        arguments.center_fraction(args.center_fraction, acc, args.mask)
    arguments.at_least(args.max_slices, 1, "--max-slices", integer=True)
    options = _options_from_flags(args, methods, "benchmark")
    max_memory = arguments.memory(args.max_memory)
    arguments.output_folder(args.out)
    doc = run_benchmark(
        args.data,
        args.out,
        methods,
        accelerations,
        method_options=options,
        device=args.device,
        max_slices=args.max_slices,
        mask_type=args.mask,
        center_fraction=args.center_fraction,
        batch_size=args.batch_size,
        backend=args.backend,
        workers=args.workers,
        scheduler=args.scheduler,
        progress=not args.quiet,
        note=args.note,
        max_memory=max_memory,
        reference=args.reference,
        by=None if args.by == "none" else args.by,
    )
    print(doc["table"])
    if doc["paired_table"]:
        print(doc["paired_table"])
    results = Path(args.out) / "results.json"
    report_error = doc.get("report_error")
    print(f"wrote {results}" if report_error else f"wrote {results}, report.md, report.html and figures")
    for w in doc["warnings"]:
        print(f"warning: {w['file']}: {w['warning']}", file=sys.stderr)
    if doc["non_finite"]:
        print(f"warning: {results}: {len(doc['non_finite'])} non-finite number(s) written as null: {'; '.join(doc['non_finite'])}", file=sys.stderr)
    for f in doc["failed"]:
        print(f"error: {f['file']}: {f['reason']}", file=sys.stderr)
    if report_error:
        print(f"error: {Path(args.out) / 'report.html'}: {report_error}", file=sys.stderr)
    return 1 if doc["failed"] or not doc["rows"] or report_error else 0


def cmd_convert(args: argparse.Namespace) -> int:
    from recon.io.convert import convert_ismrmrd_to_fastmri

    max_memory = _check_raw_options(args)
    src, dst = Path(args.input), Path(args.output)
    if not src.is_file():
        raise InputError(src, "no such file" if not src.exists() else "not a regular file")
    arguments.not_inputs([dst], [src])
    arguments.output_file(dst, "output")
    options = {"repetition": args.repetition, "contrast": args.contrast, "set_index": args.set_index}
    out = convert_ismrmrd_to_fastmri(src, dst, keep_identity=args.keep_identity, max_memory=max_memory,
                                     **{k: v for k, v in options.items() if v is not None})
    print(out)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Train; a run that fails before it starts leaves no new --out folder behind, and Ctrl-C
    says what it saved (exit 130)."""
    from recon.train import config_from_args, train
    from recon.train.loop import TrainingInterrupted

    config = config_from_args(args)
    created = not config.out.exists()
    arguments.output_folder(config.out, "--out")
    try:
        result = train(config)
    except TrainingInterrupted as err:
        print(err, file=sys.stderr)
        return 130
    except BaseException:
        if created and config.out.is_dir() and not any(config.out.iterdir()):
            try:
                config.out.rmdir()  # the run failed before it wrote anything: leave no new empty folder
            except OSError:
                pass
        raise
    print(f"result: {result}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The `recon` argument parser (one subparser per job)."""
    from recon import __version__
    from recon.methods.registry import DEFAULT_BENCHMARK, available, spec

    parser = _Parser(prog="recon", description="MRI k-space reconstruction toolkit")
    parser.add_argument("--version", action="version", version=f"recon {__version__}")
    parser.add_argument("--debug", action="store_true", help="print the traceback of unexpected errors")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("simulate", help="write a simulated fastMRI-format multi-coil dataset")
    p.add_argument("out_dir", help="folder for the simulated .h5 files")
    p.add_argument("--volumes", type=int, default=4, help="number of volumes")
    p.add_argument("--slices", type=int, default=4, help="slices per volume")
    p.add_argument("--coils", type=int, default=8, help="receive coils")
    p.add_argument("--seed", type=int, help="first volume seed; its range is the split: train 1000-, tune 2000-, report 3000-, accept 4000- (default 3000 knee, 4000 mni152)")
    p.add_argument("--preset", default="small", help="size preset (small: fast demo size; knee: 640 x ~368 like fastMRI knee)")
    p.add_argument("--source", default="knee", choices=["knee", "mni152"], help="knee: simulated knee phantom (default); mni152: real anatomy from the MNI ICBM152 template")
    p.add_argument("--overwrite", action="store_true", help="write into a folder that is not empty, replacing files of the same names")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("reconstruct", help="reconstruct fastMRI HDF5 or ISMRMRD files")
    p.add_argument("inputs", nargs="+", help="files, folders or glob patterns")
    p.add_argument("--out", required=True, help="output folder")
    names = available()
    baseline = next(m for m in names if spec(m).baseline)
    p.add_argument("--method", default=baseline, choices=names,
                   help=f"reconstruction method (default: {baseline}): " + "; ".join(f"{m}: {spec(m).summary}" for m in names))
    p.add_argument("--acceleration", type=float, help="undersample fully sampled files retrospectively (file-name-seeded mask); "
                   "without it a fully sampled file is reconstructed fully sampled, a file with a mask from its own k-space")
    _add_mask_options(p)
    p.add_argument("--format", default="h5", choices=["h5", "nii", "dcm", "png"], help="output format (default: fastMRI submission h5)")
    p.add_argument("--skip-existing", action="store_true", help="skip files whose outputs exist and read back complete (resume a killed run)")
    p.add_argument("--max-slices", type=int, help="reconstruct only the N central slices of each file (default: all)")
    p.add_argument("--keep-identity", action="store_true", help="copy patient identity from the input into outputs")
    gfactors = "; ".join(f"{m}: {spec(m).supports.gfactor}" for m in names if spec(m).supports.gfactor)
    p.add_argument("--gfactor", action="store_true", help="also write g-factor maps as <name>_gfactor.h5 beside the image "
                   f"({gfactors}; uniform masks, --mask equispaced; refused for other methods)")
    _add_raw_options(p)
    _add_method_options(p)
    _add_scale_out(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("evaluate", help="score reconstructions against targets as fastMRI does")
    p.add_argument("--targets", required=True, help="folder of fastMRI files with reconstruction_rss/_esc")
    p.add_argument("--predictions", required=True, help="folder of submission files of the same names")
    p.add_argument("--target-key", help="reconstruction_rss (multi-coil) or reconstruction_esc (single-coil); default: whichever exists")
    p.add_argument("--out", help="write per-volume and grouped results as JSON (an earlier file is kept, renamed)")
    p.add_argument("--allow-missing", action="store_true", help="score the predictions that exist when some targets have none (says how many)")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("benchmark", help="compare methods x accelerations, challenge style")
    p.add_argument("--data", nargs="+", required=True, help="fully sampled fastMRI files or folders")
    uniform = [m for m in names if spec(m).needs.uniform_mask]
    p.add_argument("--methods", default=",".join(DEFAULT_BENCHMARK),
                   help=f"comma-separated method names from: {', '.join(names)}" + (f" ({', '.join(uniform)}: --mask equispaced)" if uniform else ""))
    p.add_argument("--accelerations", default="4,8", help="comma-separated accelerations")
    p.add_argument("--out", required=True, help="output folder for results.json, report.md, report.html, figures")
    p.add_argument("--max-slices", type=int, help="keep the N central slices of each volume (default: all)")
    p.add_argument("--note", default="", help="a line for the top of report.md (e.g. 'simulated data')")
    p.add_argument("--max-memory", help="memory a file may need, e.g. 16G (default: the available memory)")
    p.add_argument("--reference", help=f"method the others are compared with, paired by volume (default: {baseline} if benchmarked, else the first method)")
    p.add_argument("--by", default="acquisition", choices=["acquisition", "coils", "source", "snr", "none"], help="also tabulate per value of this file property; snr: volumes below / at or above the median estimated SNR (default: %(default)s)")
    _add_mask_options(p)
    _add_method_options(p)
    _add_scale_out(p)
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("convert", help="convert an ISMRMRD raw file to the fastMRI layout")
    p.add_argument("input", help="ISMRMRD .h5 raw file")
    p.add_argument("output", help="fastMRI-layout .h5 file to write")
    p.add_argument("--keep-identity", action="store_true", help="copy patient identity into the output (default: dropped)")
    _add_raw_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("train", help="train an E2E-VarNet or fastMRI's image U-Net (torchrun ... -m recon train for many GPUs)")
    try:
        from recon.train.config import add_arguments
    except ImportError:
        p.set_defaults(func=lambda _a: _unavailable("train"))
    else:
        add_arguments(p)
        p.set_defaults(func=cmd_train)
    for p in sub.choices.values():
        p.formatter_class = _DefaultsFormatter
        p.set_defaults(option_flags={a.dest: a.option_strings[-1] for a in p._actions if a.option_strings})
    return parser


class _Parser(argparse.ArgumentParser):
    """argparse with its errors in one line (`recon reconstruct: error: ...`), like every other refusal."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to option help unless the text already says it or there is none to say."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, "", argparse.SUPPRESS) or not action.option_strings:
            return text
        return super()._get_help_string(action) or text

    def _split_lines(self, text: str, width: int) -> list[str]:
        """Wrapped help lines that never break inside a hyphenated word (`equispaced-fraction`)."""
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def _unavailable(what: str) -> int:
    print(f"recon {what}: not available in this installation", file=sys.stderr)
    return 2


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `recon` console script; returns the exit code.

    Every error ends in one line on stderr and a non-zero exit: 2 for a bad option (as argparse),
    1 for a file that cannot be used or any other failure, 130 for Ctrl-C. Unexpected errors add
    "run with --debug for the traceback"; `--debug` (or RECON_DEBUG=1) prints it.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    debug = bool(args.debug or os.environ.get("RECON_DEBUG"))
    previous = os.environ.get("RECON_DEBUG")
    if args.debug:
        os.environ["RECON_DEBUG"] = "1"  # per-file failures in the runner print their traceback too
    try:
        return _run(args, debug)
    finally:
        if previous is None:
            os.environ.pop("RECON_DEBUG", None)


def _run(args: argparse.Namespace, debug: bool) -> int:
    """`args.func(args)` with every error turned into one stderr line and an exit code."""
    try:
        arguments.check_options(args, getattr(args, "option_flags", {}))
        return int(args.func(args) or 0)
    except UsageError as err:
        print(f"recon {args.command}: error: {err}", file=sys.stderr)
        return 2
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as err:
        if debug:
            traceback.print_exc()
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - the one place an unexpected error becomes one line
        if debug:
            traceback.print_exc()
        text = " ".join(str(err).split()) or "(no message)"
        print(f"error: {type(err).__name__}: {text} (run with --debug for the traceback)", file=sys.stderr)
        return 1
