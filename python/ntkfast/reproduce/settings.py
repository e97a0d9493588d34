"""The settings of each figure: the paper's, the default run, and the quick run.

Common to all (SPEC §7): ReLU, n_L = 1, β = 0.1, learning rate 1.0, cost ½‖f − f*‖²_{p_in}.
The default run keeps the paper's settings wherever they fit in a few minutes on two cores;
where they do not, it scales down as documented in docs/reproduce.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure1:
    """Θ⁽⁴⁾(x₀, x) for x₀ = (1, 0), x = (cos γ, sin γ), at t = 0 and after training."""

    widths: tuple[int, ...]
    inits: int
    steps: int
    n_train: int = 10
    depth: int = 4
    grid: int = 121


@dataclass(frozen=True)
class Figure2:
    """f(cos γ, sin γ) after training on 4 points of the circle, with the limit's quantiles."""

    widths: tuple[int, ...]
    inits: int
    steps: int
    depth: int = 4
    grid: int = 121


@dataclass(frozen=True)
class Figure3:
    """Kernel PCA of the NTK on digits; training towards f_θ(0) + 0.5 f⁽²⁾ along PC 2."""

    widths: tuple[int, ...]
    inits: int
    steps: int
    n_samples: int = 512
    depth: int = 4
    record_every: int = 20


PAPER: dict[int, Figure1 | Figure2 | Figure3] = {
    1: Figure1(widths=(500, 10000), inits=10, steps=200),
    2: Figure2(widths=(50, 1000), inits=10, steps=1000),
    3: Figure3(widths=(100, 1000, 10000), inits=1, steps=4000),
}

# Width 10000 costs about 1 s per gradient step on two cores (2·10⁸ parameters read three
# times per step): the default uses 4000 for the wide network of Figure 1.
# Figure 3 at width 10000 on 512 inputs is about 10 s per step (hours for t = 4000): the
# default keeps t = 4000 with widths 100 and 1000 on 256 inputs.
DEFAULT: dict[int, Figure1 | Figure2 | Figure3] = {
    1: Figure1(widths=(500, 4000), inits=10, steps=200),
    2: Figure2(widths=(50, 1000), inits=10, steps=1000),
    3: Figure3(widths=(100, 1000), inits=1, steps=4000, n_samples=256),
}

QUICK: dict[int, Figure1 | Figure2 | Figure3] = {
    1: Figure1(widths=(50, 300), inits=3, steps=20, grid=41),
    2: Figure2(widths=(20, 200), inits=3, steps=100, grid=41),
    3: Figure3(widths=(50, 200), inits=1, steps=300, n_samples=128, record_every=10),
}


def _params(widths: list[int]) -> int:
    return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))


def estimate_seconds(
    figure: int, s: Figure1 | Figure2 | Figure3, threads: int, n0_figure3: int = 64
) -> float:
    """A rough running time: each gradient step reads the parameters about four times
    (forward, backward, update) and does 6·N·P multiply-adds; assumes 20 GFLOP/s per core
    and 10 GB/s of memory bandwidth (float64)."""
    if figure == 1:
        assert isinstance(s, Figure1)
        n_in, n, steps = 2, s.n_train, s.steps
    elif figure == 2:
        n_in, n, steps = 2, 4, s.steps
    else:
        assert isinstance(s, Figure3)
        n_in, n, steps = n0_figure3, s.n_samples, s.steps
    total = 0.0
    for width in s.widths:
        p = _params([n_in] + [width] * (s.depth - 1) + [1])
        step = max(6 * n * p / (20e9 * threads), 4 * 8 * p / 10e9)
        total += s.inits * (steps * step + 10 * p / 1e8)  # + initialisation
    return total
