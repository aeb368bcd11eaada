"""recon.metrics against fastmri.evaluate / fastmri.losses and skimage."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastmri import evaluate as fm_evaluate
from fastmri.data import transforms as fm_transforms
from fastmri.losses import SSIMLoss as FastMRISSIMLoss
from skimage.metrics import structural_similarity

from recon import metrics


def _volume_pair(seed: int, shape: tuple[int, int, int], dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """A smooth positive 'anatomy' volume and a noisy prediction of it."""
    rng = np.random.default_rng(seed)
    s, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2))
    gt = blob[None] * (1.0 + 0.2 * rng.random((s, h, w))) * 1e-4
    pred = gt + 1e-5 * rng.standard_normal((s, h, w))
    return gt.astype(dtype), pred.astype(dtype)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_volume_metrics_equal_fastmri_evaluate(seed: int, dtype: type) -> None:
    gt, pred = _volume_pair(seed, (3, 40, 36), dtype)
    assert metrics.nmse(gt, pred) == pytest.approx(float(fm_evaluate.nmse(gt, pred)), rel=1e-6, abs=1e-6)
    assert metrics.psnr(gt, pred) == pytest.approx(float(fm_evaluate.psnr(gt, pred)), rel=1e-6, abs=1e-6)
    assert metrics.ssim(gt, pred) == pytest.approx(float(fm_evaluate.ssim(gt, pred)[0]), rel=1e-6, abs=1e-6)
    maxval = float(gt.max()) * 2
    assert metrics.psnr(gt, pred, maxval) == pytest.approx(float(fm_evaluate.psnr(gt, pred, maxval)), rel=1e-6)
    assert metrics.ssim(gt, pred, maxval) == pytest.approx(float(fm_evaluate.ssim(gt, pred, maxval)[0]), rel=1e-6)


def test_metrics_distinguish_better_from_worse() -> None:
    gt, pred = _volume_pair(0, (2, 32, 32))
    worse = gt + 5 * (pred - gt)
    assert metrics.nmse(gt, pred) < metrics.nmse(gt, worse)
    assert metrics.psnr(gt, pred) > metrics.psnr(gt, worse)
    assert metrics.ssim(gt, pred) > metrics.ssim(gt, worse)
    assert metrics.ssim(gt, gt) == pytest.approx(1.0)
    assert metrics.nmse(gt, gt) == 0.0


def test_volume_metrics_crops_like_fastmri_evaluate() -> None:
    """A prediction larger than the target is center-cropped to the target's width, as evaluate.py does."""
    rng = np.random.default_rng(5)
    gt = (rng.random((2, 30, 30)) + 0.5).astype(np.float32)
    big = (rng.random((2, 41, 37)) + 0.5).astype(np.float32)
    scores = metrics.volume_metrics(gt, big)
    assert set(scores) == {"ssim", "psnr", "nmse"}
    size = (gt.shape[-1], gt.shape[-1])
    t = fm_transforms.center_crop(gt, size)
    p = fm_transforms.center_crop(big, size)
    assert scores["nmse"] == pytest.approx(float(fm_evaluate.nmse(t, p)), rel=1e-6)
    assert scores["psnr"] == pytest.approx(float(fm_evaluate.psnr(t, p)), rel=1e-6)
    assert scores["ssim"] == pytest.approx(float(fm_evaluate.ssim(t, p)[0]), rel=1e-6)
    assert all(isinstance(v, float) for v in scores.values())


def test_volume_metrics_accepts_tensors_and_rejects_bad_shapes() -> None:
    gt, pred = _volume_pair(1, (2, 24, 24))
    from_np = metrics.volume_metrics(gt, pred)
    from_torch = metrics.volume_metrics(torch.from_numpy(gt), torch.from_numpy(pred))
    assert from_np == from_torch
    with pytest.raises(ValueError):
        metrics.volume_metrics(gt, pred[:, :10, :10])
    with pytest.raises(ValueError):
        metrics.ssim(gt[0], pred[0])


@pytest.mark.parametrize("shape", [(2, 1, 32, 40), (3, 29, 33)])
def test_ssim_torch_equals_skimage(shape: tuple[int, ...]) -> None:
    """Per image, ssim_torch == skimage structural_similarity (same window/constants) to float32 error."""
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(shape, generator=gen) + 0.2
    pred = target + 0.1 * torch.randn(shape, generator=gen)
    data_range = torch.tensor([float(t.max()) for t in target]) * 1.1
    for b in range(shape[0]):
        ours = float(metrics.ssim_torch(pred[b : b + 1], target[b : b + 1], data_range[b : b + 1]))
        ref = structural_similarity(
            target[b].squeeze().double().numpy(),
            pred[b].squeeze().double().numpy(),
            data_range=float(data_range[b]),
        )
        assert ours == pytest.approx(ref, abs=2e-6)
    per_image = [float(metrics.ssim_torch(pred[b : b + 1], target[b : b + 1], data_range[b])) for b in range(shape[0])]
    assert float(metrics.ssim_torch(pred, target, data_range)) == pytest.approx(np.mean(per_image), abs=1e-6)


def test_ssim_loss_equals_fastmri_loss() -> None:
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(4, 1, 48, 40, generator=gen)
    pred = target + 0.05 * torch.randn(4, 1, 48, 40, generator=gen)
    data_range = target.amax(dim=(1, 2, 3))
    ours = metrics.SSIMLoss()(pred, target, data_range)
    theirs = FastMRISSIMLoss()(pred, target, data_range)
    assert ours.ndim == 0
    assert abs(float(ours) - float(theirs)) < 1e-6
    ours_3d = metrics.SSIMLoss()(pred[:, 0], target[:, 0], data_range)
    assert float(ours_3d) == pytest.approx(float(ours), abs=1e-7)


def test_ssim_loss_gradient_flows_and_descends() -> None:
    gen = torch.Generator().manual_seed(2)
    target = torch.rand(2, 1, 24, 24, generator=gen)
    pred = (target + 0.2 * torch.randn(2, 1, 24, 24, generator=gen)).requires_grad_(True)
    loss_fn = metrics.SSIMLoss()
    loss = loss_fn(pred, target, torch.ones(2))
    loss.backward()
    assert pred.grad is not None and torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0
    with torch.no_grad():
        stepped = pred - 0.5 * pred.grad / pred.grad.abs().max()
    assert float(loss_fn(stepped, target, torch.ones(2))) < float(loss.detach())
    assert float(loss_fn(target, target, torch.ones(2))) == pytest.approx(0.0, abs=1e-6)


def test_aggregation_spread_equals_fastmri_runstats() -> None:
    """mean ± 2·std across volumes uses the sample std (ddof = 1), as fastMRI's Metrics/runstats."""
    from recon.evaluation import VolumeScore, aggregate, format_table

    rng = np.random.default_rng(3)
    ref = fm_evaluate.Metrics(fm_evaluate.METRIC_FUNCS)
    scores = []
    for v in range(3):
        gt = rng.random((2, 32, 32)).astype(np.float32)
        pred = (gt + 0.05 * (v + 1) * rng.standard_normal(gt.shape)).astype(np.float32)
        ref.push(gt, pred)
        got = metrics.volume_metrics(gt, pred)
        scores.append(VolumeScore(f"v{v}.h5", 4.0, "CORPD_FBK", got["ssim"], got["psnr"], got["nmse"]))
    row = aggregate(scores)[0]
    for name, key in (("SSIM", "ssim"), ("PSNR", "psnr"), ("NMSE", "nmse")):
        assert row[key] == pytest.approx(ref.means()[name], rel=1e-6)
        assert row[f"{key}_std"] == pytest.approx(ref.stddevs()[name], rel=1e-6)
    assert row["ssim_std"] != pytest.approx(float(np.std([s.ssim for s in scores])), rel=1e-3)  # not ddof = 0
    one = aggregate(scores[:1])[0]
    assert one["ssim_std"] is None and "±" not in format_table([one]).splitlines()[1]
