"""Checks on what goes into a method and on every image that comes out of one.

A method given degenerate input (all-zero k-space, a mask with no sampled column, an ACS region
without signal or narrower than the method needs) returns NaN or all-zero images rather than
failing; a silently wrong image is worse than an error, so the input is refused before the method
runs (`check_input`) and every output volume is refused unless each slice is finite and not all
zero (`check_images`). Both raise `InputError` naming the file, the method, the slice and the cause.
"""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from recon.core import image_problem
from recon.io.errors import InputError
from recon.methods.registry import spec


def check_input(
    path: str | os.PathLike[str],
    kspace: np.ndarray,
    mask: np.ndarray,
    calib: tuple[int, int],
    method: str,
    calibration: np.ndarray | None = None,
    slice_numbers: Sequence[int] | None = None,
) -> None:
    """InputError when `method` cannot give a meaningful image from this masked k-space: what its
    spec needs (`recon.methods.spec.Needs`: matrix, coils, calibration columns with signal).

    kspace: `(S, C, H, W)` complex64, zero where not sampled: a volume or one slice batch of it
    (`recon.pipeline.run_method` checks every batch before the method runs on it). mask: `(W,)`
    bool sampled columns. calib: the calibration (ACS) column region `[start, stop)` of the
    acquisition model. calibration: `(S, C, H, W)` calibration-only data (ISMRMRD), None when
    the image data serve. slice_numbers: the file's slice number of each of the S slices (the
    errors name them; default `0..S-1`).
    """
    needs = spec(method).needs
    numbers = list(range(kspace.shape[0])) if slice_numbers is None else list(slice_numbers)
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    width = mask.size
    if not mask.any():
        raise InputError(path, f"{method}: the mask samples no column of {width}")
    rows, cols = kspace.shape[-2:]
    need = needs.matrix
    if rows < need[0] or cols < need[1]:
        raise InputError(path, f"{method}: matrix {rows}x{cols} is too small for this method (needs at least {need[0]}x{need[1]})")
    if needs.multi_coil and kspace.shape[1] < 2:
        raise InputError(path, f"{method}: the data have {kspace.shape[1]} coil; the method needs at least 2 (multi-coil data)")
    flat = kspace.reshape(kspace.shape[0], -1)
    for s in range(kspace.shape[0]):
        if not np.any(flat[s]):
            raise InputError(path, f"{method}: slice {numbers[s]}: the sampled k-space is all zero")
    if needs.acs < 1:
        return
    start, stop = int(calib[0]), int(calib[1])
    needed = needs.acs
    if stop - start < needed:
        raise InputError(
            path,
            f"{method}: {stop - start} ACS (fully sampled center) columns; the method needs at least {needed} "
            "(raise --center-fraction or lower --acceleration)",
        )
    for s in range(kspace.shape[0]):
        signal = np.any(kspace[s, ..., start:stop]) or (calibration is not None and np.any(calibration[s, ..., start:stop]))
        if not signal:
            raise InputError(path, f"{method}: slice {numbers[s]}: no signal in the ACS columns {start}..{stop - 1}")


def output_cause(needs: Any, problem: str) -> str:
    """What an output `problem` (`recon.core.image_problem`) most likely means for a method with
    these `needs`: an all-zero image from a method that estimates coil maps found none."""
    if needs.coil_maps and "all-zero" in problem:
        return " (no coil sensitivity found in the ACS: no signal above noise, or the matrix is too small)"
    return ""


def check_images(path: str | os.PathLike[str], images: Any, method: str, slices: int | None = None, label: str | None = None) -> np.ndarray:
    """`images` `(S, h, w)` of `method` as float32 numpy, or InputError (naming `label`, default the
    method): wrong shape, NaN/Inf, an all-zero slice."""
    needs = spec(method).needs
    method = label or method
    arr = np.asarray(images)
    if arr.ndim != 3 or min(arr.shape) < 1:
        raise InputError(path, f"{method}: output has shape {arr.shape}; expected (slices, h, w) with every size >= 1")
    if slices is not None and arr.shape[0] != slices:
        raise InputError(path, f"{method}: output has {arr.shape[0]} slices for {slices} input slices")
    problem = image_problem(arr)
    if problem is not None:
        raise InputError(path, f"{method}: {problem}{output_cause(needs, problem)}; no output written")
    return arr.astype(np.float32, copy=False)


def finite_kspace(path: str | os.PathLike[str], kspace: np.ndarray, what: str = "k-space") -> None:
    """InputError naming the first slice of `kspace` `(S, ...)` that holds NaN or Inf."""
    flat = np.asarray(kspace).reshape(kspace.shape[0], -1)
    for s in range(flat.shape[0]):
        if not np.isfinite(flat[s]).all():
            raise InputError(path, f"{what} of slice {s} contains NaN or Inf")


def check_training_batch(batch: Any) -> None:
    """InputError naming the file and slice of the first unusable sample of a collated batch.

    batch: a collated `recon.data.Sample` (masked_kspace `(B, C, H, W)`,
    target `(B, h, w)`, max_value `(B,)`, fname and slice_num lists). NaN/Inf anywhere, an
    all-zero masked k-space or a non-positive `max` turn into a NaN loss and NaN weights.
    """
    import torch

    k = batch.masked_kspace.reshape(batch.masked_kspace.shape[0], -1)
    t = batch.target.reshape(batch.target.shape[0], -1)
    finite_k = torch.isfinite(torch.view_as_real(k)).flatten(1).all(1) if k.is_complex() else torch.isfinite(k).all(1)
    nonzero = (k != 0).any(1)
    finite_t = torch.isfinite(t).all(1)
    maxv = torch.as_tensor(batch.max_value).reshape(-1)
    for i in range(k.shape[0]):
        where = f"slice {batch.slice_num[i]}"
        if not bool(finite_k[i]):
            raise InputError(batch.fname[i], f"{where}: k-space contains NaN or Inf; remove the file or slice from the training data")
        if not bool(nonzero[i]):
            raise InputError(batch.fname[i], f"{where}: the masked k-space is all zero; remove the file or slice from the training data")
        if not bool(finite_t[i]):
            raise InputError(batch.fname[i], f"{where}: the target contains NaN or Inf")
        if not (bool(torch.isfinite(maxv[i])) and float(maxv[i]) > 0):
            raise InputError(batch.fname[i], f"attribute 'max' is {float(maxv[i])}; expected a finite value > 0 (the SSIM data range)")
