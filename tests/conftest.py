import collections
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


def correlated_inputs(n, n0, seed):
    """Image-like rows: smooth random profiles plus a little noise, strongly correlated (their
    kernels are ill-conditioned, as users' data makes them)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n0)
    centres, widths = rng.uniform(0.2, 0.8, (n, 1)), rng.uniform(0.05, 0.3, (n, 1))
    bumps = np.exp(-((t - centres) ** 2) / (2 * widths**2))
    return bumps + 0.05 * rng.standard_normal((n, n0))


def make_inputs(n, n0, seed, spread=(0.3, 3.0)):
    """Gaussian rows rescaled to norms spread over a decade."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, n0))
    x *= rng.uniform(*spread, size=(n, 1)) / np.linalg.norm(x, axis=1, keepdims=True)
    return x * np.sqrt(n0)


def ntk_distances(activation, x, limit, widths=(64, 4096), seeds=2):
    """Mean over `seeds` initialisations of ‖Θ̂ − Θ∞‖ / ‖Θ∞‖ for depth-3 networks of each
    width (Theorem 1: it shrinks like 1/√width)."""
    import ntkfast as nk

    errors = []
    for width in widths:
        net = nk.MLP([x.shape[1], width, width, 1], activation, beta=0.1)
        e = [
            np.linalg.norm(net.ntk(net.init(seed=seed), x) - limit) / np.linalg.norm(limit)
            for seed in range(seeds)
        ]
        errors.append(float(np.mean(e)))
    return errors


def assert_same_bits_on_1_and_2_threads(x, activation, depth=3, beta=0.1):
    """K(x, x reversed) equal bit for bit on 1 and 2 threads (use with ``restore_threads``)."""
    import ntkfast as nk

    results = []
    for threads in (1, 2):
        nk.set_num_threads(threads)
        results.append(
            nk.limit_kernel(x, x[::-1].copy(), depth=depth, activation=activation, beta=beta)
        )
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)


@pytest.fixture
def restore_threads():
    import ntkfast as nk

    before = nk.get_num_threads()
    yield
    nk.set_num_threads(before)


#: Examples per property-based test (tests/test_*_properties.py; slow properties take a share).
PROPERTY_EXAMPLES = int(os.environ.get("NTKFAST_PROPERTY_EXAMPLES", "300"))


class Tally:
    """How the cases of one property-based test ended, per entry point: "result" or the
    name of the exception (or exit) that a case was expected to end with."""

    def __init__(self):
        self.counts = {}
        self.results_only = set()

    def add(self, name, how, errors=True):
        """Counts one case of ``name``; ``errors=False``: the test never expects it to fail."""
        self.counts.setdefault(name, collections.Counter())[how] += 1
        if not errors:
            self.results_only.add(name)

    def table(self, title):
        """The counts as a text table (one row per entry point)."""
        kinds = ["result", "ValueError", "TypeError", "MemoryError"]
        kinds += sorted({k for c in self.counts.values() for k in c} - set(kinds))
        rows = [["entry point", "cases", *kinds]]
        rows += [[n, sum(c.values()), *(c[k] for k in kinds)] for n, c in self.counts.items()]
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        lines = [f"\n{title}: {sum(sum(c.values()) for c in self.counts.values())} cases"]
        for r in rows:
            cells = (
                str(v).rjust(w) if i else str(v).ljust(w) for i, (v, w) in enumerate(zip(r, widths))
            )
            lines.append("  " + "  ".join(cells))
        return "\n".join(lines)

    def unreached(self):
        """Entry points that never returned a result, or never raised (unless results-only)."""
        missing = []
        for name, c in self.counts.items():
            if c["result"] == 0:
                missing.append(f"{name}: no case returned a result")
            if name not in self.results_only and sum(c.values()) == c["result"]:
                missing.append(f"{name}: no case raised")
        return missing


@pytest.fixture
def outcomes(request):
    """A Tally over all the examples of one property-based test. Printed afterwards (shown
    with ``pytest -s``); with the full number of examples (NTKFAST_PROPERTY_EXAMPLES ≥ 100)
    every entry point must have both returned results and reached its errors, so that the
    strategies keep covering both."""
    tally = Tally()
    yield tally
    print(tally.table(request.node.name))
    if PROPERTY_EXAMPLES >= 100:
        assert not tally.unreached(), tally.unreached()
