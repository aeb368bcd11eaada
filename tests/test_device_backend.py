"""The device and operator backend a user chooses reach every method, in-process and on Dask workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from recon.cli import main
from recon.models.checkpoint import shipped_checkpoint_available
from recon.simulate import PRESETS, simulate_dataset


@pytest.fixture(scope="module")
def volume(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = PRESETS["small"]
    return simulate_dataset(tmp_path_factory.mktemp("sim"), 1, 1, 1, 4000, config=cfg)[0]


@pytest.mark.skipif(not shipped_checkpoint_available(), reason="shipped VarNet weights not in this checkout")
def test_device_cpu_reaches_varnet_even_when_cuda_looks_available(volume: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With CUDA reported present, `--device cpu` must keep VarNet on the CPU (a CUDA move would fail here)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    out = tmp_path / "out"
    rc = main(["reconstruct", str(volume), "--out", str(out), "--method", "varnet", "--acceleration", "4", "--device", "cpu", "--quiet"])
    assert rc == 0
    assert (out / volume.name).is_file()


@pytest.mark.parametrize("workers", [0, 1], ids=["in-process", "dask-worker"])
def test_backend_choice_reaches_the_worker(volume: Path, tmp_path: Path, workers: int) -> None:
    """`--backend cupy` on CPU tensors must fail in the worker too: the choice travels with the job."""
    out = tmp_path / "out"
    rc = main(["reconstruct", str(volume), "--out", str(out), "--acceleration", "4", "--device", "cpu", "--backend", "cupy", "--workers", str(workers), "--quiet"])
    assert rc == 1
    summary = json.loads((out / "summary.json").read_text())
    failed = [r for r in summary["files"] if r["status"] == "failed"]
    assert len(failed) == 1 and "cupy" in failed[0]["reason"].lower()
    assert not (out / volume.name).exists()
