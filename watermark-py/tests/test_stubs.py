"""The type stubs match the native module (mypy.stubtest)."""

import subprocess
import sys


def test_stubtest():
    r = subprocess.run([sys.executable, "-m", "mypy.stubtest", "tracemark._native"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
