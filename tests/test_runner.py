"""recon.runner: input expansion, per-file failures, summaries, and a real 2-worker Dask cluster."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

from recon.io import InputError
from recon.runner import FileResult, expand_inputs, run_batch, summary_table, write_summary


class SquareTask:
    """Reads an integer from a file and returns its square; fails on bad content."""

    def __call__(self, path: Path) -> dict:
        text = Path(path).read_text().strip()
        if text == "bug":
            raise RuntimeError("something broke\nsecond line")
        if not text.isdigit():
            raise InputError(path, "not a number")
        return {"value": int(text) ** 2}


class KillOnceTask(SquareTask):
    """SIGKILLs its own worker process the first time it sees `victim`, then behaves normally."""

    def __init__(self, marker: Path, victim: str) -> None:
        self.marker = marker
        self.victim = victim

    def __call__(self, path: Path) -> dict:
        if Path(path).name == self.victim and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return {**super().__call__(path), "pid": os.getpid()}


def _files(tmp_path: Path, contents: dict[str, str]) -> list[Path]:
    paths = []
    for name, text in contents.items():
        p = tmp_path / name
        p.write_text(text)
        paths.append(p)
    return paths


def test_expand_inputs_files_folders_globs(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    _files(tmp_path / "a", {"x.h5": "1", "y.h5": "2", "notes.txt": "-"})
    (tmp_path / "empty").mkdir()
    single = _files(tmp_path, {"z.h5": "3"})[0]
    found, missing = expand_inputs([tmp_path / "a", str(tmp_path / "a" / "*.h5"), single, tmp_path / "nope.h5", tmp_path / "empty", str(tmp_path / "q*.h5")])
    assert [p.name for p in found] == ["x.h5", "y.h5", "z.h5"]
    reasons = {Path(m.file).name: m.reason for m in missing}
    assert reasons == {"nope.h5": "no such file or folder", "empty": "folder has no *.h5 or *.dat files", "q*.h5": "pattern matches no files"}
    assert all(m.status == "failed" for m in missing)


def test_bad_files_do_not_stop_the_batch(tmp_path: Path) -> None:
    files = _files(tmp_path, {"a.h5": "2", "b.h5": "oops", "c.h5": "bug", "d.h5": "5"})
    results = run_batch(SquareTask(), files, progress=False)
    assert [r.status for r in results] == ["ok", "failed", "failed", "ok"]
    assert results[0].result["value"] == 4 and results[3].result["value"] == 25
    assert results[1].reason == "not a number"
    assert results[2].reason == "RuntimeError: something broke second line"
    table = summary_table(results)
    assert "2 ok, 0 skipped, 2 failed" in table
    summary = write_summary(results, tmp_path / "out" / "summary.json", {"method": "square"})
    doc = json.loads(summary.read_text())
    assert doc["ok"] == 2 and doc["failed"] == 2 and doc["method"] == "square"
    assert [f["status"] for f in doc["files"]] == ["ok", "failed", "failed", "ok"]
    assert not [p for p in (tmp_path / "out").iterdir() if p.name != "summary.json"]


@pytest.mark.skipif(sys.platform != "linux", reason="SIGKILL of a worker process is tested on Linux")
def test_dask_two_workers_survive_a_killed_worker(tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    files = _files(tmp_path, {f"f{i}.h5": str(i) for i in range(6)} | {"bad.h5": "x"})
    marker = tmp_path / "killed"
    results = run_batch(KillOnceTask(marker, "f2.h5"), files, workers=2, progress=False)
    assert marker.exists(), "the victim task never ran"
    by_name = {Path(r.file).name: r for r in results}
    assert len(results) == len(files)
    for i in range(6):
        assert by_name[f"f{i}.h5"].status == "ok", by_name[f"f{i}.h5"]
        assert by_name[f"f{i}.h5"].result["value"] == i * i
    assert by_name["bad.h5"].status == "failed"
    killed_pid = int(marker.read_text())
    assert by_name["f2.h5"].result["pid"] != killed_pid
    assert {r.result["pid"] for r in results if r.ok} - {killed_pid}


def test_file_result_ok_property() -> None:
    assert FileResult("a", "ok").ok and FileResult("a", "skipped").ok and not FileResult("a", "failed").ok
