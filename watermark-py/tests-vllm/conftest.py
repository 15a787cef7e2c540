"""The vLLM tests run in their own cached environment (make test-vllm): vLLM
pins its own torch. They drive tracemark's processors through vLLM's classes
on CPU (vLLM's engine needs CUDA; its classes do not)."""

import json
import sys
from pathlib import Path

import pytest
import vllm.utils.torch_utils

import tracemark as tm

# vLLM's CUDA build takes pinned host memory for granted when it cannot see a
# GPU; pinning needs a driver. Its builtin processors stage through it.
vllm.utils.torch_utils.PIN_MEMORY = False

VECTORS = Path(__file__).resolve().parents[2] / "testdata" / "vectors"
# The comparison helpers the main tests use (tests/distributions.py).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def vectors(name: str) -> list:
    data = json.loads((VECTORS / f"{name}.json").read_text())
    assert data["spec"] == tm.SPEC_VERSION and data["cases"], name
    return data["cases"]


@pytest.fixture
def server_key(tmp_path, monkeypatch):
    """A master key in a key file, named by the environment as a server's would be."""

    def install(scheme: str, key: tm.Key = None, unlabelled: str = None) -> tm.Key:
        key = key or tm.Key.generate()
        path = tmp_path / "master.key"
        key.save(path)
        monkeypatch.setenv("TRACEMARK_KEY_FILE", str(path))
        monkeypatch.setenv("TRACEMARK_SCHEME", scheme)
        if unlabelled is None:
            monkeypatch.delenv("TRACEMARK_UNLABELLED", raising=False)
        else:
            monkeypatch.setenv("TRACEMARK_UNLABELLED", unlabelled)
        return key

    return install
