"""End to end through the `recon` command: simulate, reconstruct, evaluate, benchmark, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recon.cli import main
from recon.reconstruct import ReconstructJob

SIM = ["--volumes", "2", "--slices", "2", "--coils", "4", "--preset", "small", "--seed", "3100"]


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    assert main(["simulate", str(out), *SIM]) == 0
    return out


def _h5s(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.h5"))


def test_reconstruct_and_evaluate_match_fastmri(sim_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fm_eval = pytest.importorskip("fastmri.evaluate")
    out = tmp_path / "zf4"
    assert main(["reconstruct", str(sim_dir), "--out", str(out), "--acceleration", "4", "--quiet"]) == 0
    preds = _h5s(out)
    assert [p.name for p in preds] == [p.name for p in _h5s(sim_dir)]
    with h5py.File(preds[0], "r") as f:
        rec = f["reconstruction"][()]
        assert rec.dtype == np.float32 and rec.ndim == 3
        assert float(f.attrs["acceleration"]) == 4.0
        assert float(f.attrs["center_fraction"]) == pytest.approx(0.08)
        assert f.attrs["mask_type"] == "random" and f.attrs["method"] == "zero-filled"
        assert f["mask"].shape == (h5py.File(_h5s(sim_dir)[0], "r")["kspace"].shape[-1],)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 2 and summary["failed"] == 0
    capsys.readouterr()
    assert main(["evaluate", "--targets", str(sim_dir), "--predictions", str(out), "--out", str(tmp_path / "m.json")]) == 0
    printed = capsys.readouterr().out
    assert "SSIM" in printed and "4x" in printed
    doc = json.loads((tmp_path / "m.json").read_text())
    for row in doc["volumes"]:
        with h5py.File(sim_dir / row["file"], "r") as f:
            gt = f["reconstruction_rss"][()]
        with h5py.File(out / row["file"], "r") as f:
            pred = f["reconstruction"][()]
        assert row["ssim"] == pytest.approx(np.asarray(fm_eval.ssim(gt, pred)).item(), abs=1e-6)
        assert row["psnr"] == pytest.approx(np.asarray(fm_eval.psnr(gt, pred)).item(), abs=1e-6)
        assert row["nmse"] == pytest.approx(np.asarray(fm_eval.nmse(gt, pred)).item(), abs=1e-6)


def test_same_seed_same_mask_and_skip_existing(sim_dir: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        assert main(["reconstruct", str(sim_dir), "--out", str(out), "--acceleration", "8", "--quiet"]) == 0
    for p in _h5s(a):
        with h5py.File(p, "r") as fa, h5py.File(b / p.name, "r") as fb:
            assert np.array_equal(fa["mask"][()], fb["mask"][()])
            assert np.array_equal(fa["reconstruction"][()], fb["reconstruction"][()])
    mtimes = {p.name: p.stat().st_mtime_ns for p in _h5s(a)}
    assert main(["reconstruct", str(sim_dir), "--out", str(a), "--acceleration", "8", "--skip-existing", "--quiet"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in _h5s(a)} == mtimes
    assert json.loads((a / "summary.json").read_text())["skipped"] == 2


def _bad_files(folder: Path, good: Path) -> dict[str, str]:
    folder.mkdir()
    (folder / "not_hdf5.h5").write_bytes(b"this is not an HDF5 file at all")
    data = good.read_bytes()
    (folder / "truncated.h5").write_bytes(data[: len(data) // 3])
    with h5py.File(folder / "no_kspace.h5", "w") as f:
        f["something"] = np.zeros(3)
    shutil.copy(good, folder / "good.h5")
    return {"not_hdf5.h5": "HDF5", "truncated.h5": "", "no_kspace.h5": "kspace"}


def test_batch_with_broken_files_finishes_good_ones(sim_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _bad_files(tmp_path / "in", _h5s(sim_dir)[0])
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["reconstruct", str(tmp_path / "in"), "--out", str(out), "--acceleration", "4", "--quiet"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert (out / "good.h5").is_file()
    assert sorted(p.name for p in out.iterdir()) == ["good.h5", "summary.json"], "partial outputs left behind"
    for name, word in bad.items():
        line = next(line for line in err if name in line)
        assert word.lower() in line.lower()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] == 1 and summary["failed"] == 3


def test_single_bad_file_one_line_nonzero_exit(tmp_path: Path) -> None:
    bad = tmp_path / "scan.h5"
    bad.write_text("garbage")
    proc = subprocess.run(
        [sys.executable, "-m", "recon", "reconstruct", str(bad), "--out", str(tmp_path / "o"), "--quiet"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and str(bad) in lines[0]
    assert "Traceback" not in proc.stderr


def test_challenge_file_uses_its_own_mask(sim_dir: Path, tmp_path: Path) -> None:
    src = _h5s(sim_dir)[0]
    chal = tmp_path / "in" / "file_v2.h5"
    chal.parent.mkdir()
    shutil.copy(src, chal)
    with h5py.File(chal, "r+") as f:
        width = f["kspace"].shape[-1]
        mask = np.zeros(width, dtype=bool)
        mask[::3] = True
        mask[width // 2 - 4 : width // 2 + 4] = True
        f["kspace"][...] = f["kspace"][()] * mask
        f.create_dataset("mask", data=mask)
        f.attrs["acceleration"] = 3
        f.attrs["num_low_frequency"] = 8
        del f["reconstruction_rss"]
    out = tmp_path / "out"
    assert main(["reconstruct", str(chal), "--out", str(out), "--acceleration", "8", "--quiet"]) == 0
    with h5py.File(out / chal.name, "r") as f:
        used = f["mask"][()]
        assert f.attrs["mask_type"] == "file"
        assert float(f.attrs["acceleration"]) == 3
    assert used.sum() <= mask.sum() and not np.any(used & ~mask)


def test_benchmark_writes_results_and_is_reproducible(sim_dir: Path, tmp_path: Path) -> None:
    args = ["benchmark", "--data", str(sim_dir), "--methods", "zero-filled", "--accelerations", "4,8", "--max-slices", "1", "--quiet"]
    assert main([*args, "--out", str(tmp_path / "b1")]) == 0
    assert main([*args, "--out", str(tmp_path / "b2")]) == 0
    r1 = json.loads((tmp_path / "b1" / "results.json").read_text())
    r2 = json.loads((tmp_path / "b2" / "results.json").read_text())
    keys = {"file", "method", "acceleration", "ssim", "psnr", "nmse", "seconds_per_slice"}
    assert len(r1["rows"]) == 4 and all(keys <= set(r) for r in r1["rows"])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds_per_slice"} for r in rows]  # noqa: E731
    assert strip(r1["rows"]) == strip(r2["rows"])
    by_acc = {r["acceleration"]: r["ssim"] for r in r1["summary"]}
    assert by_acc[4.0] > by_acc[8.0]
    for name in ("report.md", "panel_4x.png", "panel_8x.png", "ssim_by_method.png"):
        assert (tmp_path / "b1" / name).stat().st_size > 0
    assert "## 8x" in (tmp_path / "b1" / "report.md").read_text()


class KillOnceJob:
    """Wraps a real ReconstructJob; SIGKILLs its worker the first time it reconstructs `victim`."""

    def __init__(self, job: ReconstructJob, marker: Path, victim: str) -> None:
        self.job, self.marker, self.victim = job, marker, victim

    def __call__(self, path: Path) -> dict:
        if Path(path).name == self.victim and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
        return self.job(path)


@pytest.mark.slow
def test_dask_reconstruct_survives_killed_worker(sim_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    import cloudpickle

    from recon.runner import run_batch

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    files = _h5s(sim_dir)
    out = tmp_path / "out"
    job = KillOnceJob(ReconstructJob(out_dir=out, acceleration=4.0, device="cpu"), tmp_path / "killed", files[0].name)
    results = run_batch(job, files, workers=2, progress=False)
    assert (tmp_path / "killed").exists()
    assert [r.status for r in results] == ["ok"] * len(files)
    ref = tmp_path / "ref"
    assert main(["reconstruct", str(sim_dir), "--out", str(ref), "--acceleration", "4", "--quiet"]) == 0
    for p in files:
        with h5py.File(out / p.name, "r") as a, h5py.File(ref / p.name, "r") as b:
            assert np.array_equal(a["reconstruction"][()], b["reconstruction"][()])
    assert sorted(q.name for q in out.iterdir()) == sorted(p.name for p in files)
