"""The minimiser the last layer is fitted with: L-BFGS on K independent smooth problems
at once (the cross-validation folds and the final fit share one loop), in numpy, with a
backtracking line search per problem. Deterministic: the same start, the same steps.

Layer: foundations (numpy only; used by train)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_ITER = 1000
GRAD_TOL = 1e-5  # stop when the largest gradient component is below this


def lbfgs(
    fg: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    x0: np.ndarray,
    max_iter: int = MAX_ITER,
    tol: float = GRAD_TOL,
    memory: int = 10,
) -> tuple[np.ndarray, int]:
    """Minimise K independent smooth functions at once (x0 [K, P]; fg returns values [K]
    and gradients [K, P]) by L-BFGS with a backtracking (Armijo) line search per problem.
    A problem whose largest gradient component is below `tol` stops moving. Returns
    (x, iterations until the last one stopped). Deterministic."""
    x = x0.copy()
    f, g = fg(x)
    hist_s: list[np.ndarray] = []
    hist_y: list[np.ndarray] = []
    hist_rho: list[np.ndarray] = []
    gamma = 1.0 / np.maximum(1.0, np.linalg.norm(g, axis=1))
    it = 0
    for it in range(1, max_iter + 1):
        active = np.max(np.abs(g), axis=1) >= tol
        if not active.any():
            return x, it - 1
        d, slope = _direction(g, active, hist_s, hist_y, hist_rho, gamma)
        xn, fn, gn = _backtrack(fg, x, f, d, slope)
        s, yv = xn - x, gn - g
        sy = np.einsum("kp,kp->k", s, yv)
        yy = np.einsum("kp,kp->k", yv, yv)
        ok = sy > 1e-10 * yy  # curvature along the step (relative: steps get tiny near the end)
        rho = np.where(ok, 1.0 / np.where(ok, sy, 1.0), 0.0)  # rho 0: the pair changes nothing
        gamma = np.where(ok, sy / np.where(ok, yy, 1.0), gamma)
        hist_s.append(s)
        hist_y.append(yv)
        hist_rho.append(rho)
        if len(hist_s) > memory:
            del hist_s[0], hist_y[0], hist_rho[0]
        x, f, g = xn, fn, gn
    return x, it


def _direction(
    g: np.ndarray,
    active: np.ndarray,
    hist_s: list[np.ndarray],
    hist_y: list[np.ndarray],
    hist_rho: list[np.ndarray],
    gamma: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """(the L-BFGS step of each problem [K, P] by the two-loop recursion, its slope [K]);
    the gradient's descent where that is no descent, nothing for a problem stopped."""
    q = g.copy()
    alphas = []
    for s, yv, rho in zip(reversed(hist_s), reversed(hist_y), reversed(hist_rho)):
        a = rho * np.einsum("kp,kp->k", s, q)
        q -= a[:, None] * yv
        alphas.append(a)
    q *= gamma[:, None]
    for s, yv, rho, a in zip(hist_s, hist_y, hist_rho, reversed(alphas)):
        q += s * (a - rho * np.einsum("kp,kp->k", yv, q))[:, None]
    d = -q
    slope = np.einsum("kp,kp->k", g, d)
    bad = slope >= 0  # not a descent direction (numerical trouble): use the gradient
    d[bad] = -g[bad]
    slope[bad] = -np.einsum("kp,kp->k", g[bad], g[bad])
    d[~active] = 0.0
    slope[~active] = 0.0
    return d, slope


def _backtrack(
    fg: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    x: np.ndarray,
    f: np.ndarray,
    d: np.ndarray,
    slope: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, values, gradients) after the step along `d`, halved per problem until it
    decreases enough (Armijo) or is below 1e-12 of `d`."""
    t = np.ones(x.shape[0])
    xn = x + d
    fn, gn = fg(xn)
    while True:
        done = (fn <= f + 1e-4 * t * slope) | (t < 1e-12)
        if done.all():
            break
        t[~done] *= 0.5
        trial = x + t[:, None] * d
        ft, gt = fg(trial)
        xn[~done], fn[~done], gn[~done] = trial[~done], ft[~done], gt[~done]
    return xn, fn, gn
