"""docs/verifier.md's five-command recipe, run as written on `make demo`'s output.

Usage: python3 scripts/check-recipe.py DEMO_DIR DEMO_STDOUT

DEMO_DIR is the folder the demo wrote (with `--out-dir`), DEMO_STDOUT the
demo's printed output. The script takes the first ```sh block under the
recipe's heading in docs/verifier.md, checks that its commands are the ones
the demo prints, runs them one by one in DEMO_DIR (with `tracemark` on PATH),
and checks the exit codes against the demo's own verdict for the recipe's
case (`verdicts.json`, answer 1 watermarked): the test (3) and the report (4)
give the demo's verdict, the receipt (5) holds, the rest succeed. Standard
library only.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADING = '## From "we received this text" to a report, in five commands'


def recipe() -> list[str]:
    docs = (ROOT / "docs" / "verifier.md").read_text()
    section = docs[docs.index(HEADING):]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, "no sh block under the recipe's heading"
    joined = block.group(1).replace("\\\n", " ")
    return [" ".join(line.split()) for line in joined.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def main() -> int:
    demo_dir, stdout = Path(sys.argv[1]), Path(sys.argv[2]).read_text()
    commands = recipe()
    assert len(commands) == 5, commands
    printed = [" ".join(line.split()) for line in stdout.splitlines()]
    for c in commands:
        assert c in printed, f"the demo does not print the docs' command:\n  {c}"
    verdicts = {v["answer"]: v["verdict"] for v in json.loads((demo_dir / "verdicts.json").read_text())}
    expected_test = {"detected": 0, "not_detected": 1, "inconclusive": 3}[verdicts["1-watermarked"]]
    # The receipt holds only when the watermark it states is found (exit 1 when it is not).
    expected = [0, 0, expected_test, expected_test, 0 if expected_test == 0 else 1]
    failed = False
    for i, (c, want) in enumerate(zip(commands, expected), 1):
        r = subprocess.run(["bash", "-c", c], cwd=demo_dir, capture_output=True, text=True)
        ok = r.returncode == want
        failed |= not ok
        print(f"step {i}: exit {r.returncode} (expected {want}) {'ok' if ok else 'FAILED'}: {c}")
        if not ok:
            print(r.stdout + r.stderr)
        if i == 3 and "WARNING" in r.stdout + r.stderr:
            print("step 3 warned:\n" + r.stdout + r.stderr)
            failed = True
    html = demo_dir / "suspect-report.html"
    page = html.read_text() if html.exists() else ""
    want_word = {0: "Watermark detected", 1: "Not detected", 3: "Inconclusive"}[expected_test]
    if f'id="verdict">{want_word}<' not in page:
        print(f"the report does not say {want_word!r}")
        failed = True
    print(f"recipe: the demo's verdict for answer 1 is {verdicts['1-watermarked']}; "
          f"{'the five commands reproduce it' if not failed else 'the recipe FAILED'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
