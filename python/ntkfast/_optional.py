"""Optional dependencies: an error that names the pip extra which installs them.

The core of ntkfast needs only NumPy and SciPy. scikit-learn (``ntkfast.sklearn``, the digits
of ``ntkfast reproduce``), Dask (``ntkfast.dask``), matplotlib and tqdm (``ntkfast reproduce``)
come with extras; nothing here imports them unless asked to.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

__all__ = ["MissingExtraError", "missing_extra", "require"]

#: The pip requirement that provides each optional top-level module.
DISTRIBUTIONS = {
    "dask": "dask[array]",
    "distributed": "distributed",
    "matplotlib": "matplotlib",
    "sklearn": "scikit-learn",
    "tqdm": "tqdm",
}


class MissingExtraError(ModuleNotFoundError):
    """An optional dependency is not installed (or cannot be imported).

    The message names the extra that installs it, e.g. ``pip install "ntkfast[paper]"``.
    It is a ModuleNotFoundError, so ``except ImportError`` and ``pytest.importorskip`` treat
    it as a missing module.
    """


def _top(module: str) -> str:
    return module.partition(".")[0]


def missing_extra(
    needed_by: str, extra: str, errors: Mapping[str, ImportError]
) -> MissingExtraError:
    """The error for ``needed_by`` when importing each module in ``errors`` failed.

    A module that is absent is reported as not installed; one that is present but fails to
    import (a broken installation) is reported with its own error.
    """
    absent, broken = [], []
    for module, err in errors.items():
        requirement = DISTRIBUTIONS.get(_top(module), _top(module))
        if isinstance(err, ModuleNotFoundError) and err.name and _top(err.name) == _top(module):
            absent.append(requirement)
        else:
            broken.append(f"{requirement} cannot be imported ({type(err).__name__}: {err})")
    parts = []
    if absent:
        which = " and ".join(absent)
        verb = "is" if len(absent) == 1 else "are"
        parts.append(f"{needed_by} needs {which}, which {verb} not installed")
    if broken:
        parts.append(f"{needed_by} needs " + "; ".join(broken))
    hint = f'pip install "ntkfast[{extra}]" (from a source checkout: pip install ".[{extra}]")'
    message = "; ".join(parts) + f". Install the {extra!r} extra: {hint}"
    return MissingExtraError(message, name=_top(next(iter(errors))))


def require(needed_by: str, extra: str, *modules: str) -> None:
    """Imports ``modules``; raises :class:`MissingExtraError` naming all that fail."""
    errors: dict[str, ImportError] = {}
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            errors[module] = err
    if errors:
        raise missing_extra(needed_by, extra, errors) from next(iter(errors.values()))
