"""Command-line usability: help on every option, per-slice progress with ETA, --quiet, and the
note that a fully sampled file without --acceleration is reconstructed fully sampled."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from recon.cli import build_parser, main


def test_every_option_has_help() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    missing = [f"{name} {'/'.join(a.option_strings) or a.dest}" for name, p in sub.choices.items()
               for a in p._actions if not isinstance(a, argparse._HelpAction) and not a.help]
    assert not missing, missing
    text = sub.choices["benchmark"].format_help()
    assert "(default: 4,8)" in text and "{acquisition,coils,source,snr,none}" in text
    assert "(default: 8)" in sub.choices["reconstruct"].format_help()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", str(out), "--volumes", "1", "--slices", "3", "--coils", "4", "--seed", "3100"]) == 0
    return out


def test_fully_sampled_without_acceleration_says_so(sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reconstruct", str(sim), "--out", str(tmp_path / "full"), "--quiet"]) == 0
    assert "reconstructed the fully sampled k-space" in capsys.readouterr().out
    assert main(["reconstruct", str(sim), "--out", str(tmp_path / "acc"), "--acceleration", "4", "--quiet"]) == 0
    assert "fully sampled" not in capsys.readouterr().out


def test_progress_per_slice_batch_and_quiet(sim: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Bars on a terminal (stderr claims to be one here), none with --quiet, none in a pipe or log."""
    assert main(["reconstruct", str(sim), "--out", str(tmp_path / "pipe"), "--acceleration", "4", "--batch-size", "1"]) == 0
    captured = capsys.readouterr()
    assert "slice" not in captured.err and "%" not in captured.err
    assert captured.out.strip().splitlines()[-1].startswith(f"wrote 1 output(s) to {tmp_path / 'pipe'}: file_sim_3100_0000.h5")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["reconstruct", str(sim), "--out", str(tmp_path / "a"), "--acceleration", "4", "--batch-size", "1"]) == 0
    err = capsys.readouterr().err
    assert "file_sim_3100_0000.h5:   0%" in err and "0/3 [00:00<?" in err  # the per-slice bar, with its ETA field
    assert main(["reconstruct", str(sim), "--out", str(tmp_path / "b"), "--acceleration", "4", "--batch-size", "1", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "slice" not in captured.err and "wrote" not in captured.out
