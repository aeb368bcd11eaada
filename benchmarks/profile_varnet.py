"""Where the time of a VarNet slice goes: `torch.profiler` tables per variant.

The lent GPU machines have no Nsight Systems, so this is the profile to read when a target of
`bench_varnet.py` is missed. The variants are `bench_varnet.py`'s (recon torch/cupy backend x
fp32/bf16 U-Nets, and `fastmri.models.VarNet`), built from one random state dict. Per variant,
after `--warmup` untimed calls, two profiles: `--steps` inference calls on one slice (no grad),
and `--steps` training steps (forward, L1 loss, backward, Adam step). Each table lists the ops
with the largest self time on the device (CUDA kernels; the CPU in a dry run), with their share
of the profile's total.

Writes `benchmarks/results/profile_varnet_<gpu>.json` and `.md` (or `--out-dir`).

    python benchmarks/profile_varnet.py                 # CUDA, full-size model and input
    python benchmarks/profile_varnet.py --dry-run       # tiny, CPU, temp dir: checks the script
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import fastmri.models
import torch
from torch.profiler import ProfilerActivity, profile

from _common import slug, sync
from bench_varnet import PRESETS, Runner, build_variants, make_inputs
from recon import ops

RESULTS = Path(__file__).resolve().parent / "results"


def _self_time_us(event: Any, device: bool) -> float:
    """Self time of one aggregated profiler row in microseconds, on the device or the CPU."""
    if not device:
        return float(event.self_cpu_time_total)
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def top_ops(fn: Callable[[], None], steps: int, device: torch.device, rows: int) -> dict[str, Any]:
    """Profile `steps` calls of `fn`; the `rows` ops with the largest self time, and the total."""
    on_device = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if on_device else [])
    sync(device)
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        sync(device)
    events = [e for e in prof.key_averages() if _self_time_us(e, on_device) > 0]
    total = sum(_self_time_us(e, on_device) for e in events)
    events.sort(key=lambda e: _self_time_us(e, on_device), reverse=True)
    return {
        "clock": "device" if on_device else "cpu",
        "total_ms_per_step": total / 1e3 / steps,
        "ops": [{"name": e.key, "calls_per_step": e.count / steps, "self_ms_per_step": _self_time_us(e, on_device) / 1e3 / steps,
                 "share": _self_time_us(e, on_device) / total if total else 0.0} for e in events[:rows]],
    }


def profile_variant(run: Runner, data: dict[str, Any], args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Inference and training-step profiles of one variant."""
    k1, mask, nlow, target = data["kspace"][:1], data["mask"], data["nlow"], data["target"]

    def infer() -> None:
        with torch.no_grad():
            run(k1, mask, nlow)

    opt = torch.optim.Adam(run.model.parameters(), lr=1e-6)

    def step() -> None:
        loss = (run(k1, mask, nlow) - target).abs().mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    out: dict[str, Any] = {}
    for name, fn in (("infer", infer), ("train", step)):
        for _ in range(args.warmup):
            fn()
        out[name] = top_ops(fn, args.steps, device, args.rows)
    return out


def markdown(result: dict[str, Any]) -> str:
    """One table per variant and mode."""
    inp = result["input"]
    lines = [f"# Where VarNet's time goes ({result['device_name']}, torch {result['torch']})", "",
             f"torch.profiler, self time per op on the {result['clock']} clock, averaged over {result['steps']} calls "
             f"after {result['warmup']} warm-ups; model {result['model']}, input {inp['coils']} coils x {inp['rows']} x "
             f"{inp['cols']}, batch 1. Command: `{result['command']}`.", ""]
    for variant, modes in result["variants"].items():
        if "error" in modes:
            lines += [f"## {variant}", "", f"failed: {modes['error']}", ""]
            continue
        for mode, table in modes.items():
            lines += [f"## {variant}, {mode}: {table['total_ms_per_step']:.2f} ms per call", "",
                      "| op | calls | self ms | share |", "| --- | ---: | ---: | ---: |"]
            lines += [f"| `{o['name'][:90]}` | {o['calls_per_step']:.0f} | {o['self_ms_per_step']:.3f} | {100 * o['share']:.1f}% |"
                      for o in table["ops"]]
            lines.append("")
    return "\n".join(lines)


def write(result: dict[str, Any], out_dir: Path, stem: str) -> None:
    """Rewrite the results after every variant, so a run stopped at its time cap keeps what it measured."""
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
    (out_dir / f"{stem}.md").write_text(markdown(result))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None, help="sizes; default full on CUDA, tiny on the CPU")
    p.add_argument("--precisions", nargs="+", choices=("fp32", "bf16"), default=None,
                   help="U-Net precisions of the recon variants; default fp32 bf16 on CUDA, fp32 on the CPU")
    p.add_argument("--variants", nargs="+", default=None, help="variant names to profile (default all)")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=3, help="profiled calls per mode")
    p.add_argument("--rows", type=int, default=25, help="ops listed per table")
    p.add_argument("--out-dir", type=Path, default=None, help="default benchmarks/results (dry run: a temp dir)")
    p.add_argument("--dry-run", action="store_true", help="tiny model and input on the CPU, 1 step, temp dir")
    args = p.parse_args()
    if args.dry_run:
        args.device, args.preset, args.warmup, args.steps = "cpu", "tiny", 1, 1
        args.out_dir = args.out_dir or Path(tempfile.mkdtemp(prefix="profile_varnet_"))
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("profile_varnet: --device cuda but torch sees no CUDA device (use --dry-run to check the script)", file=sys.stderr)
        return 2
    size = PRESETS[args.preset or ("full" if device.type == "cuda" else "tiny")]
    cfg = dict(num_cascades=size["cascades"], chans=size["chans"], pools=size["pools"], sens_chans=size["sens_chans"],
               sens_pools=size["sens_pools"])
    torch.manual_seed(0)
    state = fastmri.models.VarNet(**cfg).state_dict()
    data = make_inputs(size, 4, device)
    cupy_ok = device.type == "cuda" and ops._cupy_usable()
    precisions = args.precisions or (["fp32", "bf16"] if device.type == "cuda" else ["fp32"])
    variants = build_variants(state, cfg, device, cupy_ok, False, precisions)
    result: dict[str, Any] = {
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "clock": "device" if device.type == "cuda" else "cpu", "model": cfg,
        "input": {k: size[k] for k in ("coils", "rows", "cols")}, "warmup": args.warmup, "steps": args.steps,
        "command": "python benchmarks/profile_varnet.py " + " ".join(sys.argv[1:]), "variants": {},
    }
    out_dir = args.out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"profile_varnet_{slug(result['device_name'])}"
    result["complete"] = False
    failed = False
    for name, run in variants.items():
        if args.variants and name not in args.variants:
            continue
        if isinstance(run, str):
            result["variants"][name] = {"error": f"skipped: {run}"}
            continue
        try:
            result["variants"][name] = profile_variant(run, data, args, device)
        except Exception as exc:  # one failing variant is reported, the others still run
            failed = True
            result["variants"][name] = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        finally:
            if device.type == "cuda":
                torch.cuda.empty_cache()
        print(f"{name}: " + ", ".join(f"{m} {t['total_ms_per_step']:.2f} ms" for m, t in result["variants"][name].items()
                                      if isinstance(t, dict)), flush=True)
        write(result, out_dir, stem)
    result["complete"] = True
    write(result, out_dir, stem)
    print(f"wrote {out_dir / stem}.json and .md")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
