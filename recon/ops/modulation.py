"""Centering of the FFT by modulation: the math behind `kernels/centered_mod.cu`, in NumPy.

The centered FFT `fftshift(fft(ifftshift(x)))` of length N equals a plain FFT between two
elementwise multiplications, so no shift copies are needed. With `s = N // 2` and
`w = exp(-2j*pi/N)`:

    fftshift(fft(ifftshift(x)))[k]  = post[k] * fft(pre * x)[k]
    pre[n]  = exp(+2j*pi * n * s / N)
    post[k] = exp(+2j*pi * (k - s) * s / N)

and the inverse uses the conjugate factors. For even N, `pre[n] = (-1)^n` (the checkerboard)
and `post[k] = (-1)^k * (-1)^(N/2)`: the checkerboard alone is right only up to the global
sign `(-1)^(N/2)`, which is -1 when N is 2 mod 4. For odd N the factors are a genuine phase
ramp. In 2-D the factors of the two axes multiply. The kernels evaluate the same phase as
`2 * ((n - o) * s mod N) / N` half-turns (integer arithmetic first, so even sizes give exact
+-1), which `phase_halfturns` reproduces here.

This module imports neither CuPy nor torch, so tests on machines without a GPU can check it.
"""

from __future__ import annotations

import numpy as np


def phase_halfturns(n: np.ndarray, size: int, offset: int, sign: int) -> np.ndarray:
    """Phase, in units of pi, of the 1-D factor `exp(sign * 2j*pi * (n - offset) * s / size)`.

    Args:
        n: integer sample indices (any shape), 0 <= n < size.
        size: transform length N.
        offset: 0 for the pre-modulation, `size // 2` for the post-modulation.
        sign: +1 for the forward FFT, -1 for the inverse.

    Returns:
        float64 array in [0, 2) times `sign`, as the kernel computes it.
    """
    s = size // 2
    t = np.mod((np.asarray(n, dtype=np.int64) - offset) * s, size)
    return sign * 2.0 * t / size


def expi_pi(ph: np.ndarray) -> np.ndarray:
    """`exp(1j * pi * ph)` exact at multiples of 1/2, like CUDA's `sincospi` that the kernels call."""
    ph = np.asarray(ph, dtype=np.float64)
    quarter = np.mod(ph * 2.0, 4.0)
    exact = quarter == np.round(quarter)
    table = np.array([1.0, 1j, -1.0, -1j])
    return np.where(exact, table[np.round(quarter).astype(np.int64) % 4], np.exp(1j * np.pi * ph))


def factor_1d(size: int, post: bool, inverse: bool = False) -> np.ndarray:
    """The 1-D modulation factor (complex128, shape `(size,)`) of the centered (i)FFT."""
    offset = size // 2 if post else 0
    ph = phase_halfturns(np.arange(size), size, offset, -1 if inverse else 1)
    return expi_pi(ph)


def factor_2d(shape: tuple[int, int], post: bool, inverse: bool = False) -> np.ndarray:
    """Outer product of the row and column factors: complex128 `(H, W)`."""
    h, w = shape
    sign = -1 if inverse else 1
    ph_h = phase_halfturns(np.arange(h), h, h // 2 if post else 0, sign)
    ph_w = phase_halfturns(np.arange(w), w, w // 2 if post else 0, sign)
    return expi_pi(ph_h[:, None] + ph_w[None, :])


def centered_fft2(x: np.ndarray, inverse: bool = False) -> np.ndarray:
    """Centered orthonormal 2-D (i)FFT over the last two axes via modulation (no shifts).

    Equals `fftshift(fft2(ifftshift(x), norm="ortho"))` (or the `ifft2` version) for any
    sizes, odd or even; the normalization is folded into the post factor as the kernels do.
    """
    shape = (x.shape[-2], x.shape[-1])
    pre = factor_2d(shape, post=False, inverse=inverse)
    post = factor_2d(shape, post=True, inverse=inverse) / np.sqrt(shape[0] * shape[1])
    transform = np.fft.ifft2 if inverse else np.fft.fft2
    norm = "forward" if inverse else "backward"
    return post * transform(pre * x, axes=(-2, -1), norm=norm)


def checkerboard_sign(size: int) -> int:
    """Global sign `(-1)^(N/2)` by which the bare checkerboard trick misses, for even N."""
    if size % 2:
        raise ValueError(f"the checkerboard applies to even sizes only, got {size}")
    return -1 if (size // 2) % 2 else 1
