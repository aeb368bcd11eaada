"""DDP on CPU: a real `torchrun --nproc_per_node 2 -m recon train` with the gloo backend."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from recon.simulate import SimConfig, simulate_dataset

TINY = SimConfig(rows=64, widths=(40,), coils=4, slices=4)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
@pytest.mark.parametrize("model_args", [
    ["--num-cascades", "1", "--chans", "4", "--pools", "2", "--sens-chans", "4", "--sens-pools", "2"],
    ["--model", "unet", "--unet-chans", "4", "--unet-pools", "2"],
], ids=["varnet", "unet"])
def test_two_ranks_disjoint_slices_different_masks_same_parameters(tmp_path: Path, model_args: list[str]) -> None:
    simulate_dataset(tmp_path / "data" / "train", 2, 4, 4, 1000, config=TINY)
    simulate_dataset(tmp_path / "data" / "val", 2, 2, 4, 2000, config=TINY)
    out = tmp_path / "run"
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun if torchrun.exists() else "torchrun"), "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), "-m", "recon", "train", "--data", str(tmp_path / "data"),
           "--out", str(out), *model_args, "--epochs", "1", "--device", "cpu", "--log-samples", "true",
           "--tensorboard", "false", "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [_records(out / f"samples-rank{r}.jsonl") for r in (0, 1)]
    seen = [{(f, s) for r in recs if "fname" in r for f, s in zip(r["fname"], r["slice"])} for recs in ranks]
    assert len(seen[0]) == len(seen[1]) == 4 and not seen[0] & seen[1]
    masks = [[r["mask"] for r in recs if "mask" in r] for recs in ranks]
    assert all(a != b for a, b in zip(*masks))
    params = [[(r["global_step"], r["params"]) for r in recs if "params" in r] for recs in ranks]
    assert len(params[0]) == 4 and params[0] == params[1]
    assert len({p for _, p in params[0]}) == 4  # the parameters do change every step
    metrics = _records(out / "metrics.jsonl")
    assert len(metrics) == 1 and 0 < metrics[0]["ssim"] < 1
    assert (out / "checkpoints" / "best.safetensors").is_file()
