"""Reproduce the experiments of Jacot, Gabriel & Hongler (2018), §6, with ntkfast.

``ntkfast reproduce`` runs the figures and writes one PNG per figure, ``summary.json`` and
``report.md`` into the output folder. Settings are in :mod:`ntkfast.reproduce.settings`.
"""

from .run import FIGURES, run

__all__ = ["FIGURES", "run"]
