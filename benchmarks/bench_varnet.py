"""Speed of recon's VarNet vs `fastmri.models.VarNet` with identical weights on the same device.

Measures inference time per slice (no grad) and training step time (forward, SSIM-free sum
loss backward, Adam step), median of `--repeats` after one warm-up, and the ratio
fastmri / recon (> 1: recon is faster). Writes benchmarks/results/varnet.json and .md.

    python benchmarks/bench_varnet.py [--device cpu] [--coils 8 --rows 320 --cols 184]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import fastmri.models
import torch

from recon.models import VarNet

RESULTS = Path(__file__).resolve().parent / "results"


def _median_time(fn: Callable[[], None], repeats: int, device: torch.device) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    cfg = dict(num_cascades=args.cascades, chans=args.chans, pools=args.pools, sens_chans=args.sens_chans,
               sens_pools=args.sens_pools)
    torch.manual_seed(0)
    ref = fastmri.models.VarNet(**cfg).to(device)
    ours = VarNet(**cfg).to(device)
    ours.load_state_dict(ref.state_dict())
    g = torch.Generator().manual_seed(1)
    k = torch.randn(1, args.coils, args.rows, args.cols, generator=g, dtype=torch.complex64)
    mask = torch.zeros(1, 1, 1, args.cols, dtype=torch.bool)
    mask[..., ::4] = True
    nlow = round(0.08 * args.cols)
    mask[..., (args.cols - nlow + 1) // 2 : (args.cols - nlow + 1) // 2 + nlow] = True
    k = (k * mask).to(device)
    mask = mask.to(device)
    k_ref, mask_ref = torch.view_as_real(k).contiguous(), mask.unsqueeze(-1)

    with torch.no_grad():
        diff = (ours(k, mask, nlow) - ref(k_ref, mask_ref, nlow)).norm() / ref(k_ref, mask_ref, nlow).norm()

    def infer(model: torch.nn.Module, *inputs: torch.Tensor) -> Callable[[], None]:
        def fn() -> None:
            with torch.no_grad():
                model(*inputs, nlow)
        return fn

    def step(model: torch.nn.Module, *inputs: torch.Tensor) -> Callable[[], None]:
        opt = torch.optim.Adam(model.parameters(), lr=1e-5)

        def fn() -> None:
            model(*inputs, nlow).sum().backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        return fn

    res = {
        "inference_s_per_slice": {"recon": _median_time(infer(ours, k, mask), args.repeats, device),
                                  "fastmri": _median_time(infer(ref, k_ref, mask_ref), args.repeats, device)},
        "train_step_s": {"recon": _median_time(step(ours, k, mask), args.repeats, device),
                         "fastmri": _median_time(step(ref, k_ref, mask_ref), args.repeats, device)},
    }
    for v in res.values():
        v["ratio_fastmri_over_recon"] = v["fastmri"] / v["recon"]
    return {"device": str(device), "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(), "torch": torch.__version__, "model": cfg,
            "input": {"coils": args.coils, "rows": args.rows, "cols": args.cols},
            "repeats": args.repeats, "output_rel_diff": float(diff), **res}


def write(result: dict, name: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    inp, m = result["input"], result["model"]
    lines = [
        f"# VarNet speed: recon vs fastmri ({result['device']}, {result['threads']} threads, torch {result['torch']})",
        "",
        f"Model {m}; one slice {inp['coils']} coils x {inp['rows']} x {inp['cols']}; identical weights "
        f"(relative output difference {result['output_rel_diff']:.1e}); median of {result['repeats']} runs.",
        "",
        "| measure | recon (s) | fastmri (s) | fastmri / recon |",
        "| --- | --- | --- | --- |",
    ]
    for key, label in (("inference_s_per_slice", "inference per slice"), ("train_step_s", "training step")):
        r = result[key]
        lines.append(f"| {label} | {r['recon']:.4f} | {r['fastmri']:.4f} | {r['ratio_fastmri_over_recon']:.2f} |")
    lines += ["", "Timed on a shared machine; ratios are more meaningful than absolute times."]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--coils", type=int, default=8)
    p.add_argument("--rows", type=int, default=320)
    p.add_argument("--cols", type=int, default=184)
    p.add_argument("--cascades", type=int, default=4)
    p.add_argument("--chans", type=int, default=8)
    p.add_argument("--pools", type=int, default=3)
    p.add_argument("--sens-chans", type=int, default=4)
    p.add_argument("--sens-pools", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--name", default="varnet", help="results file stem (varnet, varnet_cuda, ...)")
    args = p.parse_args()
    result = run(args)
    write(result, args.name)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
