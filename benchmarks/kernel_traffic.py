"""Launches and bytes moved per op: the CuPy kernels' design against torch eager, on the CPU.

No GPU needed: the kernel backend's real launch code runs against the CuPy stand-in of
tests/kernel_harness with execution switched off, which records every kernel launch (the bytes
its pointer arguments span: inputs read once, outputs written once) and every cuFFT call.
torch eager is counted with a dispatch mode: every non-view aten op is one launch, moving its
input and output tensors once; FFTs are counted apart. An FFT is charged one read and one write
of its array, a lower bound (cuFFT needs more than one pass for a 640 x 368 plane).

Workload: one fastMRI knee slice, batch 1, 15 coils, 640 x 368, complex64 (bytes scale
linearly with the batch). Writes benchmarks/results/kernel_traffic.json and .md.

    PYTHONPATH=. python benchmarks/kernel_traffic.py
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recon.ops import cupy_backend as cb  # noqa: E402
from recon.ops import torch_backend as tb  # noqa: E402
from tests.kernel_harness import Variant, host_kernels  # noqa: E402

RESULTS = Path(__file__).parent / "results"
_FFT_OPS = {"_fft_c2c", "_fft_r2c", "_fft_c2r"}


class _Count(TorchDispatchMode):
    """Non-view aten ops: launches and the bytes of their tensor inputs and outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.launches = self.bytes = self.ffts = self.fft_bytes = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if func.namespace == "recon_kernels":  # counted by the CuPy stand-in instead
            return out
        if func.is_view or func._schema.name.split("::")[-1] in ("detach", "alias", "lift_fresh", "empty_like",
                                                                  "empty", "empty_strided", "new_empty"):
            return out
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs, out)) if isinstance(a, torch.Tensor)]
        nbytes = sum(t.numel() * t.element_size() for t in tensors)
        if func._schema.name.split("::")[-1] in _FFT_OPS:
            self.ffts += 1
            self.fft_bytes += nbytes
        else:
            self.launches += 1
            self.bytes += nbytes
        return out


def workloads(b: int, c: int, h: int, w: int) -> dict[str, tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor], tuple[Any, ...], list[int], int]]:
    """op -> (kernel fn, torch fn, args, indices of args to differentiate, minimum bytes of the forward)."""
    g = torch.Generator().manual_seed(0)

    def crandn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.complex64, generator=g)

    x, maps, k, k0 = crandn(b, 1, h, w), crandn(b, c, h, w), crandn(b, c, h, w), crandn(b, c, h, w)
    mask = torch.rand(b, 1, 1, w, generator=g) < 0.25
    eta = torch.tensor(0.5)
    coil, img = b * c * h * w * 8, b * h * w * 8

    def chain(ops: Any) -> Callable[..., torch.Tensor]:
        return lambda x, k, k0, maps, mask, eta: ops.sens_reduce(ops.soft_dc(k, k0, mask, eta) - ops.sens_expand(x, maps), maps)

    return {
        "fft2c": (cb.fft2c, tb.fft2c, (k,), [0], 2 * coil),
        "ifft2c": (cb.ifft2c, tb.ifft2c, (k,), [0], 2 * coil),
        "sens_expand": (cb.sens_expand, tb.sens_expand, (x, maps), [0, 1], img + 2 * coil),
        "sens_reduce": (cb.sens_reduce, tb.sens_reduce, (k, maps), [0, 1], 2 * coil + img),
        "soft_dc": (cb.soft_dc, tb.soft_dc, (k, k0, mask, eta), [0, 1, 3], 3 * coil),
        "hard_dc": (cb.hard_dc, tb.hard_dc, (k, k0, mask), [0, 1], 3 * coil),
        "normal (fixed maps)": (cb.normal, tb.normal, (x, maps, mask), [0], 2 * img + coil),
        "rss": (lambda t: cb.rss(t, 1), lambda t: tb.rss(t, 1), (k,), [0], coil + img // 2),
        "chain": (chain(cb), chain(tb), (x, k, k0, maps, mask, eta), [0, 1, 2, 3, 5], 2 * img + 3 * coil),
    }


def _leaves(args: tuple[Any, ...], diff: list[int], backward: bool) -> list[Any]:
    """The arguments, those in `diff` as fresh leaves requiring grad (made outside the counting)."""
    return [a.detach().clone().requires_grad_() if backward and i in diff else a for i, a in enumerate(args)]


def _run(fn: Callable[..., torch.Tensor], leaves: list[Any], diff: list[int], backward: bool) -> None:
    if not backward:
        with torch.no_grad():
            fn(*leaves)
        return
    out = fn(*leaves)
    with torch.utils._python_dispatch._disable_current_modes():  # the cotangent is not the op's cost
        cot = torch.ones_like(out)
    torch.autograd.grad(out, [leaves[i] for i in diff], cot)


def measure(b: int, c: int, h: int, w: int) -> list[dict[str, Any]]:
    rows = []
    loads = workloads(b, c, h, w)
    for op, (kfn, tfn, args, diff, minimum) in loads.items():
        for mode in ("fwd", "fwd+bwd"):
            glue = _Count()  # torch ops around the custom ops (the chain's subtraction, sum_to_size, ...)
            backward = mode == "fwd+bwd"
            leaves = _leaves(args, diff, backward)
            with host_kernels(Variant(execute=False)) as host, glue:
                _run(kfn, leaves, diff, backward)
            s = host.stats
            kb = sum(r + wr for _, r, wr in s.launches) + glue.bytes
            fb = sum(2 * n for _, n in s.ffts)
            counter = _Count()
            leaves = _leaves(args, diff, backward)
            with counter:
                _run(tfn, leaves, diff, backward)
            rows.append({
                "op": op, "mode": mode, "minimum_MB": minimum / 1e6 if mode == "fwd" else None,
                "kernels_launches": len(s.launches) + glue.launches, "kernels_ffts": len(s.ffts),
                "kernels_torch_glue_launches": glue.launches,
                "kernels_MB": (kb + fb) / 1e6, "kernels_elementwise_MB": kb / 1e6,
                "torch_launches": counter.launches, "torch_ffts": counter.ffts,
                "torch_MB": (counter.bytes + counter.fft_bytes) / 1e6,
                "kernel_names": [n for n, _, _ in s.launches],
            })
            r = rows[-1]
            print(f"{op:20s} {mode:8s} kernels {r['kernels_launches']:2d}+{r['kernels_ffts']} FFT {r['kernels_MB']:8.1f} MB"
                  f" | torch eager {r['torch_launches']:3d}+{r['torch_ffts']} FFT {r['torch_MB']:8.1f} MB", flush=True)
    return rows


def markdown(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    lines = [f"# Launches and bytes per op: CuPy kernels vs torch eager ({meta['workload']})", "",
             "Counted on the CPU, no GPU involved (`benchmarks/kernel_traffic.py`): the kernel backend's own "
             "launch code against the CuPy stand-in of tests/kernel_harness (bytes = what each launch's "
             "pointer arguments span; torch ops between the custom ops, such as the chain's subtraction, "
             "are counted as for torch eager), torch eager by a dispatch mode (each non-view aten op one launch "
             "moving its inputs and outputs once). Each FFT is charged one read + one write of its array "
             "(a lower bound for both). `minimum` = every input read once, the output written once.", "",
             "| op | mode | minimum MB | kernels: launches + FFTs | kernels MB | torch eager: launches + FFTs "
             "| torch eager MB | torch MB / kernels MB |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        minimum = f"{r['minimum_MB']:.1f}" if r["minimum_MB"] is not None else ""
        lines.append(f"| {r['op']} | {r['mode']} | {minimum} | {r['kernels_launches']} + {r['kernels_ffts']} | "
                     f"{r['kernels_MB']:.1f} | {r['torch_launches']} + {r['torch_ffts']} | {r['torch_MB']:.1f} | "
                     f"{r['torch_MB'] / r['kernels_MB']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--coils", type=int, default=15)
    parser.add_argument("--height", type=int, default=640)
    parser.add_argument("--width", type=int, default=368)
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = measure(args.batch, args.coils, args.height, args.width)
    meta = {"workload": f"batch {args.batch}, {args.coils} coils, {args.height} x {args.width}, complex64",
            "torch": torch.__version__, "platform": platform.platform()}
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / "kernel_traffic.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    (args.out_dir / "kernel_traffic.md").write_text(markdown(rows, meta))
    print(f"wrote {args.out_dir / 'kernel_traffic'}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
