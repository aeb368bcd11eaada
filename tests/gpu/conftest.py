"""Mark everything under tests/gpu as `gpu` and skip it, with the reason, where it cannot run."""

from __future__ import annotations

import pytest
import torch


def _skip_reason() -> str | None:
    """Why the CuPy kernels cannot run here, or None when they can."""
    if not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    try:
        import cupy  # noqa: F401
    except ImportError as exc:
        return f"CuPy is not installed ({exc}); pip install 'recon[gpu]'"
    from recon.ops import cupy_backend

    if not cupy_backend.available():
        return "CuPy imports but sees no CUDA device"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = _skip_reason()
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.gpu)
            if reason is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
