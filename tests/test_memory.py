"""Resident memory of kernels written into memory-mapped outputs (``out=``).

docs/kernels.md ("Memory") states that with ``out=`` nothing of size N1 × N2 is allocated and
the extra memory is O(N·(n0 + L)). These tests check it in a fresh child process (so nothing
else in the test session pollutes the figures), for a kernel several times larger than a memory
budget that the child both enforces and measures:

* enforced: RLIMIT_DATA is set to the child's VmData + budget. Private writable memory (malloc,
  np.empty, thread stacks) counts toward it; shared file mappings (``open_memmap`` mode "w+")
  do not. The child checks that an allocation of twice the budget fails, and a separate test
  shows that the same kernel computed in memory (without ``out=``) fails with a MemoryError.
* measured: a thread samples RssAnon, VmData and VmHWM from /proc/self/status every 2 ms
  while the kernel runs (the kernel releases the GIL); the peak growth of RssAnon (anonymous
  resident memory, i.e. everything but the file-backed outputs) must stay below the budget.

The baseline is taken after importing ntkfast, building the inputs, starting the sampler and a
warm-up call (so the thread pool and its stacks exist). Run with ``pytest -s`` to see the
figures.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import ntkfast as nk

from conftest import make_inputs

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux") or not os.path.exists("/proc/self/status"),
    reason="needs Linux (/proc/self/status, RLIMIT_DATA)",
)

MiB = 2**20
BUDGET = 32 * MiB  # enforced (RLIMIT_DATA) and asserted (peak RssAnon growth)
# Two outputs of 4096² numbers: 256 MiB in float64 (8× the budget), 128 MiB in float32 (4×).
N, N0, DEPTH = 4096, 64, 3
ACTIVATION, BETA = "relu", 0.1
SEED = 7

_CHILD = r"""
import gc, json, resource, sys, threading, time
import numpy as np
import ntkfast as nk

ARGS = json.loads(sys.argv[1])
sys.path.insert(0, ARGS["tests"])
from conftest import make_inputs

KEYS = ("VmData", "RssAnon", "VmHWM", "VmRSS", "RssFile", "RssShmem")


def status():
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in KEYS:
                out[key] = int(rest.split()[0]) * 1024
    return out


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.active = False
        self.done = False
        self.samples = 0
        self.peak = {}

    def run(self):
        while not self.done:
            if self.active:
                s = status()
                for k, v in s.items():
                    if v > self.peak.get(k, -1):
                        self.peak[k] = v
                self.samples += 1
            time.sleep(0.002)


def compute(x, out):
    kw = dict(out=out) if out is not None else {}
    if ARGS["api"] == "mlp":
        net = nk.MLP([x.shape[1]] + [512] * (ARGS["depth"] - 1) + [1], ARGS["activation"],
                     ARGS["beta"])
        assert net.depth == ARGS["depth"]
        return net.limit_kernel(x, **kw)
    return nk.limit_kernel(x, depth=ARGS["depth"], activation=ARGS["activation"],
                           beta=ARGS["beta"], **kw)


n, budget = ARGS["n"], ARGS["budget"]
dtype = np.dtype(ARGS["dtype"])
x = make_inputs(n, ARGS["n0"], seed=ARGS["seed"]).astype(dtype)
sampler = Sampler()
sampler.start()
# Warm-up: builds the thread pool (its stacks count toward VmData) on both code paths.
compute(x[:300], None)
compute(x[:300], (np.empty((300, 300), dtype), np.empty((300, 300), dtype)))
if ARGS["mode"] == "out":
    out = tuple(
        np.lib.format.open_memmap(f"{ARGS['dir']}/{k}.npy", mode="w+", dtype=dtype,
                                  shape=(n, n))
        for k in ("nngp", "ntk")
    )
else:
    out = None
gc.collect()
base = status()
limit = enforced = None
if ARGS["enforce"]:
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = base["VmData"] + budget
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))
    try:  # the limit is in force in this process
        bytearray(2 * budget)
        enforced = False
    except MemoryError:
        enforced = True
report = {"enforced": enforced, "baseline": base, "rlimit_data": limit}
sampler.peak = dict(base)
sampler.active = True
t0 = time.perf_counter()
try:
    k = compute(x, out)
except MemoryError as e:
    report["error"] = f"{type(e).__name__}: {e}"
else:
    report["returned_out"] = k.nngp is out[0] and k.ntk is out[1] if out else None
report["seconds"] = time.perf_counter() - t0
time.sleep(0.01)
sampler.active = False
sampler.done = True
sampler.join()
report["peak"] = sampler.peak
report["final"] = status()
report["samples"] = sampler.samples
if out is not None:
    for m in out:
        m.flush()
print(json.dumps(report))
"""


def _run_child(tmp_path, mode, api="function", dtype="float64", enforce=True):
    args = {
        "dtype": dtype,
        "enforce": enforce,
        "tests": os.path.dirname(os.path.abspath(__file__)),
        "dir": str(tmp_path),
        "mode": mode,
        "api": api,
        "n": N,
        "n0": N0,
        "depth": DEPTH,
        "activation": ACTIVATION,
        "beta": BETA,
        "seed": SEED,
        "budget": BUDGET,
    }
    # At most 8 threads: each holds a few 120 × 120 tiles (docs/kernels.md), which on a machine
    # with very many cores would add up to a noticeable share of the budget.
    env = dict(os.environ, NTKFAST_NUM_THREADS=str(min(os.cpu_count() or 1, 8)))
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, (
        f"child exited with {proc.returncode} (negative: killed by signal)\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    lines = proc.stdout.strip().splitlines()
    assert lines, f"no report from the child\nstderr:\n{proc.stderr}"
    return json.loads(lines[-1])


def _growth(report, key):
    return report["peak"][key] - report["baseline"][key]


@pytest.mark.parametrize(
    ("api", "dtype"), [("function", "float64"), ("mlp", "float64"), ("function", "float32")]
)
def test_memmap_output_keeps_anonymous_memory_within_budget(tmp_path, api, dtype):
    itemsize = np.dtype(dtype).itemsize
    kernel_bytes = 2 * N * N * itemsize
    assert kernel_bytes >= 4 * BUDGET
    report = _run_child(tmp_path, "out", api, dtype)
    # Where the kernel ignores RLIMIT_DATA (some sandboxes), the measurement below still holds.
    if not report["enforced"]:
        print("\nRLIMIT_DATA is not enforced here: the budget is only measured")
    assert "error" not in report, report["error"]
    assert report["returned_out"] is True
    rss_anon = _growth(report, "RssAnon")
    vm_data = _growth(report, "VmData")
    hwm = _growth(report, "VmHWM")
    print(
        f"\n[{api}, {dtype}] out=memmap: kernel {kernel_bytes / MiB:.0f} MiB (2 × {N}×{N}), "
        f"budget {BUDGET / MiB:.0f} MiB (RLIMIT_DATA); peak growth RssAnon "
        f"{rss_anon / MiB:.2f} MiB, VmData {vm_data / MiB:.2f} MiB, VmHWM {hwm / MiB:.1f} MiB "
        f"(VmHWM includes the file-backed output pages); {report['seconds']:.2f} s, "
        f"{report['samples']} samples"
    )
    assert report["samples"] >= 3, "the sampler did not run while the kernel was computed"
    assert rss_anon < BUDGET
    assert vm_data < BUDGET

    # The files hold the kernel. Rows spread over the matrix (first, last, a stride) against an
    # in-memory computation of those rows with x2 = all of x: to 1e-12 of the kernel's scale
    # off the diagonal and 1e-7 on it in float64 (docs/kernels.md: the x2 path sees a
    # duplicated row as two points whose ρ is 1 up to rounding), 1e-5 in float32 (the GEMM
    # blocks differ). The diagonal is bit-for-bit the per-sample recursion, and the stored
    # kernel is exactly symmetric.
    x = make_inputs(N, N0, seed=SEED).astype(dtype)
    rows = np.unique(np.r_[0, 1, np.arange(257, N, 509), N - 2, N - 1])
    want = nk.limit_kernel(x[rows], x, depth=DEPTH, activation=ACTIVATION, beta=BETA)
    diagonal = nk.limit_kernel_diagonal(x, depth=DEPTH, activation=ACTIVATION, beta=BETA)
    off_tol, on_tol = (1e-12, 1e-7) if dtype == "float64" else (1e-5, 1e-5)
    for kind in ("nngp", "ntk"):
        got = np.load(tmp_path / f"{kind}.npy", mmap_mode="r")
        assert got.shape == (N, N) and got.dtype == dtype
        block = np.array(got[rows])
        expected = getattr(want, kind)
        diag = getattr(diagonal, kind)
        assert expected.dtype == diag.dtype == dtype
        scale = np.sqrt(np.outer(diag[rows], diag).astype(np.float64))
        on_diagonal = rows[:, None] == np.arange(N)[None, :]
        error = np.abs(block.astype(np.float64) - expected) / scale
        assert error[~on_diagonal].max() <= off_tol, kind
        assert error[on_diagonal].max() <= on_tol, kind
        assert np.array_equal(np.diagonal(got), diag), kind
        assert np.array_equal(np.array(got[:, rows]).T, block), kind
        del got


def test_in_memory_kernel_exceeds_the_same_budget(tmp_path):
    """Controls for the test above, with the same kernel computed in memory (no out=).

    Under the budget it needs 256 MiB of private memory, which RLIMIT_DATA refuses with a clean
    MemoryError (not a crash); without the budget, the sampler sees RssAnon grow by the size
    of the kernel, so it does measure what an in-memory output would cost.
    """
    kernel_bytes = 2 * N * N * 8
    report = _run_child(tmp_path, "memory")
    if not report["enforced"]:
        pytest.skip("RLIMIT_DATA is not enforced in this environment")
    print(
        f"\n[control] in memory under a {BUDGET / MiB:.0f} MiB budget: "
        f"{report.get('error', 'no error')} after {report['seconds']:.3f} s; peak growth "
        f"RssAnon {_growth(report, 'RssAnon') / MiB:.2f} MiB"
    )
    assert "error" in report, "the in-memory kernel fit in the budget: the budget proves nothing"
    assert report["error"].startswith("MemoryError")

    report = _run_child(tmp_path, "memory", enforce=False)
    assert "error" not in report, report["error"]
    rss_anon = _growth(report, "RssAnon")
    print(
        f"[control] in memory without a budget: peak growth RssAnon {rss_anon / MiB:.1f} MiB "
        f"for a {kernel_bytes / MiB:.0f} MiB kernel, {report['seconds']:.2f} s, "
        f"{report['samples']} samples"
    )
    assert rss_anon >= 0.95 * kernel_bytes


_TIGHT = r"""
import resource, sys, tempfile, os
import numpy as np
import ntkfast as nk

depth, activation = int(sys.argv[1]), sys.argv[2]
x = np.random.default_rng(0).standard_normal((4096, 16))
nk.limit_kernel(x[:10], depth=2)
folder = tempfile.mkdtemp(dir=sys.argv[3])
out = tuple(
    np.lib.format.open_memmap(os.path.join(folder, f"{k}.npy"), mode="w+", shape=(4096, 4096))
    for k in ("nngp", "ntk")
)
with open("/proc/self/status") as f:
    data = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData"))
resource.setrlimit(resource.RLIMIT_DATA, (data + 2**20, resource.RLIM_INFINITY))
try:
    nk.limit_kernel(x, depth=depth, activation=activation, out=out)
    print("computed")
except MemoryError as e:
    print("MemoryError:", e)
"""


@pytest.mark.parametrize("depth, activation", [(3, "relu"), (100, "relu"), (4, "tanh")])
def test_working_memory_beyond_a_process_limit_is_a_memory_error(tmp_path, depth, activation):
    """With 1 MiB of headroom under RLIMIT_DATA, the core's own buffers (per-layer variances,
    tiles, GEMM workspace) cannot be allocated: the pre-check must raise MemoryError naming
    what is needed, instead of the process aborting on a failed allocation inside the core."""
    child = subprocess.run(
        [sys.executable, "-c", _TIGHT, str(depth), activation, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.startswith("MemoryError:"), child.stdout
    assert "needs" in child.stdout and "MiB" in child.stdout


_FRESH_POOL = r"""
import resource, sys
import numpy as np
import ntkfast as nk
from ntkfast import _ntkfast

budget = int(sys.argv[1])
x = np.random.default_rng(0).standard_normal((600, 64))
a = x @ x.T + 600 * np.eye(600)
with open("/proc/self/status") as f:
    data = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmData"))
resource.setrlimit(resource.RLIMIT_DATA, (data + budget, resource.RLIM_INFINITY))
try:
    bytearray(2 * budget)
    print("not enforced")
except MemoryError:
    pass
nk.set_num_threads(2)  # a new pool, whose threads have never multiplied
k = nk.limit_kernel(x, depth=3)
_ntkfast.solve_spd(a, np.ones((600, 1)))
print("computed", float(k.ntk.sum()))
"""


def test_threads_started_under_a_data_limit_compute_kernels_and_solves():
    """faer's x86 GEMM reserves a packing buffer in each thread on its first product: 4 MiB
    without its cache-size detection, twice the L3 cache (64 MiB and more) with it, which is
    an abort, not a MemoryError, under a data-size limit. The pool reserves it when it starts
    (rust/src/pool.rs); here the threads start under a limit of VmData + 32 MiB and must
    compute a kernel and a Cholesky solve."""
    child = subprocess.run(
        [sys.executable, "-c", _FRESH_POOL, str(BUDGET)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, (child.returncode, child.stderr[-2000:])
    if "not enforced" in child.stdout:
        pytest.skip("RLIMIT_DATA is not enforced in this environment")
    assert "computed" in child.stdout, child.stdout
