"""Property-based tests (hypothesis) of ntkfast.train: gradient descent on the parameters,
against gradient descent written out in NumPy with the forward-mode Jacobian of
tests/reference.py, for any data, targets, step counts, learning rates, record intervals,
test inputs, costs and training directions (one faulty argument at a time). The contract is
that of tests/properties.py; train's DivergenceError is expected where the NumPy run diverges
too, and a direction callback's own exception must come out unchanged. The @example cases are
regressions of bugs these tests found.
"""

import numbers

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property-based tests need hypothesis (test extra)")
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from properties import (  # noqa: E402
    F32,
    F64,
    Boom,
    as_dtype,
    assert_close,
    check,
    examples,
    finite_arrays,
    inputs,
    network_input_failure,
    one_fault,
    to64,
    tolerance,
)

import ntkfast as nk  # noqa: E402
from ntkfast import dynamics  # noqa: E402

from reference import explicit_jacobian, flat, forward, unflat  # noqa: E402

TRAIN_NET = nk.MLP([2, 3, 2], "erf", beta=0.5)
TRAIN_PARAMS = {F64: TRAIN_NET.init(seed=5), F32: TRAIN_NET.init(seed=5, dtype=np.float32)}


def reference_train(net, params, x, y, steps, lr, record_every, x_test, track):
    """Gradient descent θ ← θ + η (1/N) Jᵀ (y − f) in NumPy with the forward-mode Jacobian,
    and train's divergence rule; returns the records, ValueError or "diverged"."""
    theta = flat(to64(params))
    n, m = x.shape[0], net.widths[-1]

    def ntk(vector):
        jac = explicit_jacobian(net, unflat(net, vector), x)
        return np.einsum("ikp,jkp->ij", jac, jac) / m

    theta0 = ntk(theta) if track else None
    out = {"times": [], "f_train": [], "f_test": [], "cost": [], "drift": []}
    cost0 = None
    for step in range(steps + 1):
        record = step % record_every == 0 or step == steps
        if record:
            out["times"].append(lr * step)
            if x_test is not None:
                out["f_test"].append(forward(net, unflat(net, theta), x_test))
            if track:
                out["drift"].append(np.linalg.norm(ntk(theta) - theta0) / np.linalg.norm(theta0))
        with np.errstate(all="ignore"):
            f = forward(net, unflat(net, theta), x)
            if not np.isfinite(f).all():
                return "diverged"
            value = 0.5 * float(np.mean(np.sum((f - y) ** 2, axis=1)))
        if cost0 is None:
            if not np.isfinite(value):
                return ValueError
            cost0 = value
        if cost0 * 1e12 + 1e12 < value or not np.isfinite(value):
            return "diverged"
        if record:
            out["f_train"].append(f)
            out["cost"].append(value)
        if step == steps:
            break
        jac = explicit_jacobian(net, unflat(net, theta), x)
        with np.errstate(all="ignore"):
            theta = theta + lr * np.einsum("nkp,nk->p", jac, y - f) / n
    out["params"] = theta
    return out


def train_targets(kind, n, dtype, rng):
    """(y_train argument, float64 values or None, the exception its checks raise)."""
    y = rng.standard_normal((n, 2))
    large = 1e100 if dtype == F64 else 1e6
    table = {
        "ok": (y, None),
        "list": (y.tolist(), None),
        "int": (np.round(3 * y).astype(np.int32), None),
        "large": (y * large, None),
        "huge": (y * 1e200, None),  # the initial cost overflows: ValueError when training
        "flat": (y[:, 0], ValueError),
        "rows": (np.vstack([y, y[:1]]), ValueError),
        "nan": (np.where(np.arange(2) == 1, np.nan, y), ValueError),
        "inf": (np.where(np.arange(2) == 0, np.inf, y), ValueError),
        "complex": (y + 1j, TypeError),
        "strings": (y.astype(str), TypeError),
    }
    arg, failure = table[kind]
    values = None if failure else np.asarray(arg, dtype=np.float64)
    return arg, values, failure


def _direction(kind, n, y):
    """A training direction (f, t) -> d: y − f (the default's), or one that is wrong."""

    def boom(f, t):
        raise Boom("the direction callback failed")

    return {
        None: None,
        "same": lambda f, t: y - f,
        "wrong": lambda f, t: np.zeros((n + 1, 2)),
        "complex": lambda f, t: f + 1j,
        "nan": lambda f, t: f * np.nan,
        "boom": boom,
    }[kind]


def _train_case(fault, **changes):
    case = dict(fault=fault, y_kind="ok", steps=2, lr=0.5, record_every=1, test_kind="ok")
    case.update(cost_kind=None, direction=None)
    case.update(changes)
    return dict(data=(X_TRAIN, X_TRAIN), dtype=F64, case=case, track=True, seed=0)


X_TRAIN = np.array([[0.5, -1.0], [1.5, 0.25], [-0.75, 2.0]])
X_HUGE = np.array([[1e200, 1.0], [1.0, 2.0]])  # finite in float64, inf in float32


@examples(0.4)
@given(
    data=st.one_of(inputs(2), finite_arrays(2)),
    dtype=st.sampled_from([F64, F64, F32]),
    case=one_fault(
        y_kind=(["ok", "ok", "ok", "list", "int", "large"],
                ["huge", "flat", "rows", "nan", "inf", "complex", "strings"]),
        steps=([2, 1, 3, 0, np.int64(2)], [-1, 2.0, None, True]),
        lr=([0.5, 1.0, 1e8, 0.05, np.float32(0.5)],
            [0.0, -1.0, np.nan, np.inf, "0.5", None, True]),
        record_every=([1, 2, 1, 3], [0, 1.5]),
        test_kind=(["ok", None, None], ["cols", "nan", "complex", "huge"]),
        cost_kind=([None, "mse", None], ["object"]),
        direction=([None, "same", None], ["boom", "nan", "wrong", "complex"]),
    ),
    track=st.booleans(),
    seed=st.integers(0, 2**16),
)  # fmt: skip
# Regressions: each of these was accepted silently or raised an unexpected exception.
@example(**_train_case("direction", direction="boom"))  # a callback's exception
@example(**_train_case("direction", direction="complex"))  # was silently made real
@example(**_train_case("cost_kind", cost_kind="object"))  # was AttributeError
@example(**_train_case("y_kind", y_kind="complex"))  # was silently made real
@example(**_train_case("y_kind", y_kind="strings"))  # was parsed as numbers
@example(**_train_case("lr", lr="0.5"))  # was parsed as a number
@example(**_train_case("steps", steps=2.0))  # TypeError like the other integer arguments
@example(**_train_case("y_kind", y_kind="huge"))  # was DivergenceError at step 0
@example(**{**_train_case(None), "data": (X_HUGE, X_HUGE), "dtype": F32})  # was NaN params
def test_train_any_arguments(data, dtype, case, track, seed, outcomes):
    """train with one faulty argument at a time: times, outputs, costs, parameters, test
    outputs and NTK drift of gradient descent written out in NumPy (1e-7 in float64, 1e-4
    in float32), or the error of the first faulty argument in train's order;
    DivergenceError exactly when the NumPy run diverges (or a direction gives NaN), and a
    direction callback's own exception unchanged."""
    y_kind, steps, lr = case["y_kind"], case["steps"], case["lr"]
    record_every, test_kind = case["record_every"], case["test_kind"]
    cost_kind, direction = case["cost_kind"], case["direction"]
    x, values = data
    rng = np.random.default_rng(seed)
    params = TRAIN_PARAMS[dtype]
    n = values.shape[0] if values is not None and values.ndim == 2 and values.shape[0] else 3
    y, y_values, y_failure = train_targets(y_kind, n, dtype, rng)
    x_test = {
        None: None,
        "ok": rng.standard_normal((3, 2)),
        "cols": rng.standard_normal((3, 3)),
        "nan": np.full((2, 2), np.nan),
        "complex": np.ones((2, 2), complex),
        "huge": np.full((2, 2), 1e200),
    }[test_kind]
    cost = {None: None, "mse": "mse", "object": object()}[cost_kind]
    if cost == "mse":
        cost = dynamics.MSE(y_values) if y_failure is None else None

    # The checks, in train's order.
    failure = network_input_failure(values, dtype, 2) or y_failure
    if failure is None:
        if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
            failure = TypeError
        elif steps < 0:
            failure = ValueError
        elif isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            failure = TypeError
        elif not (np.isfinite(lr) and lr > 0):
            failure = ValueError
        elif not isinstance(record_every, numbers.Integral):
            failure = TypeError
        elif record_every < 1:
            failure = ValueError
        elif test_kind not in (None, "ok"):
            failure = TypeError if test_kind == "complex" else ValueError
        elif cost_kind == "object":
            failure = TypeError
    want = None
    if failure is None:
        xv = as_dtype(values, dtype)
        xt = None if x_test is None else as_dtype(x_test, dtype)
        want = reference_train(
            TRAIN_NET, params, xv, y_values, int(steps), float(lr), record_every, xt, track
        )
        if want is ValueError:  # the cost of the initial outputs overflows
            failure = ValueError
        elif steps >= 1 and direction in ("wrong", "complex", "nan", "boom"):
            failure = {
                "wrong": ValueError,
                "complex": TypeError,
                "nan": nk.DivergenceError,
                "boom": Boom,
            }[direction]
        elif want == "diverged":
            failure = nk.DivergenceError
    fn = _direction(direction, n, y_values)
    result = check(
        outcomes,
        "ntkfast.train",
        lambda: nk.train(
            TRAIN_NET,
            params,
            x,
            y,
            steps=steps,
            lr=lr,
            x_test=x_test,
            track_ntk=track,
            direction=fn,
            record_every=record_every,
            cost=cost,
        ),
        failure,
    )
    if result is None:
        return
    tol = tolerance(dtype)
    np.testing.assert_array_equal(result.times, want["times"])
    f_ref = np.array(want["f_train"])
    scale = max(np.abs(f_ref).max(), np.abs(y_values).max(), 1e-300)
    assert_close(result.f_train, f_ref, scale, tol, "train f_train")
    assert_close(result.cost, np.array(want["cost"]), 4 * scale**2, tol, "train cost")
    assert_close(flat(result.params), want["params"], np.abs(want["params"]).max(), tol, "params")
    assert all(w.dtype == dtype and b.dtype == dtype for w, b in result.params)
    if x_test is None:
        assert result.f_test is None
    else:
        ref = np.array(want["f_test"])
        assert_close(result.f_test, ref, np.abs(ref).max() + 1e-300, tol, "train f_test")
    if track:
        assert_close(result.ntk_drift, np.array(want["drift"]), 1.0, 10 * tol, "ntk drift")
    else:
        assert result.ntk_drift is None
