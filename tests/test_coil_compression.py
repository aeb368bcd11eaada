"""Coil compression (`recon.calib.compression`, `--virtual-coils`, `--coil-compression`): BART `cc -S`'s
and `cc -G`'s subspaces, the no-op and refusals, and image quality kept from 15 to 8 virtual coils."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from _baseline_data import column_mask, phantom_kspace
from recon.calib.compression import compress, compress_geometric, compression_matrix, geometric_matrices, singular_values
from recon.cli import main
from recon.core import center_crop, ifft2c, ifftc, rss
from recon.methods import get_method
from recon.methods.batch import ReconBatch
from recon.methods.virtual_coils import check_virtual_coils, compress_batch

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))


@pytest.mark.skipif(shutil.which("bart") is None, reason="BART (`bart`) is not installed; scripts/_setup.sh installs it")
@pytest.mark.parametrize("virtual", [4, 8])
def test_matches_bart_cc_svd(tmp_path: Path, virtual: int) -> None:
    """Compressed k-space spans BART's (`cc -A -S -p N`: all data, SVD) up to a unitary mixing."""
    from bart_cfl import kspace_to_bart, read_cfl, write_cfl

    full, _, _ = phantom_kspace(12, 64, 48, seed=2, noise=1e-3)
    kspace = full * column_mask(48, 3, 10)
    write_cfl(tmp_path / "k", kspace_to_bart(kspace))
    subprocess.run(["bart", "cc", "-A", "-S", "-p", str(virtual), str(tmp_path / "k"), str(tmp_path / "c")], check=True, capture_output=True)
    theirs = np.transpose(read_cfl(tmp_path / "c").reshape(64, 48, -1), (2, 0, 1))[:virtual].reshape(virtual, -1).T
    data = torch.from_numpy(kspace)[None]
    ours = compress(data, compression_matrix(data, (0, 48), virtual))[0].numpy().reshape(virtual, -1).T
    mixing, *_ = np.linalg.lstsq(ours, theirs, rcond=None)
    assert np.linalg.norm(ours @ mixing - theirs) <= 1e-4 * np.linalg.norm(theirs)
    assert np.allclose(mixing.conj().T @ mixing, np.eye(virtual), atol=1e-3)  # a unitary mixing (float32 SVDs)
    assert np.isclose(np.linalg.norm(ours), np.linalg.norm(theirs), rtol=1e-5)


@pytest.mark.skipif(shutil.which("bart") is None, reason="BART (`bart`) is not installed; scripts/_setup.sh installs it")
@pytest.mark.parametrize("virtual", [4, 8])
def test_geometric_matches_bart_cc_gcc(tmp_path: Path, virtual: int) -> None:
    """At every readout position the virtual coils span BART's (`cc -A -G -p N`); the mixing
    between positions (the alignment) is each tool's own."""
    from bart_cfl import kspace_to_bart, read_cfl, write_cfl

    full, _, _ = phantom_kspace(12, 64, 48, seed=2, noise=1e-3)
    kspace = full * column_mask(48, 3, 10)
    write_cfl(tmp_path / "k", kspace_to_bart(kspace))
    subprocess.run(["bart", "cc", "-A", "-G", "-p", str(virtual), str(tmp_path / "k"), str(tmp_path / "c")], check=True, capture_output=True)
    theirs = ifftc(torch.from_numpy(np.transpose(read_cfl(tmp_path / "c").reshape(64, 48, -1), (2, 0, 1))[:virtual]), (-2,)).numpy()
    data = torch.from_numpy(kspace)[None]
    ours = ifftc(compress_geometric(data, geometric_matrices(data, (0, 48), virtual))[0], (-2,)).numpy()
    for row in range(64):
        a, b = ours[:, row].T, theirs[:, row].T
        mixing, *_ = np.linalg.lstsq(a, b, rcond=None)
        assert np.linalg.norm(a @ mixing - b) <= 1e-3 * np.linalg.norm(b), row
    # aligned along the readout (orthogonal Procrustes): each position's basis is turned so that
    # its overlap with the previous one, V_x^H V_{x-1}, is Hermitian positive semidefinite
    rows = geometric_matrices(data, (0, 48), virtual)[0].to(torch.complex128)
    overlap = rows[1:].mH @ rows[:-1]
    assert torch.allclose(overlap, overlap.mH, atol=1e-4)
    assert float(torch.linalg.eigvalsh(overlap).min()) > -1e-4


def test_matrix_is_orthonormal_and_ordered() -> None:
    full, _, _ = phantom_kspace(8, 32, 32, seed=1)
    data = torch.from_numpy(full)[None]
    matrix = compression_matrix(data, (10, 22), 5)[0]
    assert torch.allclose(matrix.mH @ matrix, torch.eye(5, dtype=matrix.dtype), atol=1e-5)
    energy = compress(data, matrix[None])[0, :, :, 10:22].abs().square().sum((-2, -1))
    values = singular_values(data, (10, 22))[0]
    assert torch.all(energy[:-1] >= energy[1:])
    assert torch.allclose(energy.double(), values[:5] ** 2, rtol=1e-4)


def _batch(kspace: np.ndarray, mask: np.ndarray, region: tuple[int, int], maps: np.ndarray | None = None) -> ReconBatch:
    return ReconBatch(
        masked_kspace=torch.from_numpy(kspace[None]),
        mask=torch.from_numpy(mask.reshape(1, 1, 1, -1).copy()),
        calib=torch.tensor([region]),
        crop_size=(kspace.shape[-2] // 2, kspace.shape[-1] // 2),
        maps=None if maps is None else torch.from_numpy(maps[None]),
    )


def test_as_many_coils_is_a_no_op_and_bad_counts_are_refused() -> None:
    full, maps, _ = phantom_kspace(4, 16, 16)
    batch = _batch(full, np.ones(16, bool), (4, 12), maps)
    assert compress_batch(batch, 4) is batch and compress_batch(batch, 9) is batch and compress_batch(batch, None) is batch
    for kind in ("svd", "gcc"):
        small = compress_batch(batch, 2, kind)
        assert small.masked_kspace.shape[1] == 2 and small.maps.shape[1] == 2
    with pytest.raises(ValueError, match="coil compression must be one of"):
        check_virtual_coils(2, "pca")
    echo = batch._replace(mask=torch.ones(1, 1, 16, 16, dtype=torch.bool))
    with pytest.raises(ValueError, match="fully sampled readout"):
        compress_batch(echo, 2, "gcc")
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="virtual coils"):
            check_virtual_coils(bad)
    with pytest.raises(ValueError, match="virtual coils"):
        compression_matrix(batch.masked_kspace, (4, 12), 5)


@pytest.mark.parametrize(("method", "kind"), [("sense", "svd"), ("grappa", "svd"), ("spirit", "svd"), ("cs", "svd"), ("sense", "gcc"), ("grappa", "gcc")])
def test_quality_kept_from_15_to_8_coils(method: str, kind: str) -> None:
    """15-coil phantom slice, every 3rd column + 16 ACS columns: 8 SVD virtual coils change the
    error against the fully sampled RSS image by less than 10% of itself."""
    full, _, _ = phantom_kspace(15, 96, 72, seed=4, noise=2e-3)
    mask = column_mask(72, 3, 16)
    start = (72 - 16 + 1) // 2
    batch = _batch(full * mask, mask, (start, start + 16))
    truth = torch.from_numpy(center_crop(rss(ifft2c(full), 0), batch.crop_size))
    errors = {}
    for coils in (None, 8):
        image = get_method(method, virtual_coils=coils, compression=kind)(batch)[0]
        errors[coils] = float(torch.linalg.norm(image - truth) / torch.linalg.norm(truth))
    assert errors[8] < 1.1 * errors[None] + 0.005, errors
    assert errors[8] < 0.2, errors


def test_cli_refuses_virtual_coils_where_they_do_not_apply(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reconstruct", str(tmp_path), "--out", str(tmp_path / "o"), "--method", "zero-filled", "--virtual-coils", "4"]) == 2
    assert "--virtual-coils" in capsys.readouterr().err
    assert main(["reconstruct", str(tmp_path), "--out", str(tmp_path / "o"), "--method", "sense", "--virtual-coils", "0"]) == 2
    assert "--virtual-coils" in capsys.readouterr().err
