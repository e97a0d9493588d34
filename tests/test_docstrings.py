"""The examples in the package's docstrings run and print what they show."""

import doctest
import importlib

import pytest

MODULES = [
    "ntkfast",
    "ntkfast.kernels",
    "ntkfast.activations",
    "ntkfast.kernel_operator",
    "ntkfast.regression",
    "ntkfast.sklearn",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    if name == "ntkfast.sklearn":
        pytest.importorskip("sklearn", reason="ntkfast.sklearn needs the sklearn extra")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0
