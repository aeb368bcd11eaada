"""Timing of the torch baselines (ESPIRiT, CG-SENSE, FISTA L1-wavelet, PDHG TV) vs SigPy and BART.

One simulated 15-coil 640x368 slice, the same undersampling and iteration counts for all tools,
and the same maps (ours) for all SigPy/BART SENSE/CS solvers.

CPU mode (default): ours ("ours"), SigPy ("sigpy") and, where installed, BART ("bart") on the
CPU. Writes `results/baselines_<accel>x.json` and `.md`.

CUDA mode (`--device cuda`): ours on the GPU ("ours-cuda"), ours on the CPU ("ours-cpu";
`--no-with-cpu` leaves it out), SigPy on CuPy ("sigpy-cupy", where CuPy sees a device) and SigPy
on the CPU ("sigpy"; `--skip-sigpy-cpu` leaves it out); no BART. GPU runs get one warm-up run
and are synchronized before their timer stops. Ratios are against ours-cuda; the markdown warns
where a GPU SSIM differs from its CPU twin's by more than 1e-3. Writes
`results/baselines_<accel>x_<gpu>.json` and `.md`, `<gpu>` a slug of the device name.

`--solvers` limits the SENSE/CS rows (ESPIRiT always runs: the solvers need its maps) and adds
the solvers to the file stem; `--skip-sigpy` leaves SigPy out (CUDA mode).

`--dry-run` runs the CUDA mode's code with the CPU standing in for the GPU and for CuPy, on a
4-coil 320x184 slice with 3 iterations, into a temp dir (unless `--out-dir`): a check of the
script on any machine. A SigPy failure is reported in its row and does not fail the run; a
failure of ours (or any failure in a dry run) makes the exit status 1 after writing.

    OMP_NUM_THREADS=2 python benchmarks/bench_baselines.py [--accel 8] [--iters 30] [--threads 2]
    OMP_NUM_THREADS=16 python benchmarks/bench_baselines.py --device cuda --threads 16 [--repeats 3] [--skip-sigpy-cpu]
    OMP_NUM_THREADS=16 python benchmarks/bench_baselines.py --device cuda --threads 16 --solvers sense --skip-sigpy
    python benchmarks/bench_baselines.py --dry-run
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from _common import calib_region, machine, num_low, scores, simulated_slices, slug, undersampled, write_results
from bart_cfl import bart_available, kspace_to_bart, read_cfl, run_bart, write_cfl
from recon import ops
from recon.calib import espirit_calib
from recon.methods.solvers import cg_sense, fista_l1_wavelet, pdhg_tv
from recon.noise import data_scale
from recon.core import center_crop
from recon.simulate.dataset import REPORT_SEED

#: Fixed weights on the normalized scale, the same for every tool (a speed comparison at identical settings; the methods' own weights follow their noise rules).
LAM = {"sense": 0.01, "cs": 0.003, "cs-tv": 0.003}
SSIM_TOLERANCE = 1e-3
#: (GPU tool, its CPU twin) whose SSIMs must agree in CUDA mode.
TWINS = (("ours-cuda", "ours-cpu"), ("sigpy-cupy", "sigpy"))
DRY_RUN = {"coils": 4, "rows": 320, "width": 184, "iters": 3}
SOLVERS = ("sense", "cs", "cs-tv")

Sync = Callable[[], None] | None


def timed(fn: Callable[[], Any], sync: Sync = None) -> tuple[Any, float]:
    """Result and wall seconds of `fn()`; `sync()` (if given) runs before the timer starts and stops."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    out = fn()
    if sync is not None:
        sync()
    return out, time.perf_counter() - start


def crop_mag(image: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """`|image|` cropped to `crop`, `(1, h, w)` float32."""
    return center_crop(torch.from_numpy(np.abs(image)).reshape(1, *image.shape[-2:]), crop).numpy().astype(np.float32)


@dataclass
class Problem:
    """The benchmark slice: masked k-space `(1, C, H, W)`, mask `(1, 1, 1, W)`, on the CPU, its
    calibration region `[start, stop)` and its width."""

    kspace: torch.Tensor
    mask: torch.Tensor
    calib: tuple[int, int]
    nlow: int
    target: np.ndarray
    crop: tuple[int, int]
    iters: int


@dataclass
class Table:
    """Timed rows `(task, tool)`, scored against the target and printed as they come."""

    problem: Problem
    repeats: int = 1
    solvers: tuple[str, ...] = SOLVERS
    rows: list[dict[str, Any]] = field(default_factory=list)

    def add(self, task: str, tool: str, seconds: float, image: np.ndarray | None) -> None:
        """Record a timing, with SSIM / PSNR / NMSE of `image` (`(H, W)` complex) if given."""
        row: dict[str, Any] = {"task": task, "tool": tool, "seconds": seconds}
        if image is not None:
            row.update(scores(self.problem.target, crop_mag(image, self.problem.crop)))
        self.rows.append(row)
        print(f"{task:10s} {tool:10s} {seconds:8.3f} s  {row.get('ssim', float('nan')):.4f}", flush=True)

    def run(self, task: str, tool: str, fn: Callable[[], Any], sync: Sync = None, warmup: bool = False,
            image_of: Callable[[Any], np.ndarray] | None = None) -> Any | None:
        """Time `fn` (median of `repeats` runs, after one warm-up run if `warmup`) and record it.

        Returns the last result, or None after recording the error in the row.
        """
        try:
            if warmup:
                fn()
            times = []
            for _ in range(self.repeats):
                out, seconds = timed(fn, sync)
                times.append(seconds)
            image = image_of(out) if image_of is not None else None
        except Exception as exc:  # noqa: BLE001 - one failing tool must not lose the other rows
            traceback.print_exc()
            self.rows.append({"task": task, "tool": tool, "seconds": float("nan"), "error": f"{type(exc).__name__}: {exc}"})
            print(f"{task:10s} {tool:10s} FAILED: {type(exc).__name__}: {exc}", flush=True)
            return None
        self.add(task, tool, statistics.median(times), image)
        return out

    def get(self, task: str, tool: str) -> dict[str, Any] | None:
        """The row of `(task, tool)`, if any."""
        return next((r for r in self.rows if r["task"] == task and r["tool"] == tool), None)


def run_ours(table: Table, device: torch.device, tool: str, sync: Sync, fallback_maps: torch.Tensor | None = None) -> torch.Tensor | None:
    """Our ESPIRiT, CG-SENSE, FISTA and PDHG on `device`, one warm-up run each.

    Returns the maps on `device` (`fallback_maps` moved there if our ESPIRiT failed), or None.
    """
    p = table.problem
    kspace, mask = p.kspace.to(device), p.mask.to(device)
    maps = table.run("espirit", tool, lambda: espirit_calib(kspace, p.calib), sync, warmup=True)
    if maps is None:
        if fallback_maps is None:
            return None
        maps = fallback_maps.to(device)
    scale = data_scale(kspace)
    y = kspace / scale
    solvers = {
        "sense": lambda: cg_sense(y, maps, mask, LAM["sense"], p.iters),
        "cs": lambda: fista_l1_wavelet(y, maps, mask, LAM["cs"], p.iters),
        "cs-tv": lambda: pdhg_tv(y, maps, mask, LAM["cs-tv"], p.iters),
    }
    for task, fn in solvers.items():
        if task not in table.solvers:
            continue
        table.run(task, tool, fn, sync, warmup=True, image_of=lambda image: (image * scale)[0, 0].cpu().numpy())
    return maps


def run_sigpy(table: Table, maps: np.ndarray, tool: str, device: Any, sync: Sync, warmup: bool, espirit: bool) -> None:
    """SigPy's EspiritCalib (if `espirit`), SenseRecon, L1WaveletRecon and TotalVariationRecon on `device`.

    Inputs are moved to `device` (a `sigpy.Device`) before timing; results come back to the CPU.
    """
    import sigpy
    import sigpy.mri as mr

    p = table.problem
    scale = data_scale(p.kspace)
    s = float(scale)
    k = sigpy.to_device(p.kspace[0].numpy(), device)
    y = sigpy.to_device((p.kspace / scale)[0].numpy(), device)
    mps = sigpy.to_device(maps, device)

    def on_cpu(image: Any) -> np.ndarray:
        return sigpy.to_device(image, sigpy.cpu_device) * s

    if espirit:
        table.run("espirit", tool, lambda: mr.app.EspiritCalib(k, calib_width=p.nlow, device=device, show_pbar=False).run(), sync, warmup)
    apps = {
        "sense": lambda: mr.app.SenseRecon(y, mps, lamda=LAM["sense"], max_iter=p.iters, device=device, show_pbar=False).run(),
        "cs": lambda: mr.app.L1WaveletRecon(y, mps, lamda=LAM["cs"], max_iter=p.iters, device=device, show_pbar=False).run(),
        "cs-tv": lambda: mr.app.TotalVariationRecon(y, mps, lamda=LAM["cs-tv"], max_iter=p.iters, device=device, show_pbar=False).run(),
    }
    for task, fn in apps.items():
        if task in table.solvers:
            table.run(task, tool, fn, sync, warmup, image_of=on_cpu)


def run_bart_rows(table: Table, maps: np.ndarray, work: Path, threads: int) -> None:
    """BART's ecalib and pics (-l2, -l1, TV) on our maps, timed as processes (with .cfl I/O)."""
    p = table.problem
    k_np = p.kspace[0].numpy()
    bdir = work / "bart"
    bdir.mkdir()
    write_cfl(bdir / "k", kspace_to_bart(k_np))
    write_cfl(bdir / "s", np.transpose(maps, (1, 2, 0))[:, :, None, :])
    t = run_bart("ecalib", "-m1", "-r", f"{k_np.shape[1]}:{p.nlow}", str(bdir / "k"), str(bdir / "e"), threads=threads)
    table.add("espirit", "bart", t, None)
    flags = {"sense": ["-l2", "-r", "0.01"], "cs": ["-l1", "-r", "0.01"], "cs-tv": ["-R", "T:3:0:0.01"]}
    for task, extra in flags.items():
        if task not in table.solvers:
            continue
        t = run_bart("pics", "-S", *extra, "-i", str(p.iters), str(bdir / "k"), str(bdir / "s"), str(bdir / task), threads=threads)
        table.add(task, "bart", t, read_cfl(bdir / task).reshape(k_np.shape[1:]))


def cpu_device() -> Any:
    """SigPy's CPU device."""
    import sigpy

    return sigpy.cpu_device


def sigpy_gpu() -> tuple[Any, Sync] | None:
    """`(sigpy.Device(0), CuPy synchronize)` where CuPy imports and sees a device, else None (printed why)."""
    try:
        import cupy
        import sigpy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise RuntimeError("CuPy sees no CUDA device")
        if not sigpy.config.cupy_enabled:
            raise RuntimeError("SigPy did not enable CuPy")
        device = sigpy.Device(0)
    except Exception as exc:  # noqa: BLE001 - any CuPy/driver problem means: no sigpy-cupy rows
        print(f"sigpy-cupy skipped: {type(exc).__name__}: {exc}", flush=True)
        return None
    return device, lambda: cupy.cuda.Device().synchronize()


def gpu_info(device: torch.device) -> dict[str, Any]:
    """GPU name, CUDA and CuPy versions and the `recon.ops` backend used for tensors on `device`."""
    probe = torch.zeros(1, dtype=torch.complex64, device=device)
    info: dict[str, Any] = {"backend": ops.backend_for(probe), "torch_cuda": torch.version.cuda}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["name"] = "cpu (dry run)"
    try:
        import cupy

        info["cupy"] = cupy.__version__
    except ImportError:
        info["cupy"] = None
    return info


def maps_difference(a: torch.Tensor | None, b: torch.Tensor | None) -> float | None:
    """`||a - b|| / ||b||` of two map sets (on any devices), None if one is missing."""
    if a is None or b is None:
        return None
    b = b.cpu()
    return float(torch.linalg.vector_norm(a.cpu() - b) / torch.linalg.vector_norm(b).clamp_min(1e-30))


def fmt(value: float | None, digits: int) -> str:
    """`value` with `digits` decimals, `-` for None / NaN."""
    return "-" if value is None or value != value else f"{value:.{digits}f}"


def table_lines(table: Table, reference: str) -> list[str]:
    """Markdown table rows: seconds, ratio to `reference` of the same task, SSIM (or the error)."""
    head = f"| task | tool | seconds | x slower than {reference} | SSIM |"
    lines = [head, "| --- | --- | --- | --- | --- |"]
    for r in table.rows:
        ref = table.get(r["task"], reference)
        ratio = r["seconds"] / ref["seconds"] if ref is not None and ref["seconds"] > 0 else None
        ssim = f"failed: {r['error']}" if "error" in r else fmt(r.get("ssim"), 4)
        lines.append(f"| {r['task']} | {r['tool']} | {fmt(r['seconds'], 3)} | {fmt(ratio, 2)} | {ssim} |")
    return lines


def twin_check(table: Table) -> tuple[list[str], float | None]:
    """Warning lines where a GPU tool's SSIM differs from its CPU twin's by > SSIM_TOLERANCE; max |diff|."""
    warnings, worst = [], None
    for gpu, cpu in TWINS:
        for task in ("sense", "cs", "cs-tv"):
            a, b = table.get(task, gpu), table.get(task, cpu)
            if a is None or b is None or "ssim" not in a or "ssim" not in b:
                continue
            diff = abs(a["ssim"] - b["ssim"])
            worst = diff if worst is None else max(worst, diff)
            if diff > SSIM_TOLERANCE:
                why = " (SigPy's random power-iteration start can account for part of it)" if gpu.startswith("sigpy") else ""
                warnings.append(f"**Warning**: {task}: {gpu} SSIM {a['ssim']:.4f} vs {cpu} {b['ssim']:.4f} (|diff| {diff:.4f} > {SSIM_TOLERANCE}){why}.")
    return warnings, worst


def load_problem(work: Path, accel: int, iters: int, coils: int, rows: int, width: int) -> Problem:
    """The simulated report-split slice, undersampled at `accel`."""
    path = simulated_slices(work / "data", REPORT_SEED, 1, 1, coils=coils, width=width, rows=rows)[0]
    batch, target = undersampled(path, accel)
    return Problem(
        kspace=batch.masked_kspace[:1],
        mask=batch.mask[:1],
        calib=calib_region(batch),
        nlow=num_low(batch),
        target=target,
        crop=batch.crop_size,
        iters=iters,
    )


def describe(p: Problem, accel: int, threads: int) -> str:
    """The problem in one sentence."""
    coils, height, width = p.kspace.shape[1:]
    return (f"One simulated {coils}-coil {height}x{width} slice (report split), {accel}x random mask, "
            f"{p.nlow} ACS columns, {p.iters} iterations, {threads} CPU threads.")


def cpu_mode(args: argparse.Namespace, table: Table, work: Path) -> tuple[str, dict[str, Any], str, bool]:
    """Ours, SigPy and BART on the CPU: (stem, payload, markdown, ok)."""
    p = table.problem
    cpu = torch.device("cpu")
    maps = run_ours(table, cpu, "ours", None)
    ok = maps is not None and not any("error" in r for r in table.rows)
    if maps is not None:
        maps_np = maps[0].numpy()
        if not args.skip_sigpy:
            run_sigpy(table, maps_np, "sigpy", cpu_device(), None, warmup=False, espirit=not args.skip_sigpy_espirit)
        if bart_available():
            run_bart_rows(table, maps_np, work, args.threads)
    lines = [
        "# Baselines vs SigPy and BART, CPU",
        "",
        describe(p, args.accel, args.threads) + " Same maps (ours) for all "
        "SENSE/CS solvers; ESPIRiT: ours and BART on the rectangular 640 x ACS region, SigPy on its square "
        "ACS x ACS region. BART times include process start and .cfl I/O; BART's lambda is on its own "
        "data scale (SSIM shown for orientation, not tuned). SSIM vs the RSS target, 320x320.",
        "",
        *table_lines(table, "ours"),
    ]
    payload = {"rows": table.rows, "accel": args.accel, "iters": p.iters, "nlow": p.nlow, "machine": machine()}
    stem = f"baselines_{args.accel}x" + ("" if table.solvers == SOLVERS else "_" + "_".join(s.replace("-", "") for s in table.solvers))
    return stem, payload, "\n".join(lines) + "\n", ok


def cuda_mode(args: argparse.Namespace, table: Table) -> tuple[str, dict[str, Any], str, bool]:
    """Ours on the GPU and CPU, SigPy on CuPy and CPU (the CPU standing in for both in a dry run)."""
    p = table.problem
    if args.dry_run:
        device, sync = torch.device("cpu"), None
        sig_gpu: tuple[Any, Sync] | None = (cpu_device(), None)
    else:
        device, sync = torch.device("cuda"), torch.cuda.synchronize
        sig_gpu = sigpy_gpu()
    info = gpu_info(device)
    print(f"GPU: {info['name']}, recon.ops backend {info['backend']}, CuPy {info['cupy']}", flush=True)
    maps_gpu = run_ours(table, device, "ours-cuda", sync)
    maps_cpu = run_ours(table, torch.device("cpu"), "ours-cpu", None, fallback_maps=maps_gpu) if args.with_cpu else None
    ok = not any("error" in r for r in table.rows)
    ref_maps = maps_gpu if maps_gpu is not None else maps_cpu
    if ref_maps is not None:
        maps_np = ref_maps[0].cpu().numpy()
        espirit = not args.skip_sigpy_espirit
        if sig_gpu is not None and not args.skip_sigpy:
            run_sigpy(table, maps_np, "sigpy-cupy", sig_gpu[0], sig_gpu[1], warmup=True, espirit=espirit)
        if not (args.skip_sigpy_cpu or args.skip_sigpy):
            run_sigpy(table, maps_np, "sigpy", cpu_device(), None, warmup=False, espirit=espirit)
    if args.dry_run:
        ok = ok and not any("error" in r for r in table.rows)
    warnings, worst = twin_check(table)
    maps_diff = maps_difference(maps_gpu, maps_cpu)
    title = "DRY RUN (CPU standing in for the GPU and CuPy)" if args.dry_run else info["name"]
    lines = [
        f"# Baselines per slice on {title} vs CPU and SigPy (CuPy)",
        "",
        describe(p, args.accel, args.threads) + f" Ours: `recon.ops` backend `{info['backend']}` on the GPU "
        f"(torch CUDA {info['torch_cuda']}, CuPy {info['cupy']}). Each row: the median of {table.repeats} run(s), "
        "synchronized on the GPU, after one warm-up run (none for SigPy on the CPU). "
        "SigPy's solvers use the maps of ours-cuda (SigPy's ESPIRiT runs on its square ACS x ACS region); "
        "ours-cpu uses its own CPU maps. SigPy's wavelet transform runs in PyWavelets on the CPU even "
        "under CuPy, and its CS step sizes come from power iterations from a random start, so its "
        f"SSIM varies slightly from run to run. SSIM vs the RSS target, {p.crop[0]}x{p.crop[1]}.",
        "",
        *table_lines(table, "ours-cuda"),
        "",
        f"ESPIRiT maps, ours-cuda vs ours-cpu: relative difference {fmt(maps_diff, 6)}.",
    ]
    if worst is not None:
        lines.append(f"GPU vs CPU SSIM, largest |diff|: {worst:.2e} (tolerance {SSIM_TOLERANCE}).")
    lines.extend(["", *warnings] if warnings else [])
    for w in warnings:
        print(w, flush=True)
    payload = {
        "rows": table.rows, "accel": args.accel, "iters": p.iters, "nlow": p.nlow, "repeats": table.repeats,
        "gpu": info, "maps_rel_diff": maps_diff, "ssim_max_diff": worst, "dry_run": args.dry_run, "machine": machine(),
    }
    stem = f"baselines_{args.accel}x_" + ("dry_run" if args.dry_run else slug(info["name"]))
    if table.solvers != SOLVERS:
        stem += "_" + "_".join(s.replace("-", "") for s in table.solvers)
    return stem, payload, "\n".join(lines) + "\n", ok


def main() -> None:
    """Parse the options, run the chosen mode, write JSON + markdown."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cpu: ours/SigPy/BART; cuda: GPU vs CPU vs SigPy on CuPy")
    parser.add_argument("--accel", type=int, default=8, choices=(4, 8))
    parser.add_argument("--iters", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (set OMP_NUM_THREADS alike for SigPy)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per row, median reported")
    parser.add_argument("--skip-sigpy-espirit", action="store_true", help="SigPy's EspiritCalib takes ~20 s on 2 CPU cores")
    parser.add_argument("--with-cpu", action=argparse.BooleanOptionalAction, default=True, help="cuda mode: also time ours on the CPU")
    parser.add_argument("--skip-sigpy-cpu", action="store_true", help="cuda mode: no SigPy rows on the CPU")
    parser.add_argument("--skip-sigpy", action="store_true", help="no SigPy rows at all")
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS),
                        help="SENSE/CS rows to run (ESPIRiT always runs); a subset is named in the file stem")
    parser.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results (dry run: a temp dir)")
    parser.add_argument("--dry-run", action="store_true", help="cuda mode's code on the CPU, tiny problem, temp dir")
    args = parser.parse_args()
    if args.dry_run:
        args.device, args.iters, args.repeats = "cuda", DRY_RUN["iters"], 1
        args.out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="bench_baselines_out_"))
    elif args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device (--dry-run checks the script on the CPU)")
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_baselines_"))
    size = {k: DRY_RUN[k] for k in ("coils", "rows", "width")} if args.dry_run else {"coils": 15, "rows": 640, "width": 368}
    solvers = tuple(s for s in SOLVERS if s in args.solvers)
    table = Table(load_problem(work, args.accel, args.iters, **size), repeats=args.repeats, solvers=solvers)
    if args.device == "cuda":
        stem, payload, markdown, ok = cuda_mode(args, table)
    else:
        stem, payload, markdown, ok = cpu_mode(args, table, work)
    out_dir = write_results(stem, payload, markdown, args.out_dir)
    print(f"wrote {out_dir / stem}.json and .md")
    if not ok:
        sys.exit("some runs of ours failed (see the rows marked failed)" if not args.dry_run else "dry run: some runs failed")


if __name__ == "__main__":
    main()
