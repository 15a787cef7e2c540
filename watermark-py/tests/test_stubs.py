"""The type stubs match the native module (mypy.stubtest)."""

import subprocess
import sys


def test_stubtest():
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "tracemark._native"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_package_type_checks():
    # The Python modules (hf, device, serving, vllm, sglang, llama_cpp) against the stubs;
    # the serving stacks' own packages are taken as untyped where they are not installed.
    package = __import__("pathlib").Path(__file__).resolve().parents[1] / "python" / "tracemark"
    r = subprocess.run([sys.executable, "-m", "mypy", "--ignore-missing-imports", str(package)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
