"""Mark everything under tests/gpu as `gpu` and skip it, with the reason, where it cannot run.

Every test here needs a CUDA device; those in `test_cupy_ops.py` also need CuPy.
"""

from __future__ import annotations

import pytest
import torch


def _cuda_skip_reason() -> str | None:
    """Why no CUDA test can run here, or None when they can."""
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def _cupy_skip_reason() -> str | None:
    """Why the CuPy kernels cannot run here, or None when they can."""
    try:
        import cupy  # noqa: F401
    except ImportError as exc:
        return f"CuPy is not installed ({exc}); pip install 'recon[cuda12]' or 'recon[cuda13]' (torch.version.cuda)"
    from recon.ops import cupy_backend

    if not cupy_backend.available():
        return "CuPy imports but sees no CUDA device"
    return None


def pytest_report_header(config: pytest.Config) -> str:
    """The device the GPU tests ran on, for the log of a GPU run."""
    if not torch.cuda.is_available():
        return f"tests/gpu: {_cuda_skip_reason()}"
    try:
        import cupy

        cupy_version = cupy.__version__
    except ImportError:
        cupy_version = "not installed"
    return (f"tests/gpu: {torch.cuda.get_device_name()}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
            f"CuPy {cupy_version}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    cuda_reason = _cuda_skip_reason()
    cupy_reason = cuda_reason or _cupy_skip_reason()
    for item in items:
        path = str(item.fspath).replace("\\", "/")
        if "tests/gpu/" not in path:
            continue
        item.add_marker(pytest.mark.gpu)
        reason = cupy_reason if path.endswith("test_cupy_ops.py") else cuda_reason
        if reason is not None:
            item.add_marker(pytest.mark.skip(reason=reason))
