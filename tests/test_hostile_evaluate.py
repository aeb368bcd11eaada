"""Hostile input, `evaluate` and `benchmark` (issue 28): a target or prediction that cannot give a
meaningful score fails alone, in one line naming its file, while the others are scored and the JSON
results are always written (strict JSON, no NaN / Infinity); an acceleration whose mask samples
every acquired column, or one given twice, is refused; no library warning reaches the terminal."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

import h5py
import numpy as np
import pytest

from _hostile import refused
from fastmri_files import COLS, write_multicoil
from recon.cli import main
from recon.io import write_reconstruction
from recon.io.json_file import write_json
from recon.simulate import SimConfig, simulate_dataset

TINY = SimConfig(rows=64, widths=(40,), coils=4, slices=2)


def strict_json(path: Path) -> Any:
    """The JSON in `path`, failing the test on a bare NaN / Infinity (not JSON)."""
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))


def no_library_warnings(err: str) -> None:
    assert "Warning" not in err and "warnings.warn" not in err, err


@pytest.fixture()
def pairs(tmp_path: Path) -> tuple[Path, Path]:
    """Two simulated targets and their predictions (0.9 x target): both score normally."""
    targets, preds = tmp_path / "t", tmp_path / "p"
    simulate_dataset(targets, 2, 2, 4, 10, config=TINY)
    preds.mkdir()
    for t in sorted(targets.glob("*.h5")):
        with h5py.File(t, "r") as f:
            write_reconstruction(preds / t.name, f["reconstruction_rss"][()] * 0.9, acceleration=4.0)
    return targets, preds


def _rewrite(path: Path, key: str, make: Callable[[np.ndarray], Any]) -> None:
    """Replace dataset `key` of `path` by `make(old values)` (a new dataset, so dtype/shape may change)."""
    with h5py.File(path, "r+") as f:
        old = f[key][()]
        del f[key]
        new = make(old)
        if new is not None:
            f[key] = new


def _zero_prediction(t: Path, p: Path) -> tuple[Path, list[str]]:
    _rewrite(p, "reconstruction", lambda x: np.zeros_like(x))
    return p, ["prediction slice 0 is all-zero"]


def _negated_target(t: Path, p: Path) -> tuple[Path, list[str]]:
    _rewrite(t, "reconstruction_rss", lambda x: -x)
    return t, ["target has negative values", "magnitude"]


def _complex_target(t: Path, p: Path) -> tuple[Path, list[str]]:
    _rewrite(t, "reconstruction_rss", lambda x: (x + 1j * x).astype(np.complex64))
    return t, ["'reconstruction_rss' holds complex64 values", "real magnitude image"]


def _group_target(t: Path, p: Path) -> tuple[Path, list[str]]:
    _rewrite(t, "reconstruction_rss", lambda x: None)
    with h5py.File(t, "r+") as f:
        f.create_group("reconstruction_rss")
    return t, ["'reconstruction_rss' is an HDF5 group"]


def _flat_target(t: Path, p: Path) -> tuple[Path, list[str]]:
    _rewrite(t, "reconstruction_rss", lambda x: x[0])
    return t, ["'reconstruction_rss' has shape (32, 32)", "(slices, h, w)"]


def _nan_target_slice(t: Path, p: Path) -> tuple[Path, list[str]]:
    _rewrite(t, "reconstruction_rss", lambda x: np.concatenate([x[:1], np.full_like(x[1:], np.nan)]))
    return t, ["target slice 1", "NaN or Inf"]


def _exact_prediction(t: Path, p: Path) -> tuple[Path, list[str]]:
    with h5py.File(t, "r") as f:
        write_reconstruction(p, f["reconstruction_rss"][()])
    return p, ["equals the target exactly", "PSNR is infinite"]


def _infinite_acceleration(t: Path, p: Path) -> tuple[Path, list[str]]:
    with h5py.File(p, "r+") as f:
        f.attrs["acceleration"] = np.inf
    return p, ["attribute 'acceleration' is inf"]


def _nan_target_acceleration(t: Path, p: Path) -> tuple[Path, list[str]]:
    with h5py.File(p, "r+") as f:
        del f.attrs["acceleration"]
    with h5py.File(t, "r+") as f:
        f.attrs["acceleration"] = np.nan
    return t, ["attribute 'acceleration' is nan"]


def _corrupt(path: Path, key: str) -> None:
    """Store dataset `key` of `path` compressed in chunks, then overwrite its first chunk on disk:
    HDF5 fails while reading it (an error no check of ours anticipates)."""
    with h5py.File(path, "r+") as f:
        values = f[key][()]
        del f[key]
        ds = f.create_dataset(key, data=values, chunks=(1, *values.shape[1:]), compression="gzip")
        chunk = ds.id.get_chunk_info(0)
    with open(path, "r+b") as fh:
        fh.seek(chunk.byte_offset)
        fh.write(b"\xff" * chunk.size)


def _corrupt_prediction_chunk(t: Path, p: Path) -> tuple[Path, list[str]]:
    _corrupt(p, "reconstruction")
    return p, ["OSError"]


CASES = {
    "all-zero prediction": _zero_prediction,
    "negated target": _negated_target,
    "complex target": _complex_target,
    "target is a group": _group_target,
    "2-D target": _flat_target,
    "NaN target slice": _nan_target_slice,
    "prediction equals target": _exact_prediction,
    "prediction acceleration inf": _infinite_acceleration,
    "target acceleration nan": _nan_target_acceleration,
    "unreadable prediction": _corrupt_prediction_chunk,
}


@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_fails_the_bad_pair_only(case: str, pairs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets, preds = pairs
    victim, good = sorted(p.name for p in preds.glob("*.h5"))
    named, needles = CASES[case](targets / victim, preds / victim)
    out = tmp_path / "m.json"
    refused(capsys, ["evaluate", "--targets", str(targets), "--predictions", str(preds), "--out", str(out)],
            [str(named), *needles], [targets, preds], rc=1)
    doc = strict_json(out)
    assert [v["file"] for v in doc["volumes"]] == [good]
    assert all(math.isfinite(v[m]) for v in doc["volumes"] for m in ("ssim", "psnr", "nmse"))
    assert [f["file"] for f in doc["failed"]] == [str(preds / victim)]
    assert str(named) in doc["failed"][0]["reason"]


def test_evaluate_reports_every_bad_pair(pairs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    targets, preds = pairs
    first, second = sorted(p.name for p in preds.glob("*.h5"))
    _negated_target(targets / first, preds / first)
    _zero_prediction(targets / second, preds / second)
    out = tmp_path / "m.json"
    assert main(["evaluate", "--targets", str(targets), "--predictions", str(preds), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and str(targets / first) in lines[0] and str(preds / second) in lines[1], err
    no_library_warnings(err)
    doc = strict_json(out)
    assert doc["volumes"] == [] and len(doc["failed"]) == 2


# --- benchmark -----------------------------------------------------------------------------------


def _bench(data: Path | list[Path], out: Path, accelerations: str = "4") -> list[str]:
    paths = data if isinstance(data, list) else [data]
    return ["benchmark", "--data", *map(str, paths), "--methods", "zero-filled", "--accelerations", accelerations,
            "--out", str(out), "--quiet"]


def test_benchmark_refuses_an_acceleration_that_samples_everything(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    simulate_dataset(data, 1, 2, 4, 20, config=TINY)
    src = next(data.glob("*.h5"))
    out = tmp_path / "bench"
    refused(capsys, _bench(data, out, "1.0001"), [str(src), "at 1.0001x", "samples all", "nothing is undersampled", "--accelerations"],
            [data], rc=1)
    doc = strict_json(out / "results.json")
    assert doc["rows"] == [] and doc["failed"][0]["file"] == str(src)
    assert (out / "report.html").is_file()


def _exact_file(folder: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """A fully sampled file whose k-space holds only the three centre columns (always sampled at
    4x) and whose target is its own fully sampled zero-filled image: at 4x zero-filled returns the
    target exactly, so its PSNR is +inf."""
    path = folder / "exact.h5"
    write_multicoil(path, seed=3)
    keep = np.zeros(COLS, dtype=bool)
    keep[COLS // 2 - 1 : COLS // 2 + 2] = True
    with h5py.File(path, "r+") as f:
        f["kspace"][...] = f["kspace"][()] * keep
    full = folder.parent / "full"
    assert main(["reconstruct", str(path), "--out", str(full), "--quiet"]) == 0
    with h5py.File(full / path.name, "r") as g, h5py.File(path, "r+") as f:
        f["reconstruction_rss"][...] = g["reconstruction"][()]
    capsys.readouterr()
    return path


def test_benchmark_refuses_an_exact_reconstruction_and_keeps_the_rest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_multicoil(data / "good.h5", seed=1)
    exact = _exact_file(data, capsys)
    out = tmp_path / "bench"
    refused(capsys, _bench(data, out), [str(exact), "zero-filled at 4x", "equals the target exactly", "PSNR is infinite"], [data], rc=1)
    doc = strict_json(out / "results.json")
    assert [r["file"] for r in doc["rows"]] == ["good.h5"] and [f["file"] for f in doc["failed"]] == [str(exact)]
    assert "non_finite" not in doc
    assert "good.h5" in (out / "report.html").read_text()


def test_benchmark_refuses_a_negative_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_multicoil(data / "good.h5", seed=1)
    bad = data / "negated.h5"
    write_multicoil(bad, seed=2)
    with h5py.File(bad, "r+") as f:
        f["reconstruction_rss"][...] = -f["reconstruction_rss"][()]
    out = tmp_path / "bench"
    refused(capsys, _bench(data, out), [str(bad), "target has negative values"], [data], rc=1)
    assert [r["file"] for r in strict_json(out / "results.json")["rows"]] == ["good.h5"]


def test_benchmark_unreadable_target_fails_that_file_only(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_multicoil(data / "good.h5", seed=1)
    bad = data / "broken.h5"
    write_multicoil(bad, seed=2)
    _corrupt(bad, "reconstruction_rss")
    out = tmp_path / "bench"
    refused(capsys, _bench(data, out), [str(bad)], [data], rc=1)
    assert [r["file"] for r in strict_json(out / "results.json")["rows"]] == ["good.h5"]


@pytest.mark.parametrize("accelerations, needle", [("4,4.0", "4 and 4.0 are the same acceleration (4x)"),
                                                   ("8,4,4.0000001", "4 and 4.0000001 are the same acceleration (4x)")])
def test_benchmark_refuses_duplicate_accelerations(accelerations: str, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_multicoil(data / "a.h5")
    out = tmp_path / "bench"
    refused(capsys, _bench(data, out, accelerations), ["--accelerations", needle, "give each acceleration once"], [data],
            absent=[out / "results.json"], rc=2)


def test_results_json_never_holds_nan_and_names_the_file(tmp_path: Path) -> None:
    doc = {"rows": [{"file": "a.h5", "psnr": math.inf, "snr": np.float32("nan")}, {"file": "b.h5", "psnr": 30.0}],
           "summary": [{"psnr": np.float64(-math.inf)}]}
    found = write_json(tmp_path / "r.json", doc)
    assert found == ["rows[0].psnr = inf (file a.h5)", "rows[0].snr = nan (file a.h5)", "summary[0].psnr = -inf"]
    written = strict_json(tmp_path / "r.json")
    assert written["rows"][0]["psnr"] is None and written["rows"][1]["psnr"] == 30.0
    assert written["non_finite"][0] == "rows[0].psnr = inf (file a.h5): not a finite number, written as null"
