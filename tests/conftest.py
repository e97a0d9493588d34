import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

ACTIVATIONS = [
    ("relu", 0.0),
    ("leaky_relu", 0.2),
    ("abs", 0.0),
    ("erf", 0.0),
    ("gelu", 0.0),
    ("sin", 0.0),
    ("cos", 0.0),
    ("identity", 0.0),
]

# Activations without a closed-form dual (Hermite series in the core).
SERIES = ["tanh", "sigmoid", "softplus", "silu"]


def make_inputs(n, n0, seed, spread=(0.3, 3.0)):
    """Gaussian rows rescaled to norms spread over a decade."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n0))
    x *= rng.uniform(*spread, size=(n, 1)) / np.linalg.norm(x, axis=1, keepdims=True)
    return x * np.sqrt(n0)


@pytest.fixture
def restore_threads():
    import ntkfast as nk

    before = nk.get_num_threads()
    yield
    nk.set_num_threads(before)
