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


@pytest.fixture
def regression_data(tmp_path):
    rng = np.random.default_rng(4)
    x, x_test = rng.standard_normal((200, 5)), rng.standard_normal((30, 5))
    y = np.stack([np.sin(x[:, 0]), np.cos(x[:, 1])], axis=1)
    paths = {name: str(tmp_path / f"{name}.npy") for name in ("x", "y", "t")}
    for name, array in zip(("x", "y", "t"), (x, y, x_test)):
        np.save(paths[name], array)
    return x, y, x_test, paths, tmp_path


def test_regress_writes_the_regressors_predictions(regression_data, capsys):
    x, y, x_test, paths, tmp = regression_data
    out = str(tmp / "pred.npy")
    common = ["--depth", "3", "--ridge", "0.01", "--solver", "direct"]
    assert main(["regress", paths["x"], paths["y"], "--test", paths["t"], *common, "-o", out]) == 0
    assert "wrote predictions (30, 2)" in capsys.readouterr().out
    reg = nk.KernelRegressor(depth=3, ridge=0.01, solver="direct").fit(x, y)
    np.testing.assert_array_equal(np.load(out), reg.predict(x_test))
    args = ["regress", paths["x"], paths["y"], "--test", paths["t"], *common, "--times", "1,inf"]
    assert main([*args, "-o", out]) == 0
    np.testing.assert_array_equal(np.load(out), reg.predict(x_test, t=[1.0, np.inf]))
    # The CG options reach the estimator.
    cg = ["--depth", "3", "--ridge", "0.01", "--solver", "cg", "--tol", "1e-10"]
    cg += ["--preconditioner-size", "20", "--kernel-storage", "float32"]
    assert main(["regress", paths["x"], paths["y"], "--test", paths["t"], *cg, "-o", out]) == 0
    refined = nk.KernelRegressor(
        depth=3,
        ridge=0.01,
        solver="cg",
        tol=1e-10,
        preconditioner_size=20,
        kernel_storage="float32",
    ).fit(x, y)
    assert refined.storage_ == "float32"
    np.testing.assert_array_equal(np.load(out), refined.predict(x_test))
    # The Nyström solver, X streamed from its memmap.
    args = ["regress", paths["x"], paths["y"], "--test", paths["t"], "--depth", "3"]
    assert main([*args, "--ridge", "0.01", "--centers", "25", "--times", "2,inf", "-o", out]) == 0
    assert "nystrom" in capsys.readouterr().out
    nystrom = nk.KernelRegressor(depth=3, ridge=0.01, centers=25).fit(x, y)
    np.testing.assert_array_equal(np.load(out), nystrom.predict(x_test, t=[2.0, np.inf]))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--times", "1,soon"], "--times"),
        (["--ridge", "-1"], "ridge"),
        (["--solver", "qr"], "solver"),
        (["--kernel-storage", "half"], "kernel_storage"),
    ],
)
def test_regress_errors_leave_no_file(regression_data, capsys, extra, message):
    _, _, _, paths, tmp = regression_data
    out = tmp / "pred.npy"
    args = ["regress", paths["x"], paths["y"], "--test", paths["t"], "--depth", "3", *extra]
    assert main([*args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ntkfast: error:") and message in err
    assert not out.exists()
    assert main([*args[: -len(extra)], "-o", str(tmp / "pred.txt")]) == 2
    assert ".npy" in capsys.readouterr().err
