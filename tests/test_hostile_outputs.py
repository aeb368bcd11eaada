"""Hostile input, outputs: inputs are never written, output names are unique, unwritable or wrong
output paths are one line before any work, earlier summaries are kept, one top-level error handler."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from _hostile import digest, refused, write_ismrmrd
from fastmri_files import write_multicoil
from recon import __version__
from recon.cli import main


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    folder = tmp_path / "d"
    folder.mkdir()
    write_multicoil(folder / "a.h5", seed=1)
    write_ismrmrd(folder / "raw.h5")
    return folder


def test_out_is_the_input_folder(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = refused(capsys, ["reconstruct", str(data), "--out", str(data), "--quiet"], ["a.h5", "is this input file"], [data])
    assert "refusing to overwrite" in line
    assert not (data / "summary.json").exists()


def test_hard_link_of_an_input_counts_as_the_input(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    out.mkdir()
    os.link(data / "a.h5", out / "a.h5")
    refused(capsys, ["reconstruct", str(data / "a.h5"), "--out", str(out), "--quiet"], ["a.h5", "is this input file"], [data])


def test_convert_onto_its_input(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = data / "raw.h5"
    refused(capsys, ["convert", str(raw), str(raw)], [str(raw), "is this input file"], [data])


def test_duplicate_base_names_refused_naming_both(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "y").mkdir()
    write_multicoil(tmp_path / "x" / "scan.h5", seed=1)
    write_multicoil(tmp_path / "y" / "scan.h5", seed=2)
    out = tmp_path / "out"
    line = refused(capsys, ["reconstruct", str(tmp_path / "x"), str(tmp_path / "y"), "--out", str(out), "--quiet"],
                   [str(tmp_path / "x" / "scan.h5"), str(tmp_path / "y" / "scan.h5"), "same output"], [tmp_path / "x", tmp_path / "y"])
    assert not out.exists(), line


def test_unwritable_output_folder_before_any_work(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for argv in (
        ["reconstruct", str(data / "a.h5"), "--out", str(blocker / "sub"), "--quiet"],
        ["benchmark", "--data", str(data / "a.h5"), "--methods", "zero-filled", "--out", str(blocker / "sub"), "--quiet"],
        ["simulate", str(blocker / "sub"), "--volumes", "1", "--slices", "1"],
        ["convert", str(data / "raw.h5"), str(blocker / "sub" / "x.h5")],
        ["evaluate", "--targets", str(data), "--predictions", str(data), "--out", str(blocker / "sub" / "m.json")],
        ["train", "--data", str(data), "--out", str(blocker / "sub"), "--quiet"],
    ):
        refused(capsys, argv, [str(blocker), "not writable"], [data, blocker], rc=2)


@pytest.mark.skipif(not Path("/sys/fs").is_dir(), reason="needs Linux sysfs, where even root may not create folders")
def test_permission_denied_in_all_subcommands(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    denied = Path("/sys/fs/recon-hostile-test")  # mkdir there is EPERM, also for root
    for argv in (
        ["reconstruct", str(data / "a.h5"), "--out", str(denied), "--quiet"],
        ["benchmark", "--data", str(data / "a.h5"), "--methods", "zero-filled", "--out", str(denied), "--quiet"],
        ["simulate", str(denied), "--volumes", "1", "--slices", "1"],
        ["convert", str(data / "raw.h5"), str(denied / "x.h5")],
        ["evaluate", "--targets", str(data), "--predictions", str(data), "--out", str(denied / "m.json")],
        ["train", "--data", str(data), "--out", str(denied), "--quiet"],
    ):
        refused(capsys, argv, [str(denied), "not writable", "not permitted"], [data], rc=2)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_permission_denied_output_folder(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    refused(capsys, ["reconstruct", str(data / "a.h5"), "--out", str(locked), "--quiet"], [str(locked), "not writable"], [data], rc=2)


def test_out_is_an_existing_file_and_convert_into_a_folder(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me")
    refused(capsys, ["reconstruct", str(data / "a.h5"), "--out", str(existing), "--quiet"], [str(existing), "not a folder"], [data, existing], rc=2)
    folder = tmp_path / "folder"
    folder.mkdir()
    refused(capsys, ["convert", str(data / "raw.h5"), str(folder)], [str(folder), "is a folder"], [data], rc=2)
    assert list(folder.iterdir()) == []


def test_second_run_keeps_the_first_summary(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["reconstruct", str(data / "a.h5"), "--out", str(out), "--quiet"]) == 0
    first = (out / "summary.json").read_text()
    assert main(["reconstruct", str(data / "a.h5"), "--out", str(out), "--quiet"]) == 0
    kept = sorted(out.glob("summary-*.json"))
    assert len(kept) == 1 and kept[0].read_text() == first
    assert json.loads((out / "summary.json").read_text())["ok"] == 1


def test_version_and_unexpected_error_handler(data: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "recon", "--version"], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == f"recon {__version__}"
    # a target key the files lack: an expected error, one line naming the file
    pred = tmp_path / "pred"
    pred.mkdir()
    with h5py.File(data / "a.h5", "r") as f:
        target = f["reconstruction_rss"][()]
    from recon.io import write_reconstruction

    write_reconstruction(pred / "a.h5", target)
    targets = tmp_path / "targets"
    targets.mkdir()
    shutil.copy(data / "a.h5", targets / "a.h5")
    before = digest([targets, pred])
    bad = subprocess.run([sys.executable, "-m", "recon", "evaluate", "--targets", str(targets), "--predictions", str(pred),
                          "--target-key", "no_such_key"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "no_such_key" in bad.stderr
    assert digest([targets, pred]) == before


def test_unexpected_error_is_one_line_unless_debug(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recon.simulate import SimConfig, simulate_dataset

    simulate_dataset(tmp_path / "d", 1, 2, 4, 1, config=SimConfig(rows=64, widths=(40,), coils=4, slices=2))
    argv = ["train", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"), "--device", "bogus", "--quiet", "--tensorboard", "false"]
    line = refused(capsys, argv, ["bogus", "run with --debug for the traceback"], [tmp_path / "d"], rc=1)
    assert line.startswith("error: RuntimeError")
    assert main(["--debug", *argv]) == 1
    assert "Traceback" in capsys.readouterr().err
