"""Hostile input, files and folders: masks and attributes that contradict the data, outputs that
would collide or are half there, folder entries that are not files, compressed chunks that
inflate beyond the memory limit, and what a run says about all of it."""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from _hostile import digest, refused, write_ismrmrd
from fastmri_files import COILS, COLS, PADDING, ROWS, SLICES, write_multicoil
from recon.cli import main


def _challenge(path: Path, mask_values: np.ndarray | None = None, **attrs: object) -> Path:
    """A challenge-style file (own 4x mask), then its mask dataset and attrs overwritten."""
    mask = np.zeros(COLS, bool)
    mask[PADDING[0] : PADDING[1] : 4] = True
    mask[COLS // 2 - 2 : COLS // 2 + 2] = True
    write_multicoil(path, seed=1, mask=mask)
    with h5py.File(path, "a") as f:
        if mask_values is not None:
            del f["mask"]
            f["mask"] = mask_values
        f.attrs.update(attrs)
    return path


@pytest.mark.parametrize(
    "values, attrs, needle",
    [
        (np.full(COLS, 0.5), {}, "values other than 0 and 1"),
        (np.full(COLS, np.nan), {}, "values other than 0 and 1"),
        (np.zeros(COLS, bool), {}, "samples none of the acquirable columns"),
        (np.ones(COLS, bool), {"acceleration": 4}, "the file contradicts itself"),
        (np.array(["x"] * COLS, dtype="S1"), {}, "expected bool"),
        (None, {"acceleration": np.nan}, "attribute 'acceleration' is nan"),
        (None, {"acceleration": np.inf}, "attribute 'acceleration' is inf"),
        (None, {"acceleration": "four"}, "attribute 'acceleration' is 'four'; expected a number"),
        (None, {"num_low_frequency": -3}, "attribute 'num_low_frequency' is -3"),
        (None, {"num_low_frequency": 2.5}, "expected an integer"),
    ],
)
def test_masks_and_attributes_are_checked(values: np.ndarray | None, attrs: dict, needle: str, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = _challenge(tmp_path / "in" / "test_v2.h5", values, **attrs)
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--quiet"], [str(src), needle], [src], [out / "test_v2.h5"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["failed"] == 1 and needle in summary["files"][0]["reason"]


def test_a_valid_challenge_file_still_reconstructs(tmp_path: Path) -> None:
    src = _challenge(tmp_path / "in" / "test_v2.h5", mask_values=None)
    assert main(["reconstruct", str(src), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    with h5py.File(tmp_path / "out" / "test_v2.h5") as f:
        assert f.attrs["acceleration"] == 4 and np.isfinite(f["reconstruction"][()]).all()


def test_one_bad_file_does_not_cost_the_others_or_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    _challenge(folder / "bad_v2.h5", acceleration=np.nan)
    write_multicoil(folder / "good.h5", seed=2)
    out = tmp_path / "out"
    assert main(["reconstruct", str(folder), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("bad_v2.h5") == 1, err  # the error once, not three times
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["ok"], summary["failed"]) == (1, 1)
    assert (out / "good.h5").is_file() and not (out / "bad_v2.h5").exists()


def test_repetition_suffix_collides_with_another_files_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    write_ismrmrd(folder / "scan.h5", repetitions=2)
    write_multicoil(folder / "scan_rep1.h5", seed=3)
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(folder), "--out", str(out), "--quiet"],
            ["scan_rep1.h5", "same output", str(folder / "scan.h5")], [folder], [out])


def test_gfactor_maps_collide_with_an_image_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    write_multicoil(folder / "a.h5", seed=1)
    write_multicoil(folder / "a_gfactor.h5", seed=2)
    refused(capsys, ["reconstruct", str(folder), "--out", str(tmp_path / "out"), "--quiet", "--method", "sense", "--gfactor",
                     "--acceleration", "2", "--mask", "equispaced"], ["a_gfactor.h5", "same output"], [folder])


def test_simulate_refuses_a_folder_with_files_unless_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    before = digest([out])
    refused(capsys, ["simulate", str(out), "--volumes", "1", "--slices", "1"], [str(out), "not empty", "--overwrite"], rc=2)
    assert digest([out]) == before
    assert main(["simulate", str(out), "--volumes", "1", "--slices", "1", "--overwrite"]) == 0
    assert (out / "mine.txt").read_text() == "keep me" and len(list(out.glob("*.h5"))) == 1


def test_skip_existing_redoes_outputs_that_are_not_complete(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    for name, seed in (("a.h5", 1), ("b.h5", 2), ("c.h5", 3)):
        write_multicoil(folder / name, seed=seed)
    out = tmp_path / "out"
    assert main(["reconstruct", str(folder), "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    (out / "b.h5").write_bytes((out / "b.h5").read_bytes()[:300])  # truncated, as by a full disk
    good = (out / "a.h5").stat().st_mtime_ns
    assert main(["reconstruct", str(folder), "--out", str(out), "--quiet", "--skip-existing"]) == 0
    err = capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert {Path(f["file"]).name: f["status"] for f in summary["files"]} == {"a.h5": "skipped", "b.h5": "ok", "c.h5": "skipped"}
    assert "b.h5 cannot be read back" in err and (out / "a.h5").stat().st_mtime_ns == good
    with h5py.File(out / "b.h5") as f:
        assert f["reconstruction"].shape[0] == SLICES


def test_an_output_that_is_a_folder_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    write_multicoil(folder / "a.h5", seed=1)
    out = tmp_path / "out"
    (out / "a.h5").mkdir(parents=True)
    for extra in ([], ["--skip-existing"]):
        refused(capsys, ["reconstruct", str(folder), "--out", str(out), "--quiet", *extra], [str(folder / "a.h5"), "exists as a folder"], [folder])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_folder_entries_that_are_not_files_are_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    write_multicoil(folder / "a.h5", seed=1)
    (folder / "dir.h5").mkdir()
    os.mkfifo(folder / "fifo.h5")
    (folder / "loop.h5").symlink_to(folder / "loop.h5")
    (folder / "dangling.h5").symlink_to(tmp_path / "gone.h5")
    out = tmp_path / "out"
    assert main(["reconstruct", str(folder), "--out", str(out), "--quiet"]) == 1
    err = capsys.readouterr().err
    reasons = {Path(f["file"]).name: f["reason"] for f in json.loads((out / "summary.json").read_text())["files"] if f["status"] == "failed"}
    assert reasons == {"dir.h5": "is a folder, not a file", "fifo.h5": "is a named pipe (FIFO), not a regular file",
                       "loop.h5": "is a symbolic link loop", "dangling.h5": f"is a dangling symbolic link (to {tmp_path / 'gone.h5'})"}
    for name in reasons:
        assert f"{folder / name}: {reasons[name]}" in err
    assert (out / "a.h5").is_file()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs POSIX named pipes")
def test_given_directly_each_gets_its_own_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "fifo.h5")
    (tmp_path / "loop.h5").symlink_to(tmp_path / "loop.h5")
    (tmp_path / "zero.h5").symlink_to("/dev/zero")
    for name, reason in (("fifo.h5", "named pipe"), ("loop.h5", "symbolic link loop"), ("zero.h5", "is a device")):
        refused(capsys, ["reconstruct", str(tmp_path / name), "--out", str(tmp_path / "out"), "--quiet"], [name, reason])


def test_compressed_chunk_spanning_the_volume_counts_against_the_memory_limit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A gzip bomb: the whole k-space in one compressed chunk (a few kB on disk, 46 MiB inflated)."""
    shape = (40, COILS, ROWS, COLS * 16)
    src = tmp_path / "in" / "bomb.h5"
    src.parent.mkdir()
    from fastmri_files import header

    with h5py.File(src, "w") as f:
        f["ismrmrd_header"] = np.bytes_(header(COLS * 16).encode())
        ds = f.create_dataset("kspace", shape=shape, dtype=np.complex64, chunks=shape, compression="gzip")
        ds[:, :, ROWS // 2, COLS * 8] = 1
    assert src.stat().st_size < 200_000
    line = refused(capsys, ["reconstruct", str(src), "--out", str(tmp_path / "out"), "--quiet", "--max-memory", "40M"],
                   [str(src), "compressed chunks of 46.2 MiB", "more than the 40.0 MiB limit"], [src])
    assert "refused before allocating" in line


def test_repetition_on_a_fastmri_file_is_said_to_be_ignored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_multicoil(tmp_path / "a.h5", seed=1)
    assert main(["reconstruct", str(tmp_path / "a.h5"), "--out", str(tmp_path / "out"), "--quiet", "--repetition", "3"]) == 0
    assert "--repetition ignored: a fastMRI file holds one image" in capsys.readouterr().err


def test_fastmri_file_with_a_stray_ismrmrd_group_stays_fastmri(tmp_path: Path) -> None:
    src = tmp_path / "a.h5"
    write_multicoil(src, seed=1)
    with h5py.File(src, "a") as f:
        f.create_group("dataset").create_dataset("xml", data=np.bytes_(b"<ismrmrdHeader/>"))
    assert main(["reconstruct", str(src), "--out", str(tmp_path / "out"), "--quiet"]) == 0


def test_max_slices_and_the_line_saying_what_was_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    write_multicoil(folder / "a.h5", seed=1, slices=5)
    write_ismrmrd(folder / "raw.h5", repetitions=2)
    out = tmp_path / "out"
    assert main(["reconstruct", str(folder), "--out", str(out), "--max-slices", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"wrote 3 output(s) to {out}: a.h5, raw_rep0.h5, raw_rep1.h5"
    with h5py.File(out / "a.h5") as f:
        assert f["reconstruction"].shape[0] == 1


@pytest.mark.parametrize("options, needle", [(["--itres", "3"], "unrecognized arguments: --itres"),
                                             (["--format", "tiff"], "invalid choice: 'tiff'")])
def test_bad_option_is_one_line(options: list[str], needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["reconstruct", "x.h5", "--out", str(tmp_path), *options])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and len(err.strip().splitlines()) == 1 and needle in err, err
