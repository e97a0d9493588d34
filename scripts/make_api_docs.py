"""Write docs/api.md, the API reference, from the docstrings of the public objects.

    python scripts/make_api_docs.py            # rewrite docs/api.md
    python scripts/make_api_docs.py --check    # exit 1 if docs/api.md is out of date

Every name in a module's ``__all__`` is listed with its signature (parameter names and
defaults; the annotations live in the code) and its docstring; classes list their public
methods and properties. ``tests/test_docs.py`` runs the check.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from pathlib import Path

MODULES = [
    "ntkfast",
    "ntkfast.activations",
    "ntkfast.dynamics",
    "ntkfast.regression",
    "ntkfast.data",
    "ntkfast.sklearn",
    "ntkfast.dask",
]
# Re-exported at the top level and documented there.
SKIP = {"ntkfast": {"activations", "dynamics"}, "ntkfast.regression": {"KernelRegressor"}}
OUT = Path(__file__).resolve().parent.parent / "docs" / "api.md"


def signature(obj) -> str:
    """(a, b=1, *, c=None): names and defaults without annotations."""
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return "(...)"
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()]
    if params and params[0].name in ("self", "cls"):
        params = params[1:]
    return str(sig.replace(parameters=params, return_annotation=inspect.Signature.empty))


def docstring(obj) -> str:
    doc = inspect.getdoc(obj)
    return f"```text\n{doc}\n```\n" if doc else "*(no docstring)*\n"


def members(cls) -> list[tuple[str, object]]:
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_") and name != "__call__":
            continue
        if isinstance(value, (staticmethod, classmethod)):
            value = value.__func__
        if inspect.isfunction(value) or isinstance(value, property):
            out.append((name, value))
    return out


def render() -> str:
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python scripts/make_api_docs.py`; do not edit by hand.",
        "",
    ]
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lines += [f"## `{module_name}`", "", docstring(module)]
        for name in module.__all__:
            if name in SKIP.get(module_name, set()):
                continue
            obj = getattr(module, name)
            qualified = f"{module_name}.{name}"
            if inspect.isclass(obj):
                lines += [f"### class `{qualified}{signature(obj)}`", "", docstring(obj)]
                for member, value in members(obj):
                    if isinstance(value, property):
                        lines += [f"#### property `{name}.{member}`", "", docstring(value)]
                    else:
                        lines += [
                            f"#### `{name}.{member}{signature(value)}`",
                            "",
                            docstring(value),
                        ]
            elif callable(obj):
                lines += [f"### `{qualified}{signature(obj)}`", "", docstring(obj)]
            else:
                lines += [f"### `{qualified}` = `{obj!r}`", ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if docs/api.md differs")
    args = parser.parse_args()
    text = render()
    if args.check:
        if not OUT.exists() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python scripts/make_api_docs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT} ({len(text.splitlines())} lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
