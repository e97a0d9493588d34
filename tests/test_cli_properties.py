"""Property-based tests (hypothesis) of the ``ntkfast kernel`` command: any input file
(missing, empty, junk, truncated, bit-flipped, a directory) and any options give the
reference's kernels, an error exit (status 2, one ``ntkfast: error:`` line, no files left
behind) or a usage error; never a traceback. One faulty argument at a time; the @example case
is a regression of a bug these tests found.
"""

import contextlib
import io
import math
import os
import tempfile

import numpy as np
import pytest

pytest.importorskip("hypothesis", reason="property-based tests need hypothesis (test extra)")
from hypothesis import example, given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from properties import (  # noqa: E402
    F32,
    F64,
    KERNEL_LIMIT,
    as_dtype,
    assert_close,
    examples,
    finite_arrays,
    input_dtype,
    inputs,
    one_fault,
    overflows,
    sample_failure,
    tolerance,
)

import ntkfast as nk  # noqa: E402
from ntkfast.activations import LeakyReLU  # noqa: E402
from ntkfast.cli import main as cli_main  # noqa: E402

import reference  # noqa: E402


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _kernel_failure(values, y_values, has_y, use_float32, x_dtype, y_dtype):
    """What the CLI's inputs must give: (exception class or None, dtype of the result)."""
    failure = sample_failure(values) or (has_y and sample_failure(y_values))
    if failure:
        return failure, None
    if use_float32:
        dtype = F32
    elif y_values is not None and x_dtype != y_dtype:
        dtype = F64
    else:
        dtype = x_dtype
    for v in (values, y_values):
        if v is not None:
            v32 = as_dtype(v, dtype)
            if not np.isfinite(v32).all() or overflows(v32, KERNEL_LIMIT[dtype]):
                return ValueError, dtype
    if y_values is not None and y_values.shape[1] != values.shape[1]:
        return ValueError, dtype
    return None, dtype


@examples(0.4)
@given(
    x=st.one_of(inputs(3), finite_arrays(3)),
    y=st.one_of(st.none(), st.none(), inputs(3)),
    case=one_fault(
        x_file=(["npy"], ["missing", "empty", "junk", "truncated", "flipped", "txt", "directory"]),
        depth=(["1", "2", "3"], ["0", "-1", "x"]),
        activation=(["relu", "abs", "leaky_relu"], ["foo"]),
        slope=([None, None, "0.2"], ["inf"]),
        beta=(["0.1", "0.5"], ["nan", "-inf", "abc"]),
        get=(["nngp,ntk", "nngp,ntk", "ntk", "nngp"], ["", "foo", "ntk,ntk"]),
        output=([".npz", ".npz", ".npy"], [".txt", "no folder"]),
        threads=([None], ["0", "abc"]),
    ),
    float32=st.booleans(),
    cut=st.floats(0, 1),
    flip=st.integers(0, 10**6),
)  # fmt: skip
@example(  # an empty file was an EOFError traceback
    x=(np.ones((2, 3)), np.ones((2, 3))),
    y=None,
    case=dict(fault="x_file", x_file="empty", depth="2", activation="relu", slope=None,
              beta="0.1", get="nngp,ntk", output=".npz", threads=None),
    float32=False,
    cut=0.5,
    flip=0,
)  # fmt: skip
@example(  # a usage error (argparse's exit), reached whatever the draws
    x=(np.ones((2, 3)), np.ones((2, 3))),
    y=None,
    case=dict(fault="beta", x_file="npy", depth="2", activation="relu", slope=None,
              beta="abc", get="nngp,ntk", output=".npz", threads=None),
    float32=False,
    cut=0.5,
    flip=0,
)  # fmt: skip
def test_cli_kernel_any_input(x, y, case, float32, cut, flip, outcomes):
    """``ntkfast kernel`` with any input file and options: the kernels of tests/reference.py
    in the dtype the inputs ask for, or status 2 with one ``ntkfast: error:`` line and no file
    left behind, or argparse's usage error; damaged files numpy can still read may go either
    way."""
    x_file, depth, activation = case["x_file"], case["depth"], case["activation"]
    slope, beta, get = case["slope"], case["beta"], case["get"]
    output, threads = case["output"], case["threads"]
    if case["fault"] not in ("slope", "activation") and slope is not None:
        activation = "leaky_relu"  # a valid slope goes with leaky_relu
    if case["fault"] not in ("get", "output") and output == ".npy" and "," in get:
        get = "ntk"  # a .npy file holds one kernel
    (x, values), y_values = x, None
    with tempfile.TemporaryDirectory() as tmp:
        xpath = os.path.join(tmp, "x.txt" if x_file == "txt" else "x.npy")
        data = _npy_bytes(np.asarray(x))
        if x_file == "directory":
            os.mkdir(xpath)
        elif x_file != "missing":
            if x_file == "empty":
                data = b""
            elif x_file == "junk":
                data = b"not an array " * 3
            elif x_file == "truncated":
                data = data[: int(cut * len(data))]
            elif x_file == "flipped":
                at = flip % len(data)
                data = data[:at] + bytes([data[at] ^ 0xA5]) + data[at + 1 :]
            with open(xpath, "wb") as f:
                f.write(data)
        argv = [] if threads is None else [f"--threads={threads}"]
        argv += ["kernel", xpath]
        if y is not None:
            y, y_values = y
            ypath = os.path.join(tmp, "y.npy")
            np.save(ypath, np.asarray(y))
            argv.append(ypath)
        out = os.path.join(tmp, "no folder", "k.npz") if output == "no folder" else None
        out = out or os.path.join(tmp, "k" + output)
        argv += [f"--depth={depth}", f"--activation={activation}", f"--beta={beta}"]
        argv += [f"--get={get}", "-o", out]
        argv += [] if slope is None else [f"--slope={slope}"]
        argv += ["--float32"] if float32 else []

        # What must happen: a usage error, an error exit, a result, or (for damaged files
        # numpy may still read) either of the last two.
        usage = depth == "x" or beta == "abc" or threads == "abc"
        kinds = tuple(k.strip() for k in get.split(",") if k.strip())
        settings_ok = (
            threads is None
            and output in (".npz", ".npy")
            and (output == ".npz" or len(kinds) == 1)
            and kinds in (("nngp", "ntk"), ("ntk",), ("nngp",))
            and int(depth) >= 1
            and math.isfinite(float(beta))
            and activation != "foo"
            and (slope is None or (activation == "leaky_relu" and slope != "inf"))
        ) if not usage else False  # fmt: skip
        damaged = x_file in ("truncated", "flipped")
        readable = x_file == "npy"
        if damaged:
            try:
                loaded = np.load(xpath, allow_pickle=False)
            except Exception:
                loaded = None
            else:
                readable = True
                with np.errstate(all="ignore"):
                    values = loaded.astype(np.float64) if loaded.dtype.kind in "biuf" else None
                x = loaded
        dtype = None
        if readable:
            x_dtype = input_dtype(x) if values is not None else None
            y_dtype = input_dtype(y) if y_values is not None else None
            failure, dtype = _kernel_failure(
                values, y_values, y is not None, float32, x_dtype, y_dtype
            )
        succeed = settings_ok and readable and failure is None and not usage
        either = damaged and readable and settings_ok and failure is None

        before_files = set(os.listdir(tmp))
        threads_before = nk.get_num_threads()
        stdout, stderr = io.StringIO(), io.StringIO()
        name = "ntkfast kernel (CLI)"
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                rc = cli_main(argv)
        except SystemExit as exc:
            outcomes.add(name, "usage error")
            assert usage and exc.code == 2, f"SystemExit({exc.code}) for {argv}"
            assert "error:" in stderr.getvalue()
            return
        except BaseException as exc:
            pytest.fail(f"{argv} raised {type(exc).__module__}.{type(exc).__name__}: {exc}")
        finally:
            if nk.get_num_threads() != threads_before:
                nk.set_num_threads(threads_before)
        assert not usage, f"{argv} ran instead of a usage error"
        if rc == 2:
            outcomes.add(name, "error exit")
            assert not succeed or either, f"{argv} failed: {stderr.getvalue()}"
            message = stderr.getvalue()
            assert message.startswith("ntkfast: error: ") and len(message.strip()) > 16, message
            assert set(os.listdir(tmp)) == before_files, "files left behind after an error"
            return
        outcomes.add(name, "result")
        assert rc == 0 and (succeed or either), f"{argv} returned {rc}"
        assert stdout.getvalue().startswith("wrote ")
        stored = np.load(out)
        got = {kinds[0]: stored} if output == ".npy" else {k: stored[k] for k in stored.files}
        assert sorted(got) == sorted(kinds)
        param = 0.0
        if activation == "leaky_relu":
            param = float(slope) if slope is not None else LeakyReLU().slope
        xv = as_dtype(values, dtype)
        yv = None if y_values is None else as_dtype(y_values, dtype)
        common = dict(depth=int(depth), activation=activation, beta=float(beta), param=param)
        want = reference.limit_kernel(xv, yv, **common)
        dx = np.diag(reference.limit_kernel(xv, **common)[1])
        dy = dx if yv is None else np.diag(reference.limit_kernel(yv, **common)[1])
        dx_s = np.diag(reference.limit_kernel(xv, **common)[0])
        dy_s = dx_s if yv is None else np.diag(reference.limit_kernel(yv, **common)[0])
        scales = {"nngp": np.sqrt(np.outer(dx_s, dy_s)), "ntk": np.sqrt(np.outer(dx, dy))}
        for kind in kinds:
            assert got[kind].dtype == dtype
            ref = want[0] if kind == "nngp" else want[1]
            assert_close(got[kind], ref, scales[kind], tolerance(dtype), f"CLI {kind}")
