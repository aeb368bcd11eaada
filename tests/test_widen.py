"""Widening a trained VarNet (recon.models.widen) keeps its output exactly and leaves the new
channels trainable."""

from __future__ import annotations

import pytest
import torch

from recon.io import InputError
from recon.models.varnet import VarNet
from recon.models.widen import widen_state_dict


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    k = torch.randn(1, 4, 48, 38, dtype=torch.complex64, generator=g)  # odd-sized after pooling: reflect padding
    mask = torch.zeros(1, 1, 1, 38, dtype=torch.bool)
    mask[..., ::3] = True
    mask[..., 16:22] = True
    return k * mask, mask


def test_widened_varnet_computes_the_same_image_and_learns() -> None:
    torch.manual_seed(1)
    narrow = VarNet(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2)
    torch.manual_seed(2)
    wide = VarNet(num_cascades=2, chans=12, pools=2, sens_chans=4, sens_pools=2)
    fresh = {k: v.clone() for k, v in wide.state_dict().items()}
    wide.load_state_dict(widen_state_dict(narrow.state_dict(), fresh))
    k, mask = _inputs()
    with torch.no_grad():
        a, b = narrow(k, mask), wide(k, mask)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6 * float(a.abs().max()))
    # the new channels are not dead: one step changes the output
    opt = torch.optim.SGD(wide.parameters(), lr=1e-2)
    wide(k, mask).mean().backward()
    grads = {n: p.grad for n, p in wide.named_parameters()}
    final = "cascades.0.model.unet.up_conv.1.1.weight"
    assert grads[final] is not None and float(grads[final][:, 4:].abs().sum()) > 0
    opt.step()
    with torch.no_grad():
        assert not torch.allclose(wide(k, mask), a)


def test_widen_refuses_other_models() -> None:
    small = VarNet(num_cascades=1, chans=4, pools=2, sens_chans=2, sens_pools=2).state_dict()
    with pytest.raises(ValueError, match="different models"):
        widen_state_dict(small, VarNet(num_cascades=2, chans=8, pools=2, sens_chans=2, sens_pools=2).state_dict())
    with pytest.raises(ValueError, match="cannot widen"):
        widen_state_dict(VarNet(num_cascades=1, chans=8, pools=2, sens_chans=2, sens_pools=2).state_dict(), small)


def test_recon_train_widens_narrower_init_weights(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """`recon train --init-weights` with a narrower VarNet of the same depth starts from it, widened."""
    from recon.models.checkpoint import save_model
    from recon.train import TrainConfig, build_model

    torch.manual_seed(3)
    narrow = VarNet(num_cascades=2, chans=4, pools=2, sens_chans=2, sens_pools=2)
    path = save_model(narrow, tmp_path / "narrow.safetensors")
    config = TrainConfig(data=tmp_path, out=tmp_path / "run", num_cascades=2, chans=8, pools=2, sens_chans=4, sens_pools=2,
                         init_weights=path)
    wide = build_model(config)
    assert "widened" in capsys.readouterr().err
    k, mask = _inputs()
    with torch.no_grad():
        torch.testing.assert_close(wide(k, mask), narrow(k, mask), rtol=1e-5, atol=1e-6)
    deeper = TrainConfig(data=tmp_path, out=tmp_path / "run", num_cascades=3, chans=8, pools=2, sens_chans=4, sens_pools=2,
                         init_weights=path)
    with pytest.raises(InputError, match="does not fit the configured VarNet"):
        build_model(deeper)
