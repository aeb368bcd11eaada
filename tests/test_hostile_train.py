"""Hostile input, `recon train`: every option is checked up front against one table (command line
and YAML alike); model sizes are checked against the data and the memory (the oversized cases run
in a subprocess under an address-space limit, so a regression cannot exhaust the machine);
truncated checkpoints are named with what to do; a run that never started leaves no config.json;
a line per epoch, what Ctrl-C saved and where a resume starts are said; a file that fails to read
mid-epoch is named, and so are the slices of a training step that fails."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
import torch

from _hostile import digest, refused
from recon.cli import main
from recon.masks import MASK_KINDS
from recon.models.checkpoint import save_model
from recon.models.unet import Unet
from recon.models.varnet import VarNet
from recon.simulate import SimConfig, simulate_dataset
from recon.train import TrainConfig
from recon.train.config import LIMITS, OptionError
from recon.train.sizing import unet_fits, unet_parameters

ROOT = Path(__file__).resolve().parents[1]
TINY = SimConfig(rows=64, widths=(40,), coils=4, slices=2)
SMALL = {"num_cascades": 1, "chans": 4, "pools": 2, "sens_chans": 4, "sens_pools": 2}
MODEL = ["--num-cascades", "1", "--chans", "4", "--pools", "2", "--sens-chans", "4", "--sens-pools", "2",
         "--tensorboard", "false", "--quiet", "--device", "cpu"]
#: Address-space limit of the subprocess runs: far below what the oversized models would take.
ADDRESS_SPACE = 4 << 30


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training volumes (4 slices of 64 x 40 k-space, 4 coils) and one validation volume."""
    root = tmp_path_factory.mktemp("train-data")
    simulate_dataset(root / "train", 2, 2, 4, 100, config=TINY)
    simulate_dataset(root / "val", 1, 2, 4, 200, config=TINY)
    return root


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "recon", "train", *args]


def _one_error_line(stderr: str) -> str:
    """The single stderr line that is neither a note nor a warning (asserting there is one)."""
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith(("note:", "warning:"))]
    assert len(lines) == 1, stderr
    return lines[0]


# ------------------------------------------------------------------------------------------------
# 1, 3: numeric options, one table, command line and YAML alike


def test_lr_step_size_zero_is_refused_before_training(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", str(data), "--out", str(out), "--epochs", "2", "--lr-step-size", "0", *MODEL],
            ["--lr-step-size must be an integer >= 1, got 0"], [data], absent=[out], rc=2)


@pytest.mark.parametrize(
    "option, value, needle",
    [
        ("--num-cascades", "0", "an integer >= 1"),
        ("--num-cascades", "1000", "an integer >= 1 and <= 64"),
        ("--chans", "0", "an integer >= 1"),
        ("--sens-chans", "-4", "an integer >= 1"),
        ("--sens-pools", "0", "an integer >= 1 and <= 8"),
        ("--pools", "12", "an integer >= 1 and <= 8"),
        ("--unet-chans", "0", "an integer >= 1"),
        ("--unet-pools", "9", "an integer >= 1 and <= 8"),
        ("--batch-size", "0", "an integer >= 1"),
        ("--accumulate", "0", "an integer >= 1"),
        ("--num-workers", "-1", "an integer >= 0"),
        ("--epochs", "0", "an integer >= 1"),
        ("--lr", "inf", "a finite number > 0"),
        ("--lr-gamma", "0", "a finite number > 0 and <= 1"),
        ("--lr-gamma", "nan", "a finite number > 0 and <= 1"),
        ("--weight-decay", "-0.1", "a finite number >= 0"),
        ("--checkpoint-every", "-1", "an integer >= 0"),
        ("--max-steps", "0", "an integer >= 1"),
        ("--drop-prob", "1", "a finite number >= 0 and < 1"),
        ("--seed", "-1", "an integer >= 0"),
        ("--sample-rate", "0", "a finite number > 0 and <= 1"),
    ],
)
def test_numeric_option_out_of_range(option: str, value: str, needle: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    line = refused(capsys, ["train", "--data", str(tmp_path / "none"), "--out", str(out), option, value],
                   [f"{option} must be {needle}", f"got {value}"], absent=[out], rc=2)
    assert "<command line>" not in line and "_" not in line.split(" must ")[0]


def test_every_numeric_field_is_in_the_table() -> None:
    numeric = {f.name for f in dataclasses.fields(TrainConfig)
               if re.search(r"\b(int|float)\b", str(f.type)) and "list" not in str(f.type)}
    assert numeric == set(LIMITS)
    with pytest.raises(OptionError, match="lr_step_size must be an integer >= 1, got 0"):
        TrainConfig(data=Path("d"), out=Path("o"), lr_step_size=0)


def test_yaml_config_is_checked_like_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    config = tmp_path / "train.yaml"
    config.write_text(f"data: {tmp_path / 'none'}\nout: {out}\nlr_step_size: 0\n")
    refused(capsys, ["train", "--config", str(config)], [str(config), "lr_step_size must be an integer >= 1, got 0"],
            [config], absent=[out], rc=1)
    config.write_text(f"data: {tmp_path / 'none'}\nout: {out}\nlr: 1e-3\nepochs: 3.0\n")  # YAML reads 1e-3 as a string
    assert (TrainConfig.from_yaml(config).lr, TrainConfig.from_yaml(config).epochs) == (0.001, 3)
    refused(capsys, ["train", "--config", str(config), "--drop-prob", "1"], ["--drop-prob must be a finite number >= 0 and < 1"],
            [config], absent=[out], rc=2)
    config.write_text(f"data: {tmp_path / 'none'}\nout: {out}\ntensorboard: maybe\n")
    refused(capsys, ["train", "--config", str(config)], [str(config), "tensorboard must be true or false"], [config], absent=[out], rc=1)


# ------------------------------------------------------------------------------------------------
# 2: model size against the data and the memory


@pytest.mark.parametrize(
    "options, needles",
    [
        (["--pools", "12"], ["--pools must be an integer >= 1 and <= 8", "got 12"]),
        (["--chans", "64", "--sens-chans", "64", "--num-cascades", "12", "--pools", "4"],
         ["needs about", "GiB", "refused before allocating", "--chans", "--batch-size"]),
    ],
)
def test_oversized_model_is_refused_before_allocating(options: list[str], needles: list[str], data: Path, tmp_path: Path) -> None:
    """Run as a subprocess under RLIMIT_AS: were the check gone, the allocation would fail there
    (MemoryError) instead of growing until the kernel's OOM killer ends it."""
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--epochs", "1", *MODEL, *options]

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    done = subprocess.run(_command(*args), preexec_fn=limit, capture_output=True, text=True, env=_env(tmp_path), timeout=300)
    line = _one_error_line(done.stderr)
    assert done.returncode == 2, done.stderr
    for needle in needles:
        assert needle in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    "options, needles",
    [
        (["--pools", "6"], ["--pools 6 is too deep for", "64 x 40 k-space, padded to 64 x 48", "use --pools 5 or less"]),
        (["--sens-pools", "7"], ["--sens-pools 7 is too deep for", "use --sens-pools 5 or less"]),
        (["--model", "unet", "--unet-chans", "4", "--unet-pools", "5"], ["--unet-pools 5 is too deep for", "32 x 32 target crop",
                                                                        "use --unet-pools 4 or less"]),
    ],
)
def test_unet_deeper_than_the_slices_is_refused(options: list[str], needles: list[str], data: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", str(data), "--out", str(out), "--epochs", "1", *MODEL, *options],
            [str(data / "train"), *needles], [data], absent=[out], rc=2)


def test_size_rules_match_the_model() -> None:
    """The parameter count is exact, and `unet_fits` is exactly when a training step works."""
    for args in ((1, 1, 4, 1), (2, 2, 4, 3), (1, 1, 6, 4)):
        assert unet_parameters(*args) == sum(p.numel() for p in Unet(*args).parameters())
    for pools, rows, cols in ((1, 2, 2), (1, 2, 4), (2, 4, 4), (2, 4, 8), (2, 7, 8), (3, 8, 8), (3, 8, 16), (3, 4, 64)):
        model = Unet(1, 1, 2, pools)
        try:
            model(torch.randn(1, 1, rows, cols)).sum().backward()
            works = True
        except (ValueError, RuntimeError):
            works = False
        assert unet_fits(pools, rows, cols) == works, (pools, rows, cols)


# ------------------------------------------------------------------------------------------------
# 4: truncated checkpoints; 6: resume message


def test_truncated_resume_state_is_named_with_what_to_do(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    base = ["train", "--data", str(data), "--out", str(out), "--epochs", "2", *MODEL]
    assert main([*base, "--max-steps", "1"]) == 0
    assert main([*base, "--max-steps", "2"]) == 0
    assert f"resuming {out} from step 1 (epoch 0, step 1 of that epoch" in capsys.readouterr().out
    state = out / "checkpoints" / "resume-00000002.safetensors"
    state.write_bytes(state.read_bytes()[: state.stat().st_size // 2])
    line = refused(capsys, base, [str(state), "truncated", "delete", "resume.json", "new --out"], [data, out], rc=1)
    assert "SafetensorError" not in line


def test_truncated_init_weights_are_named(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = save_model(VarNet(**SMALL), tmp_path / "init.safetensors")
    weights.write_bytes(weights.read_bytes()[:1000])
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", str(data), "--out", str(out), "--init-weights", str(weights), *MODEL],
            [str(weights), "truncated", "copy or download it again"], [data, weights], absent=[out], rc=1)


# ------------------------------------------------------------------------------------------------
# 5: no config.json from a run that never started


def test_failed_start_leaves_no_config_json(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", str(empty), "--out", str(out), *MODEL], [str(empty), "no .h5 files"], absent=[out], rc=1)
    earlier = tmp_path / "earlier"
    (earlier / "checkpoints").mkdir(parents=True)
    (earlier / "config.json").write_text(json.dumps({"data": str(data), "epochs": 1}) + "\n")
    refused(capsys, ["train", "--data", str(empty), "--out", str(earlier), *MODEL], [str(empty)], [earlier], rc=1)
    refused(capsys, ["train", "--data", str(data), "--out", str(earlier), *MODEL, "--pools", "7"], ["--pools 7 is too deep"], [earlier], rc=2)


# ------------------------------------------------------------------------------------------------
# 6: messages


def test_a_line_per_epoch_unless_quiet_and_resume_says_where(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    loud = [a for a in MODEL if a != "--quiet"]
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "1", *loud]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len([line for line in lines if line.startswith("epoch ")]) == 1
    assert re.fullmatch(r"epoch 0: train loss \d\.\d{4}, val SSIM 0\.\d{4}, \d+\.\d s", lines[0]), lines
    assert main(["train", "--data", str(data), "--out", str(out), "--epochs", "2", *MODEL]) == 0
    printed = capsys.readouterr().out
    assert f"resuming {out} from step 4 (epoch 1, step 0 of that epoch" in printed
    assert "epoch 1:" not in printed and "training finished: 8 optimizer steps" in printed


def test_mask_type_help_lists_each_choice_once(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    entry = text.split("--mask-type TYPE", 2)[2].split("\n  --")[0].split("(default")[0]
    for kind in MASK_KINDS:
        assert len(re.findall(rf"(?<![\w-]){kind}(?![\w-])", entry)) == 1, (kind, entry)
    assert text.count("equispaced-fraction") == 1 and "equispaced_fraction" not in text
    assert main(["train", "--data", "/nonexistent", "--out", "/nonexistent/run", "--mask-type", "magic_fraction",
                 "--pools", "0"]) == 2  # fastMRI's spelling still parses (the run stops at --pools)


def test_ctrl_c_says_what_it_saved_and_the_rerun_resumes_there(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["--data", str(data), "--out", str(out), "--epochs", "1000", "--checkpoint-every", "2", *MODEL]
    run = subprocess.Popen(_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    record = out / "checkpoints" / "resume.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and run.poll() is None:
        try:
            if json.loads(record.read_text())["global_step"] >= 2:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stderr
    line = _one_error_line(stderr)
    step = int(re.match(r"interrupted at step (\d+)", line).group(1))  # type: ignore[union-attr]
    saved = json.loads(record.read_text())["global_step"]
    if "saved its weights" in line:
        assert saved == step and str(out / "checkpoints" / "last.safetensors") in line
    else:
        assert f"resume state of step {saved} " in line
    assert str(record) in line and "run the same command again" in line
    again = subprocess.run(_command(*args, "--max-steps", str(saved + 1)), capture_output=True, text=True, env=_env(tmp_path),
                           timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"resuming {out} from step {saved} " in again.stdout


# ------------------------------------------------------------------------------------------------
# 7: a file that fails to read mid-epoch is named


def _damage_target_slice(path: Path, index: int) -> None:
    """Store the file's targets one compressed chunk per slice, then overwrite chunk `index`:
    the file opens and indexes fine, and reading that slice's target fails in the filter."""
    with h5py.File(path, "r+") as f:
        target = f["reconstruction_rss"][()]
        del f["reconstruction_rss"]
        f.create_dataset("reconstruction_rss", data=target, chunks=(1, *target.shape[1:]), compression="gzip")
        chunk = f["reconstruction_rss"].id.get_chunk_info(index)
    with path.open("r+b") as fh:
        fh.seek(chunk.byte_offset + 2)
        fh.write(b"\xff" * min(64, chunk.size - 2))


@pytest.mark.parametrize("workers", ["0", "1"])
def test_file_failing_to_read_mid_epoch_is_named(workers: str, data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    copy = tmp_path / "data"
    shutil.copytree(data / "train", copy / "train")
    bad = sorted((copy / "train").glob("*.h5"))[1]
    _damage_target_slice(bad, 1)
    before = digest([copy])
    out = tmp_path / "run"
    refused(capsys, ["train", "--data", str(copy), "--out", str(out), "--epochs", "1", "--num-workers", workers, *MODEL],
            [str(bad), "cannot read target slice 1"], [copy], rc=1)
    assert digest([copy]) == before


def test_failed_training_step_names_its_slices(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A target larger than its k-space image reads fine and fails in the loss: the error says on which slice."""
    copy = tmp_path / "data"
    shutil.copytree(data / "train", copy / "train")
    odd = sorted((copy / "train").glob("*.h5"))[1]
    with h5py.File(odd, "r+") as f:
        del f["reconstruction_rss"]
        f.create_dataset("reconstruction_rss", data=torch.ones(2, 80, 80).numpy())
    out = tmp_path / "run"
    line = refused(capsys, ["train", "--data", str(copy), "--out", str(out), "--epochs", "1", *MODEL],
                   [f"{odd} slice ", "cannot center-crop"], [copy], rc=1)
    assert re.search(r"step \d+ \(epoch 0\) failed on", line), line
