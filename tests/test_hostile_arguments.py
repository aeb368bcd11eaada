"""Hostile input, arguments: every bad option is refused before any input file is opened.

Each case passes an input that does not exist: a refusal naming the option (exit 2) rather than
the missing file proves the option was checked first.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from _hostile import refused
from fastmri_files import write_multicoil

NOWHERE = "/nonexistent/never-opened.h5"


@pytest.mark.parametrize(
    "options, needle",
    [
        (["--acceleration", "0"], "--acceleration must be a finite number > 1"),
        (["--acceleration", "-1"], "--acceleration must be a finite number > 1"),
        (["--acceleration", "1"], "--acceleration must be a finite number > 1"),
        (["--acceleration", "inf"], "--acceleration must be a finite number > 1"),
        (["--acceleration", "nan"], "--acceleration must be a finite number > 1"),
        (["--acceleration", "2.5", "--mask", "equispaced"], "whole number for --mask equispaced"),
        (["--acceleration", "4", "--center-fraction", "1"], "--center-fraction must be in (0, 1)"),
        (["--acceleration", "4", "--center-fraction", "1.5"], "--center-fraction must be in (0, 1)"),
        (["--acceleration", "4", "--center-fraction", "0"], "--center-fraction must be in (0, 1)"),
        (["--acceleration", "4", "--center-fraction", "0.3"], "below 1/acceleration = 0.25"),
        (["--method", "sense", "--iters", "0"], "--iters must be an integer >= 1"),
        (["--method", "cs", "--lam", "-1"], "--lam must be a finite number >= 0"),
        (["--method", "cs", "--lam", "nan"], "--lam must be a finite number >= 0"),
        (["--batch-size", "0"], "--batch-size must be an integer >= 1"),
        (["--max-memory", "lots"], "--max-memory"),
        (["--repetition", "-1"], "--repetition must be an integer >= 0"),
        (["--device", "gpu9"], "--device 'gpu9' is not a device"),
        (["--workers", "-1"], "--workers must be an integer >= 0"),
    ],
)
def test_reconstruct_options(options: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", NOWHERE, "--out", str(out), "--quiet", *options], [needle], absent=[out], rc=2)


@pytest.mark.parametrize(
    "options, needle",
    [
        (["--methods", "zero-filled,foo"], "unknown method(s) foo"),
        (["--methods", ""], "--methods is empty"),
        (["--methods", " , "], "--methods is empty"),
        (["--accelerations", "4,x"], "'x' is not a number"),
        (["--accelerations", ""], "--accelerations is empty"),
        (["--accelerations", "4,1000,0"], "got 0.0"),
        (["--max-slices", "-1"], "--max-slices must be an integer >= 1"),
        (["--max-slices", "0"], "--max-slices must be an integer >= 1"),
        (["--methods", "sense", "--iters", "0"], "--iters must be an integer >= 1"),
    ],
)
def test_benchmark_options(options: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    refused(capsys, ["benchmark", "--data", NOWHERE, "--out", str(out), "--quiet", *options], [needle], absent=[out], rc=2)


def test_simulate_zero_slices(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    refused(capsys, ["simulate", str(out), "--slices", "0"], ["--slices must be an integer >= 1"], absent=[out], rc=2)


def _varnet_state(**kw: int) -> dict[str, torch.Tensor]:
    from recon.models.varnet import VarNet

    return VarNet(**{"num_cascades": 1, "chans": 4, "pools": 2, "sens_chans": 4, "sens_pools": 2, **kw}).state_dict()


def test_bad_checkpoints_refused_once_up_front(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        write_multicoil(folder / f"f{i}.h5", seed=i)
    out = tmp_path / "out"
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    refused(capsys, ["reconstruct", str(folder), "--out", str(out), "--method", "varnet", "--checkpoint", str(text), "--quiet"],
            [str(text), "cannot read checkpoint"], [folder], absent=[out])
    wrong_keys = tmp_path / "keys.safetensors"
    state = {k.replace("cascades.0.", "stages.0."): v.contiguous() for k, v in _varnet_state().items()}
    save_file(state, str(wrong_keys))
    line = refused(capsys, ["reconstruct", str(folder), "--out", str(out), "--method", "varnet", "--checkpoint", str(wrong_keys), "--quiet"],
                   [str(wrong_keys)], [folder], absent=[out])
    assert "unexpected key" in line and "stages.0." in line
    wrong_shapes = tmp_path / "shapes.safetensors"
    save_file({k: v.contiguous() for k, v in _varnet_state().items()}, str(wrong_shapes))
    (tmp_path / "shapes.json").write_text('{"model": {"num_cascades": 1, "chans": 8, "pools": 2, "sens_chans": 4, "sens_pools": 2}}')
    line = refused(capsys, ["reconstruct", str(folder), "--out", str(out), "--method", "varnet", "--checkpoint", str(wrong_shapes), "--quiet"],
                   [str(wrong_shapes), "shape"], [folder], absent=[out])
    assert "cascades.0." in line
    missing = tmp_path / "none.safetensors"
    refused(capsys, ["benchmark", "--data", str(folder), "--out", str(out), "--methods", "zero-filled,varnet", "--checkpoint", str(missing), "--quiet"],
            [str(missing), "not found"], [folder], absent=[out])


@pytest.mark.parametrize(
    "options, needle",
    [
        (["--accelerations", "0", "8"], "--accelerations must be a finite number > 1"),
        (["--center-fractions", "0.5", "0.04"], "below 1/acceleration"),
        (["--lr", "-1"], "--lr must be a finite number > 0"),
        (["--sample-rate", "0"], "--sample-rate must be a finite number > 0 and <= 1"),
    ],
)
def test_train_options(options: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", NOWHERE, "--out", str(out), *options], [needle], absent=[out], rc=2)
