"""The documentation's examples run: module docstrings (doctest), the package
README's Python snippet and docs/python.md."""

import doctest
import json
import re
from pathlib import Path

import tracemark
from conftest import REPO, required_env, word_tokenizer_json


def python_blocks(path: Path) -> list:
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
    assert blocks, path
    return blocks


def test_package_docstring_examples():
    # The package's docstring and its classes' (Detector, Tokenizer, ...: their module is `tracemark`),
    # then the native module's functions (detection_report, ...).
    result = doctest.testmod(tracemark, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 40 and result.failed == 0
    native = doctest.testmod(tracemark._native, optionflags=doctest.ELLIPSIS)
    assert native.attempted >= 3 and native.failed == 0


def test_readme_python_example():
    for block in python_blocks(REPO / "watermark-py" / "README.md"):
        exec(compile(block, "README.md", "exec"), {})


def test_docs_python_examples(tmp_path, monkeypatch):
    """docs/python.md's blocks run as written, in order, in one namespace. The
    test writes the files the detection examples read (a word-level
    `tokenizer.json` and a one-line `corpus.jsonl`) into the working directory;
    the end-to-end example loads the real SmolLM2 from TRACEMARK_MODEL."""
    required_env("TRACEMARK_MODEL")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tokenizer.json").write_text(word_tokenizer_json(49152))
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"ids": list(range(40, 140))}) + "\n")
    namespace: dict = {}
    for i, block in enumerate(python_blocks(REPO / "docs" / "python.md")):
        exec(compile(block, f"docs/python.md block {i + 1}", "exec"), namespace)
    assert namespace["summary"]["documents"] == 1
    assert 0 < len(namespace["answer"].ids) <= 64 and namespace["out"].shape[0] == 1
    assert namespace["report"].detected and (tmp_path / "answer.html").read_text().count('<span class="g') > 10
