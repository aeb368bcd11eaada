"""Hostile input, images: degenerate input and non-finite or empty images are per-file failures
naming method, slice and cause, never "ok"; header/data disagreements are errors; ISMRMRD
repetitions are never dropped; options that do not apply to prospective data warn."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from _hostile import digest, refused, write_ismrmrd
from fastmri_files import COLS, CROP, ENC_CENTER, ENC_MAX, ROWS, random_kspace, write_multicoil
from recon import method_checks
from recon.cli import main
from recon.io import InputError, build_header, write_fastmri_volume


def _write(path: Path, kspace: np.ndarray, enc: tuple[int, int] = (ROWS, COLS), recon: tuple[int, int] = CROP, mask: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    target = None if mask is not None else np.ones((kspace.shape[0], *CROP), np.float32)
    write_fastmri_volume(path, kspace, build_header((*enc, 1), (*recon, 1), ENC_CENTER, ENC_MAX), target=target,
                         attrs={"max": 1.0, "acquisition": "CORPD_FBK"}, mask=mask)
    return path


def _summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())


def test_all_zero_kspace_through_varnet(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path / "in" / "zero.h5", np.zeros((2, 4, ROWS, COLS), np.complex64))
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--method", "varnet", "--acceleration", "4", "--quiet"],
            [str(src), "varnet", "slice 0", "all zero"], [src.parent], absent=[out / "zero.h5"])
    assert _summary(out)["files"][0]["status"] == "failed"


def test_varnet_nan_output_is_refused_by_the_output_checks() -> None:
    """Without the input check VarNet really returns NaN on all-zero k-space; both output checks
    (the method registry's per batch, `recon.method_checks` per volume) stop it."""
    from recon.methods import ReconBatch, get_method

    k = torch.zeros(1, 4, ROWS, COLS, dtype=torch.complex64)
    mask = torch.zeros(1, 1, 1, COLS, dtype=torch.bool)
    mask[..., COLS // 2 - 2 : COLS // 2 + 2] = True
    batch = ReconBatch(k, mask, torch.tensor([[COLS // 2 - 2, COLS // 2 + 2]]), CROP)
    checked = get_method("varnet", device="cpu")
    images = checked.method(batch)
    assert not torch.isfinite(images).all()
    with pytest.raises(ValueError, match="non-finite"):
        checked(batch)
    with pytest.raises(InputError, match=r"varnet: slice 0 has non-finite pixels \(.* are NaN\); no output written"):
        method_checks.check_images("x.h5", images.numpy(), "varnet")


def test_mask_with_no_sampled_column(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mask = np.zeros(COLS, bool)
    src = _write(tmp_path / "in" / "empty_mask.h5", np.zeros((2, 4, ROWS, COLS), np.complex64), mask=mask)
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--method", "varnet", "--quiet"],
            [str(src), "samples none of the acquirable columns"], [src.parent], absent=[out / "empty_mask.h5"])


def test_acceleration_1000_samples_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in" / "a.h5"
    src.parent.mkdir()
    write_multicoil(src, seed=3)
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--acceleration", "1000", "--quiet"],
            [str(src), "zero-filled", "samples no column"], [src.parent], absent=[out / "a.h5"])


def test_nan_sample_in_ismrmrd(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_ismrmrd(tmp_path / "in" / "nan.h5", nan_line=5)
    out = tmp_path / "out"
    needles = [str(src), "acquisition 5 (slice 0, line 5) contains NaN or Inf"]
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--quiet"], needles, [src.parent], absent=[out / "nan.h5"])
    conv = tmp_path / "conv.h5"
    refused(capsys, ["convert", str(src), str(conv)], needles, [src.parent], absent=[conv])


@pytest.mark.parametrize("method", ["sense", "cs-tv"])
def test_small_noise_matrix_through_espirit_methods(method: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in" / "noise.h5"
    src.parent.mkdir()
    write_multicoil(src, seed=4)  # 64 x 37 Gaussian noise k-space, 32 x 32 crop: ESPIRiT finds no coil maps
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--method", method, "--acceleration", "4", "--iters", "3", "--quiet"],
            [str(src), method, "slice 0 is all-zero", "no coil sensitivity"], [src.parent], absent=[out / "noise.h5"])


def test_too_few_acs_columns_for_espirit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in" / "a.h5"
    src.parent.mkdir()
    write_multicoil(src, seed=5)
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--method", "sense", "--acceleration", "8", "--center-fraction", "0.03", "--quiet"],
            [str(src), "sense", "1 ACS", "needs at least 3"], [src.parent], absent=[out / "a.h5"])


def test_header_encoded_space_disagrees_with_kspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path / "in" / "enc.h5", random_kspace((2, 4, ROWS, COLS), 0), enc=(ROWS, 368))
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--quiet"],
            [str(src), f"encodedSpace {ROWS}x368 disagrees with the k-space matrix {ROWS}x{COLS}"], [src.parent], absent=[out / "enc.h5"])
    raw = write_ismrmrd(tmp_path / "in2" / "enc_raw.h5", enc=(32, 512))
    refused(capsys, ["reconstruct", str(raw), "--out", str(out), "--quiet"],
            [str(raw), "encodedSpace 32x512 disagrees with the data"], [raw.parent], absent=[out / "enc_raw.h5"])


def test_recon_space_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _write(tmp_path / "in" / "r0.h5", random_kspace((2, 4, ROWS, COLS), 0), recon=(0, 0))
    out = tmp_path / "out"
    refused(capsys, ["reconstruct", str(src), "--out", str(out), "--quiet"], [str(src), "reconSpace 0x0 is too small"], [src.parent], absent=[out / "r0.h5"])
    raw = write_ismrmrd(tmp_path / "in2" / "r0_raw.h5", recon=(0, 0))
    refused(capsys, ["convert", str(raw), str(out / "c.h5")], [str(raw), "reconSpace 0x0 is empty"], [raw.parent], absent=[out / "c.h5"])


def test_ismrmrd_repetitions_are_separate_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_ismrmrd(tmp_path / "in" / "reps.h5", repetitions=2, undersample=2)
    before = digest([src])
    out = tmp_path / "out"
    assert main(["reconstruct", str(src), "--out", str(out), "--acceleration", "4", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "warning: " in err and "--acceleration ignored: prospectively undersampled ISMRMRD data" in err
    images = {}
    for r in (0, 1):
        with h5py.File(out / f"reps_rep{r}.h5", "r") as f:
            images[r] = f["reconstruction"][()]
            assert f.attrs["mask_type"] == "acquired"
    assert not (out / "reps.h5").exists()
    np.testing.assert_allclose(images[1], 2 * images[0], rtol=1e-3, atol=1e-4 * images[1].max())  # repetition r is (1 + r) x the object
    assert _summary(out)["files"][0]["result"]["outputs"] == [str(out / "reps_rep0.h5"), str(out / "reps_rep1.h5")]
    one = tmp_path / "one"
    assert main(["reconstruct", str(src), "--out", str(one), "--repetition", "1", "--quiet"]) == 0
    assert sorted(p.name for p in one.glob("*.h5")) == ["reps_rep1.h5"]
    conv = tmp_path / "conv.h5"
    refused(capsys, ["convert", str(src), str(conv)], [str(src), "holds 2 repetition indices (0, 1)", "--repetition N"], [src], absent=[conv])
    assert main(["convert", str(src), str(conv), "--repetition", "1"]) == 0
    assert digest([src]) == before


def test_acceleration_on_a_file_with_its_own_mask_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mask = np.zeros(COLS, bool)
    mask[::4] = True  # write_multicoil states acceleration 4
    mask[COLS // 2 - 2 : COLS // 2 + 2] = True
    src = tmp_path / "in" / "challenge.h5"
    src.parent.mkdir()
    write_multicoil(src, seed=6, mask=mask)
    out = tmp_path / "out"
    assert main(["reconstruct", str(src), "--out", str(out), "--acceleration", "8", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {src}: --acceleration ignored: a file with its own mask" in err


def test_dask_worker_errors_reach_summary_and_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    write_multicoil(folder / "good.h5", seed=1)
    _write(folder / "zero.h5", np.zeros((2, 4, ROWS, COLS), np.complex64))
    runs = {}
    for name, extra in (("local", []), ("dask", ["--workers", "1"])):
        out = tmp_path / name
        rc = main(["reconstruct", str(folder), "--out", str(out), "--acceleration", "4", "--quiet", *extra])
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        runs[name] = (rc, err, [(f["file"], f["status"], f["reason"]) for f in _summary(out)["files"]])
        assert not (out / "zero.h5").exists() and (out / "good.h5").exists()
    assert runs["local"] == runs["dask"]
    rc, err, files = runs["dask"]
    assert rc == 1 and len(err) == 1 and "zero.h5" in err[0] and "all zero" in err[0]
    assert [s for _, s, _ in files] == ["ok", "failed"]


@pytest.mark.parametrize("counter, option, name", [("contrast", "--contrast", "contrast"), ("set", "--set", "set")])
def test_ismrmrd_contrasts_and_sets_are_separate_outputs(counter: str, option: str, name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = write_ismrmrd(tmp_path / "in" / "multi.h5", repetitions=2, counter=counter)
    out = tmp_path / "out"
    assert main(["reconstruct", str(src), "--out", str(out), "--quiet"]) == 0
    assert sorted(p.name for p in out.glob("*.h5")) == [f"multi_{name}0.h5", f"multi_{name}1.h5"]
    conv = tmp_path / "conv.h5"
    refused(capsys, ["convert", str(src), str(conv)], [str(src), f"holds 2 {counter} indices", f"{option} N"], [src], absent=[conv])
