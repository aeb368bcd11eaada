"""Calibration regions of a batch: one `[start, stop)` column range per slice, checked."""

from __future__ import annotations

import torch


def calib_regions(calib: torch.Tensor | tuple[int, int], batch: int, width: int) -> list[tuple[int, int]]:
    """`(B, 2)` or `(2,)` regions as `batch` `(start, stop)` pairs; ValueError if one is empty or outside `width` columns."""
    regions = torch.as_tensor(calib).reshape(-1, 2).expand(batch, 2).cpu().tolist()
    for start, stop in regions:
        if not 0 <= start < stop <= width:
            raise ValueError(f"calibration region [{start}, {stop}) is empty or outside the {width} columns")
    return [(int(a), int(b)) for a, b in regions]
