"""The GPU validation kit (`scripts/gpu_validate`) works before a GPU window opens.

`quick --dry-run` runs every part of the device plan on the CPU at tiny sizes as a real
subprocess (about 40 s of CPU, 1-2 min wall on 2 busy cores: seven processes that each import
torch), and its four output files are checked; the time limit, the budget, the judging of a
part's outcome and the usage errors are checked directly (about 20 s).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from defusedxml import ElementTree

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu_validate"


def _driver() -> ModuleType:
    """scripts/gpu_validate imported as a module (it has no .py suffix); its dataclasses need it in sys.modules."""
    if "gpu_validate" in sys.modules:
        return sys.modules["gpu_validate"]
    loader = importlib.machinery.SourceFileLoader("gpu_validate", str(SCRIPT))
    spec = importlib.util.spec_from_loader("gpu_validate", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_validate"] = module
    loader.exec_module(module)
    return module


def _run(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_quick_dry_run_writes_the_four_files_with_every_part(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # CPU times say nothing of the GPU's: a budget far above the ~2 min this takes on 2 busy cores
    # keeps a loaded CI machine from skipping parts.
    res = _run("quick", str(out), "--dry-run", "--budget", "840")
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(_driver().OUT_FILES) and len(files) <= 8
    assert all((out / f).is_file() for f in files)

    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] and summary["complete"] and summary["plan"] == "quick"
    plan = _driver().PLANS["quick"]
    assert [p["name"] for p in summary["parts"]] == plan
    for part in summary["parts"]:
        assert part["status"] in ("ok", "skipped"), part
        if part["status"] == "skipped":
            assert part["name"] == "memcheck" and part["reason"], part
    by_name = {p["name"]: p for p in summary["parts"]}
    for name in ("kernel-tests", "tests"):
        counts = by_name[name]["tests"]
        assert counts["tests"] > 0 and counts["failures"] == counts["errors"] == 0, (name, counts)

    log = (out / "validate.log").read_text()
    for name in plan:
        assert re.search(rf"^=== {re.escape(name)}: ", log, re.M), f"no header for {name} in validate.log"
    assert "| varnet | ok |" in (out / "summary.md").read_text()

    with tarfile.open(out / "results.tgz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    assert set(members) == set(summary["results"])
    for prefix in ("env_", "varnet_", "kernels_", "baselines_8x_dry_run_sense", "tests_kernels", "tests_gpu"):
        assert any(n.startswith(prefix) for n in members), f"no {prefix}* in results.tgz: {sorted(members)}"
    for name, data in members.items():
        if name.endswith(".json"):
            payload = json.loads(data)
            if name.startswith(("varnet_", "kernels_", "baselines_")):
                assert payload["rows"] and not any(r.get("error") for r in payload["rows"]), name
        elif name.endswith(".xml"):
            assert ElementTree.fromstring(data).iter("testcase"), name
    env = json.loads(members[next(n for n in members if n.startswith("env_"))])
    assert env["dry_run"] and not env["modules"]["torch"].startswith("MISSING") and "cuda_available" in env


def test_a_part_over_its_limit_is_stopped_with_its_children(tmp_path: Path) -> None:
    driver = _driver()
    pidfile = tmp_path / "child.pid"
    script = f"sleep 120 & echo $! > '{pidfile}'; echo started; sleep 120"  # a shell starts in ms, even on a busy machine
    log = io.StringIO()
    rc, timed_out = driver.run_command(["sh", "-c", script], 5.0, dict(os.environ), log)
    assert timed_out and rc is not None and rc < 0
    assert "started" in log.getvalue()
    child = int(pidfile.read_text())
    status = Path(f"/proc/{child}/status")
    assert not status.exists() or re.search(r"^State:\s+Z", status.read_text(), re.M), "the part's child outlived it"


def test_a_part_that_cannot_fit_the_budget_is_skipped_and_fails_the_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _run("env,varnet", str(out), "--dry-run", "--budget", "5")
    assert res.returncode == 1
    summary = json.loads((out / "summary.json").read_text())
    assert [(p["name"], p["status"]) for p in summary["parts"]] == [("env", "skipped"), ("varnet", "skipped")]
    assert all(p["reason"].startswith("budget") for p in summary["parts"])
    assert sorted(p.name for p in out.iterdir()) == sorted(_driver().OUT_FILES)


@pytest.mark.parametrize("args", [("nonsense", "OUT"), ("quick",), ("env,bogus", "OUT")])
def test_usage_errors_are_one_clear_line(args: tuple[str, ...], tmp_path: Path) -> None:
    res = _run(*[str(tmp_path / a) if a == "OUT" else a for a in args], timeout=60)
    assert res.returncode == 2
    assert "gpu_validate:" in res.stderr
    assert not (tmp_path / "OUT").exists()


def test_every_plan_names_known_parts_and_the_wheels_carry_no_cuda_build() -> None:
    driver = _driver()
    table = driver.parts(sys.executable, "RES", None)
    for plan, names in driver.PLANS.items():
        assert names and set(names) <= set(table), plan
    assert table["memcheck"].cmd == [] and "compute-sanitizer" in table["memcheck"].dry_skip
    wheels = (ROOT / "scripts" / "gpu_wheels").read_text()
    block = re.search(r"^WHEELS=\((.*?)^\)", wheels, re.M | re.S)
    assert block is not None, "no WHEELS=( ... ) list in scripts/gpu_wheels"
    listed = re.findall(r"\S+==\S+", block.group(1))
    assert listed, "no pinned wheels found in scripts/gpu_wheels"
    assert not [w for w in listed if re.match(r"(cupy|nvidia-|torch|triton)", w, re.I)], listed


def test_a_part_is_judged_by_what_it_wrote_not_only_its_exit_code(tmp_path: Path) -> None:
    driver = _driver()
    bench = driver.Part("varnet", "", 10, "bench", ["x"], ["x"])
    tests = driver.Part("tests", "", 10, "pytest", ["x"], ["x"])
    memcheck = driver.Part("memcheck", "", 10, "memcheck", ["x"], None)

    def judged(part: Any, files: dict[str, str], rc: int = 0, dry: bool = False, log: str = "") -> tuple[str, str]:
        res = tmp_path / f"res{len(list(tmp_path.iterdir()))}"
        res.mkdir()
        for name, text in files.items():
            (res / name).write_text(text)
        out = driver.judge(part, rc, False, res, set(), dry, log)
        return out.status, out.reason

    ok_rows = json.dumps({"rows": [{"variant": "a", "infer_slice_s": 1.0}]})
    assert judged(bench, {"v.json": ok_rows})[0] == "ok"
    assert judged(bench, {})[0] == "failed"
    assert judged(bench, {"v.json": json.dumps({"rows": [{"variant": "a", "error": "RuntimeError: x"}]})})[0] == "failed"
    skipped = json.dumps({"rows": [{"variant": "recon-cupy-fp32", "skipped": "CuPy is not installed"}]})
    assert judged(bench, {"v.json": skipped})[0] == "failed"
    assert judged(bench, {"v.json": skipped}, dry=True)[0] == "ok"
    assert judged(bench, {"v.json": ok_rows}, rc=1)[0] == "failed"

    xml = '<testsuites><testsuite tests="{}" failures="0" errors="0" skipped="{}"/></testsuites>'
    assert judged(tests, {"t.xml": xml.format(3, 0)})[0] == "ok"
    assert judged(tests, {"t.xml": xml.format(3, 3)})[0] == "failed"
    assert judged(tests, {"t.xml": xml.format(3, 3)}, dry=True)[0] == "ok"
    assert judged(tests, {"t.xml": xml.format(0, 0)})[0] == "failed"
    assert judged(tests, {})[0] == "failed"

    assert judged(memcheck, {}, log="========= ERROR SUMMARY: 0 errors") == ("ok", "ERROR SUMMARY: 0 errors")
    assert judged(memcheck, {}, rc=3, log="========= ERROR SUMMARY: 2 errors")[0] == "failed"
    assert judged(memcheck, {}, rc=255, log="Device not supported")[0] == "skipped"
