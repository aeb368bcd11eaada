"""2-D Daubechies wavelet transform of complex images in torch (CPU/GPU), SigPy-compatible.

Matches SigPy's `sp.wavelet.fwt/iwt` (pywt `wavedecn` with `mode="zero"`): odd sizes are first
padded by one sample at the front (SigPy's centered resize), the level defaults to pywt's
maximum level for the padded size and the filter length, and the synthesis (`waverec`) is
the exact adjoint of the analysis with zero extension. Real and imaginary parts are
transformed separately (the filters are real); coefficients come back complex.
"""

from __future__ import annotations

from typing import Callable

import ptwt
import pywt
import torch

Coeffs = list[torch.Tensor | tuple[torch.Tensor, ...]]


class Wavelet2D:
    """db-N (default db4) transform over the last two axes of `(B, H, W)` complex images."""

    def __init__(self, shape: tuple[int, int], wave_name: str = "db4", level: int | None = None) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self.padded = tuple(((n + 1) // 2) * 2 for n in self.shape)
        self.wavelet = pywt.Wavelet(wave_name)
        if level is None:
            level = min(pywt.dwt_max_level(n, self.wavelet.dec_len) for n in self.padded)
        self.level = level

    def forward(self, x: torch.Tensor) -> Coeffs:
        """Analysis `W x`: `(B, H, W)` complex -> pywt-ordered list of complex coefficient arrays."""
        pad_h, pad_w = self.padded[0] - self.shape[0], self.padded[1] - self.shape[1]
        if pad_h or pad_w:
            x = torch.nn.functional.pad(x, (pad_w, 0, pad_h, 0))
        batch = x.shape[0]
        stacked = torch.cat([x.real, x.imag], 0)
        coeffs = ptwt.wavedec2(stacked, self.wavelet, mode="zero", level=self.level)
        out: Coeffs = [torch.complex(coeffs[0][:batch], coeffs[0][batch:])]
        for details in coeffs[1:]:
            out.append(tuple(torch.complex(d[:batch], d[batch:]) for d in details))
        return out

    def adjoint(self, coeffs: Coeffs) -> torch.Tensor:
        """Synthesis `W^H c` (= inverse, since `W^H W = I`): coefficients -> `(B, H, W)` complex."""
        stacked: list = [torch.cat([coeffs[0].real, coeffs[0].imag], 0)]
        for details in coeffs[1:]:
            stacked.append(tuple(torch.cat([d.real, d.imag], 0) for d in details))
        rec = ptwt.waverec2(stacked, self.wavelet)
        batch = rec.shape[0] // 2
        x = torch.complex(rec[:batch], rec[batch:])
        x = x[..., : self.padded[0], : self.padded[1]]
        return x[..., self.padded[0] - self.shape[0] :, self.padded[1] - self.shape[1] :]


def map_coeffs(coeffs: Coeffs, fn: Callable[[torch.Tensor], torch.Tensor]) -> Coeffs:
    """Apply `fn` to every coefficient array, keeping the pywt structure."""
    out: Coeffs = [fn(coeffs[0])]
    for details in coeffs[1:]:
        out.append(tuple(fn(d) for d in details))
    return out


def soft_threshold(x: torch.Tensor, thresh: float | torch.Tensor) -> torch.Tensor:
    """Complex soft thresholding `x * max(0, 1 - t / |x|)` (prox of `t ||x||_1`)."""
    mag = x.abs()
    return x * torch.clamp(1 - thresh / mag.clamp_min(torch.finfo(mag.dtype).tiny), min=0)
