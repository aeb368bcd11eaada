"""Issue 28: `recon reconstruct` on hundreds of seeded mutants of tiny fastMRI and ISMRMRD files.

Each mutant is refused in one line naming the file with no output written, or reconstructed to
a finite, non-zero image of the right shape; never a traceback, a hang or a changed input. The
harness is `tests/_fuzz.py` (its docstring says how a new format joins); the assertion message
lists every failing mutant as `id [method] mutation -> category: what happened @ where`.
Set RECON_FUZZ_REPORT=file.json to keep the full outcomes.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from _fuzz import Case, Mutant, fuzz, judge, run_cases


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_reconstruct_keeps_its_contract_on_every_mutant(tmp_path: Path) -> None:
    """The whole seeded run: at least 200 mutants, and no contract failure among them."""
    report = fuzz(tmp_path, timeout=10.0, budget=100.0)
    assert report.mutants >= 200, report.summary()
    if report.failures:
        pytest.fail(report.summary(), pytrace=False)


def _selftest_entry(argv: list[str]) -> int:
    """Stand-in entry point for the harness's own test: sleeps, dies or returns as told."""
    what = argv[0]
    if what == "hang":
        signal.pause()
    if what == "crash":
        os.abort()
    print(f"error: {what}: refused", file=sys.stderr)
    return 1


def test_harness_survives_hangs_and_crashes(tmp_path: Path) -> None:
    """A hang or a dead worker fails that case only; the cases after it still run."""
    cases = [Case(name, [name], str(tmp_path / name), "", "none") for name in ("a", "hang", "b", "crash", "c")]
    outcomes = run_cases(cases, tmp_path / "work", timeout=2.0, startup=60.0, budget=60.0, entry="test_fuzz:_selftest_entry")
    assert {k: o["status"] for k, o in outcomes.items()} == {"a": "done", "hang": "hang", "b": "done", "crash": "crash", "c": "done"}
    assert outcomes["a"]["rc"] == 1 and outcomes["a"]["stderr"] == "error: a: refused\n"


def test_judge_names_each_way_to_break_the_contract(tmp_path: Path) -> None:
    """Synthetic outcomes: a clean refusal passes; each broken promise gets its category."""
    path = tmp_path / "m000.h5"
    mutant = Mutant("m000:x/y/z", 0, path, "x", "y", "z", "bytes", "test", "refuse", ("zero-filled",), "")
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")

    def categories(rc: int, stderr: str) -> list[str]:
        outcome = {"status": "done", "rc": rc, "stdout": "", "stderr": stderr, "seconds": 0.1}
        return [f.category for f in judge(mutant, "zero-filled", outcome, out)]

    assert categories(1, f"error: {path}: header is broken\n") == []
    assert categories(1, f"Traceback (most recent call last):\n  File \"x.py\", line 1, in f\nKeyError: 'a'\nerror: {path}: KeyError: 'a'\n") == ["traceback"]
    assert categories(1, f"error: {path}: ValueError: bad\n") == ["raw-exception"]
    assert categories(1, "error: something is broken\n") == ["no-file-name"]
    assert categories(1, f"error: {path}: a\nerror: {path}: b\n") == ["not-one-line"]
    assert categories(0, "") == ["accepted-invalid", "bad-output"]
    assert [f.category for f in judge(mutant, "zero-filled", {"status": "hang", "why": "no result"}, out)] == ["hang"]
    (out / "summary.json").unlink()
    assert categories(1, f"error: {path}: header is broken\n") == ["batch-abort"]
