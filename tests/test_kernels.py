"""The CUDA kernels without a GPU: compile checks (nvcc, NVRTC) and NumPy models of their math.

Each `model_*` function below is the NumPy statement of one kernel's contract (the header comment
of its `.cu` file), and the tests compose them exactly as `recon.ops.cupy_backend` composes the
kernels, forward and backward, against the torch backend and torch autograd (complex128). So the
centering identities and every hand-written gradient (data, maps, k0, eta) are proven here; the
GPU tests in tests/gpu/ then only have to show that the kernels meet their contracts.
"""

from __future__ import annotations

import inspect
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from recon import kernels_dir
from recon.ops import cupy_backend, modulation
from recon.ops import torch_backend as tb

KERNEL_FILES = sorted(p.name for p in kernels_dir().glob("*.cu"))
SIZES = [8, 12, 6, 10, 7, 9, 1, 2]  # 0 mod 4, 2 mod 4, odd, degenerate


def _crandn(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)


# --------------------------------------------------------------------------- compile checks


def test_kernel_files_present_with_contract_headers() -> None:
    assert set(KERNEL_FILES) >= {"centered_mod.cu", "sens.cu", "dc.cu", "rss.cu"}
    for name in KERNEL_FILES:
        first = (kernels_dir() / name).read_text().splitlines()[0]
        assert first.startswith(f"// {name}:"), f"{name} lacks its contract header"


@pytest.mark.parametrize("name", KERNEL_FILES)
def test_nvcc_compiles(name: str, tmp_path: Path) -> None:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed on this machine")
    cmd = [nvcc, "--cubin", "-arch=sm_80", "-std=c++17", "-I", str(kernels_dir()),
           "-o", str(tmp_path / "k.cubin"), str(kernels_dir() / name)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "k.cubin").stat().st_size > 0


def _nvrtc():  # type: ignore[no-untyped-def]
    try:
        from cupy_backends.cuda.libs import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # ImportError without CuPy, RuntimeError without libnvrtc
        pytest.skip(f"CuPy's NVRTC is not usable here: {exc}")
    return nvrtc


def _used_kernel_names() -> set[str]:
    src = Path(cupy_backend.__file__).read_text()
    return set(re.findall(r'f"([a-z_]+)_\{', src))


@pytest.mark.parametrize("name", [n.removesuffix(".cu") for n in KERNEL_FILES])
def test_nvrtc_compiles_the_runtime_source(name: str) -> None:
    """The exact text CuPy's RawModule compiles (headers inlined) passes NVRTC and defines the kernels."""
    from recon.ops import _cupy_kernels

    nvrtc = _nvrtc()
    source = _cupy_kernels.kernel_source(name)
    assert "#include" not in source
    prog = nvrtc.createProgram(source, f"{name}.cu", [], [])
    try:
        nvrtc.compileProgram(prog, ["-std=c++17", "-arch=compute_80"])
    except Exception:
        pytest.fail(nvrtc.getProgramLog(prog))
    ptx = nvrtc.getPTX(prog)
    assert b".entry" in (ptx if isinstance(ptx, bytes) else ptx.encode())


def test_every_kernel_the_backend_launches_exists_in_both_precisions() -> None:
    defined = set()
    for name in KERNEL_FILES:
        text = (kernels_dir() / name).read_text()
        for macro, body in re.findall(r"#define (DEFINE_\w+)\(SUFFIX, C, R\)(.*?)\n\n", text, re.S):
            kernels = re.findall(r"void (\w+)_##SUFFIX", body)
            for sfx in re.findall(rf"{macro}\((\w+), ", text):
                defined |= {f"{k}_{sfx}" for k in kernels}
    used = _used_kernel_names()
    assert used, "found no kernel launches in cupy_backend"
    for kernel in used:
        assert {f"{kernel}_c64", f"{kernel}_c128"} <= defined, kernel


# --------------------------------------------------------------------------- centering by modulation


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("inverse", [False, True])
def test_modulation_equals_shifts_1d(n: int, inverse: bool) -> None:
    x = _crandn(np.random.default_rng(n), n)
    pre = modulation.factor_1d(n, post=False, inverse=inverse)
    post = modulation.factor_1d(n, post=True, inverse=inverse)
    if inverse:
        ref = np.fft.fftshift(np.fft.ifft(np.fft.ifftshift(x), norm="forward"))
        got = post * np.fft.ifft(pre * x, norm="forward")
    else:
        ref = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x)))
        got = post * np.fft.fft(pre * x)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n", [s for s in SIZES if s % 2 == 0])
def test_even_factors_are_exact_checkerboards_up_to_global_sign(n: int) -> None:
    board = (-1.0) ** np.arange(n)
    assert np.array_equal(modulation.factor_1d(n, post=False).real, board)
    assert np.array_equal(modulation.factor_1d(n, post=True), board * modulation.checkerboard_sign(n))
    assert modulation.checkerboard_sign(n) == (-1 if n % 4 == 2 else 1)
    x = _crandn(np.random.default_rng(0), n)
    bare = board * np.fft.fft(board * x)  # the checkerboard trick without the global sign
    ref = np.fft.fftshift(np.fft.fft(np.fft.ifftshift(x)))
    np.testing.assert_allclose(bare * modulation.checkerboard_sign(n), ref, atol=1e-12)
    if n % 4 == 2:
        assert not np.allclose(bare, ref)


def test_checkerboard_sign_rejects_odd_sizes() -> None:
    with pytest.raises(ValueError, match="even"):
        modulation.checkerboard_sign(7)


@pytest.mark.parametrize("shape", [(8, 12), (6, 10), (7, 9), (8, 7), (10, 1)])
@pytest.mark.parametrize("inverse", [False, True])
def test_centered_fft2_matches_recon_fft(shape: tuple[int, int], inverse: bool) -> None:
    x = _crandn(np.random.default_rng(1), 2, 3, *shape)
    got = modulation.centered_fft2(x, inverse=inverse)
    ref = (tb.ifft2c if inverse else tb.fft2c)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-10, atol=1e-12)


def test_phase_integer_reduction_is_exact_for_large_even_sizes() -> None:
    n = np.arange(640)
    ph = modulation.phase_halfturns(n, 640, 320, 1)
    assert set(np.unique(ph)) <= {0.0, 1.0}


# --------------------------------------------------------------------------- NumPy kernel models


def model_modulate(x: np.ndarray, offset: bool, sign: int, scale: float) -> np.ndarray:
    """centered_mod.cu modulate: x * factor(h, w) * scale over the last two axes."""
    f = modulation.factor_2d(x.shape[-2:], post=offset, inverse=sign < 0)
    return x * f * scale


def model_fft2(x: np.ndarray, inverse: bool) -> np.ndarray:
    """cuFFT as the backend calls it: unnormalized both ways."""
    return np.fft.ifft2(x, norm="forward") if inverse else np.fft.fft2(x, norm="backward")


def model_centered_fft(x: np.ndarray, inverse: bool) -> np.ndarray:
    sign = -1 if inverse else 1
    h, w = x.shape[-2:]
    y = model_fft2(model_modulate(x, False, sign, 1.0), inverse)
    return model_modulate(y, True, sign, 1.0 / np.sqrt(h * w))


def model_expand(x: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """sens.cu expand_premod, then FFT and post-modulation (backend `_expand`)."""
    h, w = maps.shape[-2:]
    pre = maps * x * modulation.factor_2d((h, w), post=False)
    return model_modulate(model_fft2(pre, False), True, 1, 1.0 / np.sqrt(h * w))


def model_inverse_unmod(k: np.ndarray) -> np.ndarray:
    return model_fft2(model_modulate(k, False, -1, 1.0), True)


def model_coil_reduce(img: np.ndarray, maps: np.ndarray, x: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """sens.cu coil_reduce_postmod (sign -1): (sum_c conj(maps) v, conj(x) v), v = img * f."""
    h, w = img.shape[-2:]
    v = img * modulation.factor_2d((h, w), post=True, inverse=True) / np.sqrt(h * w)
    out_sum = (np.conj(maps) * v).sum(axis=1, keepdims=True)
    return out_sum, (None if x is None else np.conj(x) * v)


def model_soft_dc(k: np.ndarray, k0: np.ndarray, m: np.ndarray, eta: float) -> np.ndarray:
    return np.where(m, k - eta * (k - k0), k)


def model_soft_dc_backward(g, k, k0, m, eta):  # type: ignore[no-untyped-def]
    """dc.cu soft_dc_backward: (gk, gk0, geta)."""
    gk = np.where(m, g - eta * g, g)
    gk0 = np.where(m, eta * g, 0)
    geta = -np.sum(np.where(m, (g.real * (k - k0).real + g.imag * (k - k0).imag), 0.0))
    return gk, gk0, geta


def model_mask_select(g: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.where(m, g, 0), np.where(m, 0, g)


def model_rss(x: np.ndarray, dim: int) -> np.ndarray:
    return np.sqrt((np.abs(x) ** 2).sum(axis=dim))


def model_rss_backward(g: np.ndarray, x: np.ndarray, out: np.ndarray, dim: int) -> np.ndarray:
    s = np.where(out > 0, g / np.where(out > 0, out, 1), 0)
    return np.expand_dims(s, dim) * x


# --------------------------------------------------------------------------- models vs torch backend


B, C, H, W = 2, 3, 6, 7


def _t(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).requires_grad_(grad)


def _vjp(fn, inputs: list[torch.Tensor], g: np.ndarray) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    out = fn(*inputs)
    grads = torch.autograd.grad(out, [t for t in inputs if t.requires_grad], _t(g))
    return [gr.resolve_conj().numpy() for gr in grads]


@pytest.fixture
def data() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(5)
    mask = np.zeros((B, 1, 1, W), dtype=bool)
    mask[..., ::2] = True
    mask[1, ..., 3] = True
    return {
        "x": _crandn(rng, B, 1, H, W), "maps": _crandn(rng, B, C, H, W),
        "k": _crandn(rng, B, C, H, W), "k0": _crandn(rng, B, C, H, W),
        "g_img": _crandn(rng, B, 1, H, W), "g_k": _crandn(rng, B, C, H, W), "mask": mask,
    }


@pytest.mark.parametrize("shape", [(8, 12), (6, 10), (7, 9)])
def test_model_centered_fft_and_adjoint(shape: tuple[int, int]) -> None:
    x = _crandn(np.random.default_rng(2), 2, *shape)
    np.testing.assert_allclose(model_centered_fft(x, False), tb.fft2c(_t(x)).numpy(), atol=1e-12)
    np.testing.assert_allclose(model_centered_fft(x, True), tb.ifft2c(_t(x)).numpy(), atol=1e-12)
    (ref,) = _vjp(tb.fft2c, [_t(x, True)], x)
    np.testing.assert_allclose(model_centered_fft(x, True), ref, atol=1e-12)  # backward = inverse


def test_model_sens_expand_forward_and_backward(data: dict[str, np.ndarray]) -> None:
    x, maps, g = data["x"], data["maps"], data["g_k"]
    np.testing.assert_allclose(model_expand(x, maps), tb.sens_expand(_t(x), _t(maps)).numpy(), atol=1e-12)
    gx_ref, gmaps_ref = _vjp(tb.sens_expand, [_t(x, True), _t(maps, True)], g)
    gx, gmaps = model_coil_reduce(model_inverse_unmod(g), maps, x)
    np.testing.assert_allclose(gx, gx_ref, atol=1e-12)
    np.testing.assert_allclose(gmaps, gmaps_ref, atol=1e-12)


def test_model_sens_expand_backward_with_batch_broadcast_image(data: dict[str, np.ndarray]) -> None:
    x, maps, g = data["x"][:1], data["maps"], data["g_k"]
    gx_ref, _ = _vjp(tb.sens_expand, [_t(x, True), _t(maps, True)], g)
    gx, _ = model_coil_reduce(model_inverse_unmod(g), maps, x)
    np.testing.assert_allclose(gx.sum(axis=0, keepdims=True), gx_ref, atol=1e-12)  # sum_to_size


def test_model_sens_reduce_forward_and_backward(data: dict[str, np.ndarray]) -> None:
    k, maps, g = data["k"], data["maps"], data["g_img"]
    img = model_inverse_unmod(k)
    out, _ = model_coil_reduce(img, maps, None)
    np.testing.assert_allclose(out, tb.sens_reduce(_t(k), _t(maps)).numpy(), atol=1e-12)
    gk_ref, gmaps_ref = _vjp(tb.sens_reduce, [_t(k, True), _t(maps, True)], g)
    np.testing.assert_allclose(model_expand(g, maps), gk_ref, atol=1e-12)
    _, gmaps = model_coil_reduce(img, maps, g)  # the kernel with x := grad_output
    np.testing.assert_allclose(gmaps, gmaps_ref, atol=1e-12)


@pytest.mark.parametrize("eta_shape", [(), (1,)])
def test_model_soft_dc_forward_and_backward(data: dict[str, np.ndarray], eta_shape: tuple[int, ...]) -> None:
    k, k0, m, g = data["k"], data["k0"], data["mask"], data["g_k"]
    eta = torch.full(eta_shape, 0.37, dtype=torch.float64, requires_grad=True)
    ref = tb.soft_dc(_t(k), _t(k0), _t(m), eta.detach()).numpy()
    np.testing.assert_allclose(model_soft_dc(k, k0, m, 0.37), ref, atol=1e-12)
    gk_ref, gk0_ref, geta_ref = _vjp(tb.soft_dc, [_t(k, True), _t(k0, True), _t(m), eta], g)
    gk, gk0, geta = model_soft_dc_backward(g, k, k0, m, 0.37)
    np.testing.assert_allclose(gk, gk_ref, atol=1e-12)
    np.testing.assert_allclose(gk0, gk0_ref, atol=1e-12)
    assert geta_ref.shape == eta_shape
    np.testing.assert_allclose(geta, geta_ref.reshape(()), rtol=1e-12)


def test_model_hard_dc_and_mask_backward(data: dict[str, np.ndarray]) -> None:
    k, k0, m, g = data["k"], data["k0"], data["mask"], data["g_k"]
    np.testing.assert_array_equal(np.where(m, k0, k), tb.hard_dc(_t(k), _t(k0), _t(m)).numpy())
    gk_ref, gk0_ref = _vjp(tb.hard_dc, [_t(k, True), _t(k0, True), _t(m)], g)
    keep, drop = model_mask_select(g, m)
    np.testing.assert_array_equal(drop, gk_ref)
    np.testing.assert_array_equal(keep, gk0_ref)


def test_model_normal_forward_and_backward(data: dict[str, np.ndarray]) -> None:
    """normal = reduce(mask(expand)); backward chains the three models as autograd chains the Functions."""
    x, maps, m, g = data["x"], data["maps"], data["mask"], data["g_img"]
    kspace = model_expand(x, maps)
    masked, _ = model_mask_select(kspace, m)
    img = model_inverse_unmod(masked)
    out, _ = model_coil_reduce(img, maps, None)
    np.testing.assert_allclose(out, tb.normal(_t(x), _t(maps), _t(m)).numpy(), atol=1e-12)
    gx_ref, gmaps_ref = _vjp(tb.normal, [_t(x, True), _t(maps, True), _t(m)], g)
    g_masked = model_expand(g, maps)
    _, gmaps_reduce = model_coil_reduce(img, maps, g)
    g_k, _ = model_mask_select(g_masked, m)
    gx, gmaps_expand = model_coil_reduce(model_inverse_unmod(g_k), maps, x)
    np.testing.assert_allclose(gx, gx_ref, atol=1e-12)
    np.testing.assert_allclose(gmaps_reduce + gmaps_expand, gmaps_ref, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 0, -1])
def test_model_rss_forward_and_backward(data: dict[str, np.ndarray], dim: int) -> None:
    x = data["k"]
    out = model_rss(x, dim)
    np.testing.assert_allclose(out, tb.rss(_t(x), dim).numpy(), rtol=1e-12)
    g = np.random.default_rng(3).standard_normal(out.shape)
    (ref,) = _vjp(lambda t: tb.rss(t, dim), [_t(x, True)], g)
    np.testing.assert_allclose(model_rss_backward(g, x, out, dim), ref, atol=1e-12)


# --------------------------------------------------------------------------- backend module without a GPU


def test_backend_matches_torch_backend_api() -> None:
    for name in ["fft2c", "ifft2c", "sens_expand", "sens_reduce", "soft_dc", "hard_dc", "normal", "rss"]:
        ours, ref = getattr(cupy_backend, name), getattr(tb, name)
        params = [(p.name, p.kind, p.default) for p in inspect.signature(ours).parameters.values()]
        assert params == [(p.name, p.kind, p.default) for p in inspect.signature(ref).parameters.values()], name


def test_available_is_false_without_cuda() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the GPU tests cover the backend")
    assert cupy_backend.available() is False


def test_cpu_tensors_fall_back_to_torch(data: dict[str, np.ndarray]) -> None:
    x, maps, k, k0, m = (_t(data[n]) for n in ["x", "maps", "k", "k0", "mask"])
    torch.testing.assert_close(cupy_backend.sens_expand(x, maps), tb.sens_expand(x, maps))
    torch.testing.assert_close(cupy_backend.sens_reduce(k, maps), tb.sens_reduce(k, maps))
    torch.testing.assert_close(cupy_backend.soft_dc(k, k0, m, 0.5), tb.soft_dc(k, k0, m, 0.5))
    torch.testing.assert_close(cupy_backend.hard_dc(k, k0, m), tb.hard_dc(k, k0, m))
    torch.testing.assert_close(cupy_backend.normal(x, maps, m), tb.normal(x, maps, m))
    torch.testing.assert_close(cupy_backend.rss(k, 1), tb.rss(k, 1))
    torch.testing.assert_close(cupy_backend.fft2c(k), tb.fft2c(k))
    torch.testing.assert_close(cupy_backend.ifft2c(k), tb.ifft2c(k))
