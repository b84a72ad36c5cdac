"""Parallel in time: a nonlinear recurrence evaluated by Newton's method (DEER, quasi-DEER, ELK).

The seed's ``s_t = f(U x_t + W s_{t-1})`` is one equation per step; all T of them at once are the root of the
residual ``r_t(s) = s_t - f(s_{t-1}, x_t)``, t = 1..T. Newton's method linearises ``f`` around the current guess
``s^(i)``,

    s_t = f(s^(i)_{t-1}, x_t) + J_t (s_{t-1} - s^(i)_{t-1}),    J_t = ∂f/∂s (s^(i)_{t-1}, x_t),

and solving that for every ``t`` is a *linear* recurrence ``s_t = J_t s_{t-1} + b_t``, which
``jax.lax.associative_scan`` solves in ``O(log T)`` depth (``linear.py``). This is DEER (Lim et al., ICLR
2024, arXiv 2309.12252). After ``k`` iterations the first ``k`` states are exact (``s_1 = f(s_0, x_1)`` after one,
and so on by induction), so ``T`` iterations always reach the sequential answer; Newton's quadratic convergence
usually needs far fewer. quasi-DEER keeps only the diagonal of ``J_t`` (``O(D)`` per step instead of ``O(D³)``;
the prefix argument still holds); ELK (Gonzalez et al., NeurIPS 2024, arXiv 2407.19115) damps each step,
Levenberg-Marquardt style, by a Kalman smoother whose gain caps how far one linear solve can amplify, so its iterates
stay finite where DEER's overflow (``linear.py``; jrnn's ELK is the diagonal form, the paper's quasi-ELK).

Gradients come from the implicit function theorem, not from differentiating the iterations: at the solution,
``dL/dθ = Σ_t λ_tᵀ ∂f/∂θ (s_{t-1}, x_t)`` with the adjoint ``λ_t = ∂L/∂s_t + J_{t+1}ᵀ λ_{t+1}``, one more linear
recurrence, backwards in time and with the true Jacobians (so quasi-DEER's and ELK's gradients are exact too). It
is solved either by ``associative_scan`` over the full ``[D, D]`` Jacobians (``gradient="parallel"``: ``O(log T)``
deep, ``O(T D²)`` memory) or by a reverse loop of vector-Jacobian products (``gradient="sequential"``: ``T`` deep,
``O(T D)`` memory). Memory never grows with the number of iterations.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from jrnn._src.solvers.base import Problem, Solver, zero_padded
from jrnn._src.solvers.linear import damped_diagonal_step, linear_scan

METHODS = ("deer", "quasi_deer", "elk")
INITS = ("zeros", "state", "step")
TOLERANCE = {8: 1e-10, 4: 1e-5, 2: 1e-2}  # default atol = rtol, by the state dtype's itemsize


@dataclasses.dataclass(frozen=True)
class Newton(Solver):
    """A parallel-in-time Newton solver: build one with :func:`jrnn.deer`, :func:`jrnn.quasi_deer` or
    :func:`jrnn.elk`, which document the fields."""

    method: str = "deer"
    max_iters: int | None = None
    atol: float | None = None
    rtol: float | None = None
    damping: float = 0.0
    init: str = "zeros"
    fallback: str = "sequential"
    gradient: str = "parallel"

    @property
    def name(self) -> str:
        return self.method

    def solve(self, problem: Problem) -> tuple[jax.Array, Any]:
        ys, final, _ = self.solve_with_info(problem)
        return ys, final

    def solve_with_info(self, problem: Problem) -> tuple[jax.Array, Any, NewtonInfo]:
        """:meth:`solve` and what Newton did: ``(ys, final_state, info)``."""
        cell, params, xs, state, mask, state_mask = (problem.cell, problem.params, problem.xs, problem.state,
                                                     problem.mask, problem.state_mask)
        batch, time = xs.shape[:2]
        flatten, unravel = _flattener(state)
        s0 = jax.vmap(flatten)(state)
        valid = (jnp.ones((batch, time), bool) if mask is None else mask).astype(s0.dtype)
        if problem.resets is None:
            resets, restart = jnp.zeros((batch, time), s0.dtype), jnp.zeros_like(s0)
        else:
            resets, restart = problem.resets.astype(s0.dtype), jax.vmap(flatten)(problem.restart).astype(s0.dtype)
        flat = _Flat(cell, flatten, unravel, self, state_mask is not None)
        m = jnp.zeros((batch, 0), s0.dtype) if state_mask is None else state_mask.astype(s0.dtype)
        r = (resets, jax.lax.stop_gradient(restart))
        states, info = flat.solve(params, xs, s0, valid, r, m)
        prevs = jnp.where(resets[..., None] > 0, restart[:, None], _previous(states, s0))
        ys = jax.vmap(jax.vmap(flat.output, (None, 0, 0, None)), (None, 0, 0, 0))(params, prevs, xs, m)
        final = jax.vmap(unravel)(states[:, -1])  # padded steps are the identity: the last state is each one's own
        return zero_padded(ys, mask), final, info


def _flattener(state: Any):
    """``(flatten, unravel)`` between one sequence's state pytree and a real ``[D]`` vector; a complex leaf is
    stored as its real and imaginary parts (Newton's Jacobians are then those of the real map, which
    ``jax.jacfwd`` takes without holomorphy)."""
    template = jax.tree_util.tree_map(lambda leaf: leaf[0], state)
    is_complex = [jnp.iscomplexobj(leaf) for leaf in jax.tree_util.tree_leaves(template)]
    treedef = jax.tree_util.tree_structure(template)

    def realify(tree):
        leaves = jax.tree_util.tree_leaves(tree)
        return [jnp.stack([leaf.real, leaf.imag], -1) if c else leaf for leaf, c in zip(leaves, is_complex)]

    _, unravel_real = ravel_pytree(realify(template))

    def flatten(tree):
        return ravel_pytree(realify(tree))[0]

    def unravel(vector):
        leaves = [leaf[..., 0] + 1j * leaf[..., 1] if c else leaf for leaf, c in zip(unravel_real(vector), is_complex)]
        return jax.tree_util.tree_unflatten(treedef, leaves)

    return flatten, unravel


class NewtonInfo(NamedTuple):
    """What a Newton solve did (:func:`jrnn.newton_scan`).

    Attributes:
      iterations: ``[]`` int32, the Newton steps taken (each one Jacobian and one linear solve).
      residual: ``[]``, ``max |s_t - f(s_{t-1}, x_t)|`` over the batch, time and state of the last iterate.
      converged: ``[]`` bool, whether ``|s_t - f(s_{t-1}, x_t)| <= atol + rtol |f(s_{t-1}, x_t)|`` everywhere
        within ``max_iters``. When it is False and the solver's ``fallback`` is ``"sequential"``, the states
        returned are the sequential scan's, not the last iterate.
    """

    iterations: jax.Array
    residual: jax.Array
    converged: jax.Array


def _check(method: str, max_iters, atol, rtol, damping, init, fallback, gradient) -> Newton:
    where = f"jrnn.{method}"
    if max_iters is not None and (isinstance(max_iters, bool) or not isinstance(max_iters, int) or max_iters < 1):
        raise ValueError(f"{where}: expected max_iters to be None or an int >= 1, got {max_iters!r}")
    for name, value in (("atol", atol), ("rtol", rtol)):
        if value is not None and not (isinstance(value, int | float) and value >= 0):
            raise ValueError(f"{where}: expected {name} to be None or a number >= 0, got {value!r}")
    if not (isinstance(damping, int | float) and damping >= 0):
        raise ValueError(f"{where}: expected damping to be a number >= 0, got {damping!r}")
    for name, value, allowed in (("init", init, INITS), ("fallback", fallback, ("sequential", "none")),
                                 ("gradient", gradient, ("parallel", "sequential"))):
        if value not in allowed:
            raise ValueError(f"{where}: expected {name} to be one of {allowed}, got {value!r}")
    return Newton(method, max_iters, atol, rtol, float(damping), init, fallback, gradient)


def deer(*, max_iters: int | None = None, atol: float | None = None, rtol: float | None = None,
         init: str = "zeros", fallback: str = "sequential", gradient: str = "parallel") -> Newton:
    """DEER (Lim et al. 2024): Newton's method over all time steps at once, each iteration one linear recurrence
    with the full ``[D, D]`` state Jacobians, solved by ``jax.lax.associative_scan`` (``O(log T)`` deep).

    ``D`` is the size of the flattened state of one sequence (an LSTM's is ``2 H``). Work per iteration is
    ``O(T D³)`` and memory ``O(T D²)``: worth it for small states on a parallel machine
    (docs/concepts/parallel-in-time.md has the measurements).

    Args:
      max_iters: at most this many Newton steps (default and cap: T; after k steps the first k states are exact,
        so T steps always reach the sequential answer).
      atol: converged when ``|s_t - f(s_{t-1}, x_t)| <= atol + rtol |f(s_{t-1}, x_t)|`` at every step; by
        default 1e-10 for float64 states, 1e-5 for float32 and 1e-2 for 16-bit floats.
      rtol: the relative tolerance of that test, with the same defaults.
      init: the first guess of every state: ``"zeros"``; ``"state"``, the initial state at every step; or
        ``"step"``, one step from the initial state at every step, ``f(s_0, x_t)`` (ParaRNN's guess: one parallel
        evaluation of the cell, and ``s_1`` is exact before the first iteration). Measured on the benchmark grid:
        docs/concepts/parallel-in-time.md.
      fallback: ``"sequential"`` (default) runs the sequential scan when Newton did not converge (or diverged)
        within ``max_iters``, so the answer is always the recurrence's; ``"none"`` returns the last iterate,
        allowed only in :func:`jrnn.newton_scan`, whose ``info`` says so.
      gradient: how the adjoint recurrence of the implicit gradient is solved: ``"parallel"`` (default here;
        associative scan over the full Jacobians) or ``"sequential"`` (a reverse loop of vector-Jacobian products).

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4)
      >>> params = cell.init(jax.random.key(0), input_size=2)
      >>> xs = jax.random.normal(jax.random.key(1), (3, 50, 2))
      >>> ys, _ = jrnn.scan(cell, params, xs, solver=jrnn.deer())
      >>> bool(jnp.allclose(ys, jrnn.scan(cell, params, xs)[0], atol=1e-4))
      True
    """
    return _check("deer", max_iters, atol, rtol, 0.0, init, fallback, gradient)


def quasi_deer(*, max_iters: int | None = None, atol: float | None = None, rtol: float | None = None,
               init: str = "zeros", fallback: str = "sequential", gradient: str = "sequential") -> Newton:
    """quasi-DEER (Gonzalez et al. 2024): DEER with only the diagonal of each state Jacobian, ``O(T D)`` work and
    memory per iteration. The iteration converges more slowly where the Jacobian is far from diagonal (still
    exact after T steps); the gradient is exact all the same, since it uses the true Jacobians (by default the
    reverse loop of vector-Jacobian products, ``O(T D)`` memory). Arguments as in :func:`jrnn.deer`.

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.indrnn(4)
      >>> params = cell.init(jax.random.key(0), input_size=2)
      >>> xs = jax.random.normal(jax.random.key(1), (3, 50, 2))
      >>> ys, _, info = jrnn.newton_scan(cell, params, xs, solver=jrnn.quasi_deer())
      >>> bool(info.converged), bool(jnp.allclose(ys, jrnn.scan(cell, params, xs)[0], atol=1e-4))
      (True, True)
    """
    return _check("quasi_deer", max_iters, atol, rtol, 0.0, init, fallback, gradient)


def elk(damping: float = 1e-8, *, max_iters: int | None = None, atol: float | None = None,
        rtol: float | None = None, init: str = "zeros", fallback: str = "sequential",
        gradient: str = "sequential") -> Newton:
    """ELK (Gonzalez et al. 2024): quasi-DEER with a Levenberg-Marquardt damped step,
    ``argmin_s Σ_t |s_t - a_t ⊙ s_{t-1} - b_t|² + λ Σ_t |s_t - s^(i)_t|²``, computed by a Kalman smoother that
    runs in parallel over time (``jrnn/_src/solvers/linear.py``), every step taken with the same ``λ`` (as in the
    paper).

    Where the diagonal Jacobians ``a_t`` exceed 1 over many steps, DEER's and quasi-DEER's linear solve multiplies
    them together and overflows (``1.5^1000`` is out of float32's range); their iterate is then ``inf`` and only
    the fallback is left. ELK's smoother is stable for any ``λ > 0``: the filter's gain lets the solve amplify by
    about ``1/√λ`` at most, so where DEER's step would be astronomically large ELK's is merely large, the cell's
    nonlinearity (a saturating ``tanh``, a gate) brings the next iterate back, and Newton goes on. Where DEER's
    step is moderate, a small ``λ`` leaves it almost unchanged, so ELK then converges like quasi-DEER. Hence the
    small default; a large ``λ`` is a small trust region (about ``1/√λ``), which crawls. How often each ``λ``
    converges where DEER does and where it overflows is measured by ``python -m benchmarks stability`` and reported
    in docs/concepts/parallel-in-time.md. Finite iterates are not convergence: on a chaotic or multistable
    recurrence no method of this family converges fast (Gonzalez et al. 2025, "Predictability enables
    parallelization"), and the fallback then gives the sequential answer. The first-k-states-exact property of
    DEER holds only approximately (exactly at ``λ = 0``). This is the diagonal form (the paper's quasi-ELK). Other
    arguments as in :func:`jrnn.deer`.

    Args:
      damping: ``λ >= 0``, the weight of the last iterate; 0 is quasi-DEER. The smoother runs in float32 for a
        16-bit state (which holds neither ``1e-8`` nor variances up to ``1/λ``).

    Example:
      >>> import jax, jax.numpy as jnp, jrnn
      >>> cell = jrnn.gru(4)
      >>> params = cell.init(jax.random.key(0), input_size=2)
      >>> xs = jax.random.normal(jax.random.key(1), (3, 30, 2))
      >>> ys, _, info = jrnn.newton_scan(cell, params, xs, solver=jrnn.elk())
      >>> bool(info.converged), bool(jnp.allclose(ys, jrnn.scan(cell, params, xs)[0], atol=1e-4))
      (True, True)
    """
    return _check("elk", max_iters, atol, rtol, damping, init, fallback, gradient)


def _previous(states: jax.Array, s0: jax.Array) -> jax.Array:
    """``[s_0, ..., s_{T-1}]`` from ``states = [s_1, ..., s_T]``."""
    return jnp.concatenate([s0[:, None], states[:, :-1]], axis=1)


@dataclasses.dataclass(frozen=True, eq=False)
class _Flat:
    """The flattened recurrence ``s_t = f(s_{t-1}, x_t)`` of one cell: one sequence's state as a real ``[D]``
    vector. Per step it also reads ``valid`` (0: a padded step, the identity) and ``r = (reset, restart)`` (reset
    1: a segment starts, ``s_{t-1}`` is replaced by the constant ``restart``, so ``∂f/∂s_{t-1} = 0`` there)."""

    cell: Any
    flatten: Any
    unravel: Any
    solver: Newton
    masked: bool  # whether the cell's step takes a variational-dropout state mask

    def _step(self, params, s, x, m):
        return self.cell.step(params, self.unravel(s), x, **({"state_mask": m} if self.masked else {}))

    def f(self, params, s, x, valid, reset, restart, m):
        """One sequence, one step: ``s [D], x [F], valid, reset [] (0 or 1), restart [D] -> s' [D]``."""
        prev = jnp.where(reset > 0, restart, s)
        new = self.flatten(self._step(params, prev, x, m)[0]).astype(s.dtype)
        return jnp.where(valid > 0, new, s)

    def output(self, params, s, x, m):
        return self._step(params, s, x, m)[1]

    def f_all(self, params, prevs, xs, valid, r, m):
        """``[B, T, D]`` -> ``[B, T, D]``: every step at once."""
        inner = jax.vmap(self.f, (None, 0, 0, 0, 0, None, None))
        return jax.vmap(inner, (None, 0, 0, 0, 0, 0, 0))(params, prevs, xs, valid, *r, m)

    def jacobian(self, params, prevs, xs, valid, r, m):
        """``[B, T, D, D]``: ``∂f/∂s`` at every step."""
        jac = jax.vmap(jax.jacfwd(self.f, argnums=1), (None, 0, 0, 0, 0, None, None))
        return jax.vmap(jac, (None, 0, 0, 0, 0, 0, 0))(params, prevs, xs, valid, *r, m)

    def diagonal(self, params, prevs, xs, valid, r, m):
        """``[B, T, D]``: the diagonal of ``∂f/∂s`` at every step, one basis tangent at a time (``O(B T D)``
        memory, never the full Jacobians)."""
        size = prevs.shape[-1]

        def column(i):
            tangent = jnp.broadcast_to(jax.nn.one_hot(i, size, dtype=prevs.dtype), prevs.shape)
            _, out = jax.jvp(lambda s: self.f_all(params, s, xs, valid, r, m), (prevs,), (tangent,))
            return out[..., i]

        return jnp.moveaxis(jax.lax.map(column, jnp.arange(size), batch_size=min(size, 8)), 0, -1)

    def newton_step(self, params, xs, s0, valid, r, m, states, values, damping):
        """One iteration: the states that solve the recurrence linearised around ``states`` (``values`` is
        ``f`` there). At a reset the Jacobian is 0 and ``values`` is exact, so the linear step restarts there."""
        prevs = _previous(states, s0)
        method = self.solver.method
        if method == "deer":
            J = self.jacobian(params, prevs, xs, valid, r, m)
            return linear_scan(J, values - jnp.einsum("btij,btj->bti", J, prevs), s0)
        a = self.diagonal(params, prevs, xs, valid, r, m)
        if method == "elk":
            return damped_diagonal_step(a, values - a * prevs, s0, states, damping)
        return linear_scan(a, values - a * prevs, s0)

    def sequential(self, params, xs, s0, valid, r, m):
        """The reference: one step after another (``jax.lax.scan``)."""
        step = jax.vmap(self.f, (None, 0, 0, 0, 0, 0, 0))

        def body(s, inputs):
            s = step(params, s, *inputs, r[1], m)
            return s, s

        _, states = jax.lax.scan(body, s0, (jnp.swapaxes(xs, 0, 1), valid.T, r[0].T))
        return jnp.swapaxes(states, 0, 1)

    def forward(self, params, xs, s0, valid, r, m):
        solver = self.solver
        time = xs.shape[1]
        max_iters = time if solver.max_iters is None else min(solver.max_iters, time)
        tol = TOLERANCE.get(jnp.dtype(s0.dtype).itemsize, 1e-5)
        atol = tol if solver.atol is None else solver.atol
        rtol = tol if solver.rtol is None else solver.rtol

        def evaluate(states):
            values = self.f_all(params, _previous(states, s0), xs, valid, r, m)
            error = jnp.abs(states - values)
            done = jnp.all(error <= atol + rtol * jnp.abs(values))
            return values, done, jnp.max(jnp.where(jnp.isnan(error), jnp.inf, error))

        steps = xs.reshape(*xs.shape[:2], -1)  # [B, T, F] whatever one step's input shape (conv_lstm: [H, W, C])
        guess = jnp.zeros_like(steps[..., :1] * s0[:, None, :1], shape=(*xs.shape[:2], s0.shape[-1]))
        if solver.init != "zeros":
            guess = guess + s0[:, None]
        if solver.init == "step":
            guess = self.f_all(params, guess, xs, valid, r, m)

        def cond(carry):
            k, _, _, done, residual = carry
            return ~done & jnp.isfinite(residual) & (k < max_iters)

        def body(carry):
            k, states, values, _, _ = carry
            states = self.newton_step(params, xs, s0, valid, r, m, states, values, solver.damping)
            return (k + 1, states, *evaluate(states))

        k, states, _, done, residual = jax.lax.while_loop(cond, body, (jnp.int32(0), guess, *evaluate(guess)))
        if solver.fallback == "sequential":
            states = jax.lax.cond(done, lambda: states, lambda: self.sequential(params, xs, s0, valid, r, m))
        return states, NewtonInfo(k, residual, done)

    def adjoint(self, params, xs, s0, valid, r, m, states, g):
        """``λ_t = g_t + J_{t+1}ᵀ λ_{t+1}``, ``λ_T = g_T``, the Jacobians at the solution."""
        prevs = _previous(states, s0)
        if self.solver.gradient == "parallel":
            J = self.jacobian(params, prevs, xs, valid, r, m)
            JT = jnp.swapaxes(J[:, 1:], -1, -2)
            return linear_scan(jnp.concatenate([JT, jnp.zeros_like(JT[:, :1])], 1), g, jnp.zeros_like(s0),
                               reverse=True)
        step = jax.vmap(self.f, (None, 0, 0, 0, 0, 0, 0))

        def body(lam_next, inputs):
            prev_next, x_next, valid_next, r_next, g_t = inputs
            _, vjp = jax.vjp(lambda s: step(params, s, x_next, valid_next, r_next, r[1], m), prev_next)
            lam = g_t + vjp(lam_next)[0]
            return lam, lam

        inputs = [jnp.swapaxes(a[:, 1:], 0, 1) for a in (prevs, xs, valid, r[0])] + [jnp.swapaxes(g[:, :-1], 0, 1)]
        _, lams = jax.lax.scan(body, g[:, -1], tuple(inputs), reverse=True)
        return jnp.concatenate([jnp.swapaxes(lams, 0, 1), g[:, -1:]], axis=1)

    def solve(self, params, xs, s0, valid, r, m):
        @jax.custom_vjp
        def solve(params, xs, s0, valid, r, m):
            return self.forward(params, xs, s0, valid, r, m)

        def forward(params, xs, s0, valid, r, m):
            states, info = self.forward(params, xs, s0, valid, r, m)
            return (states, info), (params, xs, s0, valid, r, m, states)

        def backward(residuals, cotangents):
            params, xs, s0, valid, r, m, states = residuals
            lam = self.adjoint(params, xs, s0, valid, r, m, states, cotangents[0])
            _, vjp = jax.vjp(lambda p, x, prevs: self.f_all(p, prevs, x, valid, r, m), params, xs,
                             _previous(states, s0))
            d_params, d_xs, d_prevs = vjp(lam)
            zeros = jax.tree_util.tree_map(jnp.zeros_like, (valid, r, m))  # constants: no gradient
            return d_params, d_xs, d_prevs[:, 0], *zeros

        solve.defvjp(forward, backward)
        return solve(params, xs, s0, valid, r, m)
