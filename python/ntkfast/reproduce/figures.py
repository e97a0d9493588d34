"""The computations behind each figure; each returns (numbers for summary.json, plot data)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import MLP, TrainResult, dynamics, limit_kernel, train
from ..data import circle, digits, figure1_training_set, load_mnist
from .settings import Figure1, Figure2, Figure3


class ProgressBar(Protocol):
    """The part of a tqdm progress bar that the figures use."""

    def update(self, n: int = 1) -> object: ...

    def __enter__(self) -> ProgressBar: ...

    def __exit__(self, *exc: object) -> object: ...


#: A progress-bar factory, called as ``progress(total=..., desc=...)``.
Progress = Callable[..., ProgressBar]

BETA = 0.1
LEARNING_RATE = 1.0


def _network(n0: int, width: int, depth: int) -> MLP:
    return MLP([n0] + [width] * (depth - 1) + [1], "relu", beta=BETA)


def _trained(
    net: MLP,
    params: list[tuple[np.ndarray, np.ndarray]],
    x: np.ndarray,
    y: np.ndarray,
    steps: int,
    record_every: int | None = None,
    x_test: np.ndarray | None = None,
) -> TrainResult:
    """Gradient descent at the paper's learning rate, recording only the end by default."""
    every = record_every or max(steps, 1)
    return train(
        net, params, x, y, steps=steps, lr=LEARNING_RATE, x_test=x_test, record_every=every
    )


def figure1(s: Figure1, seed: int, progress: Progress) -> dict[str, Any]:
    """Θ⁽ᴸ⁾(x₀, x(γ)) of finite networks at t = 0 and t = steps, and Θ∞ on the same grid."""
    gamma = np.linspace(-3.0, 3.0, s.grid)
    x0, xs = np.array([[1.0, 0.0]]), circle(gamma)
    x_train, y_train = figure1_training_set(s.n_train, seed=seed)
    limit = limit_kernel(x0, xs, depth=s.depth, activation="relu", beta=BETA, get="ntk")[0]
    curves = {}
    with progress(total=len(s.widths) * s.inits, desc="Figure 1") as bar:
        for width in s.widths:
            net = _network(2, width, s.depth)
            before, after = [], []
            for init in range(s.inits):
                params = net.init(seed=seed * 1000 + init)
                before.append(net.ntk(params, x0, xs)[0])
                result = _trained(net, params, x_train, y_train, s.steps)
                after.append(net.ntk(result.params, x0, xs)[0])
                bar.update()
            curves[width] = (np.array(before), np.array(after))
    summary = {"gamma": gamma.tolist(), "limit": limit.tolist(), "t": LEARNING_RATE * s.steps}
    per_width = {}
    scale = float(np.abs(limit).mean())
    for width, (initial, trained) in curves.items():
        per_width[str(width)] = {
            "mean_deviation_t0": float(np.mean(initial - limit) / scale),
            "spread_t0": float(np.mean(initial.std(axis=0)) / scale),
            "mean_deviation_trained": float(np.mean(trained - limit) / scale),
            "spread_trained": float(np.mean(trained.std(axis=0)) / scale),
            "inflation": float(np.mean(trained - initial) / scale),
        }
    summary["per_width"] = per_width
    summary["note"] = (
        "deviations, spreads (std over initialisations) and inflation (change of the kernel "
        "during training) are averaged over the γ grid and divided by the mean of Θ∞ there"
    )
    return {"summary": summary, "gamma": gamma, "limit": limit, "curves": curves}


def figure2(s: Figure2, seed: int, progress: Progress) -> dict[str, Any]:
    """Trained networks on 4 circle points, against the t → ∞ Gaussian limit's quantiles."""
    gamma = np.linspace(-np.pi, np.pi, s.grid)
    x_test = circle(gamma)
    gamma_train = np.array([-2.0, -0.6, 0.7, 2.2])
    x_train = circle(gamma_train)
    y_train = (x_train[:, 0] * x_train[:, 1])[:, None]
    k: dict[str, Any] = {"tt": None}
    common: dict[str, Any] = dict(depth=s.depth, activation="relu", beta=BETA)
    k["tt"] = limit_kernel(x_train, **common)
    k["xt"] = limit_kernel(x_test, x_train, **common)
    k["xx"] = limit_kernel(x_test, **common)
    mean, cov = dynamics.gaussian_limit(
        k["tt"].ntk, k["tt"].nngp, y_train[:, 0], k["xt"].ntk, k["xt"].nngp, k["xx"].nngp
    )
    bands = dynamics.quantiles(mean, cov, q=(0.1, 0.5, 0.9))
    outputs = {}
    with progress(total=len(s.widths) * s.inits, desc="Figure 2") as bar:
        for width in s.widths:
            net = _network(2, width, s.depth)
            runs = []
            for init in range(s.inits):
                params = net.init(seed=seed * 1000 + init)
                result = _trained(net, params, x_train, y_train, s.steps, x_test=x_test)
                assert result.f_test is not None  # x_test was given
                runs.append(result.f_test[-1][:, 0])
                bar.update()
            outputs[width] = np.array(runs)
    inside = {str(w): float(np.mean((f >= bands[0]) & (f <= bands[2]))) for w, f in outputs.items()}
    summary = {
        "gamma_train": gamma_train.tolist(),
        "t": LEARNING_RATE * s.steps,
        "fraction_inside_10_90_band": inside,
        "note": (
            "fraction of the trained networks' outputs on the γ grid that lie between the 10 % "
            "and 90 % quantiles of the infinite-width t → ∞ limit (0.8 if they follow it)"
        ),
    }
    return {
        "summary": summary,
        "gamma": gamma,
        "bands": bands,
        "outputs": outputs,
        "train": (gamma_train, y_train[:, 0]),
    }


def figure3(
    s: Figure3, seed: int, progress: Progress, mnist: str | Path | None = None
) -> dict[str, Any]:
    """Kernel PCA of Θ∞ on digit images and the decay of f_t − f* along the 2nd component.

    With the kernel operator (Kf)(x) = (1/N) Σ_i Θ∞(x, x_i) f(x_i) on the N inputs, λ_k its
    eigenvalues and f⁽ᵏ⁾ its eigenfunctions (‖f⁽ᵏ⁾‖_{p_in} = 1), each network is trained from
    its initialisation towards f* = f_θ(0) + 0.5 f⁽²⁾. In the infinite-width limit the part of
    f_t − f* along f⁽²⁾ is −0.5 e^{−λ₂ t} and the orthogonal part stays 0.
    """
    if mnist is not None:
        x, _ = load_mnist(mnist, n=s.n_samples, seed=seed)
        source = f"MNIST ({mnist})"
    else:
        x, _ = digits(n=s.n_samples, seed=seed)
        source = "scikit-learn digits (8 × 8, n0 = 64; MNIST not given)"
    n, n0 = x.shape
    theta = limit_kernel(x, depth=s.depth, activation="relu", beta=BETA, get="ntk")
    lam, vec = np.linalg.eigh(theta / n)
    lam, vec = lam[::-1], vec[:, ::-1]
    pcs = vec[:, :3] * np.sqrt(n)  # ‖f⁽ᵏ⁾‖_{p_in} = 1
    f2 = pcs[:, 1]
    times = np.arange(0, s.steps + 1, s.record_every) * LEARNING_RATE
    along, orth, rates = {}, {}, {}
    with progress(total=len(s.widths) * s.inits, desc="Figure 3") as bar:
        for width in s.widths:
            net = _network(n0, width, s.depth)
            a_runs, o_runs = [], []
            for init in range(s.inits):
                params = net.init(seed=seed * 1000 + init)
                target = net.apply(params, x) + 0.5 * f2[:, None]
                result = _trained(net, params, x, target, s.steps, record_every=s.record_every)
                diff = result.f_train[:, :, 0] - target[:, 0]
                a = diff @ f2 / n
                a_runs.append(a)
                o_runs.append(np.sqrt(np.mean((diff - a[:, None] * f2) ** 2, axis=1)))
                bar.update()
            along[width] = np.array(a_runs)
            orth[width] = np.array(o_runs)
            # Decay rate: least-squares slope of log|part along f⁽²⁾| while it is above 2 % of
            # its start (later, what is left is the finite-width error, not the decay).
            mean_abs = np.abs(along[width]).mean(axis=0)
            ok = mean_abs > 0.02 * mean_abs[0]
            ok[: min(3, len(ok))] = True
            rates[str(width)] = float(-np.polyfit(times[ok], np.log(mean_abs[ok]), 1)[0])
    summary = {
        "data": source,
        "n_samples": n,
        "eigenvalues": lam[:3].tolist(),
        "lambda_2": float(lam[1]),
        "decay_rate_along_pc2": rates,
        "t": float(times[-1]),
        "times": times.tolist(),
        "along_pc2": {str(w): a.mean(axis=0).tolist() for w, a in along.items()},
        "orthogonal": {str(w): o.mean(axis=0).tolist() for w, o in orth.items()},
        "note": (
            "eigenvalues of the operator f ↦ (1/N) Θ∞ f on the inputs; decay rates are fitted "
            "to log |⟨f_t − f*, f⁽²⁾⟩_{p_in}| while it is above 2 % of its start, and equal λ₂ "
            "in the limit; along_pc2 and orthogonal are the curves of the figure (mean over "
            "initialisations)"
        ),
    }
    return {
        "summary": summary,
        "times": times,
        "along": along,
        "orth": orth,
        "pcs": pcs,
        "lam": lam,
    }
