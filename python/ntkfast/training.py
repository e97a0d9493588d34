"""Gradient descent on the parameters of a finite-width network.

Time follows the paper: one step of learning rate η advances t by η, and the parameters move
along ∂_t θ_p = ⟨∂_{θ_p} F, d_t⟩_{p_in} = (1/N) Σ_i ∂_{θ_p} f(x_i)ᵀ d_t(x_i), with d_t = −d|_{f_t}
(gradient descent on the cost) unless another training direction is given (Theorem 2).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

from ._validation import as_finite_array, as_finite_float, as_positive_int
from .dynamics import MSE

if TYPE_CHECKING:
    from .dynamics import _Cost
    from .network import MLP

__all__ = ["DivergenceError", "TrainResult", "train"]


class DivergenceError(FloatingPointError):
    """Training left the finite numbers: the learning rate is too large."""


@dataclass
class TrainResult:
    """Recorded every ``record_every`` steps and at the last one.

    params: the final parameters; times (R,): η × step; f_train (R, N, n_L); f_test (R, M, n_L)
    or None; cost (R,): the cost on the training inputs; ntk_drift (R,) or None:
    ‖Θ̂_t − Θ̂_0‖_F / ‖Θ̂_0‖_F of the empirical NTK ("trace") on the training inputs.
    """

    params: list[tuple[np.ndarray, np.ndarray]]
    times: np.ndarray
    f_train: np.ndarray
    f_test: np.ndarray | None
    cost: np.ndarray
    ntk_drift: np.ndarray | None = field(default=None)


def _largest_stable_rate(
    net: MLP, params: Sequence[tuple[ArrayLike, ArrayLike]], x: np.ndarray, n: int
) -> float:
    """2N / λ_max of the full empirical NTK: the stability limit of gradient descent on MSE
    for the linearised network."""
    m = net.widths[-1]
    full = net.ntk(params, x, output="full").transpose(0, 2, 1, 3).reshape(n * m, n * m)
    lam_max = float(np.linalg.eigvalsh(full.astype(np.float64))[-1])
    return 2 * n / lam_max


def train(
    net: MLP,
    params: Sequence[tuple[ArrayLike, ArrayLike]],
    x_train: ArrayLike,
    y_train: ArrayLike,
    steps: int = 200,
    lr: float = 1.0,
    x_test: ArrayLike | None = None,
    track_ntk: bool = False,
    direction: Callable[[np.ndarray, float], ArrayLike] | None = None,
    record_every: int = 1,
    cost: _Cost | None = None,
) -> TrainResult:
    """Gradient descent θ ← θ + η ⟨∂_θ F, d⟩_{p_in} for ``steps`` steps.

    Parameters
    ----------
    net : MLP
    params : list of (W, b)
        Initial parameters (not modified).
    x_train : (N, n0);  y_train : (N, n_L) or (N,) for n_L = 1
    steps : int ≥ 0;  lr : float > 0
        Step count and learning rate η (the paper uses η = 1); time t = η × step.
    x_test : (M, n0), optional
        Inputs whose outputs are recorded too.
    track_ntk : bool
        Record the relative drift of the empirical NTK on the training inputs.
    direction : callable (f_train, t) -> d, optional
        The training direction d_t of shape (N, n_L) (Theorem 2); default −cost.derivative(f).
    record_every : int ≥ 1
    cost : object with value(f) and derivative(f), optional
        Default :class:`ntkfast.dynamics.MSE` of y_train.

    Each step is one forward pass (which also keeps σ' for the backward pass) and one backward
    pass in the Rust core. A step that produces non-finite outputs raises
    :class:`DivergenceError`, naming the largest stable learning rate 2N/λ_max for MSE.
    """
    weights, biases, dtype = net.check_params(params)
    x = net.check_inputs(x_train, "x_train", dtype)
    n, m = x.shape[0], net.widths[-1]
    y = np.asarray(y_train)
    if y.dtype.kind not in "biuf":
        raise TypeError(f"y_train must be a real array, got dtype {y.dtype}")
    y = y.astype(np.float64)
    if y.ndim == 1 and m == 1:
        y = y[:, None]
    if y.shape != (n, m):
        raise ValueError(f"y_train must have shape ({n}, {m}), got {y.shape}")
    y = as_finite_array(y, "y_train", (2,))
    steps = as_positive_int(steps, "steps", minimum=0)
    lr = as_finite_float(lr, "lr")
    if lr <= 0:
        raise ValueError(f"lr must be a finite number > 0, got {lr}")
    record_every = as_positive_int(record_every, "record_every")
    xt = None if x_test is None else net.check_inputs(x_test, "x_test", dtype)
    # The built-in MSE cost with the default direction runs whole steps in the core.
    builtin = cost is None and direction is None
    cost = MSE(y) if cost is None else cost
    if not (callable(getattr(cost, "value", None)) and callable(getattr(cost, "derivative", None))):
        raise TypeError("cost must have value(f) and derivative(f) methods")
    if direction is not None and not callable(direction):
        raise TypeError("direction must be a callable (f_train, t) -> d")
    weights = [w.copy() for w in weights]
    biases = [b.copy() for b in biases]
    f = np.empty((n, m), dtype)
    core = net.core
    y_core = np.ascontiguousarray(y)
    records: dict[str, list[float | np.ndarray]] = {
        "times": [],
        "f_train": [],
        "f_test": [],
        "cost": [],
        "drift": [],
    }
    theta0 = net.ntk(list(zip(weights, biases)), x) if track_ntk else None
    state = {"t": 0.0}

    def observe() -> np.ndarray:
        """Checks the outputs in ``f`` for divergence and records them on recording steps."""
        f64 = f.astype(np.float64)
        if not np.isfinite(f64).all():
            raise DivergenceError("non-finite outputs")
        with np.errstate(over="ignore", invalid="ignore"):
            value = cost.value(f64)
        if "cost0" not in state and not np.isfinite(value):
            raise ValueError(
                f"the cost of the initial outputs is {value} (not finite): the targets or the "
                "outputs are too large; scale them down"
            )
        if state.setdefault("cost0", value) * 1e12 + 1e12 < value or not np.isfinite(value):
            raise DivergenceError(f"the cost grew from {state['cost0']:.3g} to {value:.3g}")
        if state["record"]:
            records["f_train"].append(f64)
            records["cost"].append(value)
        return f64

    def current_direction() -> np.ndarray:
        """Called by the core between the forward and the backward pass of a step."""
        f64 = observe()
        if direction is None:
            d = -np.asarray(cost.derivative(f64), dtype=np.float64)
        else:
            d = np.asarray(direction(f64, state["t"]))
            if d.dtype.kind not in "biuf":
                raise TypeError(f"the direction must be a real array, got dtype {d.dtype}")
            d = d.astype(np.float64)
        if d.shape != (n, m):
            raise ValueError(f"the direction must have shape ({n}, {m}), got {d.shape}")
        if not np.isfinite(d).all():
            raise DivergenceError("non-finite direction")
        return np.ascontiguousarray(d, dtype=dtype)

    def record_parameters(step: int) -> None:
        """What needs the parameters themselves, before the step updates them."""
        current = list(zip(weights, biases))
        records["times"].append(lr * step)
        if xt is not None:
            records["f_test"].append(net.apply(current, xt).astype(np.float64))
        if theta0 is not None:  # that is, track_ntk
            theta = net.ntk(current, x)
            records["drift"].append(float(np.linalg.norm(theta - theta0) / np.linalg.norm(theta0)))

    try:
        for step in range(steps + 1):
            state["t"] = lr * step
            state["record"] = step % record_every == 0 or step == steps
            if state["record"]:
                record_parameters(step)
            if step == steps:
                core.apply(weights, biases, x, f)
                observe()
                break
            # Forward pass (f into `f`), then the direction d(f), then θ ← θ + η ⟨∂_θF, d⟩ in
            # place, the gradient added inside the GEMMs: d = y − f in the core for the MSE
            # cost (its outputs observed after the step), else current_direction().
            if builtin:
                core.step(weights, biases, x, y_core, f, lr)
                observe()
            else:
                core.step(weights, biases, x, None, f, lr, current_direction)
    except DivergenceError as err:
        rate = _largest_stable_rate(net, params, x, n)
        raise DivergenceError(
            f"training diverged at step {step} ({err}); for MSE, gradient descent is stable for "
            f"learning rates below 2N/λ_max = {rate:.4g} (λ_max of the initial empirical NTK), "
            f"got lr = {lr}"
        ) from None
    return TrainResult(
        params=list(zip(weights, biases)),
        times=np.array(records["times"]),
        f_train=np.stack(records["f_train"]),
        f_test=np.stack(records["f_test"]) if xt is not None else None,
        cost=np.array(records["cost"]),
        ntk_drift=np.array(records["drift"]) if track_ntk else None,
    )
