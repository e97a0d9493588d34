"""Reproduce the experiments of Jacot, Gabriel & Hongler (2018), §6, with ntkfast.

``ntkfast reproduce`` runs the figures and writes one PNG per figure, ``summary.json`` and
``report.md`` into the output folder. Settings are in :mod:`ntkfast.reproduce.settings`.
It needs matplotlib and scikit-learn (and shows progress bars with tqdm) beyond the core
dependencies: ``pip install "ntkfast[paper]"``.
"""

from .run import EXTRA, FIGURES, check_dependencies, run

__all__ = ["EXTRA", "FIGURES", "check_dependencies", "run"]
