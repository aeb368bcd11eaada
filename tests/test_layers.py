"""The solver layers: linear operators (adjointness, composition, hybrid space), the generic
algorithms against closed-form solutions (CG vs numpy.linalg.solve, FISTA's optimality
conditions and restart, PDHG on problems with known minimizers), their stopping rules, and the
method registry's output check."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recon import methods
from recon.acquisition import centered_region
from recon.alg import batch_dot, conjugate_gradient, fista, pdhg
from recon.calib import espirit_calib
from recon.linops import CoilExpand, FFT2c, FiniteDifference, Linop, Mask, Sense, Stack, hybrid_sense
from recon.methods import MethodSpec, Options, ReconBatch, get_method
from recon.methods.solvers import cg_sense
from recon.prox import L2DataDual, TVDual, soft_threshold

sys.path.insert(0, str(Path(__file__).parent))
from _baseline_data import column_mask, phantom_kspace  # noqa: E402


class MatrixOp(Linop):
    """`x -> A_b x` per batch item: A `(B, m, n)`, x `(B, n)`."""

    def __init__(self, a: torch.Tensor) -> None:
        self.a = a

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.a @ x[..., None])[..., 0]

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (self.a.conj().transpose(-1, -2) @ y[..., None])[..., 0]


def _random(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.complex64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    real = torch.randn(shape, generator=gen, dtype=torch.float64)
    if not dtype.is_complex:
        return real.to(dtype)
    return torch.complex(real, torch.randn(shape, generator=gen, dtype=torch.float64)).to(dtype)


@pytest.fixture(scope="module")
def slice_problem() -> dict:
    """A 4x undersampled 8-coil 64x48 phantom slice with ESPIRiT maps."""
    k, _, _ = phantom_kspace(8, 64, 48, seed=4, noise=5e-3)
    mask = torch.from_numpy(column_mask(48, 4, 8))[None, None, None]
    kspace = torch.from_numpy(k)[None] * mask
    return {"y": kspace, "maps": espirit_calib(kspace, centered_region(48, 8)), "mask": mask}


def test_sense_is_the_composition_of_its_factors_and_adjoint(slice_problem: dict) -> None:
    maps, mask = slice_problem["maps"], slice_problem["mask"]
    sense = Sense(maps, mask)
    composed = Mask(mask) @ FFT2c() @ CoilExpand(maps)
    x, y = _random((1, 1, 64, 48), 1), _random((1, 8, 64, 48), 2)
    assert torch.allclose(sense.forward(x), composed.forward(x), atol=1e-5)
    assert torch.allclose(sense.adjoint(y), composed.adjoint(y), atol=1e-5)
    assert torch.allclose(sense.normal(x), composed.normal(x), atol=1e-5)
    lhs, rhs = batch_dot(sense.forward(x), y), batch_dot(x, sense.adjoint(y))
    assert abs(float(lhs) - float(rhs)) < 1e-4 * abs(float(lhs))
    assert float(sense.lipschitz_bound()) == pytest.approx(1.0, abs=1e-4)  # unit-RSS maps


def test_finite_difference_norm_bound() -> None:
    grad = FiniteDifference()
    x = _random((1, 1, 16, 16), 3)
    for _ in range(100):  # power iteration on G^H G
        x = grad.normal(x)
        x = x / x.abs().pow(2).sum().sqrt()
    top = float(batch_dot(x, grad.normal(x)))
    assert 7.5 < top <= grad.norm_bound + 1e-4


def test_hybrid_space_sense_solves_the_same_problem(slice_problem: dict) -> None:
    y, maps, mask = slice_problem["y"], slice_problem["maps"], slice_problem["mask"]
    op, rows = hybrid_sense(y, maps, mask)
    assert rows.shape == (64, 8, 1, 48)
    x = _random((1, 1, 64, 48), 4)
    x_rows = x.permute(0, 2, 1, 3).reshape(64, 1, 1, 48)
    # same residual norm: the 1-D FFT along the readout is unitary and the mask ignores it
    full = float((Sense(maps, mask).forward(x) - y).abs().pow(2).sum())
    hybrid = float((op.forward(x_rows) - rows).abs().pow(2).sum())
    assert hybrid == pytest.approx(full, rel=1e-4)
    assert torch.equal(op.to_image(x_rows), x)
    plain = cg_sense(y, maps, mask, 0.01, 200, tol=1e-6)
    decoupled = cg_sense(y, maps, mask, 0.01, 200, tol=1e-6, hybrid=True)
    assert float((decoupled - plain).norm() / plain.norm()) < 1e-3
    with pytest.raises(ValueError, match="column mask"):
        hybrid_sense(y, maps, mask.expand(1, 1, 64, 48))


def _spd_system(seed: int, n: int = 12, batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Hermitian positive definite `(B, n, n)` matrices with condition number ~100, and rhs `(B, n)`."""
    a = _random((batch, n, n), seed, torch.complex128)
    q, _ = torch.linalg.qr(a)
    eig = torch.logspace(0, 2, n, dtype=torch.float64).to(torch.complex128)
    mat = q @ torch.diag_embed(eig) @ q.conj().transpose(-1, -2)
    return mat, _random((batch, n), seed + 1, torch.complex128)


def test_cg_matches_numpy_solve() -> None:
    mat, rhs = _spd_system(5)
    x = conjugate_gradient(MatrixOp(mat).forward, rhs, max_iter=100, tol=1e-12)
    ref = np.linalg.solve(mat.numpy(), rhs.numpy()[..., None])[..., 0]
    assert np.abs(x.numpy() - ref).max() < 1e-8 * np.abs(ref).max()


def test_cg_stopping_rules() -> None:
    mat, rhs = _spd_system(6)
    apply = MatrixOp(mat).forward
    calls: list[int] = []
    conjugate_gradient(apply, rhs, max_iter=7, callback=lambda it, x: calls.append(it))
    assert calls == list(range(1, 8))  # tol = 0: exactly max_iter iterations
    calls.clear()
    x = conjugate_gradient(apply, rhs, max_iter=100, tol=1e-4, callback=lambda it, x: calls.append(it))
    residual = (rhs - apply(x)).norm(dim=1) / rhs.norm(dim=1)
    assert 1 < len(calls) < 100 and bool((residual <= 1.1e-4).all())
    calls.clear()
    conjugate_gradient(apply, rhs, max_iter=100, callback=lambda it, x: calls.append(it) or it == 3)
    assert calls == [1, 2, 3]  # the callback's True stops the run


def _lasso(seed: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """An ill-conditioned (cond(A^T A) = 1e2) overdetermined real LASSO, batch of 2: A `(2, 40, 20)`, b `(2, 40)`."""
    a = _random((2, 40, 20), seed, torch.float64)
    u, _, vh = torch.linalg.svd(a, full_matrices=False)
    a = u @ torch.diag_embed(torch.logspace(0, -1, 20, dtype=torch.float64)) @ vh
    return a, _random((2, 40), seed + 1, torch.float64) * 0.1, 1e-3


def _lasso_parts(a: torch.Tensor, b: torch.Tensor, lam: float):
    op = MatrixOp(a)

    def gradient(x: torch.Tensor) -> torch.Tensor:
        return op.adjoint(op.forward(x) - b)

    def objective(x: torch.Tensor) -> torch.Tensor:
        return 0.5 * (op.forward(x) - b).pow(2).sum(1) + lam * x.abs().sum(1)

    def prox(alpha: float, v: torch.Tensor) -> torch.Tensor:
        return soft_threshold(v, alpha * lam)

    return gradient, objective, prox


@pytest.mark.parametrize("restart", [None, "gradient", "function"])
def test_fista_reaches_the_lasso_optimality_conditions(restart: str | None) -> None:
    a, b, lam = _lasso(7)
    gradient, objective, prox = _lasso_parts(a, b, lam)
    x = fista(gradient, prox, torch.zeros(2, 20, dtype=torch.float64), 1.0, 5000, tol=1e-13, restart=restart, objective=objective)
    g = gradient(x)  # KKT: g = -lam sign(x) where x != 0, |g| <= lam where x = 0
    active = x.abs() > 1e-8
    assert bool(((g[active] + lam * x[active].sign()).abs() < 1e-6).all())
    assert bool((g[~active].abs() <= lam + 1e-6).all())


def test_fista_function_restart_never_increases_the_objective() -> None:
    a, b, lam = _lasso(8)
    gradient, objective, prox = _lasso_parts(a, b, lam)
    x0 = torch.zeros(2, 20, dtype=torch.float64)

    def trace(restart: str | None) -> np.ndarray:
        values = [objective(x0).numpy()]
        fista(gradient, prox, x0, 1.0, 300, restart=restart, objective=objective, callback=lambda it, x: values.append(objective(x).numpy()))
        return np.array(values)

    plain, restarted, gradient_restart = trace(None), trace("function"), trace("gradient")
    assert (np.diff(plain, axis=0) > 1e-9).any()  # plain FISTA ripples on this problem ...
    assert (np.diff(restarted, axis=0) <= 1e-12 * np.abs(restarted[:-1])).all()  # ... restart never rises
    best = np.minimum(plain.min(0), restarted.min(0))
    assert (restarted[-1] - best <= (plain[-1] - best) + 1e-12).all()
    assert (gradient_restart[-1] - best <= (plain[-1] - best) + 1e-12).all()
    with pytest.raises(ValueError, match="objective"):
        fista(gradient, prox, x0, 1.0, 3, restart="function")


@pytest.mark.parametrize("restart", ["gradient", "function"])
def test_fista_relative_change_stopping_rule(restart: str) -> None:
    a, b, lam = _lasso(9)
    gradient, objective, prox = _lasso_parts(a[:1], b[:1], lam)  # one item: its rejected steps come early
    x0 = torch.zeros(1, 20, dtype=torch.float64)
    seen: list[torch.Tensor] = []
    x = fista(gradient, prox, x0, 1.0, 5000, tol=1e-7, restart=restart, objective=objective, callback=lambda it, x: seen.append(x))
    assert 2 < len(seen) < 5000
    change = (seen[-1] - seen[-2]).norm(dim=1) / seen[-1].norm(dim=1)
    assert bool((change <= 1e-7).all())
    # a step rejected by the function restart (x_k = x_{k-1}) must not end the run early
    best = objective(fista(gradient, prox, x0, 1.0, 3000, restart="gradient"))
    assert bool(((objective(x) - best) <= 1e-9 * best).all())


def test_pdhg_solves_ridge_regression() -> None:
    """`min 1/2 ||A x - y||^2 + mu/2 ||x||^2` as PDHG on `[A; sqrt(mu) I]`: the normal-equation solution."""
    a = _random((2, 30, 10), 10, torch.complex128)
    y = _random((2, 30), 11, torch.complex128)
    mu = 0.5
    eye = torch.eye(10, dtype=torch.complex128).expand(2, 10, 10) * mu**0.5
    op = Stack([MatrixOp(a), MatrixOp(eye)])
    from recon.prox import Separable

    norm2 = float(torch.linalg.matrix_norm(a, ord=2).max() ** 2 + mu)
    sigma = 1.0
    tau = 1 / (sigma * norm2)
    u0 = [torch.zeros_like(y), torch.zeros(2, 10, dtype=torch.complex128)]
    dual = Separable([L2DataDual(y), L2DataDual(torch.zeros(2, 10, dtype=torch.complex128))])
    x = pdhg(op, dual, torch.zeros(2, 10, dtype=torch.complex128), u0, tau, sigma, 20000, tol=1e-12)
    ah = a.conj().transpose(-1, -2)
    ref = np.linalg.solve((ah @ a).numpy() + mu * np.eye(10), (ah @ y[..., None]).numpy())[..., 0]
    assert np.abs(x.numpy() - ref).max() < 1e-6 * np.abs(ref).max()


@pytest.mark.parametrize(("b", "lam"), [((1.0, 0.2), 0.1), ((1.0, 0.8), 0.3)])
def test_pdhg_two_point_tv_has_the_closed_form(b: tuple[float, float], lam: float) -> None:
    """`min 1/2 ||x - b||^2 + lam |x_1 - x_2|`: shrink the gap by 2 lam, or merge to the mean."""
    target = torch.tensor([b], dtype=torch.float64)
    diff = torch.tensor([[[1.0, -1.0]]], dtype=torch.float64)
    eye = torch.eye(2, dtype=torch.float64)[None]
    from recon.prox import Separable

    op = Stack([MatrixOp(eye), MatrixOp(diff)])
    dual = Separable([L2DataDual(target), TVDual(lam)])
    u0 = [torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)]
    iterations: list[int] = []
    x = pdhg(op, dual, torch.zeros(1, 2, dtype=torch.float64), u0, 0.3, 1.0, 5000, tol=1e-12, callback=lambda it, x: iterations.append(it))
    gap = b[0] - b[1]
    if abs(gap) <= 2 * lam:
        want = [sum(b) / 2] * 2
    else:
        want = [b[0] - lam * np.sign(gap), b[1] + lam * np.sign(gap)]
    assert np.allclose(x.numpy()[0], want, atol=1e-8)
    assert len(iterations) < 5000  # the relative-change rule ended it


def _batch(seed: int = 0) -> ReconBatch:
    k, _, _ = phantom_kspace(4, 32, 24, seed=seed)
    mask = torch.from_numpy(column_mask(24, 2, 8))[None, None, None]
    return ReconBatch(torch.from_numpy(k)[None] * mask, mask, torch.tensor([centered_region(24, 8)]), (24, 24))


def test_registry_lists_every_method_and_builds_it() -> None:
    assert {"zero-filled", "sense", "cs", "cs-tv", "varnet"} <= set(methods.available())
    batch = _batch()
    for name in ("zero-filled", "sense", "cs", "cs-tv"):
        options = {"iters": 5} if methods.spec(name).takes("iters") else {}
        out = get_method(name, device="cpu", **options)(batch)
        assert out.shape == (1, 24, 24) and out.dtype == torch.float32 and bool(torch.isfinite(out).all())
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        get_method("nope")


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda b: torch.full((1, 24, 24), float("nan")), "non-finite"),
        (lambda b: torch.zeros(1, 24, 24), "all-zero"),
        (lambda b: torch.ones(1, 20, 24), "shape"),
        (lambda b: torch.ones(1, 24, 24, dtype=torch.float64), "float32"),
    ],
)
def test_registry_refuses_bad_images(output, message: str) -> None:
    with methods.scoped():
        methods.register("broken", MethodSpec("broken", "returns bad images", Options, lambda options, device: output))
        with pytest.raises(ValueError, match=f"method 'broken'.*{message}"):
            get_method("broken")(_batch())
    assert "broken" not in methods.available()


def test_unknown_options_are_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"method 'cs' takes no option 'lamda'; valid options: .*\blam\b.*\biters\b"):
        methods.get("cs", lamda=0.1)
    with pytest.raises(ValueError, match="method 'zero-filled' takes no option 'iters'; valid options: partial_fourier"):
        methods.get("zero-filled", iters=5)
    with pytest.raises(ValueError, match=r"unknown maps_crop 'tight'; expected one of soft, hard, wide"):
        methods.get("sense", maps_crop="tight")


def test_specs_declare_consistent_flags_and_checkpoints() -> None:
    """Every learned method names an option it has; a flag shared by methods has one type (else
    `recon.methods.spec.flags` refuses); zero-filled is the one baseline."""
    from recon.methods.registry import all_flags

    specs = [methods.spec(name) for name in methods.available()]
    for spec in specs:
        assert spec.checkpoint is None or spec.takes(spec.checkpoint), spec.name
    flags = {f.flag: f for f in all_flags()}
    assert flags["--lam"].kind is float and flags["--iters"].kind is int
    assert flags["--checkpoint"].methods() == ["varnet"] and flags["--unet-checkpoint"].methods() == ["unet"]
    assert [s.name for s in specs if s.baseline] == ["zero-filled"]


def test_option_choices_are_those_of_the_numerics() -> None:
    from typing import get_args

    from recon import partial_fourier as pf
    from recon.methods.classical import MAPS_CROP
    from recon.methods.options import MapsCrop, PartialFourier

    assert get_args(PartialFourier) == pf.MODES and get_args(MapsCrop) == tuple(MAPS_CROP)


def test_classical_method_options_reach_the_solver() -> None:
    batch = _batch(1)
    plain = get_method("sense", iters=60, lam=0.01)(batch)
    decoupled = get_method("sense", iters=60, lam=0.01, hybrid=True)(batch)
    assert float((decoupled - plain).norm() / plain.norm()) < 1e-2
    with pytest.raises(ValueError, match="unknown restart 'bogus'"):
        get_method("cs", iters=2, restart="bogus")(batch)


def _layer_order() -> list[str]:
    """The modules of docs/architecture.md's layers table, top to bottom."""
    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    table = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    order: list[str] = []
    for line in table.splitlines():
        if line.startswith("| `recon."):
            first = line.split("|")[1]
            order += [name.strip("` ") for name in first.split(",")]
    return order


def _rank(module: str, order: list[str]) -> int | None:
    matches = [i for i, name in enumerate(order) if module == name or module.startswith(name + ".")]
    return max(matches, key=lambda i: len(order[i])) if matches else None


def test_modules_import_only_layers_above_them() -> None:
    """Every `recon` module is in docs/architecture.md's layers table and imports (also lazily,
    inside functions; type-checking-only imports aside) only modules of its own layer or of layers
    above it there."""
    import ast

    order = _layer_order()
    root = Path(__file__).parents[1] / "recon"
    violations = []
    unlisted = []
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("recon", *path.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
        if module in ("recon", "recon.__main__"):
            continue
        own = _rank(module, order)
        if own is None:
            unlisted.append(module)
            continue
        tree = ast.parse(path.read_text())
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test) for n in ast.walk(block)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [f"{node.module}.{a.name}" for a in node.names] if node.module == "recon" else [node.module]
            for name in names:
                other = _rank(name, order) if name.startswith("recon.") else None
                if other is not None and other > own:
                    violations.append(f"{module} imports {name}")
    assert not unlisted, f"modules missing from docs/architecture.md's layers table: {unlisted}"
    assert len(order) > 15 and not violations, violations


def test_command_line_help_and_method_specs_import_no_torch() -> None:
    """`recon --help`, `recon <cmd> --help` and every method's spec (options, flags, needs) load
    neither torch nor CuPy: the parser is built from the specs, and their numerics load in `build`."""
    import subprocess

    code = (
        "import contextlib, io, sys\n"
        "import recon.cli, recon.methods\n"
        "for argv in (['--help'], *([cmd, '--help'] for cmd in ('simulate', 'reconstruct', 'evaluate', 'benchmark', 'convert', 'train'))):\n"
        "    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "        recon.cli.main(argv)\n"
        "for name in recon.methods.available():\n"
        "    recon.methods.spec(name).make_options({})\n"
        "print(' '.join(m for m in ('torch', 'cupy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", f"loaded: {done.stdout.strip()}"
