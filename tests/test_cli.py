"""The command line: kernels from .npy files, streamed .npy output, the demo, and errors."""

import numpy as np
import pytest

import ntkfast as nk
from ntkfast.cli import main

from conftest import make_inputs


@pytest.fixture
def data(tmp_path):
    x, y = make_inputs(40, 6, seed=1), make_inputs(9, 6, seed=2)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    return tmp_path, x, y


def test_npz_output(data):
    path, x, y = data
    args = ["kernel", str(path / "x.npy"), str(path / "y.npy"), "--depth", "3"]
    assert main([*args, "--activation", "erf", "--beta", "0.5", "-o", str(path / "k.npz")]) == 0
    k = np.load(path / "k.npz")
    want = nk.limit_kernel(x, y, depth=3, activation="erf", beta=0.5)
    assert np.array_equal(k["nngp"], want.nngp) and np.array_equal(k["ntk"], want.ntk)


def test_streamed_npy_output_and_slope(data):
    path, x, _ = data
    out = path / "ntk.npy"
    args = ["kernel", str(path / "x.npy"), "--depth", "4", "--activation", "leaky_relu"]
    assert main([*args, "--slope", "0.3", "--get", "ntk", "-o", str(out)]) == 0
    want = nk.limit_kernel(x, depth=4, activation=nk.activations.LeakyReLU(0.3), get="ntk")
    assert np.array_equal(np.load(out), want)
    assert (
        main(
            ["kernel", str(path / "x.npy"), "--depth", "2", "--float32", "-o", str(path / "k.npz")]
        )
        == 0
    )
    assert np.load(path / "k.npz")["ntk"].dtype == np.float32


def test_errors_leave_no_file(data, capsys):
    path, x, _ = data
    x[3, 2] = np.nan
    np.save(path / "bad.npy", x)
    assert (
        main(
            [
                "kernel",
                str(path / "bad.npy"),
                "--depth",
                "2",
                "--get",
                "ntk",
                "-o",
                str(path / "o.npy"),
            ]
        )
        == 2
    )
    assert "row 3" in capsys.readouterr().err
    assert main(["kernel", str(path / "x.npy"), "--depth", "0", "-o", str(path / "o.npz")]) == 2
    assert sorted(p.name for p in path.iterdir()) == ["bad.npy", "x.npy", "y.npy"]


def test_refuses_to_overwrite_an_input(data, capsys):
    path, x, _ = data
    target = str(path / "x.npy")
    assert main(["kernel", target, "--depth", "3", "--get", "ntk", "-o", target]) == 2
    assert "also an input" in capsys.readouterr().err
    assert np.array_equal(np.load(target), x)


def test_demo_runs(capsys):
    assert main(["demo", "--n", "200"]) == 0
    out = capsys.readouterr().out
    assert "Θ∞(x0, x)" in out and "symmetric: True" in out
