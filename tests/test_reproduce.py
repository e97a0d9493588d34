"""``ntkfast reproduce --quick`` end to end: files, numbers, and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ntkfast as nk
from ntkfast.data import circle

# The command needs the paper extra: matplotlib draws the figures, scikit-learn has the digits.
pytest.importorskip("matplotlib", reason="ntkfast reproduce needs matplotlib (the paper extra)")
pytest.importorskip("sklearn", reason="ntkfast reproduce needs scikit-learn (the paper extra)")


def _reproduce(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """``python -m ntkfast reproduce --quick ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "ntkfast", "reproduce", "--quick", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("reproduce")
    proc = _reproduce("--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


def test_quick_run_writes_figures_summary_and_report(quick_run):
    out, stdout = quick_run
    for name in ("figure1.png", "figure2.png", "figure3.png", "summary.json", "report.md"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert str(out.resolve()) in stdout
    assert "Figure 1" in (out / "report.md").read_text()


def test_summary_numbers_make_sense(quick_run):
    out, _ = quick_run
    summary = json.loads((out / "summary.json").read_text())
    f1 = summary["figure1"]
    gamma = np.array(f1["gamma"])
    limit = nk.limit_kernel(
        np.array([[1.0, 0.0]]), circle(gamma), depth=4, activation="relu", beta=0.1, get="ntk"
    )[0]
    np.testing.assert_allclose(f1["limit"], limit, rtol=1e-12)
    narrow, wide = (f1["per_width"][str(w)] for w in f1["settings"]["widths"])
    assert wide["spread_t0"] < narrow["spread_t0"]
    assert abs(wide["inflation"]) < abs(narrow["inflation"])
    inside = summary["figure2"]["fraction_inside_10_90_band"]
    assert all(0.0 <= v <= 1.0 for v in inside.values())
    assert max(inside.values()) > 0.5
    f3 = summary["figure3"]
    lam = f3["eigenvalues"]
    assert lam[0] >= lam[1] >= lam[2] > 0
    assert all(rate > 0 for rate in f3["decay_rate_along_pc2"].values())
    assert "digits" in f3["data"]


def test_figure3_reads_mnist_files(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "m.npz", x=rng.integers(0, 256, (200, 28, 28)), y=rng.integers(0, 10, 200))
    out = tmp_path / "out"
    proc = _reproduce(
        "--quiet", "--figure", "3", "--mnist", str(tmp_path / "m.npz"), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert "MNIST" in summary["figure3"]["data"] and (out / "figure3.png").exists()
    assert "figure1" not in summary


@pytest.mark.parametrize(
    "args, message",
    [
        (["--figure", "7"], "unknown figure"),
        (["--figure", "3", "--mnist", "/nonexistent/mnist.npz"], "no such file"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_arguments_give_one_line_errors(args, message, tmp_path):
    proc = _reproduce("--out", str(tmp_path), *args)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    proc = _reproduce("--out", str(locked / "x"))
    assert proc.returncode == 2 and "cannot write" in proc.stderr


def test_output_path_that_is_a_file(tmp_path):
    target = tmp_path / "file"
    target.write_text("")
    proc = _reproduce("--out", str(target))
    assert proc.returncode == 2 and "cannot write" in proc.stderr


def test_malformed_mnist_file_is_a_one_line_error(tmp_path):
    junk = tmp_path / "train-images-idx3-ubyte"
    junk.write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 7)  # header cut short
    proc = _reproduce("--figure", "3", "--mnist", str(junk), "--out", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "truncated IDX header" in proc.stderr and "Traceback" not in proc.stderr
