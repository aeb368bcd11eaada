"""Challenge metrics (NMSE, PSNR, SSIM) exactly as fastMRI 0.3.0 computes them, and an SSIM loss.

Volume metrics take whole volumes ``(slices, h, w)`` of real magnitude images (NumPy, any float
dtype) and compute one number per volume, as ``fastmri.evaluate`` does:

- NMSE = ||gt - pred||^2 / ||gt||^2 over the whole volume;
- PSNR = skimage ``peak_signal_noise_ratio`` with ``data_range = gt.max()``;
- SSIM = mean over slices of skimage ``structural_similarity`` (7x7 uniform window, K1 0.01,
  K2 0.03, sample covariance) with ``data_range = gt.max()`` of the whole volume.

``SSIMLoss`` / ``ssim_torch`` are the differentiable torch version used for training: the SSIM
map over the valid 7x7 windows (which is exactly the region skimage keeps after cropping its
borders), averaged over all pixels and batch items.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import nn

from recon.core import center_crop

ArrayLike = np.ndarray | torch.Tensor


def _as_numpy(x: ArrayLike) -> np.ndarray:
    """NumPy view of an array or (detached, CPU) tensor."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _check_volumes(gt: np.ndarray, pred: np.ndarray) -> None:
    """Both must be 3-D (slices, h, w) of the same shape."""
    if gt.ndim != 3:
        raise ValueError(f"expected a volume (slices, h, w), got target shape {gt.shape}")
    if gt.shape != pred.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match target shape {gt.shape}")


def nmse(gt: ArrayLike, pred: ArrayLike) -> float:
    """Normalized mean squared error ||gt - pred||^2 / ||gt||^2 of a volume (fastMRI).

    An all-zero `gt` gives NaN or Inf without a NumPy warning; callers refuse such targets."""
    gt, pred = _as_numpy(gt), _as_numpy(pred)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.linalg.norm(gt - pred) ** 2 / np.linalg.norm(gt) ** 2)


def psnr(gt: ArrayLike, pred: ArrayLike, maxval: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB of a volume, data range ``gt.max()`` unless ``maxval``.

    A prediction equal to ``gt`` gives +inf (no error to measure) without skimage's divide-by-zero
    warning; callers that write results check for it (`recon.evaluation.check_scores`)."""
    gt, pred = _as_numpy(gt), _as_numpy(pred)
    maxval = gt.max() if maxval is None else maxval
    with np.errstate(divide="ignore"):
        return float(peak_signal_noise_ratio(gt, pred, data_range=maxval))


def ssim(gt: ArrayLike, pred: ArrayLike, maxval: float | None = None) -> float:
    """Mean over slices of skimage SSIM (7x7 uniform window), data range ``gt.max()`` of the volume."""
    gt, pred = _as_numpy(gt), _as_numpy(pred)
    _check_volumes(gt, pred)
    maxval = gt.max() if maxval is None else maxval
    total = np.array([0])
    for s in range(gt.shape[0]):
        total = total + structural_similarity(gt[s], pred[s], data_range=maxval)
    return float((total / gt.shape[0])[0])


def spread(values: Sequence[float]) -> float | None:
    """Sample standard deviation across volumes (ddof = 1, as fastMRI's runstats), None below 2."""
    vals = np.asarray(values, dtype=np.float64)
    return float(vals.std(ddof=1)) if vals.size >= 2 else None


def volume_metrics(gt: ArrayLike, pred: ArrayLike) -> dict[str, float]:
    """{"ssim", "psnr", "nmse"} of a volume after fastMRI evaluate's crop.

    Both volumes (slices, h, w) are center-cropped to (w_t, w_t), w_t the target's width (for
    fastMRI targets, 320x320), so a larger prediction is cropped to the target's region.
    """
    gt, pred = _as_numpy(gt), _as_numpy(pred)
    if gt.ndim != 3 or pred.ndim != 3:
        raise ValueError(f"expected volumes (slices, h, w), got {gt.shape} and {pred.shape}")
    size = gt.shape[-1]
    gt, pred = center_crop(gt, (size, size)), center_crop(pred, (size, size))
    _check_volumes(gt, pred)
    return {"ssim": ssim(gt, pred), "psnr": psnr(gt, pred), "nmse": nmse(gt, pred)}


def _as_batch(x: torch.Tensor) -> torch.Tensor:
    """(B, H, W) or (B, 1, H, W) -> (B, 1, H, W)."""
    if x.ndim == 3:
        return x.unsqueeze(1)
    if x.ndim == 4 and x.shape[1] == 1:
        return x
    raise ValueError(f"expected (B, H, W) or (B, 1, H, W), got {tuple(x.shape)}")


def ssim_map(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: torch.Tensor | float,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """SSIM map (B, 1, H - win + 1, W - win + 1) over valid uniform windows, differentiable.

    Args:
        pred, target: real images (B, H, W) or (B, 1, H, W).
        data_range: per-image dynamic range (B,) (fastMRI uses the volume's attrs ``max``) or a scalar.
        win_size, k1, k2: window side and stabilizing constants (skimage / fastMRI defaults).
    """
    x, y = _as_batch(pred), _as_batch(target)
    if x.shape != y.shape:
        raise ValueError(f"pred shape {tuple(x.shape)} does not match target shape {tuple(y.shape)}")
    dr = torch.as_tensor(data_range, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
    c1, c2 = (k1 * dr) ** 2, (k2 * dr) ** 2
    moments = F.avg_pool2d(torch.cat([x, y, x * x, y * y, x * y], dim=1), win_size, stride=1)
    mx, my, mxx, myy, mxy = moments.unbind(dim=1)
    n = win_size * win_size
    cov_norm = n / (n - 1)
    vx = cov_norm * (mxx - mx * mx)
    vy = cov_norm * (myy - my * my)
    vxy = cov_norm * (mxy - mx * my)
    num = (2 * mx * my + c1[:, 0]) * (2 * vxy + c2[:, 0])
    den = (mx * mx + my * my + c1[:, 0]) * (vx + vy + c2[:, 0])
    return (num / den).unsqueeze(1)


def ssim_torch(
    pred: torch.Tensor,
    target: torch.Tensor,
    data_range: torch.Tensor | float,
    win_size: int = 7,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean SSIM (0-d tensor) over the valid-window map of all images; equals skimage per image."""
    return ssim_map(pred, target, data_range, win_size, k1, k2).mean()


class SSIMLoss(nn.Module):
    """Differentiable 1 - mean SSIM (7x7 uniform window, K1 0.01, K2 0.03), as fastMRI's SSIMLoss."""

    def __init__(self, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> None:
        super().__init__()
        self.win_size, self.k1, self.k2 = win_size, k1, k2

    def forward(self, pred: torch.Tensor, target: torch.Tensor, data_range: torch.Tensor | float) -> torch.Tensor:
        """pred, target (B, 1, H, W) or (B, H, W); data_range (B,) -> scalar loss."""
        return 1 - ssim_torch(pred, target, data_range, self.win_size, self.k1, self.k2)
