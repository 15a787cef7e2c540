"""The documentation's examples run: module docstrings (doctest) and the README's Python snippet."""

import doctest
import re
from pathlib import Path

import tracemark


def test_package_docstring_examples():
    result = doctest.testmod(tracemark, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0


def test_readme_python_example():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
