"""E2E-VarNet: fastMRI state-dict compatibility and equal outputs, ACS handling, options."""

from __future__ import annotations

import fastmri.models
import pytest
import torch

from recon.models import VarNet, detect_num_low_frequencies

SMALL = dict(num_cascades=2, sens_chans=4, sens_pools=2, chans=4, pools=2)


def _pair(seed: int = 0) -> tuple[VarNet, fastmri.models.VarNet]:
    torch.manual_seed(seed)
    ref = fastmri.models.VarNet(**SMALL).eval()
    with torch.no_grad():
        for i, cascade in enumerate(ref.cascades):
            cascade.dc_weight.fill_(0.5 + 0.3 * i)
    ours = VarNet(**SMALL).eval()
    ours.load_state_dict(ref.state_dict())
    return ours, ref


def _sample(batch: int = 1, coils: int = 4, h: int = 32, w: int = 24, acs: int = 6, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    k = torch.randn(batch, coils, h, w, generator=g, dtype=torch.complex64)
    mask = torch.rand(batch, 1, 1, w, generator=g) < 0.3
    start = (w - acs + 1) // 2
    mask[..., start : start + acs] = True
    zero = torch.zeros((), dtype=k.dtype)
    return torch.where(mask, k, zero), mask


def _relerr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_state_dict_keys_and_shapes_match_fastmri_defaults() -> None:
    ours = VarNet().state_dict()
    ref = fastmri.models.VarNet().state_dict()
    assert list(ours) == list(ref)
    assert all(ours[k].shape == ref[k].shape for k in ref)
    assert sum(v.numel() for v in ours.values()) == 29_936_966


@pytest.mark.parametrize("acs", [6, None, 0])
def test_output_equals_fastmri(acs: int | None) -> None:
    ours, ref = _pair()
    k, mask = _sample(acs=6)
    with torch.no_grad():
        got = ours(k, mask, acs)
        want = ref(torch.view_as_real(k), mask.unsqueeze(-1), acs)
    assert got.shape == (1, 32, 24) and got.dtype == torch.float32
    assert _relerr(got, want) < 1e-4


def test_batch_with_per_sample_acs_equals_fastmri_per_sample() -> None:
    ours, ref = _pair(seed=3)
    k, mask = _sample(batch=2, acs=4, seed=5)
    acs = torch.tensor([4, 0])
    with torch.no_grad():
        got = ours(k, mask, acs)
        for i, n in enumerate([4, None]):
            want = ref(torch.view_as_real(k[i : i + 1]), mask[i : i + 1].unsqueeze(-1), n)
            assert _relerr(got[i : i + 1], want) < 1e-4


def test_odd_sizes_and_shared_mask_shapes() -> None:
    ours, ref = _pair(seed=7)
    k, mask = _sample(batch=2, h=30, w=21, acs=5, seed=9)
    shared = mask[:1]
    k = torch.where(shared, k, torch.zeros((), dtype=k.dtype))
    with torch.no_grad():
        want = torch.cat([ref(torch.view_as_real(k[i : i + 1]), shared.unsqueeze(-1), 5) for i in range(2)])
        for m in (shared, shared[0, 0], shared[0, 0, 0]):
            assert _relerr(ours(k, m, 5), want) < 1e-4


def test_detect_num_low_frequencies() -> None:
    w = 24
    mask = torch.zeros(3, 1, 1, w, dtype=torch.bool)
    mask[0, ..., 9:15] = True  # symmetric 6 around 12
    mask[1, ..., 10:16] = True  # 2 left of 12, 4 right -> 4
    mask[2, ..., 3] = True  # center not sampled -> 1
    assert detect_num_low_frequencies(mask).tolist() == [6, 4, 1]


def test_gradients_flow_and_options_keep_values() -> None:
    ours, _ = _pair()
    k, mask = _sample()
    base = ours(k, mask, 6)
    ours.set_activation_checkpointing(True)
    out = ours(k, mask, 6)
    out.sum().backward()
    assert torch.equal(out.detach(), base.detach())
    grads = [p.grad for p in ours.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    ours.set_activation_checkpointing(False)
    ours.set_mixed_precision(torch.bfloat16)
    with torch.no_grad():
        bf = ours(k, mask, 6)
    assert bf.dtype == torch.float32
    assert 0 < _relerr(bf, base.detach()) < 0.1


def test_safetensors_roundtrip_and_fastmri_pt_weights(tmp_path) -> None:
    from recon.models.checkpoint import load_model, save_model

    ours, ref = _pair(seed=11)
    k, mask = _sample()
    with torch.no_grad():
        want = ours(k, mask, 6)
    path = save_model(ours, tmp_path / "m.safetensors", extra={"note": "test"})
    assert (tmp_path / "m.json").is_file()
    with torch.no_grad():
        assert torch.equal(load_model(path)(k, mask, 6), want)
    torch.save(ref.state_dict(), tmp_path / "fastmri.pt")
    with torch.no_grad():
        assert _relerr(load_model(tmp_path / "fastmri.pt")(k, mask, 6), want) < 1e-6


def test_bad_checkpoint_is_an_input_error(tmp_path) -> None:
    from recon.io.errors import InputError
    from recon.models.checkpoint import load_model

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(InputError, match="bad.safetensors"):
        load_model(bad)
    with pytest.raises(InputError, match="not found"):
        load_model(tmp_path / "missing.pt")


def test_registered_varnet_method_crops_and_matches_model(tmp_path) -> None:
    from recon.core import center_crop
    from recon.methods import ReconBatch, get_method
    from recon.models.checkpoint import save_model

    ours, _ = _pair(seed=13)
    save_model(ours, tmp_path / "m.safetensors")
    k, mask = _sample(batch=3, acs=6, seed=2)
    batch = ReconBatch(k, mask, torch.tensor([[9, 15]] * 3), (20, 16))
    method = get_method("varnet", checkpoint=tmp_path / "m.safetensors", device="cpu", batch_size=2)
    out = method(batch)
    assert out.shape == (3, 20, 16) and out.dtype == torch.float32
    with torch.no_grad():
        want = center_crop(ours(k, mask, torch.tensor([6, 6, 6])), (20, 16))
    assert _relerr(out, want) < 1e-5
