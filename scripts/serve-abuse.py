#!/usr/bin/env python3
"""`tracemark serve` under abuse (`make test-serve-abuse`): loopback only, standard library only,
about a minute. Each check asserts a figure (issue 24):

1. slow clients: an idle connection, headers without the blank line and a body that never comes
   are closed within the header and body timeouts (+1 s);
2. a connection flood: N connections that send nothing do not stop /health or a detect from a
   fresh client answering under HEALTH_BOUND_MS (p95), and the server closes them all by its timeout;
3. fairness: one token sending 1 MiB detects from 4 threads at once leaves another token's
   300-id detect p99 under FAIR_BOUND_MS;
4. deadlines: a scan past --timeout is a 503, never a 200, and the server's CPU is idle again
   within 1 s;
5. logs: every status code answered has an access-log line, and a flood of 429s writes under
   FLOOD_BYTES_PER_S bytes of log a second.

    python3 scripts/serve-abuse.py --cli $CARGO_TARGET_DIR/release/tracemark
"""

import argparse
import hashlib
import http.client
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SCHEME = "kgw:gamma=0.25,delta=2,context=lefthash:1"
VOCAB = 3000
LIGHT, HEAVY, SLOW = "abuse-light-token", "abuse-heavy-token", "abuse-slow-token"
HEALTH_BOUND_MS = 50.0
FAIR_BOUND_MS = 50.0
FLOOD_BYTES_PER_S = 1_000_000 / 30  # the bar: under 1 MB of log for a 30 s flood
FIGURES = {}


def fail(msg):
    print(f"serve-abuse: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


class Server:
    def __init__(self, cli, work, *extra):
        work.mkdir(parents=True, exist_ok=True)
        key = work / "k.key"
        if not key.exists():
            subprocess.run([cli, "keygen", "--out", str(key)], check=True, capture_output=True)
        tokens = work / "tokens.txt"
        lines = [f"sha256:{hashlib.sha256(t.encode()).hexdigest()} {n} {r} {b}"
                 for t, n, r, b in ((LIGHT, "light", 600000, 100000), (HEAVY, "heavy", 600000, 100000), (SLOW, "slow", 1, 1))]
        tokens.write_text("\n".join(lines) + "\n")
        self.log = work / f"serve-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [cli, "serve", "--listen", "127.0.0.1:0", "--key", str(key), "--scheme", SCHEME, "--vocab", str(VOCAB),
             "--tokens", str(tokens), "--threads", "2", *extra],
            stdout=subprocess.PIPE, stderr=open(self.log, "wb"), stdin=subprocess.DEVNULL)
        line = self.proc.stdout.readline().decode()
        check(line.startswith("listening on http://"), f"unexpected first line {line!r}")
        host, port = line.strip().rsplit("/", 1)[1].split(":")
        self.addr = (host, int(port))

    def conn(self):
        return http.client.HTTPConnection(*self.addr, timeout=60)

    def call(self, method, path, token=None, body=None, conn=None):
        c = conn or self.conn()
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        if conn is None:
            c.close()
        return r.status, data

    def cpu_s(self):
        f = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def lines(self):
        return [json.loads(l) for l in self.log.read_text().splitlines() if l.startswith("{")]

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)


def closed_within(sock, limit, t0=None):
    t0 = time.monotonic() if t0 is None else t0
    sock.settimeout(limit)
    try:
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    return time.monotonic() - t0, data


def percentile(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def ids_body(n, seed=1):
    return json.dumps({"ids": [(i * 7919 + seed) % VOCAB for i in range(n)]}).encode()


def slow_clients(cli, work):
    s = Server(cli, work, "--header-timeout", "2", "--body-timeout", "2")
    try:
        start = time.monotonic()
        idle = socket.create_connection(s.addr)
        partial = socket.create_connection(s.addr)
        partial.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        slow = socket.create_connection(s.addr)
        slow.sendall(f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {LIGHT}\r\n"
                     "Content-Length: 1000\r\n\r\n{\"ids\"".encode())
        t_idle, _ = closed_within(idle, 10, start)
        t_partial, _ = closed_within(partial, 10, start)
        t_slow, data = closed_within(slow, 10, start)
        FIGURES["idle connection closed after (s)"] = round(t_idle, 2)
        FIGURES["half-sent headers closed after (s)"] = round(t_partial, 2)
        FIGURES["body never sent: closed after (s)"] = round(t_slow, 2)
        check(t_idle < 3 and t_partial < 3, f"idle {t_idle:.1f} s, half-sent headers {t_partial:.1f} s (timeout 2 s)")
        check(t_slow < 3 and data.startswith(b"HTTP/1.1 408"), f"slow body: {t_slow:.1f} s, {data[:40]!r}")
    finally:
        s.stop()


def connection_flood(cli, work, n):
    s = Server(cli, work, "--header-timeout", "5")
    try:
        socks = []
        for _ in range(n):
            socks.append(socket.create_connection(s.addr))
        time.sleep(0.3)
        health, detect = [], []
        small = ids_body(300)
        for _ in range(40):
            t0 = time.monotonic()
            st, _ = s.call("GET", "/health")
            health.append((time.monotonic() - t0) * 1000)
            check(st == 200, f"/health {st} with {n} idle connections")
            t0 = time.monotonic()
            st, _ = s.call("POST", "/v1/detect", LIGHT, small)
            detect.append((time.monotonic() - t0) * 1000)
            check(st == 200, f"detect {st} with {n} idle connections")
        FIGURES[f"{n} idle connections: /health p95 (ms)"] = round(percentile(health, 95), 2)
        FIGURES[f"{n} idle connections: fresh detect p95 (ms)"] = round(percentile(detect, 95), 2)
        FIGURES[f"{n} idle connections: server RSS (MB)"] = round(s.rss_mb(), 1)
        check(percentile(health, 95) < HEALTH_BOUND_MS, f"/health p95 {percentile(health, 95):.1f} ms")
        check(percentile(detect, 95) < HEALTH_BOUND_MS, f"detect p95 {percentile(detect, 95):.1f} ms")
        t0 = time.monotonic()
        closed = 0
        for sk in socks:
            left = max(0.1, 9 - (time.monotonic() - t0))
            t, _ = closed_within(sk, left)
            closed += t < left
            sk.close()
        FIGURES[f"{n} idle connections: closed by the server within 9 s"] = closed
        check(closed == n, f"only {closed} of {n} idle connections closed by the header timeout")
    finally:
        s.stop()


def fairness(cli, work, seconds):
    s = Server(cli, work)
    try:
        small = ids_body(300)
        c = s.conn()

        def light_p99(dur):
            lat = []
            end = time.monotonic() + dur
            while time.monotonic() < end:
                t0 = time.monotonic()
                st, _ = s.call("POST", "/v1/detect", LIGHT, small, conn=c)
                lat.append((time.monotonic() - t0) * 1000)
                check(st == 200, f"light detect {st}")
                time.sleep(0.01)
            return percentile(lat, 99), len(lat)

        idle_p99, _ = light_p99(3)
        big = ids_body(200_000, seed=3)[: (1 << 20) - 10]
        big = big[: big.rfind(b",")] + b"]}"
        stop = threading.Event()
        statuses = {}

        def heavy():
            hc = s.conn()
            while not stop.is_set():
                st, _ = s.call("POST", "/v1/detect", HEAVY, big, conn=hc)
                statuses[st] = statuses.get(st, 0) + 1
        threads = [threading.Thread(target=heavy) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)
        busy_p99, n = light_p99(seconds)
        stop.set()
        for t in threads:
            t.join()
        FIGURES["light detect p99, idle server (ms)"] = round(idle_p99, 2)
        FIGURES[f"light detect p99, heavy token sending 1 MiB x4 (ms, {n} requests)"] = round(busy_p99, 2)
        FIGURES["heavy token's answers"] = dict(sorted(statuses.items()))
        FIGURES["server RSS after the heavy load (MB)"] = round(s.rss_mb(), 1)
        check(busy_p99 < FAIR_BOUND_MS, f"light p99 {busy_p99:.1f} ms while heavy sends (idle {idle_p99:.1f} ms)")
    finally:
        s.stop()


def deadlines_and_logs(cli, work, flood_s):
    s = Server(cli, work, "--timeout", "1", "--max-body", str(64 << 20), "--max-inflight-bytes", str(64 << 20),
               "--body-timeout", "1", "--cpu-workers", "1")
    try:
        doc = json.dumps({"ids": [(i * 31) % VOCAB for i in range(4000)]}).encode() + b"\n"
        corpus = doc * max(1, (48 << 20) // len(doc))
        t0 = time.monotonic()
        st, body = s.call("POST", "/v1/scan", LIGHT, corpus)
        took = time.monotonic() - t0
        FIGURES["48 MiB scan with --timeout 1: status, seconds"] = [st, round(took, 2)]
        check(st != 200 or took < 1.0, f"a scan that took {took:.1f} s answered 200")
        if st == 503:
            time.sleep(1.0)
            c0 = s.cpu_s()
            time.sleep(1.0)
            FIGURES["server CPU in the second after the timed-out scan (s)"] = round(s.cpu_s() - c0, 3)
            check(s.cpu_s() - c0 < 0.2, "the timed-out scan kept the CPU busy")
        # Every status code: 200 400 401 404 408 413 422 429 (503 above).
        small = ids_body(50)
        want = {200: s.call("POST", "/v1/detect", LIGHT, small)[0],
                400: s.call("POST", "/v1/detect", LIGHT, b"{}")[0],
                401: s.call("GET", "/v1/keys", "nope")[0],
                404: s.call("GET", "/nowhere", LIGHT)[0],
                413: s.call("POST", "/v1/detect", LIGHT, b" " * ((64 << 20) + 10))[0],
                422: s.call("POST", "/v1/detect", LIGHT, json.dumps({"ids": [VOCAB + 9]}).encode())[0]}
        sk = socket.create_connection(s.addr)
        sk.sendall(f"POST /v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {LIGHT}\r\nContent-Length: 9\r\n\r\n{{".encode())
        want[408] = int(closed_within(sk, 5)[1][9:12] or 0)
        s.call("GET", "/v1/keys", SLOW)
        want[429] = s.call("GET", "/v1/keys", SLOW)[0]
        for code, got in want.items():
            check(code == got, f"expected {code}, got {got}")
        # A flood of 429s: log bytes a second.
        size0 = s.log.stat().st_size
        stop = time.monotonic() + flood_s
        count = [0]

        def flood():
            c = s.conn()
            while time.monotonic() < stop:
                s.call("GET", "/v1/keys", SLOW, conn=c)
                count[0] += 1
        ts = [threading.Thread(target=flood) for _ in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        time.sleep(0.2)
        per_s = (s.log.stat().st_size - size0) / flood_s
        FIGURES[f"429 flood: requests in {flood_s} s"] = count[0]
        FIGURES["429 flood: log bytes a second"] = round(per_s)
        check(per_s < FLOOD_BYTES_PER_S, f"a 429 flood wrote {per_s:.0f} bytes of log a second")
        logged = {l["fields"].get("status") for l in s.lines()}
        for code in [200, 400, 401, 404, 408, 413, 422, 429, 503]:
            if code == 503 and st != 503:
                continue
            check(code in logged, f"no log line with status {code}")
        FIGURES["status codes in the log"] = sorted(c for c in logged if c)
    finally:
        s.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cli", required=True)
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--seconds", type=int, default=10, help="the heavy token's load, and the 429 flood")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ValueError, OSError):
        pass
    n = min(a.connections, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 200)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tracemark-serve-abuse.") as d:
        work = Path(d)
        slow_clients(a.cli, work)
        connection_flood(a.cli, work, n)
        fairness(a.cli, work, a.seconds)
        deadlines_and_logs(a.cli, work, a.seconds)
    for k, v in FIGURES.items():
        print(f"serve-abuse: {k}: {v}")
    print(f"serve-abuse: all checks passed in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
