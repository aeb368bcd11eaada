"""Training: config plumbing, options, and bit-exact resume after SIGKILL of `python -m recon train`."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from recon.io.errors import InputError
from recon.models.domain import folder_domain
from recon.simulate import SimConfig, simulate_dataset
from recon.train import TrainConfig, add_arguments, config_from_args, train

TINY = SimConfig(rows=64, widths=(40, 44), coils=4, slices=4)
MODEL = ["--num-cascades", "2", "--chans", "4", "--pools", "2", "--sens-chans", "4", "--sens-pools", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sim")
    simulate_dataset(root / "train", 2, 4, 4, 1000, config=TINY)
    simulate_dataset(root / "val", 1, 2, 4, 2000, config=TINY)
    return root


def _config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base = dict(data=data, out=out, num_cascades=2, chans=4, pools=2, sens_chans=4, sens_pools=2,
                epochs=1, quiet=True, tensorboard=False)
    return TrainConfig(**{**base, **kw})


def test_yaml_config_with_command_line_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: /d\nout: /o\nchans: 6\nlr: 0.001\naccelerations: [4, 8]\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    c = config_from_args(parser.parse_args(["--config", str(cfg), "--chans", "8", "--quiet"]))
    assert (c.data, c.chans, c.lr, c.accelerations, c.quiet) == (Path("/d"), 8, 0.001, [4.0, 8.0], True)
    assert c.num_cascades == 12 and c.lr_step_size == 40
    cfg.write_text("data: /d\nout: /o\nchanz: 6\n")
    with pytest.raises(InputError, match="chanz"):
        TrainConfig.from_yaml(cfg)
    with pytest.raises(InputError, match="missing --out"):
        config_from_args(parser.parse_args(["--data", "/d"]))


def test_short_run_with_memory_options_then_continue(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = _config(data, out, max_steps=2, accumulate=2, mixed_precision="bf16", activation_checkpointing=True,
                  checkpoint_every=0)
    path = train(cfg)
    assert path == out / "checkpoints" / "last.safetensors"
    first = load_file(str(path))
    record = json.loads((out / "checkpoints" / "resume.json").read_text())
    assert (record["epoch"], record["step_in_epoch"], record["global_step"]) == (0, 2, 2)
    assert all(torch.isfinite(v).all() for v in first.values())
    cfg.max_steps = None
    best = train(cfg)
    assert best == out / "checkpoints" / "best.safetensors"
    epoch = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    assert epoch["global_step"] == 4 and 0 < epoch["ssim"] < 1
    domain = json.loads((out / "checkpoints" / "best.json").read_text())["domain"]
    assert domain == folder_domain(data / "train") and domain["coils"] == [4, 4] and domain["files"] == 2
    final = load_file(str(out / "checkpoints" / "last.safetensors"))
    assert any(not torch.equal(first[k], final[k]) for k in first)


def _command(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "recon", "train", "--data", str(data / "train"), "--out", str(out), *MODEL,
            "--epochs", "3", "--checkpoint-every", "1", "--tensorboard", "false", "--quiet", "--seed", "7",
            "--device", "cpu"]  # bit-exact resume is promised on the CPU (cuDNN's backward is not deterministic)


def test_resume_after_sigkill_is_bit_exact(data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    ref = subprocess.Popen(_command(data, tmp_path / "ref"), env=env)
    victim = subprocess.Popen(_command(data, tmp_path / "run"), env=env)
    record_file = tmp_path / "run" / "checkpoints" / "resume.json"
    deadline = time.monotonic() + 120
    killed_at = None
    while time.monotonic() < deadline and victim.poll() is None:
        try:
            step = json.loads(record_file.read_text())["global_step"]
        except (OSError, ValueError, KeyError):
            step = 0
        if step >= 3:
            victim.send_signal(signal.SIGKILL)
            killed_at = step
            break
        time.sleep(0.01)
    assert victim.wait(60) == -signal.SIGKILL, "the run ended before it could be killed"
    record = json.loads(record_file.read_text())
    assert killed_at is not None and record["global_step"] < 24 and record["step_in_epoch"] > 0
    assert not (tmp_path / "run" / "checkpoints" / "best.safetensors").exists() or record["epoch"] > 0
    subprocess.run(_command(data, tmp_path / "run"), env=env, check=True, timeout=120)
    assert ref.wait(120) == 0
    want = load_file(str(tmp_path / "ref" / "checkpoints" / "last.safetensors"))
    got = load_file(str(tmp_path / "run" / "checkpoints" / "last.safetensors"))
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert json.loads((tmp_path / "run" / "checkpoints" / "resume.json").read_text())["global_step"] == 24


def test_parameter_digest_only_when_sample_logging_is_on(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-step SHA-256 of all weights is a device-to-host copy: it must not run unless asked."""
    import recon.train.loop as loop

    calls: list[int] = []
    real = loop._digest
    monkeypatch.setattr(loop, "_digest", lambda tensors: calls.append(len(tensors)) or real(tensors))
    train(_config(data, tmp_path / "quiet", max_steps=2, checkpoint_every=0))
    assert calls == []
    train(_config(data, tmp_path / "logged", max_steps=2, checkpoint_every=0, log_samples=True))
    assert len(calls) == 4  # per step: one mask digest (one micro-batch) and one parameter digest
