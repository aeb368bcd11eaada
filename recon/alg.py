"""Generic iterative algorithms on batched tensors: CG, FISTA with adaptive restart, PDHG.

Every batch item (axis 0) is its own problem: inner products, step sizes and momentum are per
item. Each algorithm takes

* `max_iter`: the most iterations it runs;
* `tol`: a stopping tolerance (0 = run exactly `max_iter` iterations), stated per algorithm;
  the run stops early only when every batch item satisfies it;
* `callback(it, x)`: called after iteration `it` (1-based) with the current iterate; returning
  True stops the run after that iteration (a user-defined convergence test).
"""

from __future__ import annotations

from typing import Any, Callable, Literal

import torch

from recon.linops import Linop

Operator = Callable[[torch.Tensor], torch.Tensor]
Prox = Callable[[Any, Any], Any]
Callback = Callable[[int, torch.Tensor], "bool | None"]

_TINY = torch.finfo(torch.float32).tiny


def batch_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of `<a, b>` per batch item, shaped `(B, 1, ..., 1)` to broadcast."""
    return (a.conj() * b).real.sum(dim=tuple(range(1, a.ndim)), keepdim=True)


def batch_norm(a: torch.Tensor) -> torch.Tensor:
    """`||a||` per batch item, shaped `(B, 1, ..., 1)`."""
    return batch_dot(a, a).sqrt()


def _relative_change_below(x: torch.Tensor, x_old: torch.Tensor, tol: float, exclude: torch.Tensor | None = None) -> bool:
    """Whether `||x - x_old|| <= tol ||x||` for every batch item (False when `tol <= 0`).

    Items flagged in `exclude` (a step that was rejected, so `x = x_old`) do not count as met.
    """
    if tol <= 0:
        return False
    met = batch_norm(x - x_old) <= tol * batch_norm(x)
    if exclude is not None:
        met = met & ~exclude
    return bool(met.all())


def max_eigenvalue(normal_op: Operator, shape: tuple[int, ...], device: torch.device, iters: int = 30, seed: int = 0) -> torch.Tensor:
    """Largest eigenvalue `(B, 1, 1, 1)` of a per-item Hermitian PSD operator, power method.

    Starts from seeded complex Gaussian noise of `shape` (`(B, 1, H, W)`); `iters` as SigPy's
    `MaxEig` default (30).
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, dtype=torch.complex64, generator=gen).to(device)
    eig = torch.ones(shape[0], 1, 1, 1, device=device)
    for _ in range(iters):
        y = normal_op(x)
        eig = batch_dot(y, y).sqrt()
        x = y / eig.clamp_min(_TINY)
    return eig


def conjugate_gradient(
    normal_op: Operator,
    rhs: torch.Tensor,
    max_iter: int,
    tol: float = 0.0,
    x0: torch.Tensor | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Solve `normal_op(x) = rhs` (Hermitian positive (semi-)definite) by conjugate gradients.

    Stopping rule: after `max_iter` iterations, or once every item's residual satisfies
    `||rhs - normal_op(x)|| <= tol ||rhs||`, or when `callback` returns True. `x0` defaults to
    zero (as SigPy's `SenseRecon`). An item whose search direction has vanished (converged to
    rounding) takes zero steps from then on.
    """
    x = torch.zeros_like(rhs) if x0 is None else x0.clone()
    r = rhs.clone() if x0 is None else rhs - normal_op(x)
    p = r.clone()
    rz = batch_dot(r, r)
    rhs_norm = batch_norm(rhs)
    for it in range(1, max_iter + 1):
        ap = normal_op(p)
        pap = batch_dot(p, ap)
        alpha = torch.where(pap > _TINY, rz / pap.clamp_min(_TINY), torch.zeros_like(rz))
        x = x + alpha * p
        r = r - alpha * ap
        rz_new = batch_dot(r, r)
        beta = torch.where(rz > _TINY, rz_new / rz.clamp_min(_TINY), torch.zeros_like(rz))
        p = r + beta * p
        rz = rz_new
        stop = callback(it, x) if callback is not None else None
        if stop or (tol > 0 and bool((rz.sqrt() <= tol * rhs_norm).all())):
            break
    return x


def fista(
    gradient: Operator,
    prox: Prox,
    x0: torch.Tensor,
    step: float | torch.Tensor,
    max_iter: int,
    tol: float = 0.0,
    restart: Literal["gradient", "function"] | None = None,
    objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """FISTA for `min_x f(x) + g(x)`: `gradient` = grad f (L-Lipschitz), `prox(alpha, v)` of g.

    Iteration (Beck-Teboulle): `x_k = prox(step, z - step grad f(z))`,
    `t_k = (1 + sqrt(1 + 4 t_{k-1}^2)) / 2`, `z = x_k + (t_{k-1} - 1) / t_k (x_k - x_{k-1})`;
    converges for `step <= 1 / L` (float or per-item tensor).

    Adaptive restart (O'Donoghue and Candes, 2015), per item, resets the momentum (`t = 1`,
    `z = x`):
    * `"gradient"`: when `<z - x_k, x_k - x_{k-1}> > 0` (the step goes against the momentum);
      no objective needed.
    * `"function"`: when `objective(x_k) > objective(x_{k-1})`; the rising step is also
      rejected (`x_k = x_{k-1}`), so the objective never increases: the next step is a plain
      proximal-gradient step from `x_{k-1}`, which decreases it for `step <= 1 / L`.
      `objective` returns `(B,)` values.
    * None: plain FISTA (SigPy's `GradientMethod(accelerate=True)`).

    Stopping rule: after `max_iter` iterations, once every item satisfies
    `||x_k - x_{k-1}|| <= tol ||x_k||` (a rejected step does not count), or when `callback`
    returns True.
    """
    if restart == "function" and objective is None:
        raise ValueError("fista: restart='function' needs the objective")
    if restart not in (None, "gradient", "function"):
        raise ValueError(f"fista: unknown restart {restart!r}; expected None, 'gradient' or 'function'")
    x = x0
    z = x
    batch_shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    t = torch.ones(batch_shape, dtype=torch.float64, device=x.device)
    f_old = objective(x).reshape(batch_shape) if restart == "function" else None
    for it in range(1, max_iter + 1):
        x_old = x
        x = prox(step, z - step * gradient(z))
        t_old = t
        t = (1 + (1 + 4 * t_old**2).sqrt()) / 2
        reset = rejected = None
        if restart == "gradient":
            reset = batch_dot(z - x, x - x_old) > 0
        elif restart == "function":
            f_new = objective(x).reshape(batch_shape)
            reset = rejected = f_new > f_old
            x = torch.where(reset, x_old, x)
            f_old = torch.where(reset, f_old, f_new)
        momentum = ((t_old - 1) / t).to(x.real.dtype)
        z = x + momentum * (x - x_old)
        if reset is not None:
            t = torch.where(reset, torch.ones_like(t), t)
            z = torch.where(reset, x, z)
        stop = callback(it, x) if callback is not None else None
        if stop or _relative_change_below(x, x_old, tol, rejected):
            break
    return x


def pdhg(
    op: Linop,
    prox_dual: Prox,
    x0: torch.Tensor,
    u0: Any,
    tau: float | torch.Tensor,
    sigma: float | torch.Tensor,
    max_iter: int,
    prox_primal: Prox | None = None,
    tol: float = 0.0,
    callback: Callback | None = None,
) -> torch.Tensor:
    """Primal-dual hybrid gradient (Chambolle-Pock, theta = 1) for `min_x g(x) + f(K x)`.

    `op` is `K` (a `linops.Linop`; a `linops.Stack` gives list-valued duals), `prox_dual(sigma,
    v)` the prox of `sigma f^*`, `prox_primal(tau, v)` that of `tau g` (None: `g = 0`).
    Iteration: `u = prox_dual(sigma, u + sigma K x_bar)`, `x_k = prox_primal(tau, x - tau K^H u)`,
    `x_bar = 2 x_k - x_{k-1}`. Converges for `tau sigma ||K||^2 <= 1` (`recon.prox` lists the
    bounds); `tau` may be a per-item tensor.

    Stopping rule: after `max_iter` iterations, once every item satisfies
    `||x_k - x_{k-1}|| <= tol ||x_k||`, or when `callback` returns True.
    """
    x = x0
    x_bar = x
    u = u0
    for it in range(1, max_iter + 1):
        kx = op.forward(x_bar)
        if isinstance(u, (list, tuple)):
            u = prox_dual(sigma, [ui + sigma * ki for ui, ki in zip(u, kx)])
        else:
            u = prox_dual(sigma, u + sigma * kx)
        x_old = x
        x = x - tau * op.adjoint(u)
        if prox_primal is not None:
            x = prox_primal(tau, x)
        x_bar = 2 * x - x_old
        stop = callback(it, x) if callback is not None else None
        if stop or _relative_change_below(x, x_old, tol):
            break
    return x
