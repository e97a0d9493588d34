"""The activation registry of the core is the one list of activations: Python's names,
classes and the CLI's choices follow from it."""

import numpy as np
import pytest

import ntkfast as nk
from ntkfast import _ntkfast
from ntkfast.cli import main as cli_main

REGISTRY = _ntkfast.ACTIVATIONS


def test_python_names_are_the_core_registry_in_order():
    assert list(nk.activations.NAMES) == [entry[0] for entry in REGISTRY]
    assert len(set(nk.activations.NAMES)) == len(REGISTRY)


@pytest.mark.parametrize("entry", REGISTRY, ids=[e[0] for e in REGISTRY])
def test_every_registry_entry_has_a_class(entry):
    name, formula, closed, param, default = entry
    act = nk.activations.get(name)
    assert isinstance(act, nk.activations.Activation)
    assert act.name == name
    assert formula and isinstance(closed, bool)
    # Docstrings say which method computes the kernel.
    assert ("Hermite" in type(act).__doc__) == (not closed), type(act).__doc__
    if param is None:
        assert act.param == 0.0
    else:
        assert act.param == default  # the class's default parameter is the core's
    # The core accepts the name with the class's parameter.
    k = nk.limit_kernel(np.eye(3), depth=2, activation=act, get="ntk")
    assert np.isfinite(k).all()


def test_closed_forms_are_the_ones_the_spec_lists():
    closed = [name for name, _, c, _, _ in REGISTRY if c]
    assert closed == ["relu", "leaky_relu", "abs", "erf", "gelu", "sin", "cos", "identity"]
    series = [name for name, _, c, _, _ in REGISTRY if not c]
    assert series == ["tanh", "sigmoid", "softplus", "silu"]


def test_the_cli_lists_the_registry(capsys):
    with pytest.raises(SystemExit):
        cli_main(["kernel", "--help"])
    out = capsys.readouterr().out
    assert ", ".join(nk.activations.NAMES) in " ".join(out.split())
