"""The core's parsed objects behind MLP and limit_kernel: kept per architecture, and the
training step's built-in MSE direction equal to the same direction given from Python."""

import numpy as np
import pytest

import ntkfast as nk
from ntkfast import dynamics


def test_mlp_keeps_one_core_network_per_architecture():
    net = nk.MLP([3, 8, 2], activation="tanh", beta=0.2)
    assert net.core is net.core
    assert nk.MLP([3, 8, 2], activation="tanh", beta=0.2).core is net.core
    before = net.core
    net.widths = [3, 9, 2]  # the attributes stay the truth: a new core follows them
    assert net.core is not before
    params = net.init(seed=1)
    assert net.apply(params, np.ones((4, 3))).shape == (4, 2)


def test_custom_activations_run_in_the_numpy_network():
    from ntkfast._numpy_network import NumpyNetwork

    act = nk.activations.Custom(np.tanh)
    net = nk.MLP([3, 4, 1], activation=act, beta=0.2)
    core = net.core
    assert isinstance(core, NumpyNetwork)
    assert (core.widths, core.activation, core.beta) == ([3, 4, 1], act, 0.2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_the_core_mse_step_equals_the_python_direction(dtype):
    """train() runs MSE steps entirely in the core; the same direction −(f − y) given as a
    Python callable (the path every custom direction takes) gives the same bits."""
    rng = np.random.default_rng(0)
    net = nk.MLP([5, 16, 16, 2], activation="gelu", beta=0.1)
    params = [(w.astype(dtype), b.astype(dtype)) for w, b in net.init(seed=2)]
    x, y = rng.standard_normal((12, 5)), rng.standard_normal((12, 2))
    core = nk.train(net, params, x, y, steps=6, lr=0.3)
    mse = dynamics.MSE(y)
    given = nk.train(net, params, x, y, steps=6, lr=0.3, direction=lambda f, t: -mse.derivative(f))
    np.testing.assert_array_equal(core.f_train, given.f_train)
    np.testing.assert_array_equal(core.cost, given.cost)
    for (w1, b1), (w2, b2) in zip(core.params, given.params):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)


def test_core_working_memory_grows_with_the_inputs():
    net = nk.MLP([10, 30, 30, 3])
    small = net.core.working_memory(10, 8, False)
    assert net.core.working_memory(20, 8, False) == 2 * small
    assert net.core.working_memory(10, 8, True) > small
    assert net.core.working_memory(10, 4, False) * 2 == small
