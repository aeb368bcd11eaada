"""Hostile input, `evaluate` and `train`: missing / extra / mis-shaped predictions are one-line
errors; training refuses non-finite or empty slices, stops on a non-finite loss without NaN weights,
writes only valid JSON and says when there is no validation data."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from safetensors.torch import load_file

from _hostile import digest, refused
from recon.cli import main
from recon.io import write_reconstruction
from recon.simulate import SimConfig, simulate_dataset

TINY = SimConfig(rows=64, widths=(40,), coils=4, slices=2)
MODEL = ["--num-cascades", "1", "--chans", "4", "--pools", "2", "--sens-chans", "4", "--sens-pools", "2",
         "--tensorboard", "false", "--quiet", "--device", "cpu"]


@pytest.fixture()
def targets(tmp_path: Path) -> Path:
    simulate_dataset(tmp_path / "t", 2, 2, 4, 10, config=TINY)
    return tmp_path / "t"


def _predict(targets: Path, folder: Path, shape: tuple[int, int] | None = None) -> None:
    folder.mkdir(exist_ok=True)
    for t in sorted(targets.glob("*.h5")):
        with h5py.File(t, "r") as f:
            target = f["reconstruction_rss"][()]
        pred = target * 0.9 if shape is None else np.ones((target.shape[0], *shape), np.float32)
        write_reconstruction(folder / t.name, pred)


def test_missing_prediction_and_allow_missing(targets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "p"
    _predict(targets, preds)
    gone = sorted(preds.glob("*.h5"))[0]
    gone.unlink()
    out = tmp_path / "metrics.json"
    refused(capsys, ["evaluate", "--targets", str(targets), "--predictions", str(preds), "--out", str(out)],
            [str(targets / gone.name), "no prediction", "--allow-missing"], [targets, preds])
    assert json.loads(out.read_text())["failed"][0]["file"] == str(targets / gone.name)
    assert main(["evaluate", "--targets", str(targets), "--predictions", str(preds), "--out", str(out), "--allow-missing"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 of 2 target(s) have no prediction" in err
    assert len(list(tmp_path.glob("metrics-*.json"))) == 1  # the first run's metrics are kept, renamed
    assert json.loads(out.read_text())["missing_predictions"] == [str(targets / gone.name)]


def test_extra_prediction(targets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "p"
    _predict(targets, preds)
    extra = preds / "stray.h5"
    shutil.copy(sorted(preds.glob("*.h5"))[0], extra)
    refused(capsys, ["evaluate", "--targets", str(targets), "--predictions", str(preds)], [str(extra), "extra prediction"], [targets, preds])


def test_prediction_of_another_size(targets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "p"
    _predict(targets, preds, shape=(16, 16))
    with h5py.File(sorted(targets.glob("*.h5"))[0], "r") as f:
        tshape = f["reconstruction_rss"].shape
    err = capsys  # two volumes, both mis-shaped: two error lines, each naming its file
    before = digest([targets, preds])
    assert main(["evaluate", "--targets", str(targets), "--predictions", str(preds)]) == 1
    lines = err.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all("does not match target" in line and str(tshape) in line for line in lines)
    assert digest([targets, preds]) == before


def test_all_zero_target_is_an_error_not_nan_json(targets: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    preds = tmp_path / "p"
    _predict(targets, preds)
    zero_targets = tmp_path / "zt"
    shutil.copytree(targets, zero_targets)
    victim = sorted(zero_targets.glob("*.h5"))[0]
    with h5py.File(victim, "r+") as f:
        f["reconstruction_rss"][...] = 0
    out = tmp_path / "m.json"
    refused(capsys, ["evaluate", "--targets", str(zero_targets), "--predictions", str(preds), "--out", str(out)],
            [str(victim), "target is all zero"], [zero_targets, preds])
    json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"metrics JSON holds {c}"))


@pytest.fixture()
def train_data(tmp_path: Path) -> Path:
    simulate_dataset(tmp_path / "data" / "train", 2, 2, 4, 100, config=TINY)
    return tmp_path / "data"


def _weights_finite(folder: Path) -> list[str]:
    names = []
    for f in sorted(folder.glob("*.safetensors")):
        assert all(np.isfinite(t.float().numpy()).all() for t in load_file(str(f)).values()), f
        names.append(f.name)
    return names


@pytest.mark.parametrize("poison", ["inf", "zero"])
def test_train_rejects_non_finite_or_empty_slices(poison: str, train_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = sorted((train_data / "train").glob("*.h5"))[1]
    with h5py.File(bad, "r+") as f:
        k = f["kspace"][()]
        k[1] = np.inf if poison == "inf" else 0
        f["kspace"][...] = k
    out = tmp_path / "run"
    cause = "contains NaN or Inf" if poison == "inf" else "all zero"
    refused(capsys, ["train", "--data", str(train_data), "--out", str(out), "--epochs", "2", *MODEL],
            [bad.name, "slice 1", cause], [train_data])
    _weights_finite(out / "checkpoints")


def test_train_non_finite_loss_keeps_last_good_checkpoint(train_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    # lr 1e30: the first step's update overflows the weights, so the next loss is not finite
    line = refused(capsys, ["train", "--data", str(train_data), "--out", str(out), "--epochs", "3", "--lr", "1e30",
                            "--checkpoint-every", "1", *MODEL], [str(out), "training stopped before step", "non-finite"], [train_data])
    assert "weights not updated" in line
    kept = _weights_finite(out / "checkpoints")
    assert kept, "no checkpoint kept"
    for f in out.rglob("*.json*"):
        for text in f.read_text().splitlines() if f.suffix == ".jsonl" else [f.read_text()]:
            json.loads(text, parse_constant=lambda c: pytest.fail(f"{f} holds {c}"))


def test_train_without_validation_data_says_so(train_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", str(train_data), "--out", str(out), "--epochs", "1", *MODEL]) == 0
    captured = capsys.readouterr()
    assert "no validation data" in captured.err and "last.safetensors" in captured.err
    assert f"result: {out / 'checkpoints' / 'last.safetensors'}" in captured.out
    assert not (out / "checkpoints" / "best.safetensors").exists()
