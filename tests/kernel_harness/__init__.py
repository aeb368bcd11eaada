"""CPU execution harness for the CUDA kernels: the real kernel source, compiled as host C++, run
through the project's own launch code (see `hostcuda`)."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from recon.ops import cupy_backend
from tests.kernel_harness.hostcuda import CompileError, HostCuda, KernelError, Variant, load_kernels_module

__all__ = ["CompileError", "HostCuda", "KernelError", "Variant", "host_kernels"]


@contextlib.contextmanager
def host_kernels(variant: Variant | None = None) -> Iterator[HostCuda]:
    """Within the block, `recon.ops.cupy_backend` runs its kernels on CPU tensors via `HostCuda`.

    torch's deterministic mode fills every `torch.empty` with NaN, so an output element a kernel
    fails to write shows up as NaN.
    """
    host = HostCuda(variant)
    runtime = load_kernels_module(host)
    stack = contextlib.ExitStack()
    for op in cupy_backend.KERNEL_OPS:  # CPU tensors take the kernel implementation, not the torch reference
        stack.enter_context(op.set_kernel_enabled("cpu", False))
    saved = (cupy_backend._runtime, cupy_backend._KERNEL_DEVICES)
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    cupy_backend._runtime, cupy_backend._KERNEL_DEVICES = runtime, ("cuda", "cpu")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True  # type: ignore[attr-defined]
    try:
        with stack:
            yield host
    finally:
        cupy_backend._runtime, cupy_backend._KERNEL_DEVICES = saved
        torch.use_deterministic_algorithms(det, warn_only=warn)
        torch.utils.deterministic.fill_uninitialized_memory = fill  # type: ignore[attr-defined]
