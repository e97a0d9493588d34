"""The generated API reference (docs/api.md) matches the docstrings."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_api_reference_is_up_to_date():
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
    blocks = python_blocks(ROOT / "docs" / "examples.md")
    assert len(blocks) == 3
    for i, block in enumerate(blocks):
        script = tmp_path / f"example_{i}.py"
        script.write_text(block)
        result = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert result.stdout.strip(), f"example {i} printed nothing"
        assert "False" not in result.stdout, result.stdout
