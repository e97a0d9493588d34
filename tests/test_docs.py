"""The generated API reference (docs/api.md) matches the docstrings."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_api_reference_is_up_to_date():
    # docs/api.md documents ntkfast.sklearn and ntkfast.dask too: the script imports them.
    pytest.importorskip("sklearn", reason="docs/api.md covers ntkfast.sklearn (sklearn extra)")
    pytest.importorskip("dask", reason="docs/api.md covers ntkfast.dask (dask extra)")
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_api_docs.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


def python_blocks(path):
    import re

    return re.findall(r"```python\n(.*?)```", path.read_text(), re.S)


def test_examples_run(tmp_path):
    """Every code block of docs/examples.md runs as a script and prints its result."""
    pytest.importorskip("sklearn", reason="docs/examples.md uses scikit-learn (sklearn extra)")
    pytest.importorskip("dask.distributed", reason="docs/examples.md uses Dask (dask extra)")
    blocks = python_blocks(ROOT / "docs" / "examples.md")
    assert len(blocks) == 5
    for i, block in enumerate(blocks):
        script = tmp_path / f"example_{i}.py"
        script.write_text(block)
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip(), f"example {i} printed nothing"
        assert "False" not in result.stdout, result.stdout
