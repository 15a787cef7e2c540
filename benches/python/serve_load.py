#!/usr/bin/env python3
"""Load test of the detection service, `tracemark serve` (`make bench-serve`;
writes benches/RESULTS.md, section `detection-service`).

Starts the release CLI's service on a loopback port (one key, kgw δ=2 h=1,
SmolLM2's tokenizer, an API token whose rate limit is out of reach) and
drives it with wrk (installed from Debian when missing), 2 threads, at 16
and 64 connections, each for --seconds, against:

1. GET /health: the HTTP stack, routing and JSON alone (the baseline of the
   run: every other row is also given as a fraction of its requests/s);
2. POST /v1/detect {"text": ...}: a ~300-token English text, tokenized by
   the service, then the exact test;
3. POST /v1/detect {"ids": [...]}: the same tokens as ids (so 2 − 3 is the
   tokenizer's share).

Each row records requests/s, latency p50 and p99 (wrk's own histogram) and
the errors: responses other than 2xx and socket errors. Any error fails the
run. wrk and the service share this machine's cores, so run it on an idle
machine; the numbers are for loopback, without TLS.

    make bench-serve            # or: python benches/python/serve_load.py [--quick] [--seconds 20]
"""

import argparse
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import RESULTS, cpu_name, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CACHE = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache" / "tracemark"))
SCHEME = "kgw:gamma=0.25,delta=2,context=lefthash:1"
SECTION = "detection-service"
HEADING = "Detection service"
CONNECTIONS = (16, 64)

# A fixed English text (not watermarked: the cost of the test does not depend on its verdict).
TEXT = (
    "The lighthouse on the northern headland was built in 1871, after a winter in which three ships were lost "
    "on the reef within sight of the harbour. Its first keeper, a former ship's carpenter named Elias Morrow, kept "
    "a log of every vessel that passed, the state of the sea, and the hours the lamp burned. The log survives in "
    "the county archive, forty-one volumes bound in green cloth, and historians still read it for what it says "
    "about the weather of the period, which was colder and stormier than the decades that followed. Morrow was "
    "not a man given to description. Most entries record the wind, the visibility and the names of ships, but "
    "now and then he wrote a sentence that shows what the work cost him: a night spent trimming the wick every "
    "half hour because the oil was poor, a week without a boat from the mainland, a gull that broke a pane of "
    "the lantern and let the rain in. When the light was automated in 1964 the last keepers left the island, "
    "and for twenty years nobody lived there. Today the cottages are a small museum. Visitors climb the one "
    "hundred and twelve steps to the gallery, look out over the reef where the water breaks white even on calm "
    "days, and read, on a board by the door, Morrow's entry for the night the lamp was first lit: wind "
    "south-west, moderate; sea slight; light exhibited at sunset; all well."
)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def ensure_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk:
        return wrk
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    if sudo and not shutil.which("sudo"):
        sys.exit("bench-serve: wrk is not installed and installing it needs root (apt-get install wrk)")
    log("installing wrk (Debian package) ...")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "wrk"]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, check=True)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=True)
    return shutil.which("wrk") or sys.exit("bench-serve: apt-get did not install wrk")


def smollm2_tokenizer() -> Path:
    """SmolLM2's tokenizer.json, converted once from the GGUF by transformers (cached)."""
    out = CACHE / "serve-load" / "smollm2-tokenizer"
    if not (out / "tokenizer.json").exists():
        gguf = Path(subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch.py"), "model"],
                                   check=True, capture_output=True, text=True).stdout.strip())
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)
    return out / "tokenizer.json"


class Service:
    """`tracemark serve` on a loopback port, stopped on exit."""

    def __init__(self, cli: Path, work: Path, tokenizer: Path, token: str):
        key = work / "load.key"
        subprocess.run([str(cli), "keygen", "--out", str(key)], check=True, capture_output=True)
        tokens = work / "tokens.txt"
        digest = hashlib.sha256(token.encode()).hexdigest()
        # Every budget out of reach (requests, bytes and tokens scored a minute): this measures throughput.
        tokens.write_text(f"sha256:{digest} load 4000000000 4000000000 bytes={1 << 50} scored={1 << 50}\n")
        self.log = work / "serve.log"
        self.proc = subprocess.Popen(
            [str(cli), "serve", "--listen", "127.0.0.1:0", "--key", str(key), "--scheme", SCHEME,
             "--tokenizer", str(tokenizer), "--tokens", str(tokens)],
            stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True)
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on http://"):
            self.stop()
            sys.exit(f"bench-serve: the service did not start ({line!r}):\n{self.log.read_text()}")
        self.url = line.removeprefix("listening on ")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)


def post(url: str, token: str, body: bytes) -> dict:
    req = urllib.request.Request(url, data=body, method="POST", headers={
        "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


# wrk's summary as one JSON line (its own histogram: exact percentiles, not the rounded text).
DONE = """
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\nRESULT {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "mean_us": %.1f, '
    .. '"status_errors": %d, "connect": %d, "read": %d, "write": %d, "timeout": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), latency.mean,
    e.status, e.connect, e.read, e.write, e.timeout))
end
"""


def lua(work: Path, name: str, token: str, body: bytes | None) -> Path:
    script = [f'wrk.headers["Authorization"] = "Bearer {token}"']
    if body is not None:
        path = work / f"{name}.json"
        path.write_bytes(body)
        script += ['wrk.method = "POST"', 'wrk.headers["Content-Type"] = "application/json"',
                   f'local f = assert(io.open("{path}", "rb")); wrk.body = f:read("*a"); f:close()']
    out = work / f"{name}.lua"
    out.write_text("\n".join(script) + "\n" + DONE)
    return out


def run_wrk(wrk: str, url: str, script: Path, connections: int, seconds: int) -> dict:
    cmd = [wrk, "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s", "-s", str(script), url]
    r = subprocess.run(cmd, check=True, capture_output=True, text=True)
    m = re.search(r"^RESULT (\{.*\})$", r.stdout, re.M)
    if not m:
        sys.exit(f"bench-serve: no result from wrk:\n{r.stdout}\n{r.stderr}")
    res = json.loads(m.group(1))
    res["rps"] = res["requests"] / (res["duration_us"] / 1e6)
    res["socket_errors"] = res["connect"] + res["read"] + res["write"] + res["timeout"]
    # wrk counts status >= 400 in status_errors; "Non-2xx or 3xx responses" also counts 1xx.
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", r.stdout)
    res["non2xx"] = max(res["status_errors"], int(non2xx.group(1)) if non2xx else 0)
    return res


def fmt_ms(us: float) -> str:
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20, help="wrk's duration per row (default 20)")
    ap.add_argument("--quick", action="store_true", help="3 s per row (a smoke run; does not write RESULTS.md)")
    ap.add_argument("--cli", type=Path, help="the tracemark CLI (default: $CARGO_TARGET_DIR/release/tracemark)")
    args = ap.parse_args()
    seconds = 3 if args.quick else args.seconds
    target = Path(os.environ.get("CARGO_TARGET_DIR", CACHE / "target"))
    cli = args.cli or target / "release" / "tracemark"
    if not cli.exists():
        sys.exit(f"bench-serve: no CLI at {cli} (make bench-serve builds it)")
    wrk = ensure_wrk()
    wrk_version = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout.split(" [")[0]
    tool = subprocess.run([str(cli), "--version"], check=True, capture_output=True, text=True).stdout.strip()
    tokenizer = smollm2_tokenizer()
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(tokenizer)).encode(TEXT, add_special_tokens=False).ids
    token = secrets.token_hex(16)

    with tempfile.TemporaryDirectory(prefix="tracemark-serve-load-") as tmp:
        work = Path(tmp)
        service = Service(cli, work, tokenizer, token)
        try:
            detect = f"{service.url}/v1/detect"
            text_body = json.dumps({"text": TEXT}).encode()
            ids_body = json.dumps({"ids": ids}).encode()
            by_text, by_ids = post(detect, token, text_body), post(detect, token, ids_body)
            if by_text["counts"] != by_ids["counts"]:
                log(f"note: the service's tokens differ from tokenizers' ({by_text['counts']} vs {by_ids['counts']})")
            cases = [
                ("GET /health", f"{service.url}/health", lua(work, "health", token, None)),
                (f"POST /v1/detect, text ({len(ids)} tokens)", detect, lua(work, "text", token, text_body)),
                (f"POST /v1/detect, ids ({len(ids)})", detect, lua(work, "ids", token, ids_body)),
            ]
            rows = []
            for connections in CONNECTIONS:
                for label, url, script in cases:
                    run_wrk(wrk, url, script, connections, 1)  # warm-up: connections, caches, the allocator
                    res = run_wrk(wrk, url, script, connections, seconds)
                    log(f"{label}, {connections} connections: {res['rps']:,.0f} requests/s, p50 {fmt_ms(res['p50_us'])}, "
                        f"p99 {fmt_ms(res['p99_us'])}, {res['requests']:,} requests, {res['non2xx']} non-2xx, "
                        f"{res['socket_errors']} socket errors")
                    rows.append((label, connections, res))
        finally:
            service.stop()
        served = sum(1 for line in service.log.read_text().splitlines() if '"event":"detect"' in line)

    errors = sum(r["non2xx"] + r["socket_errors"] for _, _, r in rows)
    cores = os.cpu_count()
    out = [
        f"\nMeasured {date.today().isoformat()} on {cpu_name()} ({cores} logical CPUs, shared by wrk and the service), "
        f"{tool}, {wrk_version}; `make bench-serve`.\n",
        f"\n**`tracemark serve` on loopback** (release build, one key, {SCHEME}, SmolLM2's tokenizer, "
        f"a worker per core; wrk -t2 --latency, {seconds} s a row after a 1 s warm-up; keep-alive connections; "
        "JSON logs to a file as in production). The text is a fixed "
        f"{len(ids)}-token English passage (not watermarked: the test costs the same either way); the ids row sends "
        "the same tokens as ids, so the difference between the two is the tokenizer's share. "
        "`× /health` is the row's requests/s over /health's at the same connections, in the same run.\n",
        "| endpoint | connections | requests/s | × /health | latency p50 | latency p99 | requests | non-2xx | socket errors |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    base = {c: r["rps"] for label, c, r in rows if label == "GET /health"}
    for label, connections, r in rows:
        out.append(f"| {label} | {connections} | {r['rps']:,.0f} | {r['rps'] / base[connections]:.3f} "
                   f"| {fmt_ms(r['p50_us'])} | {fmt_ms(r['p99_us'])} | {r['requests']:,} | {r['non2xx']} "
                   f"| {r['socket_errors']} |")
    out.append(f"\n{served:,} detections served in all; {errors} errors.")
    print("\n".join(out))
    if errors:
        sys.exit(f"bench-serve: {errors} errors (non-2xx responses or socket errors): RESULTS.md not written")
    if args.quick:
        return
    text = RESULTS.read_text()
    if f"<!-- {SECTION}:begin -->" not in text:
        RESULTS.write_text(text.rstrip("\n") + f"\n\n## {HEADING}\n\n<!-- {SECTION}:begin --><!-- {SECTION}:end -->\n")
    write_section(SECTION, "\n".join(out) + "\n")
    print(f"wrote section {SECTION!r} to {RESULTS}")


if __name__ == "__main__":
    main()
