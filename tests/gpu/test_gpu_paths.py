"""The GPU paths beyond the kernels: baselines and VarNet inference on CUDA equal the CPU,
training runs on CUDA (fp32 and bf16 U-Nets), and a real CUDA out-of-memory error in a batch
run halves the batch instead of failing."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from recon import methods
from recon.acquisition import Acquisition, centered_region
from recon.io import RawScan
from recon.pipeline import run_method
from recon.simulate import SimConfig, simulate_dataset
from recon.train import TrainConfig, train
from tests._baseline_data import column_mask, phantom_kspace

DEV = torch.device("cuda")
INDEX = 0  # set_per_process_memory_fraction needs an indexed device


def _phantom_volume(slices: int = 2, coils: int = 8, rows: int = 64, cols: int = 48, step: int = 4, nlow: int = 8) -> RawScan:
    """`slices` noisy phantom slices, undersampled by every `step`-th column plus `nlow` ACS columns."""
    mask = column_mask(cols, step, nlow)
    kspace = np.stack([phantom_kspace(coils, rows, cols, seed=s)[0] for s in range(slices)])
    return RawScan((kspace * mask).astype(np.complex64), _acquisition(mask, nlow, rows, min(rows, cols)))


def _acquisition(mask: np.ndarray, nlow: int, rows: int, crop: int) -> Acquisition:
    """Column mask `mask` with `nlow` center columns on a `rows x len(mask)` grid, `crop x crop` output."""
    cols = mask.size
    return Acquisition(mask, centered_region(cols, nlow), (0, rows), (0, cols), (rows, cols, 1), (crop, crop, 1))


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("name", ["zero-filled", "sense", "cs", "cs-tv"])
def test_baselines_on_cuda_equal_cpu(name: str) -> None:
    data = _phantom_volume()
    on_cpu = run_method(methods.get_method(name, device="cpu"), data, torch.device("cpu"))
    on_gpu = run_method(methods.get_method(name, device=DEV), data, DEV)
    assert on_gpu.shape == on_cpu.shape and np.isfinite(on_gpu).all()
    assert _rel(on_gpu, on_cpu) < 2e-3, name


def test_shipped_varnet_on_cuda_equals_cpu() -> None:
    from recon.models.checkpoint import shipped_checkpoint_available

    if not shipped_checkpoint_available():
        pytest.skip("models/varnet.safetensors is not in this checkout")
    data = _phantom_volume(slices=3)
    on_cpu = run_method(methods.get_method("varnet", device="cpu"), data, torch.device("cpu"))
    on_gpu = run_method(methods.get_method("varnet", device=DEV), data, DEV)
    assert _rel(on_gpu, on_cpu) < 1e-3


@pytest.mark.parametrize("precision", ["none", "bf16"])
def test_training_on_cuda(precision: str, tmp_path: Path) -> None:
    tiny = SimConfig(rows=64, widths=(40, 44), coils=4, slices=4)
    simulate_dataset(tmp_path / "data" / "train", 2, 4, 4, 1000, config=tiny)
    simulate_dataset(tmp_path / "data" / "val", 1, 2, 4, 2000, config=tiny)
    out = tmp_path / "run"
    cfg = TrainConfig(data=tmp_path / "data", out=out, num_cascades=2, chans=4, pools=2, sens_chans=4, sens_pools=2,
                      epochs=2, device="cuda", mixed_precision=precision, quiet=True, tensorboard=False)
    best = train(cfg)
    assert best.is_file()
    weights = load_file(str(out / "checkpoints" / "last.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
    epochs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 2 and all(0 < e["ssim"] < 1 and math.isfinite(e["ssim"]) for e in epochs)


def test_batch_run_halves_the_batch_on_a_real_out_of_memory_error() -> None:
    """Cap the caching allocator at ~3 slices' worth of memory: a 16-slice batch must fail with a
    real CUDA OOM, and run_method must finish with smaller batches and the same images."""
    torch.manual_seed(0)
    from recon.models import VarNet
    from recon.methods.learned import VarNetMethod

    model = VarNet(num_cascades=2, chans=8, pools=3, sens_chans=4, sens_pools=2)
    method = VarNetMethod(model, DEV, batch_size=64)
    g = torch.Generator().manual_seed(3)
    shape = (16, 15, 320, 320)
    mask = column_mask(320, 4, 26)
    kspace = (torch.complex(torch.randn(shape, generator=g), torch.randn(shape, generator=g)).numpy() * mask).astype(np.complex64)
    data = RawScan(kspace, _acquisition(mask, 26, 320, 320))
    done: list[int] = []

    def recording(batch: methods.ReconBatch) -> torch.Tensor:
        out = method(batch)
        done.append(batch.masked_kspace.shape[0])
        return out

    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated(DEV)
    torch.cuda.reset_peak_memory_stats(DEV)
    reference = run_method(recording, data, DEV, batch_size=1)
    per_slice = torch.cuda.max_memory_allocated(DEV) - base
    done.clear()
    total = torch.cuda.get_device_properties(DEV).total_memory
    torch.cuda.empty_cache()
    torch.cuda.set_per_process_memory_fraction(min(1.0, (torch.cuda.memory_allocated(DEV) + 3 * per_slice) / total), INDEX)
    try:
        halved = run_method(recording, data, DEV, batch_size=16)
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0, INDEX)
        torch.cuda.empty_cache()
    assert sum(done) == 16 and max(done) < 16, done
    assert _rel(halved, reference) < 1e-4
