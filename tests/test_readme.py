"""The README's Python examples run as written (every ```python block; a ```py block is an excerpt
that needs what a run left on disk, such as a saved model)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_python_examples_in_the_readme_run() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "the README shows the Python API"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
