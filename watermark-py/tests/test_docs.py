"""The documentation's examples run: module docstrings (doctest), the package
README's Python snippet and docs/python.md."""

import doctest
import json
import re
from pathlib import Path

import tracemark
from conftest import REPO, word_tokenizer_json


def python_blocks(path: Path) -> list:
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), re.S)
    assert blocks, path
    return blocks


def test_package_docstring_examples():
    result = doctest.testmod(tracemark, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 6 and result.failed == 0


def test_readme_python_example():
    for block in python_blocks(REPO / "watermark-py" / "README.md"):
        exec(compile(block, "README.md", "exec"), {})


def test_docs_python_examples(tmp_path, monkeypatch):
    """docs/python.md's blocks run in order in one namespace. The page's
    transformers example gets a small random-weight Llama as `model` and a
    prompt as `inputs`; the files it reads are written to the working directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tokenizer.json").write_text(word_tokenizer_json(49152))
    (tmp_path / "corpus.jsonl").write_text(json.dumps({"ids": list(range(40, 140))}) + "\n")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=49152, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, pad_token_id=0, bos_token_id=1,
                         eos_token_id=2)
    namespace = {
        "model": LlamaForCausalLM(config).eval(),
        "inputs": {"input_ids": torch.tensor([[1, 5, 9]]), "attention_mask": torch.ones(1, 3, dtype=torch.long),
                   "max_new_tokens": 8, "pad_token_id": 0},
    }
    for i, block in enumerate(python_blocks(REPO / "docs" / "python.md")):
        exec(compile(block, f"docs/python.md block {i + 1}", "exec"), namespace)
    assert namespace["out"].shape == (1, 3 + 8)
    assert namespace["summary"]["documents"] == 1
