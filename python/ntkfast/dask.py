"""Kernels of Dask arrays, block by block, each block computed by the Rust core on a worker.

A kernel of N samples has N² entries: past a few hundred thousand samples it no longer fits
one machine. These functions take inputs as Dask arrays (rows in chunks, features in one
chunk) and return the kernels as lazy Dask arrays whose block (i, j) is the kernel between
row chunks i and j, computed where the scheduler puts it::

    import dask.array as da
    from dask.distributed import Client
    import ntkfast.dask as nkd

    client = Client("tcp://scheduler:8786")       # or LocalCluster() on one machine
    x = da.from_zarr("inputs.zarr")               # (N, n0), chunks of e.g. 10 000 rows
    k = nkd.limit_kernel(x, depth=4, activation="relu", beta=0.1)
    k.ntk.to_zarr("ntk.zarr")                     # written block by block, never gathered

With ``x2=None`` only the blocks on and below the diagonal are computed; those above are
their transposes. For closed-form activations each block is the same bits as the
corresponding part of the in-memory ``ntkfast.limit_kernel(x)`` when the row chunks are
multiples of the core's tile (120; 144 for float32 kernels of the ReLU family at depth ≥ 2)
and the workers' CPUs are of one kind (float64 ReLU-family, erf and GELU kernels differ by a
few ulps between CPUs with and without AVX-512), and agrees to ~1e-15 otherwise;
Hermite-series activations (tanh, …) expand
each chunk's own samples, so they agree to the series' tolerance (1e-12 of the kernel's
scale). Each task runs the core on all the worker's threads (``ntkfast.set_num_threads``
in the worker processes, or ``NTKFAST_NUM_THREADS`` in their environment, sets how many);
workers with one thread per process and ``NTKFAST_NUM_THREADS=1`` suit many small chunks.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import ArrayLike

from . import activations as _activations
from . import regression as _regression
from ._optional import missing_extra
from ._threads import get_num_threads
from .kernels import Kernel, _parse_get, check_series, core_kernel, limit_kernel_diagonal
from .kernels import limit_kernel as _limit_kernel

try:
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph
except ImportError as _err:
    raise missing_extra("ntkfast.dask", "dask", {"dask.array": _err}) from _err

if TYPE_CHECKING:
    from dask.typing import Key

    from .network import MLP

__all__ = ["KernelRegressor", "limit_kernel", "ntk"]


def _as_rows(x: ArrayLike | da.Array, name: str) -> da.Array:
    """x as a 2-D Dask array with the features in one chunk (rechunked if needed)."""
    if not isinstance(x, da.Array):
        x = np.asarray(x)
    # The checks of ntkfast.limit_kernel, in its order: the dtype, then the shape.
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{name} must be a real numeric array, got dtype {x.dtype}")
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (samples, features), got shape {x.shape}")
    if not isinstance(x, da.Array):
        x = cast("da.Array", da.from_array(x, chunks=(max(1, min(len(x), 4096)), -1)))
    if any(np.isnan(c) for c in x.chunks[0]) or np.isnan(x.shape[1]):
        raise ValueError(f"{name} has unknown chunk sizes; call {name}.compute_chunk_sizes()")
    if len(x.chunks[1]) != 1:
        x = cast("da.Array", x.rechunk({1: -1}))
    return x


def _result_dtype(x1: da.Array, x2: da.Array | None) -> np.dtype:
    """The dtype of ntkfast.limit_kernel's result: float32 inputs stay float32, every other
    real dtype becomes float64 first (as in ``as_samples``), then the two are promoted."""

    def kept(dtype: np.dtype) -> np.dtype:
        return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)

    dtype = kept(x1.dtype)
    return dtype if x2 is None else np.result_type(dtype, kept(x2.dtype))


def _blocks(
    name: str,
    x1: da.Array,
    x2: da.Array | None,
    compute: Callable[[np.ndarray, np.ndarray | None], object],
    transpose: Callable[[Any], object],
    extra_chunks: tuple[int, ...],
    dtype: np.dtype,
) -> da.Array:
    """The graph of an (N1, N2, *extra) Dask array whose block (i, j) is
    ``compute(x1 block i, x2 block j)`` (x2 None: ``compute(x1 block i, None)`` on the
    diagonal, ``transpose(block (j, i))`` above it)."""
    rows = x1.chunks[0]
    cols = rows if x2 is None else x2.chunks[0]
    zeros = (0,) * len(extra_chunks)
    layer: dict[Key, tuple[object, ...]] = {}
    for i in range(len(rows)):
        for j in range(len(cols)):
            key: Key = (name, i, j, *zeros)
            if x2 is not None:
                layer[key] = (compute, (x1.name, i, 0), (x2.name, j, 0))
            elif i == j:
                layer[key] = (compute, (x1.name, i, 0), None)
            elif i > j:
                layer[key] = (compute, (x1.name, i, 0), (x1.name, j, 0))
            else:
                layer[key] = (transpose, (name, j, i, *zeros))
    deps = [x1] if x2 is None else [x1, x2]
    # dask's Array does not match its own DaskCollection protocol (__dask_scheduler__).
    graph = HighLevelGraph.from_collections(name, layer, dependencies=deps)  # type: ignore[arg-type]
    chunks = (rows, cols, *((c,) for c in extra_chunks))
    return da.Array(graph, name, chunks, dtype=dtype)


def _pick(pair: da.Array, index: int, name: str) -> da.Array:
    """Component `index` of a Dask array whose blocks are (nngp, ntk) tuples."""
    meta = np.empty((0, 0), dtype=pair.dtype)
    picked = da.map_blocks(_component, pair, index, dtype=pair.dtype, meta=meta, name=name)
    return cast("da.Array", picked)


def _component(block: tuple[np.ndarray, ...], index: int) -> np.ndarray:
    return block[index]


class _LimitBlock:
    """One block of the limit kernels (picklable, so it travels to workers)."""

    def __init__(
        self, depth: int, activation: _activations.Activation, beta: float, kinds: tuple[str, ...]
    ) -> None:
        self.depth, self.activation, self.beta, self.kinds = depth, activation, beta, kinds

    def __call__(self, a: np.ndarray, b: np.ndarray | None) -> tuple[np.ndarray, ...]:
        k = _limit_kernel(
            a, b, depth=self.depth, activation=self.activation, beta=self.beta, get=self.kinds
        )
        return tuple(getattr(k, kind) for kind in self.kinds)


def _transpose_pair(pair: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    return tuple(np.ascontiguousarray(p.T) for p in pair)


def limit_kernel(
    x1: ArrayLike | da.Array,
    x2: ArrayLike | da.Array | None = None,
    *,
    depth: int,
    activation: str | _activations.Activation = "relu",
    beta: float = 0.1,
    get: str | tuple[str, ...] | list[str] = ("nngp", "ntk"),
) -> da.Array | Kernel:
    """:func:`ntkfast.limit_kernel` of Dask arrays, as Dask arrays (lazy).

    Parameters are those of :func:`ntkfast.limit_kernel`; x1 (N1, n0) and x2 (N2, n0) may be
    Dask or NumPy arrays (NumPy ones are cut into chunks of 4096 rows). Feature chunks are
    merged (``rechunk({1: -1})``); the result has x1's row chunks along axis 0 and x2's along
    axis 1. Arguments are checked here, and each block again on its worker.

    Returns a :class:`ntkfast.Kernel` of Dask arrays (or one Dask array when ``get`` is a
    name).
    """
    kinds, single = _parse_get(get)
    act = _activations.get(activation)
    x1 = _as_rows(x1, "x1")
    x2 = None if x2 is None or x2 is x1 else _as_rows(x2, "x2")
    if x2 is not None and x2.shape[1] != x1.shape[1]:
        raise ValueError(
            f"x1 and x2 must have the same number of features, got {x1.shape[1]} and {x2.shape[1]}"
        )
    # Validate the settings once here rather than on every worker.
    _limit_kernel(np.zeros((1, x1.shape[1])), depth=depth, activation=act, beta=beta, get=kinds)
    dtype = _result_dtype(x1, x2)
    token = tokenize(x1, x2, depth, act, beta, kinds)
    block = _LimitBlock(depth, act, beta, kinds)
    pair = _blocks(f"ntkfast-limit-{token}", x1, x2, block, _transpose_pair, (), dtype)
    arrays = {kind: _pick(pair, n, f"ntkfast-{kind}-{token}") for n, kind in enumerate(kinds)}
    if single:
        return arrays[kinds[0]]
    # Kernel's fields are annotated as NumPy arrays; here it holds Dask arrays.
    return Kernel(arrays.get("nngp"), arrays.get("ntk"))  # type: ignore[arg-type]


class _EmpiricalBlock:
    def __init__(
        self, net: MLP, params: Sequence[tuple[ArrayLike, ArrayLike]], output: str
    ) -> None:
        self.net, self.params, self.output = net, params, output

    def __call__(self, a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        return self.net.ntk(self.params, a, b, output=self.output)


def _transpose_empirical(block: np.ndarray) -> np.ndarray:
    # Θ_kk'(x, x') = Θ_k'k(x', x): swap the samples and, for "full", the outputs too.
    axes = {2: (1, 0), 3: (1, 0, 2), 4: (1, 0, 3, 2)}[block.ndim]
    return np.ascontiguousarray(block.transpose(axes))


def ntk(
    net: MLP,
    params: Sequence[tuple[ArrayLike, ArrayLike]],
    x1: ArrayLike | da.Array,
    x2: ArrayLike | da.Array | None = None,
    *,
    output: str = "trace",
) -> da.Array:
    """:meth:`ntkfast.MLP.ntk` (the empirical NTK of given parameters) of Dask arrays.

    ``output`` as for :meth:`ntkfast.MLP.ntk`: "trace" gives (N1, N2), "diagonal"
    (N1, N2, nL), "full" (N1, N2, nL, nL), chunked by the inputs' row chunks. The parameters
    are sent with the graph once and shared by its tasks.
    """
    if output not in ("trace", "diagonal", "full"):
        raise ValueError(f"output must be 'trace', 'diagonal' or 'full', got {output!r}")
    x1 = _as_rows(x1, "x1")
    x2 = None if x2 is None or x2 is x1 else _as_rows(x2, "x2")
    for name, x in (("x1", x1), ("x2", x2)):
        if x is not None and x.shape[1] != net.widths[0]:
            raise ValueError(f"{name} must have {net.widths[0]} features, got {x.shape[1]}")
    probe = net.ntk(params, np.zeros((1, net.widths[0])), output=output)  # checks params
    n_out = net.widths[-1]
    extra = {"trace": (), "diagonal": (n_out,), "full": (n_out, n_out)}[output]
    dtype = probe.dtype  # the network computes in its parameters' dtype
    token = tokenize(x1, x2, net.widths, net.activation, net.beta, params, output)
    block = _EmpiricalBlock(net, params, output)
    return _blocks(f"ntkfast-ntk-{token}", x1, x2, block, _transpose_empirical, extra, dtype)


# ----------------------------------------------------------------- regression on a cluster


class _Spec:
    """The kernel's settings, sent to the workers (the core's objects are made there)."""

    def __init__(self, depth: int, activation: _activations.Activation, beta: float, kernel: str):
        self.depth, self.activation, self.beta, self.kernel = depth, activation, beta, kernel

    def core(self) -> Any:
        return core_kernel(self.depth, self.activation, self.beta)


Report = tuple[float, int]


def _normal_task(block: np.ndarray, centres: np.ndarray, v: np.ndarray, spec: _Spec) -> Any:
    """K(X_b, C)ᵀ K(X_b, C) V for one row block."""
    out = np.empty_like(v)
    report = spec.core().normal_product(block, centres, spec.kernel, v, out)
    return out, report


def _transposed_task(block: np.ndarray, y: np.ndarray, centres: np.ndarray, spec: _Spec) -> Any:
    """K(C, X_b) Y_b for one row block (Y_b its rows of Y)."""
    out = np.empty((len(centres), y.shape[1]))
    report = spec.core().product(centres, block, spec.kernel, np.ascontiguousarray(y), out)
    return out, report


def _row_task(blocks: list[np.ndarray], v: np.ndarray, spec: _Spec) -> Any:
    """Row block i = len(blocks) − 1 of K(X, X) V from the tiles on and left of the diagonal
    block: (K_ii V_i + K(X_i, X_<i) V_<i, K(X_<i, X_i) V_i), each tile made once."""
    core, x = spec.core(), blocks[-1]
    start = sum(len(b) for b in blocks[:-1])
    own = np.ascontiguousarray(v[start : start + len(x)])
    out = np.empty_like(own)
    report = core.product(x, None, spec.kernel, own, out)
    lower = np.empty((start, v.shape[1]))
    if start:
        before = np.concatenate(blocks[:-1])
        left = np.empty_like(own)
        pair = core.product_pair(
            x, before, spec.kernel, np.ascontiguousarray(v[:start]), own, left, lower
        )
        out += left
        report = max(report, pair)
    return out, lower, report


def _columns_task(block: np.ndarray, other: np.ndarray, spec: _Spec) -> Any:
    """K(X_b, other) in float64 (limit_kernel reports the series itself)."""
    k = _limit_kernel(
        block.astype(np.float64),
        other.astype(np.float64),
        depth=spec.depth,
        activation=spec.activation,
        beta=spec.beta,
        get=spec.kernel,
    )
    return np.asarray(k, dtype=np.float64), (0.0, 0)


def _predict_task(block: np.ndarray, coef: np.ndarray, test: np.ndarray, spec: _Spec) -> Any:
    """K(test, X_b) coef_b."""
    out = np.empty((len(test), coef.shape[1]))
    report = spec.core().product(test.astype(block.dtype), block, spec.kernel, coef, out)
    return out, report


def _diagonal_task(block: np.ndarray, spec: _Spec) -> Any:
    d = limit_kernel_diagonal(
        block, depth=spec.depth, activation=spec.activation, beta=spec.beta, get=spec.kernel
    )
    return np.asarray(d, dtype=np.float64), (0.0, 0)


#: Errors of a cluster that lost a worker or data (by class name: some are private).
_LOST = ("CancelledError", "FutureCancelledError", "KilledWorker", "CommClosedError")

#: Attempts of one cluster call before a lost worker stops the fit.
ATTEMPTS = 3


@contextlib.contextmanager
def _lost_data() -> Iterator[None]:
    """A RuntimeError naming the cause when the cluster lost data that Dask could not
    recompute (a task's worker died too often, a scattered operand's every holder died)."""
    try:
        yield
    except Exception as err:
        if type(err).__name__ in _LOST:
            raise RuntimeError(
                f"the cluster lost data or workers during a kernel product ({err!r}); the fit "
                "was stopped: restart the failed workers and fit again"
            ) from err
        raise


def _retrying(call: Callable[[], Any]) -> Any:
    """``call()``, repeated (up to ATTEMPTS times in all, a second apart) when a worker died
    under it: each call is a pure function of data the client holds or Dask can recompute,
    so a repeat gives the same result. The last failure raises as :func:`_lost_data` says."""
    for attempt in range(ATTEMPTS):
        try:
            return call()
        except Exception as err:
            if type(err).__name__ not in _LOST or attempt == ATTEMPTS - 1:
                with _lost_data():
                    raise
            time.sleep(1.0)
    raise AssertionError("unreachable")


class _ClusterRows:
    """X persisted on the cluster's workers in row blocks (scattered once, kept there), and
    the kernel products as one task per block, the small operands sent each time and
    the results summed here in block order (the same bits for any placement of the tasks).
    """

    def __init__(self, x: Any, dtype: np.dtype, spec: _Spec, client: Any) -> None:
        from dask.distributed import futures_of, wait

        self.client, self.spec = client, spec
        x = _as_rows(x, "X").astype(dtype)
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise ValueError(f"X must be non-empty, got shape {x.shape}")
        self.source = client.persist(x)
        with _lost_data():
            wait(self.source)  # type: ignore[no-untyped-call]
        by_key = {f.key: f for f in futures_of(self.source)}  # type: ignore[no-untyped-call]
        self.blocks = [by_key[(self.source.name, i, 0)] for i in range(self.source.numblocks[0])]
        sizes = self.source.chunks[0]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.shape = (int(x.shape[0]), int(x.shape[1]))
        finite = client.compute(da.isfinite(self.source).all(axis=1), sync=True)
        if not finite.all():
            row = int(np.flatnonzero(~finite)[0])
            raise ValueError(f"X has non-finite values (NaN or inf) in row {row}")

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, indices: np.ndarray) -> np.ndarray:
        chosen = self.source[np.asarray(indices)]
        rows = _retrying(lambda: self.client.compute(chosen, sync=True))
        return np.ascontiguousarray(rows)

    def _run(
        self, task: Callable[..., Any], args: list[tuple[Any, ...]], *shared: Any
    ) -> list[Any]:
        """task(*args[i], *shared) for each block i on the cluster, results in block order;
        ``shared`` operands are sent to the cluster once per call and fetched from there by
        the workers that need them. (Not ``broadcast=True``: the scheduler's replication
        keeps retrying a worker that died during it, so one lost worker hung the fit.)"""

        def attempt() -> list[Any]:
            spread = [self.client.scatter(s, hash=False) for s in shared]
            futures = [self.client.submit(task, *a, *spread, pure=False) for a in args]
            return list(self.client.gather(futures))

        results = _retrying(attempt)
        for result in results:
            check_series(self.spec.activation, *result[-1])
        return list(results)

    def normal(self, centres: np.ndarray, v: np.ndarray) -> np.ndarray:
        """K(X, C)ᵀ K(X, C) V, one task per block."""
        v = np.ascontiguousarray(v, dtype=np.float64)
        results = self._run(_normal_task, [(b,) for b in self.blocks], centres, v, self.spec)
        return np.asarray(sum(out for out, _ in results))

    def transposed(self, centres: np.ndarray, y: np.ndarray) -> np.ndarray:
        """K(C, X) Y, one task per block."""
        args = [(b, y[s:e]) for b, s, e in zip(self.blocks, self.starts, self.starts[1:])]
        results = self._run(_transposed_task, args, centres, self.spec)
        return np.asarray(sum(out for out, _ in results))

    def matmat(self, v: np.ndarray) -> np.ndarray:
        """K(X, X) V, block row i from the tiles on and left of its diagonal block."""
        v = np.ascontiguousarray(v, dtype=np.float64)
        args = [(self.blocks[: i + 1],) for i in range(len(self.blocks))]
        results = self._run(_row_task, args, v, self.spec)
        out = np.zeros_like(v)
        for (own, lower, _), s, e in zip(results, self.starts, self.starts[1:]):
            out[s:e] += own
            out[:s] += lower
        return out

    def columns(self, other: np.ndarray) -> np.ndarray:
        """K(X, other) (N, len(other)) in float64."""
        results = self._run(_columns_task, [(b,) for b in self.blocks], other, self.spec)
        return np.concatenate([k for k, _ in results])

    def cross(self, test: np.ndarray, coef: np.ndarray) -> np.ndarray:
        """K(test, X) coef (coef (N, k)): one task per block of X, summed in order."""
        coef = np.ascontiguousarray(coef, dtype=np.float64)
        args = [
            (b, np.ascontiguousarray(coef[s:e]))
            for b, s, e in zip(self.blocks, self.starts, self.starts[1:])
        ]
        results = self._run(_predict_task, args, test, self.spec)
        return np.asarray(sum(out for out, _ in results))

    def diagonal(self) -> np.ndarray:
        results = self._run(_diagonal_task, [(b,) for b in self.blocks], self.spec)
        return np.concatenate([d for d, _ in results])


class _ClusterOperator:
    """K(X, X) (x2 None) or K(test, X) on the cluster, with ``matmat`` and ``diagonal`` as
    :class:`ntkfast.KernelOperator` has them."""

    def __init__(self, rows: _ClusterRows, test: np.ndarray | None = None) -> None:
        self.rows, self.test = rows, test

    def matmat(self, v: np.ndarray) -> np.ndarray:
        if self.test is None:
            return self.rows.matmat(v)
        return self.rows.cross(self.test, v)

    def diagonal(self) -> np.ndarray:
        return self.rows.diagonal()


class KernelRegressor(_regression.KernelRegressor):
    """:class:`ntkfast.KernelRegressor` whose kernel products run as tasks on a
    ``dask.distributed`` cluster (the current client's).

    X (a Dask array with its rows in chunks, or a NumPy array, cut into chunks of 4096 rows)
    is persisted on the workers once, one task per row chunk; each product of the solver
    sends its small operands to every worker and sums the chunks' results on the client in
    chunk order, so a fit gives the same result wherever the tasks run. Solvers:

    - ``"cg"``: exact conjugate gradients (the randomly pivoted Cholesky preconditioner of
      :class:`ntkfast.KernelRegressor`), one pass over K(X, X) per iteration: the task of
      row chunk i makes the tiles of chunks j ≤ i once and uses each twice.
    - ``"nystrom"``: the Nyström solver on M centres, one pass over K(X, C) per iteration.
    - ``"auto"``: ``"nystrom"`` when centres are asked for, else ``"cg"``. (There is no
      ``"direct"``: the N × N kernel is what a cluster is for avoiding.)

    The parameters, attributes and ``predict`` are those of :class:`ntkfast.KernelRegressor`
    (``kernel_storage`` is always "none": nothing N × N or N × M is kept). Kernel products
    that lose their data with a worker are recomputed by Dask; if that cannot be done the fit
    stops with a RuntimeError rather than return a wrong result.
    """

    def _settings(self) -> dict[str, Any]:
        if self.solver == "direct":
            raise ValueError('ntkfast.dask.KernelRegressor has no "direct" solver: use "cg"')
        if self.kernel_storage not in ("auto", "none"):
            raise ValueError(
                'ntkfast.dask.KernelRegressor keeps no kernel: kernel_storage must be "auto" '
                'or "none"'
            )
        return super()._settings()

    def _client(self) -> Any:
        from dask.distributed import get_client

        try:
            return get_client()
        except ValueError as err:
            raise ValueError(
                "ntkfast.dask.KernelRegressor needs a dask.distributed Client: create one "
                "first (Client(address), or Client(LocalCluster()) on one machine)"
            ) from err

    def _pass_cores_per_client_core(self) -> float:
        workers = int(sum(self._client().nthreads().values()))
        return max(1.0, workers / get_num_threads())

    def _spec(self, s: dict[str, Any]) -> _Spec:
        return _Spec(s["depth"], s["activation"], s["beta"], self.kernel)

    def _training_inputs(self, X: Any, s: dict[str, Any]) -> Any:
        return _ClusterRows(X, s["dtype"], self._spec(s), self._client())

    def _choose_solver(self, n: int) -> str:
        return "cg"

    def _storage(self, n: int, s: dict[str, Any]) -> str:
        return "none"

    def _nystrom_storage(self, n: int, m: int, s: dict[str, Any]) -> str:
        return "none"

    def _operator(self, x: Any, x2: Any, s: dict[str, Any]) -> Any:
        if isinstance(x, _ClusterRows):
            return _ClusterOperator(x)
        if isinstance(x2, _ClusterRows):
            return _ClusterOperator(x2, np.ascontiguousarray(x, dtype=s["dtype"]))
        return super()._operator(x, x2, s)

    def _columns(self, x: Any, s: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
        return lambda chosen: x.columns(x.take(chosen))

    def _nystrom_products(
        self, rows: Any, centres: np.ndarray, s: dict[str, Any], storage: str
    ) -> tuple[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]]:
        return (lambda v: rows.normal(centres, v)), (lambda y: rows.transposed(centres, y))
