"""Threads, preallocated and memory-mapped outputs, GIL release and Ctrl-C."""

import os
import queue
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import ntkfast as nk

from conftest import make_inputs


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("symmetric", [True, False])
def test_one_and_two_threads_give_the_same_bits(restore_threads, dtype, symmetric):
    x1 = make_inputs(700, 17, seed=1).astype(dtype)
    x2 = None if symmetric else make_inputs(333, 17, seed=2).astype(dtype)
    nk.set_num_threads(1)
    assert nk.get_num_threads() == 1
    one = nk.limit_kernel(x1, x2, depth=4, activation="gelu")
    nk.set_num_threads(2)
    assert nk.get_num_threads() == 2
    two = nk.limit_kernel(x1, x2, depth=4, activation="gelu")
    assert np.array_equal(one.nngp, two.nngp) and np.array_equal(one.ntk, two.ntk)


def test_env_var_sets_threads():
    code = "import ntkfast as nk; print(nk.get_num_threads())"
    env = dict(os.environ, NTKFAST_NUM_THREADS="3")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.stdout.strip() == "3"
    env["NTKFAST_NUM_THREADS"] = "many"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and "ignoring NTKFAST_NUM_THREADS" in out.stderr


def test_out_arrays_and_memmap(tmp_path):
    x = make_inputs(300, 9, seed=4)
    want = nk.limit_kernel(x, depth=3, activation="erf")
    nngp = np.lib.format.open_memmap(
        tmp_path / "nngp.npy", mode="w+", dtype=np.float64, shape=(300, 300)
    )
    ntk = np.lib.format.open_memmap(
        tmp_path / "ntk.npy", mode="w+", dtype=np.float64, shape=(300, 300)
    )
    got = nk.limit_kernel(x, depth=3, activation="erf", out=nk.Kernel(nngp, ntk))
    assert got.ntk is ntk and got.nngp is nngp
    nngp.flush()
    ntk.flush()
    del nngp, ntk, got
    assert np.array_equal(np.load(tmp_path / "ntk.npy"), want.ntk)
    assert np.array_equal(np.load(tmp_path / "nngp.npy"), want.nngp)
    # A single kernel into a plain preallocated array.
    buf = np.full((300, 300), np.nan)
    assert nk.limit_kernel(x, depth=3, activation="erf", get="ntk", out=buf) is buf
    assert np.array_equal(buf, want.ntk)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("streamed", [False, True])
def test_outputs_start_on_a_cache_line_and_match_unaligned_out(dtype, streamed):
    # Rows of 64 bytes' multiple are whole cache lines when the array starts on one; outputs
    # of 16 MiB or more are then streamed a line at a time. The values must not depend on
    # where the output starts.
    item = np.dtype(dtype).itemsize
    n = int(np.ceil(np.sqrt(17 * 2**20 / item) / 16) * 16) if streamed else 320
    x = make_inputs(n, 11, seed=5).astype(dtype)
    got = nk.limit_kernel(x, depth=3, activation="relu")
    outputs = [got.nngp, got.ntk]
    if not streamed:
        net = nk.MLP([11, 16, 2], "relu")
        p = net.init(0, dtype=dtype)
        outputs += [net.ntk(p, x), net.apply(p, x), net.jacobian(p, x[:5])]
    for a in outputs:
        assert a.ctypes.data % 64 == 0 and a.flags.c_contiguous and a.flags.writeable
    raw = np.empty(2 * n * n + 128 // item, dtype)
    for shift in range(0, 64, item if not streamed else 16):
        # Outputs whose data start `shift` bytes past a line.
        start = (-raw.ctypes.data % 64 + shift) // item
        nngp = raw[start : start + n * n].reshape(n, n)
        ntk = raw[start + n * n : start + 2 * n * n].reshape(n, n)
        assert nngp.ctypes.data % 64 == shift
        nk.limit_kernel(x, depth=3, activation="relu", out=(nngp, ntk))
        assert np.array_equal(nngp, got.nngp) and np.array_equal(ntk, got.ntk)


def test_gil_is_released_during_the_computation():
    x = make_inputs(2500, 200, seed=0)
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(1)
            stop.wait(0.001)

    worker = threading.Thread(target=count)
    worker.start()
    before = len(ticks)
    nk.limit_kernel(x, depth=20)
    during = len(ticks) - before
    stop.set()
    worker.join()
    assert during > 5


LONG_CALLS = {
    "limit_kernel": (
        "x = np.random.default_rng(0).standard_normal((4000, 784))\n"
        "work = lambda: nk.limit_kernel(x, depth=2000, get='ntk')\n"
        "again = lambda: nk.limit_kernel(x[:10], depth=3, get='ntk')\n"
    ),
    "empirical ntk": (
        "x = np.random.default_rng(0).standard_normal((3000, 784)).astype(np.float32)\n"
        "net = nk.MLP([784] + [2000] * 9 + [1], 'relu')\n"
        "p = net.init(0, dtype=np.float32)\n"
        "work = lambda: net.ntk(p, x)\n"
        "again = lambda: net.ntk(p, x[:10])\n"
    ),
    "kernel product": (
        "x = np.random.default_rng(0).standard_normal((20000, 784))\n"
        "work = lambda: nk.KernelOperator(x, depth=50) @ np.ones(20000)\n"
        "again = lambda: nk.KernelOperator(x[:5], depth=2) @ np.ones(5)\n"
    ),
    "series kernel": (
        "x = np.random.default_rng(0).standard_normal((6000, 784))\n"
        "work = lambda: nk.limit_kernel(x, depth=300, activation='tanh', get='ntk')\n"
        "again = lambda: nk.limit_kernel(x[:10], depth=3, activation='tanh', get='ntk')\n"
    ),
    "training": (
        "x = np.random.default_rng(0).standard_normal((512, 784))\n"
        "y = np.sin(x[:, :1])\n"
        "net = nk.MLP([784, 2048, 2048, 1], 'relu')\n"
        "p = net.init(0)\n"
        "work = lambda: nk.train(net, p, x, y, steps=100000, lr=0.1)\n"
        "again = lambda: nk.train(net, p, x[:10], y[:10], steps=2, lr=0.1).f_train\n"
    ),
}


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("call", LONG_CALLS)
def test_ctrl_c_raises_keyboard_interrupt(call):
    """SIGINT during a long computation: KeyboardInterrupt within 5 s of the signal, and the
    process stays usable.

    The core checks for signals between tiles (docs/reliability.md: within about a second,
    typically tens of ms); 5 s leaves room for a loaded machine. This is the suite's only
    wall-clock bound. The latency is timed here, from sending the signal to reading the line
    the child prints when it catches KeyboardInterrupt."""
    script = (
        "import numpy as np, ntkfast as nk\n"
        + LONG_CALLS[call]
        + textwrap.dedent(
            """
            print("ready", flush=True)
            try:
                work()
                print("finished", flush=True)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
            print("usable", bool(np.isfinite(again()).all()), flush=True)
            """
        )
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines = queue.Queue()  # (arrival time, line), read as the child prints them

    def read():
        for line in proc.stdout:
            lines.put((time.perf_counter(), line.strip()))

    threading.Thread(target=read, daemon=True).start()
    try:
        # The timeouts of get() only guard against a hang.
        assert lines.get(timeout=120)[1] == "ready"
        threading.Event().wait(0.5)
        sent = time.perf_counter()
        proc.send_signal(signal.SIGINT)
        arrived, first = lines.get(timeout=120)
        assert first == "interrupted", (first, proc.stderr.read())
        assert arrived - sent < 5.0, f"KeyboardInterrupt {arrived - sent:.2f} s after SIGINT"
        assert lines.get(timeout=120)[1] == "usable True"
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_can_compute():
    """A child forked after the parent used the pool starts its own pool instead of hanging."""
    x = make_inputs(300, 5, seed=3)
    want = nk.limit_kernel(x, depth=3, get="ntk")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report through the pipe, never return into pytest
        signal.alarm(120)  # a hang kills the child instead of the test run
        try:
            ok = np.array_equal(nk.limit_kernel(x, depth=3, get="ntk"), want)
            os.write(write, b"same" if ok else b"different")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 16) == b"same" and status == 0


def test_eight_python_threads_at_once_match_serial_calls():
    """Eight threads share the pool: each gets the result of its own serial call (limit
    kernels of every kind, a Custom activation calling back into Python, empirical NTKs),
    and none waits forever (the joins have a timeout)."""
    from concurrent.futures import ThreadPoolExecutor

    x = make_inputs(300, 10, seed=1)
    net = nk.MLP([10, 64, 64, 2], "gelu", beta=0.2)
    params = net.init(seed=0)
    custom = nk.activations.Custom(np.sin, np.cos)
    jobs = [
        lambda: nk.limit_kernel(x, depth=4, activation="relu").ntk,
        lambda: nk.limit_kernel(x, x[:100], depth=3, activation="erf").nngp,
        lambda: nk.limit_kernel(x.astype(np.float32), depth=5, get="ntk"),
        lambda: nk.limit_kernel(x, depth=3, activation="tanh", get="ntk"),
        lambda: nk.limit_kernel(x, depth=3, activation=custom, get="ntk"),
        lambda: net.ntk(params, x, output="full"),
        lambda: net.apply(params, x),
        lambda: nk.limit_kernel_diagonal(x, depth=6, activation="silu", get="ntk"),
    ]
    serial = [job() for job in jobs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            futures = [pool.submit(job) for job in jobs]
            for future, want in zip(futures, serial):
                np.testing.assert_array_equal(future.result(timeout=120), want)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_during_reproduce_exits_cleanly(tmp_path):
    """SIGINT during `ntkfast reproduce`: status 130 and one line, no traceback."""
    pytest.importorskip("matplotlib", reason="ntkfast reproduce needs the paper extra")
    pytest.importorskip("sklearn", reason="ntkfast reproduce needs the paper extra")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ntkfast", "reproduce", "--out", str(tmp_path), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    threading.Event().wait(4.0)  # well inside the first figure's training
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, (out, err)
    assert err.strip() == "ntkfast: interrupted" and "Traceback" not in err


@pytest.mark.skipif(sys.platform == "win32", reason="needs the fork start method")
def test_multiprocessing_fork_workers_can_compute():
    """Workers forked by multiprocessing after the parent used the pool compute the same."""
    import multiprocessing

    x = make_inputs(200, 5, seed=4)
    want = nk.limit_kernel(x, depth=3, get="ntk")
    with multiprocessing.get_context("fork").Pool(2) as pool:
        results = pool.starmap(_kernel_in_worker, [(x, 3)] * 4)
    for got in results:
        np.testing.assert_array_equal(got, want)


def _kernel_in_worker(x, depth):
    return nk.limit_kernel(x, depth=depth, get="ntk")


@pytest.mark.parametrize("activation", ["identity", "relu", "erf"])
def test_row_blocks_give_the_bits_of_the_whole_kernel(activation):
    # Blocks of 256 rows (not a multiple of the tile) computed separately, as a Dask array's
    # are: their short tiles go through other GEMM kernels than the whole kernel's, whose
    # sums must not depend on the block shape nor on where a thread's buffers were allocated.
    x = make_inputs(1000, 50, seed=6)
    whole = nk.limit_kernel(x, depth=3, activation=activation, get="ntk")
    edges = [*range(0, 1000, 256), 1000]
    for a in range(len(edges) - 1):
        for b in range(a + 1):
            rows, cols = slice(edges[a], edges[a + 1]), slice(edges[b], edges[b + 1])
            x2 = None if a == b else x[cols]
            block = nk.limit_kernel(x[rows], x2, depth=3, activation=activation, get="ntk")
            assert np.array_equal(block, whole[rows, cols]), (a, b)
