"""The core install needs only NumPy and SciPy: the optional packages (matplotlib, tqdm,
scikit-learn, Dask) are imported only by the parts that use them, and a missing one gives an
error that names the pip extra to install."""

import subprocess
import sys
import textwrap

import pytest

OPTIONAL = ("matplotlib", "tqdm", "sklearn", "dask", "distributed")

# Run first in the child: makes the named top-level packages unimportable, as if not installed.
BLOCKER = """
import importlib.abc, sys
BLOCKED = set({blocked!r})
class _Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _Blocker())
"""


def _run(code, blocked=OPTIONAL):
    """Runs ``code`` in a fresh interpreter where ``blocked`` cannot be imported."""
    script = BLOCKER.format(blocked=tuple(blocked)) + textwrap.dedent(code)
    return subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )


def _cli(*args, blocked=OPTIONAL):
    """``python -m ntkfast ARGS`` with ``blocked`` unimportable."""
    return _run(
        f"import runpy, sys; sys.argv = ['ntkfast', *{list(args)!r}]; "
        "runpy.run_module('ntkfast', run_name='__main__')",
        blocked,
    )


def test_import_loads_no_optional_package():
    code = """
        import sys
        import ntkfast, ntkfast.cli, ntkfast.data, ntkfast.dynamics, ntkfast.reproduce
        print(sorted(m for m in sys.modules if m.partition(".")[0] in OPTIONAL))
    """
    proc = _run(f"OPTIONAL = {OPTIONAL!r}\n" + textwrap.dedent(code), blocked=())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_core_works_without_optional_packages(tmp_path):
    proc = _run(
        f"""
        import numpy as np, ntkfast as nk
        x = np.random.default_rng(0).standard_normal((5, 3))
        k = nk.limit_kernel(x, depth=3)
        np.save({str(tmp_path / "x.npy")!r}, x)
        print(k.ntk.shape)
        """
    )
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "k.npz"
    proc = _cli("kernel", str(tmp_path / "x.npy"), "--depth", "3", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0
    assert _cli("demo", "--n", "20").returncode == 0


def test_reproduce_names_the_extra_before_doing_anything(tmp_path):
    out = tmp_path / "out"
    proc = _cli("reproduce", "--quick", "--out", str(out))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "matplotlib and scikit-learn" in proc.stderr
    assert 'pip install "ntkfast[paper]"' in proc.stderr
    assert not out.exists()  # stopped before making the output folder


def test_reproduce_with_mnist_does_not_need_scikit_learn(tmp_path):
    pytest.importorskip("matplotlib")
    proc = _cli(
        "reproduce",
        "--figure",
        "3",
        "--mnist",
        str(tmp_path / "mnist.npz"),
        "--out",
        str(tmp_path),
        blocked=("sklearn",),
    )
    assert "scikit-learn" not in proc.stderr  # fails on the missing MNIST file instead
    assert "no such file" in proc.stderr and proc.returncode == 2


def test_reproduce_runs_without_tqdm(tmp_path):
    pytest.importorskip("matplotlib")
    proc = _cli(
        "reproduce",
        "--quick",
        "--figure",
        "2",
        "--out",
        str(tmp_path),
        blocked=("tqdm",),
    )
    assert proc.returncode == 0, proc.stderr
    assert "no progress bars (tqdm is not installed" in proc.stderr
    assert (tmp_path / "figure2.png").stat().st_size > 0


@pytest.mark.parametrize(
    "module, extra, names",
    [
        ("ntkfast.sklearn", "sklearn", "scikit-learn"),
        ("ntkfast.dask", "dask", "dask[array]"),
    ],
)
def test_optional_modules_name_their_extra(module, extra, names):
    proc = _run(
        f"""
        try:
            import {module}
        except ModuleNotFoundError as err:  # MissingExtraError is one: importorskip skips
            print(type(err).__name__, err)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("MissingExtraError")
    assert f"needs {names}, which is not installed" in proc.stdout
    assert f'pip install "ntkfast[{extra}]"' in proc.stdout


def test_digits_names_the_extra():
    proc = _run(
        """
        import ntkfast.data
        try:
            ntkfast.data.digits()
        except ImportError as err:
            print(err)
        """
    )
    assert 'pip install "ntkfast[paper]"' in proc.stdout, proc.stderr


def test_kernel_regressor_works_without_scikit_learn():
    proc = _run(
        """
        import numpy as np, ntkfast as nk
        x = np.random.default_rng(0).standard_normal((60, 3))
        y = np.sin(x[:, 0])
        reg = nk.KernelRegressor(depth=2, ridge=1e-3).fit(x, y)
        params = reg.get_params()
        reg.set_params(ridge=1e-2)
        print(params["ridge"], reg.ridge, round(reg.score(x, y), 3) > 0.9)
        try:
            nk.KernelRegressor(depth=2).predict(x)
        except ValueError as err:
            print(type(err).__name__)
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0.001", "0.01", "True", "NotFittedError"]
