"""fastMRI's U-Net baseline: transform, network, loss and checkpoints against the `fastmri` package."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from recon.models import Unet
from recon.models.checkpoint import load_unet, save_model
from recon.models.image_unet import denormalize, unet_forward, unet_input, unet_loss, unet_reconstruct

T = pytest.importorskip("fastmri.data.transforms")
fm_models = pytest.importorskip("fastmri.models")


def _slice(rng: np.random.Generator, coils: int = 4, h: int = 48, w: int = 40) -> np.ndarray:
    k = (rng.standard_normal((coils, h, w)) + 1j * rng.standard_normal((coils, h, w))).astype(np.complex64)
    k[..., ::3] = 0  # undersampled columns
    return k


@pytest.mark.parametrize("target_shape", [(32, 32), (44, 44)])
def test_transform_matches_fastmri(target_shape: tuple[int, int]) -> None:
    """Crop, RSS, instance norm, clamp; (44, 44) is wider than the k-space (40 columns): fastMRI's square crop."""
    rng = np.random.default_rng(0)
    from recon.core import fft2c, ifft2c

    image = ifft2c(torch.from_numpy(_slice(rng)))
    image[:, 24, 20] = 300.0  # a bright pixel, so that the clamp at ±6 is exercised
    kspace = fft2c(image).numpy()
    target = np.abs(rng.standard_normal(target_shape)).astype(np.float32)
    ref = T.UnetDataTransform("multicoil")(kspace, None, target, {"max": float(target.max())}, "f.h5", 0)
    inp = unet_input(torch.from_numpy(kspace)[None], target_shape)
    assert inp.image.shape[1:] == ref.image.shape
    assert float(ref.image.abs().max()) == 6.0
    torch.testing.assert_close(inp.image[0], ref.image, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(inp.mean[0], ref.mean, rtol=1e-6, atol=0)
    torch.testing.assert_close(inp.std[0], ref.std, rtol=1e-6, atol=0)
    from recon.models.image_unet import normalize_target

    torch.testing.assert_close(normalize_target(torch.from_numpy(target)[None], inp)[0], ref.target, rtol=1e-5, atol=1e-5)


def test_network_loss_and_output_match_fastmri_with_random_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    theirs = fm_models.Unet(in_chans=1, out_chans=1, chans=8, num_pool_layers=3, drop_prob=0.0).eval()
    state_file = tmp_path / "fastmri_unet_state_dict.pt"
    torch.save(theirs.state_dict(), state_file)
    ours = load_unet(state_file).eval()  # configless fastMRI state dict, as the published weights
    assert isinstance(ours, Unet) and ours.down_sample_layers[0].layers[0].out_channels == 8

    rng = np.random.default_rng(1)
    kspace = np.stack([_slice(rng) for _ in range(2)])
    target = np.abs(rng.standard_normal((2, 32, 32))).astype(np.float32)
    refs = [T.UnetDataTransform("multicoil")(kspace[i], None, target[i], {}, "f.h5", i) for i in range(2)]
    with torch.no_grad():
        ref_out = torch.stack([theirs(r.image[None, None])[0, 0] * r.std + r.mean for r in refs])
        ref_loss = F.l1_loss(torch.stack([theirs(r.image[None, None])[0, 0] for r in refs]), torch.stack([r.target for r in refs]))
        k = torch.from_numpy(kspace)
        out = unet_reconstruct(ours, k, (32, 32))
        loss = unet_loss(ours, k, torch.from_numpy(target))
    torch.testing.assert_close(out, ref_out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)

    saved = save_model(ours, tmp_path / "unet.safetensors", {"note": "test"})
    again = load_unet(saved).eval()
    with torch.no_grad():
        inp = unet_input(k, (32, 32))
        torch.testing.assert_close(denormalize(unet_forward(again, inp.image), inp), out)


def test_unet_method_without_weights_says_how_to_get_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recon.methods import get_method
    from recon.methods import unet as image_unet

    monkeypatch.setattr(image_unet, "DEFAULT_UNET_CHECKPOINT", tmp_path / "absent.safetensors")
    with pytest.raises(ValueError, match="recon train --model unet"):
        get_method("unet")


def test_load_unet_rejects_varnet_weights(tmp_path: Path) -> None:
    from recon.io import InputError
    from recon.models import VarNet

    path = save_model(VarNet(num_cascades=1, sens_chans=2, sens_pools=1, chans=2, pools=1), tmp_path / "v.safetensors")
    with pytest.raises(InputError, match="not U-Net weights"):
        load_unet(path)


def test_train_unet_through_the_loop_then_rerun_says_finished(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from recon.cli import main
    from recon.simulate import SimConfig, simulate_dataset

    tiny = SimConfig(rows=64, widths=(40, 44), coils=4, slices=2)
    simulate_dataset(tmp_path / "data" / "train", 2, 2, 4, 1000, config=tiny)
    simulate_dataset(tmp_path / "data" / "val", 1, 2, 4, 2000, config=tiny)
    args = ["train", "--model", "unet", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run"), "--unet-chans", "4",
            "--unet-pools", "2", "--epochs", "1", "--tensorboard", "false", "--quiet", "--device", "cpu"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "training finished: 4 optimizer steps" in printed and "best validation SSIM: 0." in printed
    best = tmp_path / "run" / "checkpoints" / "best.safetensors"
    assert f"best weights: {best}" in printed
    model = load_unet(best)
    assert model.down_sample_layers[0].layers[0].out_channels == 4
    config = __import__("json").loads((tmp_path / "run" / "config.json").read_text())
    assert config["model"] == "unet" and config["lr"] == 1e-3
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "already finished" in again and "nothing to do" in again


def test_benchmark_runs_unet_or_skips_it_with_a_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from recon.cli import main
    from recon.methods import unet as image_unet
    from recon.pipeline import _cached_method

    assert main(["simulate", str(tmp_path / "data"), "--volumes", "1", "--slices", "1", "--coils", "4", "--seed", "3100"]) == 0
    torch.manual_seed(0)
    weights = save_model(Unet(1, 1, chans=4, num_pool_layers=2), tmp_path / "unet.safetensors")
    base = ["benchmark", "--data", str(tmp_path / "data"), "--accelerations", "4", "--quiet"]
    assert main([*base, "--methods", "zero-filled,unet", "--unet-checkpoint", str(weights), "--out", str(tmp_path / "b")]) == 0
    rows = json.loads((tmp_path / "b" / "results.json").read_text())["rows"]
    assert [r["method"] for r in rows] == ["zero-filled", "unet"] and np.isfinite(rows[1]["ssim"])
    # without weights (none given, none shipped) the benchmark leaves unet out and says why
    monkeypatch.setattr(image_unet, "DEFAULT_UNET_CHECKPOINT", tmp_path / "absent.safetensors")
    _cached_method.cache_clear()
    capsys.readouterr()
    assert main([*base, "--methods", "zero-filled,unet", "--out", str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert "skipping unet" in err and "recon train --model unet" in err
    doc = json.loads((tmp_path / "c" / "results.json").read_text())
    assert {r["method"] for r in doc["rows"]} == {"zero-filled"} and "unet" in doc["settings"]["skipped_methods"]
