"""Learned methods warn, naming the file, when an input lies outside their training data."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from recon.cli import main
from recon.models.checkpoint import DEFAULT_CHECKPOINT, checkpoint_record, shipped_checkpoint_available
from recon.models.domain import domain_problems, domain_warning, folder_domain
from recon.simulate import PRESETS, SimConfig, simulate_dataset

RECORD = {"domain": {"files": 10, "coils": [8, 12], "rows": [320, 320], "cols": [178, 186]}, "train": {"accelerations": [4.0, 8.0]}}


def test_inside_the_training_data_there_is_nothing_to_say() -> None:
    assert domain_problems(RECORD, 8, 320, 180, 4.0) == []
    assert domain_problems(RECORD, 12, 390, 150, 10.0) == []  # within the size (1.25) and acceleration (1.5) tolerance
    assert domain_problems({}, 2, 16, 16, 1.0) == []  # no record (fastMRI's published weights): no claim either way
    assert domain_warning("varnet", "w.safetensors", []) is None


def test_each_difference_is_named() -> None:
    problems = domain_problems(RECORD, 4, 64, 64, 1.0)
    assert problems == ["4 coils (trained on 8-12)", "64 k-space rows (trained on 320)",
                        "64 k-space cols (trained on 178-186)", "acceleration 1.0 (trained at 4x, 8x)"]
    assert domain_problems(RECORD, 15, 640, 368, 4.0) == ["15 coils (trained on 8-12)", "640 k-space rows (trained on 320)",
                                                          "368 k-space cols (trained on 178-186)"]
    text = domain_warning("varnet", "models/w.safetensors", problems)
    assert text is not None and text.startswith("varnet: input outside the training data of w.safetensors: 4 coils")
    assert "\n" not in text


def test_folder_domain_reads_the_kspace_shapes(tmp_path: Path) -> None:
    simulate_dataset(tmp_path / "d", 2, 1, 4, 1000, config=SimConfig(rows=64, widths=(40, 44), coils=4, slices=1))
    domain = folder_domain(tmp_path / "d")
    assert domain["files"] == 2 and domain["coils"] == [4, 4] and domain["rows"] == [64, 64]
    assert 40 <= domain["cols"][0] <= domain["cols"][1] <= 44
    with pytest.raises(ValueError, match="no multi-coil"):
        folder_domain(tmp_path)


def test_shipped_records_describe_their_training_data() -> None:
    if not shipped_checkpoint_available():
        pytest.skip("no shipped weights in this installation (wheel without models/)")
    record = checkpoint_record(DEFAULT_CHECKPOINT)
    assert record["domain"]["coils"] == [8, 8] and record["domain"]["rows"] == [320, 320]
    assert record["train"]["accelerations"] == [4.0, 8.0]
    unet = json.loads((DEFAULT_CHECKPOINT.parent / "unet.json").read_text())
    assert unet["domain"]["coils"] == [8, 8]


@pytest.mark.skipif(not shipped_checkpoint_available(), reason="no shipped weights in this installation (wheel without models/)")
def test_reconstruct_warns_outside_and_not_inside(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    simulate_dataset(tmp_path / "small", 1, 1, 4, 3000, config=SimConfig(rows=64, widths=(48,), coils=4, slices=1))
    simulate_dataset(tmp_path / "inside", 1, 1, 8, 3000, config=replace(PRESETS["small"], slices=1))
    assert main(["reconstruct", str(tmp_path / "small"), "--out", str(tmp_path / "out1"), "--method", "varnet", "--quiet"]) == 0
    err = capsys.readouterr().err
    path = next((tmp_path / "small").glob("*.h5"))
    assert f"warning: {path}: varnet: input outside the training data of varnet.safetensors: 4 coils (trained on 8)" in err
    assert "64 k-space rows (trained on 320)" in err and "acceleration 1.0 (trained at 4x, 8x)" in err
    assert main(["reconstruct", str(tmp_path / "inside"), "--out", str(tmp_path / "out2"), "--method", "varnet", "--acceleration", "4", "--quiet"]) == 0
    assert "outside the training data" not in capsys.readouterr().err


@pytest.mark.skipif(not shipped_checkpoint_available(), reason="no shipped weights in this installation (wheel without models/)")
def test_benchmark_lists_the_warning_in_results_and_report(tmp_path: Path) -> None:
    from recon.benchmark import run_benchmark

    simulate_dataset(tmp_path / "small", 1, 1, 4, 3000, config=SimConfig(rows=64, widths=(48,), coils=4, slices=1))
    doc = run_benchmark([tmp_path / "small"], tmp_path / "bench", ["zero-filled", "varnet"], [4.0])
    (warned,) = doc["warnings"]
    assert warned["file"].endswith("file_sim_3000_0000.h5") and "4 coils (trained on 8)" in warned["warning"]
    assert "acceleration" not in warned["warning"]  # 4x is a trained acceleration
    saved = json.loads((tmp_path / "bench" / "results.json").read_text())
    assert saved["warnings"] == doc["warnings"]
    assert "## Warnings" in (tmp_path / "bench" / "report.md").read_text()
    page = (tmp_path / "bench" / "report.html").read_text()
    assert "<h2>Warnings</h2>" in page and "4 coils (trained on 8)" in page


@pytest.mark.skipif(not shipped_checkpoint_available(), reason="no shipped weights in this installation (wheel without models/)")
def test_a_broken_record_is_refused_naming_it(tmp_path: Path) -> None:
    import shutil

    from recon.io.errors import InputError
    from recon.models.checkpoint import load_model

    weights = tmp_path / "w.safetensors"
    shutil.copy(DEFAULT_CHECKPOINT, weights)
    (tmp_path / "w.json").write_text('{"model": ')
    with pytest.raises(InputError, match=r"w\.json.*invalid JSON"):
        checkpoint_record(weights)
    with pytest.raises(InputError, match="invalid JSON"):
        load_model(weights)
    assert checkpoint_record(tmp_path / "none.pt") == {}
