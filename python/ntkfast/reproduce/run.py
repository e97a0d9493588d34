"""Run the figures, draw them, and write summary.json and report.md."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from .._optional import require
from . import figures, settings

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

FIGURES = (1, 2, 3)

#: The pip extra with everything ``ntkfast reproduce`` uses beyond the core.
EXTRA = "paper"


def check_dependencies(figures_wanted: Iterable[int], mnist: str | Path | None = None) -> None:
    """Raises MissingExtraError, naming the ``paper`` extra, unless the figures can be drawn.

    matplotlib draws every figure; scikit-learn provides Figure 3's digits unless ``mnist``
    is given. tqdm is optional (no progress bars without it). Called before any computation,
    so that a missing package fails at once rather than after the first figures.
    """
    modules = ["matplotlib"]
    if 3 in tuple(figures_wanted) and mnist is None:
        modules.append("sklearn")
    require("ntkfast reproduce", EXTRA, *modules)


class _Silent:
    """A progress bar that shows nothing."""

    def __init__(self, **_: object) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def __enter__(self) -> _Silent:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        return False


def _progress(quiet: bool) -> figures.Progress:
    """A tqdm progress-bar factory, or a silent stand-in when quiet or tqdm is missing."""
    if quiet:
        return _Silent
    try:
        from tqdm import tqdm
    except ImportError:
        print(
            f"ntkfast reproduce: no progress bars (tqdm is not installed; "
            f'pip install "ntkfast[{EXTRA}]" adds it)',
            file=sys.stderr,
        )
        return _Silent
    return lambda **kw: tqdm(unit="net", leave=True, **kw)


def _axes() -> tuple[Figure, Axes, Sequence[Any]]:
    """A figure and axes without pyplot, so no GUI backend is touched."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5))
    # colormaps[...] is typed as the base Colormap; tab10 is a ListedColormap, which has colors.
    return fig, fig.subplots(), colormaps["tab10"].colors  # type: ignore[attr-defined]


def _plot_figure1(result: dict[str, Any], s: settings.Figure1, path: Path) -> None:
    fig, ax, colors = _axes()
    for i, (width, (before, after)) in enumerate(result["curves"].items()):
        for j, curve in enumerate(before):
            ax.plot(
                result["gamma"],
                curve,
                color=colors[i],
                lw=0.8,
                alpha=0.7,
                label=f"n = {width}, t = 0" if j == 0 else None,
            )
        for j, curve in enumerate(after):
            ax.plot(
                result["gamma"],
                curve,
                color=colors[i],
                lw=0.8,
                ls="--",
                alpha=0.7,
                label=f"n = {width}, t = {result['summary']['t']:g}" if j == 0 else None,
            )
    ax.plot(result["gamma"], result["limit"], color="black", lw=2, label="n → ∞ (Θ∞)")
    ax.set_xlabel("γ  (x = (cos γ, sin γ))")
    ax.set_ylabel("Θ⁽⁴⁾(x₀, x)")
    ax.set_title(f"Figure 1: NTK of ReLU networks, L = {s.depth}, {s.inits} initialisations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_figure2(result: dict[str, Any], s: settings.Figure2, path: Path) -> None:
    fig, ax, colors = _axes()
    gamma, bands = result["gamma"], result["bands"]
    ax.fill_between(gamma, bands[0], bands[2], color="0.85", label="n → ∞: 10–90 %")
    ax.plot(gamma, bands[1], color="black", lw=1.5, ls="--", label="n → ∞: 50 %")
    for i, (width, runs) in enumerate(result["outputs"].items()):
        for j, f in enumerate(runs):
            ax.plot(
                gamma,
                f,
                color=colors[i],
                lw=0.8,
                alpha=0.8,
                label=f"n = {width}" if j == 0 else None,
            )
    gx, gy = result["train"]
    ax.scatter(gx, gy, color="red", zorder=5, label="training points")
    ax.set_xlabel("γ  (x = (cos γ, sin γ))")
    ax.set_ylabel("f(x)")
    ax.set_title(f"Figure 2: trained networks (t = {result['summary']['t']:g}) and the t → ∞ limit")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _plot_figure3(result: dict[str, Any], s: settings.Figure3, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4.5))
    left, right = fig.subplots(1, 2)
    from matplotlib import colormaps

    colors = colormaps["tab10"].colors  # type: ignore[attr-defined]  # as in _axes
    pcs, lam = result["pcs"], result["lam"]
    left.scatter(pcs[:, 0], pcs[:, 1], s=6, c=pcs[:, 2], cmap="viridis")
    left.set_xlabel(f"PC 1 (λ₁ = {lam[0]:.3g})")
    left.set_ylabel(f"PC 2 (λ₂ = {lam[1]:.3g})")
    left.set_title(f"Kernel PCA of Θ∞ (colour: PC 3, λ₃ = {lam[2]:.3g})")
    t = result["times"]
    for i, width in enumerate(result["along"]):
        for j, (a, o) in enumerate(zip(result["along"][width], result["orth"][width])):
            right.plot(
                t, a, color=colors[i], lw=1.2, label=f"n = {width}: along f⁽²⁾" if j == 0 else None
            )
            right.plot(
                t,
                o,
                color=colors[i],
                lw=1.0,
                ls=":",
                label=f"n = {width}: orthogonal" if j == 0 else None,
            )
    right.plot(
        t, -0.5 * np.exp(-lam[1] * t), color="black", lw=2, ls="--", label="n → ∞: −0.5 exp(−λ₂ t)"
    )
    right.axhline(0.0, color="0.5", lw=0.5)
    right.set_xlabel("t")
    right.set_ylabel("f_t − f*  (‖·‖ in p_in)")
    right.set_title("Convergence along the 2nd principal component")
    right.legend(fontsize=8)
    fig.suptitle(f"Figure 3 on {result['summary']['data']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def _report(summary: dict[str, Any]) -> str:
    lines = ["# ntkfast reproduce", "", f"Settings: {summary['settings_name']}.", ""]
    if "figure1" in summary:
        f1 = summary["figure1"]
        lines += [
            "## Figure 1: the NTK at initialisation and after training",
            "",
            f"Relative to the mean of Θ∞ on the γ grid; trained for t = {f1['t']:g}.",
            "",
            "| width | mean Θ − Θ∞ at t = 0 | spread at t = 0 | mean Θ − Θ∞ trained "
            "| spread trained | inflation |",
            "|---|---|---|---|---|---|",
        ]
        for width, v in f1["per_width"].items():
            lines.append(
                f"| {width} | {v['mean_deviation_t0']:+.3f} | {v['spread_t0']:.3f} | "
                f"{v['mean_deviation_trained']:+.3f} | {v['spread_trained']:.3f} | "
                f"{v['inflation']:+.3f} |"
            )
        lines.append("")
    if "figure2" in summary:
        f2 = summary["figure2"]
        lines += [
            "## Figure 2: trained networks against the infinite-width limit",
            "",
            "Fraction of outputs inside the limit's 10–90 % band (0.8 expected at large width):",
            "",
            "| width | inside 10–90 % |",
            "|---|---|",
        ]
        for width, v in f2["fraction_inside_10_90_band"].items():
            lines.append(f"| {width} | {v:.2f} |")
        lines.append("")
    if "figure3" in summary:
        f3 = summary["figure3"]
        lam = f3["eigenvalues"]
        lines += [
            "## Figure 3: kernel PCA and convergence along the 2nd component",
            "",
            f"Data: {f3['data']}, N = {f3['n_samples']}. Kernel eigenvalues (operator "
            f"(1/N) Θ∞): λ₁ = {lam[0]:.4g}, λ₂ = {lam[1]:.4g}, λ₃ = {lam[2]:.4g}.",
            "",
            "| width | decay rate along f⁽²⁾ | λ₂ (limit) | ratio |",
            "|---|---|---|---|",
        ]
        for width, rate in f3["decay_rate_along_pc2"].items():
            lines.append(f"| {width} | {rate:.4g} | {lam[1]:.4g} | {rate / lam[1]:.3f} |")
        lines.append("")
    lines.append(f"Total time: {summary['seconds']:.0f} s.")
    return "\n".join(lines) + "\n"


def run(
    figures_wanted: Iterable[int] = FIGURES,
    out: str | Path = "ntkfast-reproduce",
    quick: bool = False,
    paper: bool = False,
    seed: int = 0,
    quiet: bool = False,
    mnist: str | Path | None = None,
) -> dict[str, Any]:
    """Computes and draws the requested figures into ``out``; returns the summary dict."""
    figures_wanted = tuple(figures_wanted)
    check_dependencies(figures_wanted, mnist)
    table = settings.QUICK if quick else settings.PAPER if paper else settings.DEFAULT
    name = "quick" if quick else "paper" if paper else "default"
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    progress = _progress(quiet)
    if not quiet:
        from .. import get_num_threads

        n0 = 784 if mnist is not None else 64
        estimate = sum(
            settings.estimate_seconds(f, table[f], get_num_threads(), n0) for f in figures_wanted
        )
        print(f"ntkfast reproduce: {name} settings, estimated time {estimate / 60:.1f} min")
    start = time.perf_counter()
    summary: dict[str, Any] = {"settings_name": name, "seed": seed}
    for number in figures_wanted:
        s = table[number]
        if number == 1:
            assert isinstance(s, settings.Figure1)
            result = figures.figure1(s, seed, progress)
            _plot_figure1(result, s, out / "figure1.png")
        elif number == 2:
            assert isinstance(s, settings.Figure2)
            result = figures.figure2(s, seed, progress)
            _plot_figure2(result, s, out / "figure2.png")
        else:
            assert isinstance(s, settings.Figure3)
            result = figures.figure3(s, seed, progress, mnist=mnist)
            _plot_figure3(result, s, out / "figure3.png")
        summary[f"figure{number}"] = {**result["summary"], "settings": s.__dict__}
    summary["seconds"] = time.perf_counter() - start
    with open(out / "summary.json", "w") as f:
        json.dump(summary, f, indent=1, default=_json_default)
    (out / "report.md").write_text(_report(summary))
    return summary


def _json_default(value: object) -> object:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return list(value)
    raise TypeError(type(value).__name__)
