"""Speed of recon's VarNet vs `fastmri.models.VarNet` with identical weights on the same device.

Variants: recon with each ops backend (`torch`, and `cupy` on CUDA when CuPy is usable) and
fp32 or bf16 U-Nets (`VarNet.set_mixed_precision`), and fastMRI's model in fp32. Every variant
is built from the same random state dict. Per variant:

* inference per slice (batch 1, no grad) and per volume (`--slices` slices through the model in
  chunks of `--volume-batch`; a chunk that runs out of GPU memory is halved and retried),
* a training step (batch 1: forward, L1 loss against a fixed image, backward, Adam step),
* the peak GPU memory of the training step, and
* the relative L2 difference of its slice output from fastMRI's fp32 output.

Times are medians of `--repeats` runs after `--warmup` runs, synchronized on CUDA. Ratios are
fastmri / variant (> 1: the variant is faster). The defaults are the issue's workload on a
GPU: the full 12-cascade model (fastMRI defaults) on 15 coils x 640 x 368, 35-slice volumes.

    python benchmarks/bench_varnet.py                       # CUDA: full size, writes varnet_<gpu>.*
    python benchmarks/bench_varnet.py --device cpu --preset small --name varnet   # the CPU table
    python benchmarks/bench_varnet.py --dry-run             # tiny, CPU, temp dir: checks the script
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import fastmri.models
import torch

from _common import slug, sync
from recon import ops
from recon.models import VarNet

RESULTS = Path(__file__).resolve().parent / "results"

PRESETS: dict[str, dict[str, int]] = {
    "full": dict(cascades=12, chans=18, pools=4, sens_chans=8, sens_pools=4, coils=15, rows=640, cols=368, slices=35),
    "small": dict(cascades=4, chans=8, pools=3, sens_chans=4, sens_pools=3, coils=8, rows=320, cols=184, slices=4),
    "tiny": dict(cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2, coils=4, rows=64, cols=48, slices=3),
}


def median_time(fn: Callable[[], None], warmup: int, repeats: int, device: torch.device) -> float:
    """Median wall seconds of `fn()` over `repeats` runs after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_inputs(size: dict[str, int], acceleration: int, device: torch.device) -> dict[str, Any]:
    """Random masked k-space volume `(slices, C, H, W)` complex64 with an equispaced mask plus
    a centered ACS block (8% of the columns), on `device`."""
    g = torch.Generator().manual_seed(1)
    cols = size["cols"]
    shape = (size["slices"], size["coils"], size["rows"], cols)
    kspace = torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g))
    mask = torch.zeros(1, 1, 1, cols, dtype=torch.bool)
    mask[..., ::acceleration] = True
    nlow = max(2, round(0.08 * cols))
    start = (cols - nlow + 1) // 2
    mask[..., start : start + nlow] = True
    target = torch.rand(1, size["rows"], cols, generator=g)
    return {"kspace": (kspace * mask).to(device), "mask": mask.to(device), "nlow": nlow, "target": target.to(device)}


class Runner:
    """Calls one model in its own input convention: complex tensors (recon) or a trailing
    real/imag axis (fastMRI)."""

    def __init__(self, model: torch.nn.Module, fastmri_layout: bool, backend: str | None) -> None:
        self.model, self.fastmri_layout, self.backend = model, fastmri_layout, backend

    def __call__(self, kspace: torch.Tensor, mask: torch.Tensor, nlow: int) -> torch.Tensor:
        with ops.use_backend(self.backend):
            if self.fastmri_layout:
                return self.model(torch.view_as_real(kspace), mask.unsqueeze(-1), nlow)
            return self.model(kspace, mask, nlow)


def build_variants(state: dict[str, torch.Tensor], cfg: dict[str, int], device: torch.device, cupy_ok: bool, compile_: bool,
                   precisions: list[str]) -> dict[str, Runner | str]:
    """Name -> Runner, or -> the reason the variant cannot run here."""
    variants: dict[str, Runner | str] = {}
    backends = ["torch", "cupy"] if device.type == "cuda" else ["torch"]
    for backend in backends:
        for dtype_name in precisions:
            dtype = {"fp32": None, "bf16": torch.bfloat16}[dtype_name]
            name = f"recon-{backend}-{dtype_name}"
            if backend == "cupy" and not cupy_ok:
                variants[name] = "CuPy is not installed or sees no CUDA device"
                continue
            model = VarNet(**cfg).to(device)
            model.load_state_dict(state)
            model.set_mixed_precision(dtype)
            variants[name] = Runner(model, False, backend)
            if compile_ and backend == "torch":
                compiled = VarNet(**cfg).to(device)
                compiled.load_state_dict(state)
                compiled.set_mixed_precision(dtype)
                variants[f"{name}-compiled"] = Runner(torch.compile(compiled), False, backend)
    ref = fastmri.models.VarNet(**cfg).to(device)
    ref.load_state_dict(state)
    variants["fastmri-fp32"] = Runner(ref, True, None)
    return variants


def infer_volume(run: Runner, kspace: torch.Tensor, mask: torch.Tensor, nlow: int, chunk: list[int]) -> None:
    """All slices of `kspace` through `run` in chunks of `chunk[0]` slices; halves the chunk
    (in place, so later calls start there) when CUDA runs out of memory."""
    with torch.no_grad():
        i = 0
        while i < kspace.shape[0]:
            try:
                run(kspace[i : i + chunk[0]], mask, nlow)
            except torch.OutOfMemoryError:
                if chunk[0] == 1:
                    raise
                torch.cuda.empty_cache()
                chunk[0] //= 2
                continue
            i += chunk[0]


def measure(name: str, run: Runner, data: dict[str, Any], reference: torch.Tensor | None, args: argparse.Namespace,
            device: torch.device) -> tuple[dict[str, Any], torch.Tensor]:
    """Timings, peak memory and output difference of one variant, and its slice output."""
    k1, mask, nlow = data["kspace"][:1], data["mask"], data["nlow"]
    row: dict[str, Any] = {"variant": name}
    with torch.no_grad():
        out = run(k1, mask, nlow).float()
    if reference is not None:
        row["rel_diff_vs_fastmri_fp32"] = float((out - reference).norm() / reference.norm())

    def infer() -> None:
        with torch.no_grad():
            run(k1, mask, nlow)

    row["infer_slice_s"] = median_time(infer, args.warmup, args.repeats, device)
    chunk = [args.volume_batch]
    row["infer_volume_s"] = median_time(lambda: infer_volume(run, data["kspace"], mask, nlow, chunk), 1, max(1, args.repeats // 2), device)
    row["volume_batch"] = chunk[0]
    opt = torch.optim.Adam(run.model.parameters(), lr=1e-6)
    target = data["target"]

    def step() -> None:
        loss = (run(k1, mask, nlow) - target).abs().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row["train_step_s"] = median_time(step, args.warmup, args.repeats, device)
    if device.type == "cuda":
        row["train_peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    return row, out


def run(args: argparse.Namespace, on_row: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Measure every variant; returns the JSON payload (and passes the payload so far to `on_row` after each variant)."""
    device = torch.device(args.device)
    size = {**PRESETS[args.preset], **{k: v for k, v in vars(args).items() if k in PRESETS["full"] and v is not None}}
    cfg = dict(num_cascades=size["cascades"], chans=size["chans"], pools=size["pools"], sens_chans=size["sens_chans"], sens_pools=size["sens_pools"])
    torch.manual_seed(0)
    state = fastmri.models.VarNet(**cfg).state_dict()
    data = make_inputs(size, args.acceleration, device)
    cupy_ok = device.type == "cuda" and ops._cupy_usable()
    precisions = args.precisions or (["fp32", "bf16"] if device.type == "cuda" else ["fp32"])
    variants = build_variants(state, cfg, device, cupy_ok, args.compile, precisions)
    order = ["fastmri-fp32"] + [n for n in variants if n != "fastmri-fp32"]
    rows: list[dict[str, Any]] = []

    def payload(rows: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
        return _payload(args, device, cfg, size, rows, complete)

    reference = None
    for name in order:
        runner = variants[name]
        if isinstance(runner, str):
            rows.append({"variant": name, "skipped": runner})
            print(f"{name}: skipped ({runner})", flush=True)
            continue
        try:
            row, out = measure(name, runner, data, reference, args, device)
        except Exception as exc:  # a failed variant is a result to report, not the end of the run
            traceback.print_exc()
            rows.append({"variant": name, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
            if on_row is not None:
                on_row(payload(rows, complete=False))
            continue
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if name == "fastmri-fp32":
            reference = out
        rows.append(row)
        print(json.dumps(row), flush=True)
        if on_row is not None:
            on_row(payload(rows, complete=False))
    return payload(rows, complete=True)


def _payload(args: argparse.Namespace, device: torch.device, cfg: dict[str, int], size: dict[str, int],
             rows: list[dict[str, Any]], complete: bool) -> dict[str, Any]:
    """The JSON payload of `rows` (speed-ups against fastmri-fp32 added to them); `complete` False while variants remain."""
    ref_row = next((r for r in rows if r["variant"] == "fastmri-fp32" and "infer_slice_s" in r), None)
    if ref_row is not None:
        for r in rows:
            for key in ("infer_slice_s", "infer_volume_s", "train_step_s"):
                if key in r:
                    r[f"{key}_fastmri_over_variant"] = ref_row[key] / r[key]
    return {
        "complete": complete,
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "preset": args.preset,
        "model": cfg,
        "input": {k: size[k] for k in ("coils", "rows", "cols", "slices")} | {"acceleration": args.acceleration},
        "warmup": args.warmup,
        "repeats": args.repeats,
        "rows": rows,
    }


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def markdown(result: dict[str, Any]) -> str:
    """The results table and the issue's targets, met or not."""
    inp, m = result["input"], result["model"]
    lines = [
        f"# VarNet speed: recon vs fastmri ({result['device_name']}, torch {result['torch']})",
        "",
        f"Model {m}; input {inp['coils']} coils x {inp['rows']} x {inp['cols']}, {inp['acceleration']}x, "
        f"volume = {inp['slices']} slices; identical weights in every variant; median of {result['repeats']} runs "
        f"after {result['warmup']} warm-ups ({result['threads']} CPU threads). Speed-ups are fastmri-fp32 time / variant time."
        + (" fp32 rows use torch's defaults: cuDNN convolutions may run in TF32 (`cudnn.allow_tf32` is on)."
           if result.get("cudnn_allow_tf32") and result["device"].startswith("cuda") else ""),
        "",
        *(["**Incomplete**: the run stopped before every variant was measured.", ""] if result.get("complete") is False else []),
        "| variant | slice (ms) | volume (s) | train step (ms) | train peak (GiB) | x slice | x volume | x train | rel. diff vs fastmri |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in result["rows"]:
        if "infer_slice_s" not in r:
            lines.append(f"| {r['variant']} | {r.get('skipped') or r.get('error')} | | | | | | | |")
            continue
        lines.append(
            f"| {r['variant']} | {r['infer_slice_s'] * 1e3:.1f} | {r['infer_volume_s']:.3f} | {r['train_step_s'] * 1e3:.1f} | "
            f"{_fmt(r.get('train_peak_gib'), '.2f')} | {_fmt(r.get('infer_slice_s_fastmri_over_variant'), '.2f')} | "
            f"{_fmt(r.get('infer_volume_s_fastmri_over_variant'), '.2f')} | {_fmt(r.get('train_step_s_fastmri_over_variant'), '.2f')} | "
            f"{_fmt(r.get('rel_diff_vs_fastmri_fp32'), '.1e')} |"
        )
    ours = [r for r in result["rows"] if r["variant"].startswith("recon") and "infer_slice_s" in r]
    if ours and result["preset"] == "full" and result["device"].startswith("cuda"):
        best_vol = min(ours, key=lambda r: r["infer_volume_s"])
        best_inf = max(ours, key=lambda r: r.get("infer_slice_s_fastmri_over_variant", 0))
        best_train = max(ours, key=lambda r: r.get("train_step_s_fastmri_over_variant", 0))
        lines += [
            "",
            "Targets (issue 20):",
            f"- whole volume under 1 s: {best_vol['infer_volume_s']:.3f} s ({best_vol['variant']}): "
            f"{'met' if best_vol['infer_volume_s'] < 1 else 'missed'}",
            f"- inference >= 2x fastMRI: {best_inf.get('infer_slice_s_fastmri_over_variant', float('nan')):.2f}x per slice "
            f"({best_inf['variant']}): {'met' if best_inf.get('infer_slice_s_fastmri_over_variant', 0) >= 2 else 'missed'}",
            f"- training step >= 1.5x fastMRI: {best_train.get('train_step_s_fastmri_over_variant', float('nan')):.2f}x "
            f"({best_train['variant']}): {'met' if best_train.get('train_step_s_fastmri_over_variant', 0) >= 1.5 else 'missed'}",
        ]
    lines += ["", "Command: `" + result.get("command", "python benchmarks/bench_varnet.py") + "`."]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="sizes; default full on CUDA, small on CPU")
    for key in PRESETS["full"]:
        p.add_argument(f"--{key.replace('_', '-')}", dest=key, type=int, default=None, help="overrides the preset")
    p.add_argument("--acceleration", type=int, default=4)
    p.add_argument("--volume-batch", type=int, default=35, help="slices per forward pass in the volume timing")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=None,
                   help="U-Net precisions of the recon variants; default fp32 bf16 on CUDA, fp32 on the CPU (no fast bf16 convs)")
    p.add_argument("--compile", action="store_true", help="add torch.compile'd variants of the torch backend")
    p.add_argument("--name", default=None, help="results file stem; default varnet_<device>")
    p.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results (dry run: a temp dir)")
    p.add_argument("--dry-run", action="store_true", help="tiny model and input on the CPU, 1 repeat, temp dir")
    args = p.parse_args()
    if args.dry_run:
        args.device, args.preset, args.warmup, args.repeats = "cpu", "tiny", 1, 1
        args.out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="bench_varnet_"))
    if args.preset is None:
        args.preset = "full" if args.device.startswith("cuda") else "small"
    out_dir = args.out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    name = args.name or f"varnet_{slug(torch.cuda.get_device_name(device)) if device.type == 'cuda' else 'cpu'}"

    def write(result: dict[str, Any]) -> None:
        result["command"] = "python benchmarks/bench_varnet.py " + " ".join(sys.argv[1:])
        (out_dir / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (out_dir / f"{name}.md").write_text(markdown(result))

    result = run(args, on_row=write)
    write(result)
    print(markdown(result))
    print(f"wrote {out_dir / name}.json and .md")


if __name__ == "__main__":
    main()
