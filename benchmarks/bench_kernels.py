"""Speed of the CuPy kernels behind `recon.ops` against torch (eager, `torch.compile`) and fastMRI.

On a 15-coil 640x368 slice (fastMRI knee), batch 1 and 8, complex64: every fused op and the
k-space chain of one VarNet cascade, `sens_reduce(soft_dc(k, k0, M, eta) - sens_expand(x, S), S)`,
forward and forward+backward. Reports the median time, the achieved bandwidth (the minimum HBM
traffic of the op: each input read once, each output written once, divided by the time) and its
fraction of the GPU's peak memory bandwidth, and each variant's relative error against torch eager.
Writes `benchmarks/results/kernels_<gpu>.json` and `.md`.

Needs a CUDA GPU (exits 0 with a message without one). `--dry-run` runs tiny sizes on the CPU
with the torch variants only (`torch.compile` with its `eager` backend), to check the script.

    python benchmarks/bench_kernels.py                 # on a GPU
    python benchmarks/bench_kernels.py --dry-run       # anywhere
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from _common import slug
from recon.ops import torch_backend as tb

RESULTS = Path(__file__).parent / "results"
BYTES_C64 = 8
# Peak HBM bandwidth (GB/s) by device name, where the driver does not report clock and bus width.
KNOWN_PEAK_GBS = {"H100 SXM": 3350.0, "H100 PCIe": 2000.0, "H100": 3350.0, "H200": 4800.0,
                  "A100-SXM4-80GB": 2039.0, "A100-SXM4-40GB": 1555.0, "A100": 1555.0, "L4": 300.0,
                  "A10G": 600.0, "V100": 900.0, "T4": 320.0}


@dataclass
class Row:
    """One timing: variant x op x batch."""

    op: str
    variant: str
    batch: int
    mode: str  # "fwd" or "fwd+bwd"
    ms: float
    gbs: float
    peak_fraction: float | None
    rel_error: float | None
    error: str | None = None


# --------------------------------------------------------------------------- variants


def fastmri_ops() -> dict[str, Callable[..., torch.Tensor]]:
    """The ops written with fastMRI's real/imag-axis helpers (complex as a trailing axis of 2)."""
    import fastmri

    def r(t: torch.Tensor) -> torch.Tensor:
        return torch.view_as_real(t)

    def c(t: torch.Tensor) -> torch.Tensor:
        return torch.view_as_complex(t.contiguous())

    def expand(x: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        return c(fastmri.fft2c(fastmri.complex_mul(r(x), r(maps))))

    def reduce(k: torch.Tensor, maps: torch.Tensor) -> torch.Tensor:
        img = fastmri.ifft2c(r(k))
        return c(fastmri.complex_mul(img, fastmri.complex_conj(r(maps))).sum(dim=1, keepdim=True))

    def soft_dc(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
        zero = torch.zeros(1, 1, 1, 1, 1, device=k.device)
        return c(r(k) - torch.where(mask.unsqueeze(-1), r(k) - r(k0), zero) * eta)

    def hard_dc(k: torch.Tensor, k0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return c(torch.where(mask.unsqueeze(-1), r(k0), r(k)))

    return {
        "fft2c": lambda x: c(fastmri.fft2c(r(x))),
        "ifft2c": lambda x: c(fastmri.ifft2c(r(x))),
        "sens_expand": expand,
        "sens_reduce": reduce,
        "soft_dc": soft_dc,
        "hard_dc": hard_dc,
        "rss": lambda x, dim: fastmri.rss_complex(r(x), dim),
    }


def backend_ops(module: Any) -> dict[str, Callable[..., torch.Tensor]]:
    names = ["fft2c", "ifft2c", "sens_expand", "sens_reduce", "soft_dc", "hard_dc", "rss"]
    return {n: getattr(module, n) for n in names}


def compiled_ops(backend: str) -> dict[str, Callable[..., torch.Tensor]]:
    return {n: torch.compile(f, backend=backend, dynamic=False) for n, f in backend_ops(tb).items()}


def with_chain(ops: dict[str, Callable[..., torch.Tensor]]) -> dict[str, Callable[..., torch.Tensor]]:
    """Add the cascade's k-space chain built from the variant's own ops."""

    def chain(x: torch.Tensor, k: torch.Tensor, k0: torch.Tensor, maps: torch.Tensor, mask: torch.Tensor,
              eta: torch.Tensor) -> torch.Tensor:
        return ops["sens_reduce"](ops["soft_dc"](k, k0, mask, eta) - ops["sens_expand"](x, maps), maps)

    return {**ops, "chain": chain}


# --------------------------------------------------------------------------- workloads


def workloads(b: int, c: int, h: int, w: int, device: str) -> dict[str, tuple[tuple[Any, ...], int]]:
    """Per op: its arguments and its minimum memory traffic in bytes (complex64)."""
    g = torch.Generator(device=device).manual_seed(0)

    def crandn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.complex64, device=device, generator=g)

    x, maps, k, k0 = crandn(b, 1, h, w), crandn(b, c, h, w), crandn(b, c, h, w), crandn(b, c, h, w)
    mask = torch.rand(b, 1, 1, w, device=device, generator=g) < 0.25
    eta = torch.tensor(0.5, device=device)
    coil, img = b * c * h * w * BYTES_C64, b * h * w * BYTES_C64
    return {
        "fft2c": ((k,), 2 * coil),
        "ifft2c": ((k,), 2 * coil),
        "sens_expand": ((x, maps), img + 2 * coil),
        "sens_reduce": ((k, maps), 2 * coil + img),
        "soft_dc": ((k, k0, mask, eta), 3 * coil),
        "hard_dc": ((k, k0, mask), 3 * coil),
        "rss": ((k, 1), coil + img // 2),
        "chain": ((x, k, k0, maps, mask, eta), img + 3 * coil + img),
    }


def grad_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """Copies of the args with floating/complex tensors requiring grad (masks and ints untouched)."""
    return tuple(a.detach().clone().requires_grad_() if isinstance(a, torch.Tensor) and
                 (a.is_complex() or a.is_floating_point()) else a for a in args)


def time_ms(fn: Callable[[], Any], device: str, warmup: int, repeats: int) -> float:
    """Median wall time of `fn` in milliseconds (CUDA events on a GPU)."""
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def rel_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item()


# --------------------------------------------------------------------------- device facts


def peak_bandwidth_gbs() -> float | None:
    """Peak memory bandwidth of the current GPU in GB/s (driver clock x bus width, else a table)."""
    try:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(torch.cuda.current_device())
        clock_khz, bus_bits = props.get("memoryClockRate", 0), props.get("memoryBusWidth", 0)
        if clock_khz and bus_bits:
            return 2.0 * clock_khz * 1e3 * bus_bits / 8 / 1e9
    except Exception:  # no CuPy, or a runtime without these fields
        pass
    name = torch.cuda.get_device_name()
    for key, value in KNOWN_PEAK_GBS.items():
        if key in name:
            return value
    return None


# --------------------------------------------------------------------------- main


def report(r: Row) -> None:
    if r.error:
        print(f"B={r.batch} {r.op:12s} {r.variant:14s} failed: {r.error}", flush=True)
        return
    err = f"rel.err {r.rel_error:.1e}" if r.rel_error is not None else ""
    print(f"B={r.batch} {r.op:12s} {r.mode:8s} {r.variant:14s} {r.ms:9.3f} ms {r.gbs:8.1f} GB/s  {err}", flush=True)


def measure_op(fn: Callable[..., torch.Tensor], op: str, name: str, batch: int, op_args: tuple, nbytes: int,
               reference: torch.Tensor, peak: float | None, device: str, args: argparse.Namespace) -> list[Row]:
    """Forward timing of one variant of one op (and forward + backward for the chain)."""
    err = rel_error(fn(*op_args), reference)
    ms = time_ms(lambda: fn(*op_args), device, args.warmup, args.repeats)
    gbs = nbytes / (ms * 1e-3) / 1e9
    rows = [Row(op, name, batch, "fwd", ms, gbs, gbs / peak if peak else None, err)]
    report(rows[-1])
    if op == "chain":
        gargs = grad_args(op_args)

        def step() -> None:
            out = fn(*gargs)
            torch.autograd.grad(out.abs().sum(), [a for a in gargs if isinstance(a, torch.Tensor) and a.requires_grad])

        ms = time_ms(step, device, args.warmup, args.repeats)
        rows.append(Row(op, name, batch, "fwd+bwd", ms, 3 * nbytes / (ms * 1e-3) / 1e9, None, None))
        report(rows[-1])
    return rows


def speedups(rows: list[Row], variant: str = "cupy kernels") -> dict[tuple[str, int, str], float]:
    """(op, batch, mode) -> best torch time (eager or compile) / `variant`'s time."""
    out = {}
    for r in rows:
        if r.variant != variant or r.error:
            continue
        torch_ms = [t.ms for t in rows if (t.op, t.batch, t.mode) == (r.op, r.batch, r.mode)
                    and t.variant in ("torch eager", "torch.compile") and not t.error]
        if torch_ms:
            out[(r.op, r.batch, r.mode)] = min(torch_ms) / r.ms
    return out


def run(args: argparse.Namespace, on_batch: Callable[[list[Row]], None] | None = None) -> list[Row]:
    """Every variant x op x batch; `on_batch(rows so far)` after each batch (to write partial results)."""
    device = "cpu" if args.dry_run else "cuda"
    variants: dict[str, dict[str, Callable[..., torch.Tensor]]] = {"torch eager": backend_ops(tb)}
    variants["torch.compile"] = compiled_ops("eager" if args.dry_run else "inductor")
    variants["fastmri"] = fastmri_ops()
    if not args.dry_run:
        from recon.ops import cupy_backend

        if not cupy_backend.available():
            raise SystemExit("CuPy is missing or sees no GPU: pip install 'recon[cuda12]' or 'recon[cuda13]', matching torch.version.cuda")
        variants = {"cupy kernels": backend_ops(cupy_backend), **variants}
    variants = {name: with_chain(ops) for name, ops in variants.items()}
    peak = None if args.dry_run else peak_bandwidth_gbs()
    rows: list[Row] = []
    for b in args.batches:
        loads = workloads(b, args.coils, args.height, args.width, device)
        reference = {op: variants["torch eager"][op](*a) for op, (a, _) in loads.items()}
        for op, (op_args, nbytes) in loads.items():
            for name, ops in variants.items():
                try:
                    rows.extend(measure_op(ops[op], op, name, b, op_args, nbytes, reference[op], peak, device, args))
                except Exception as exc:  # one failing variant is a result, not the end of the run
                    rows.append(Row(op, name, b, "fwd", float("nan"), float("nan"), None, None,
                                    f"{type(exc).__name__}: {exc}".splitlines()[0][:200]))
                    report(rows[-1])
        if on_batch is not None:
            on_batch(rows)
    return rows


def markdown(rows: list[Row], meta: dict[str, Any]) -> str:
    lines = [f"# recon.ops kernels on {meta['device']}", "",
             f"{meta['coils']} coils, {meta['height']}x{meta['width']}, complex64; median of {meta['repeats']} "
             f"runs after {meta['warmup']} warm-up. GB/s = minimum HBM traffic / time "
             f"(fwd+bwd: 3x the forward traffic); peak {meta['peak_gbs'] or 'unknown'} GB/s. "
             "rel.err = max|out - torch eager| / max|torch eager|.", "",
             "x torch = best torch time (eager or compile) / cupy kernels time.", "",
             *(["**Incomplete**: the run stopped before every batch was measured.", ""] if meta.get("complete") is False else []),
             "| op | batch | mode | variant | ms | GB/s | % peak | rel.err | x torch |",
             "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    gains = speedups(rows)
    for r in rows:
        if r.error:
            lines.append(f"| {r.op} | {r.batch} | {r.mode} | {r.variant} | failed: {r.error} | | | | |")
            continue
        peak = f"{100 * r.peak_fraction:.0f}" if r.peak_fraction is not None else ""
        err = f"{r.rel_error:.1e}" if r.rel_error is not None else ""
        gain = gains.get((r.op, r.batch, r.mode)) if r.variant == "cupy kernels" else None
        lines.append(f"| {r.op} | {r.batch} | {r.mode} | {r.variant} | {r.ms:.3f} | {r.gbs:.0f} | {peak} | {err} | "
                     f"{'' if gain is None else f'{gain:.2f}'} |")
    chain = {k: v for k, v in gains.items() if k[0] == "chain"}
    if chain:
        worst = min(chain.values())
        lines += ["", f"Target (issue 20): k-space chain >= 2x torch eager; the gain column is against the faster of "
                  "torch eager and torch.compile: "
                  + ", ".join(f"B={b} {m} {v:.2f}x" for (_, b, m), v in sorted(chain.items()))
                  + f": {'met' if worst >= 2 else 'missed'}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on the CPU, torch variants only")
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--coils", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results (dry run: a temp dir)")
    args = parser.parse_args(argv)
    tiny = {"batches": [1, 2], "coils": 3, "height": 16, "width": 12, "warmup": 1, "repeats": 3}
    full = {"batches": [1, 8], "coils": 15, "height": 640, "width": 368, "warmup": 10, "repeats": 50}
    for key, value in (tiny if args.dry_run else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if not args.dry_run and not torch.cuda.is_available():
        print("bench_kernels: no CUDA GPU here; nothing to measure (use --dry-run to check the script).")
        return 0
    device = "cpu (dry run)" if args.dry_run else torch.cuda.get_device_name()
    meta = {"device": device, "coils": args.coils, "height": args.height, "width": args.width,
            "repeats": args.repeats, "warmup": args.warmup, "torch": torch.__version__,
            "platform": platform.platform(), "peak_gbs": None if args.dry_run else peak_bandwidth_gbs()}
    out_dir = args.out_dir or (Path(tempfile.mkdtemp(prefix="bench_kernels_")) if args.dry_run else RESULTS)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"kernels_{slug(device)}"

    def write(rows: list[Row], complete: bool = False) -> None:
        payload = {"meta": meta, "complete": complete, "rows": [asdict(r) for r in rows]}
        (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2))
        (out_dir / f"{stem}.md").write_text(markdown(rows, meta | {"complete": complete}))

    write(run(args, on_batch=write), complete=True)
    print(f"wrote {out_dir / stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
