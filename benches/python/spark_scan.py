"""Corpus scan throughput: `tracemark scan --jobs 1` against tracemark.spark on
Spark local[1] and local[2], the same corpus, the same results
(`make bench-spark`; writes benches/RESULTS.md, section `Spark scan`).

The corpus: 20,000 documents cut from the project's human text (1,000
characters each, about 250 DeepSeek tokens), three in four as text and one in
four as ids, so that both paths tokenize what a real corpus would make them
tokenize. Each arm runs in its own process: the CLI from start to exit
(tokenizer loading included), Spark from `tracemark.spark.scan` called to its
result (session start excluded and reported apart; one warm-up scan of a
small corpus first, as a long-running session would have). Each arm scans the
corpus three times (the CLI as three processes, Spark three times in its
session after a first scan of the corpus, which is reported apart: the JVM
compiles its hot code then) and is rated by the median; every run is reported. Every run's
aggregate must equal the CLI's (counts and log10_p): a faster wrong answer is
not a result.

Run on an idle machine: it waits until no cargo/rustc/pytest is running.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benches"))
from report import RESULTS, cpu_name, write_section  # noqa: E402

SCHEME = "kgw:gamma=0.25,delta=2,context=lefthash:1"
BUSY = ("cargo", "rustc", "pytest", "maturin", "wrk")
# Every arm runs the scan this many times (the CLI as a new process each time, Spark in one session, after
# a first scan of the corpus that is reported apart: the JVM compiles its hot code then) and reports the median.
REPEATS = 3


def fetch(what: str) -> str:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch.py"), what], check=True,
                          capture_output=True, text=True).stdout.strip()


def cpu_busy(seconds: float = 3.0) -> float:
    """The share of all CPUs busy over `seconds` (from /proc/stat)."""

    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return fields[3] + fields[4], sum(fields)  # idle + iowait, total

    idle0, total0 = sample()
    time.sleep(seconds)
    idle1, total1 = sample()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_until_idle() -> None:
    """Waits until no build, test or load generator runs and the CPUs are nearly idle."""
    while True:
        ps = subprocess.run(["ps", "-eo", "comm=,args="], capture_output=True, text=True).stdout.splitlines()
        busy = sorted({w for line in ps for w in BUSY if line.startswith(w) or f"-m {w}" in line or f"/{w}" in line})
        load = cpu_busy()
        if not busy and load < 0.15:
            return
        what = ", ".join(busy) or "other processes"
        print(f"waiting for an idle machine ({what}; CPUs {load:.0%} busy) ...", file=sys.stderr, flush=True)
        time.sleep(30)


def make_corpus(path: Path, tokenizer: str, n: int) -> int:
    import tracemark as tm

    tok = tm.Tokenizer.from_file(tokenizer)
    out, size = [], 0
    with open(fetch("human-text")) as f:
        for line in f:
            text = json.loads(line)["text"]
            for i in range(0, len(text) - 999, 1000):
                piece = text[i:i + 1000]
                if len(out) % 4 == 3:
                    out.append(json.dumps({"ids": tok.encode(piece), "id": len(out)}))
                else:
                    out.append(json.dumps({"text": piece, "id": len(out)}))
                if len(out) == n:
                    break
            if len(out) == n:
                break
    data = "\n".join(out) + "\n"
    path.write_text(data)
    return len(data.encode())


def run_cli(cli: str, key: Path, tokenizer: str, corpus: Path) -> dict:
    times, summaries = [], []
    for _ in range(REPEATS):
        t = time.perf_counter()
        r = subprocess.run([cli, "--quiet", "scan", "--key", str(key), "--scheme", SCHEME, "--tokenizer", tokenizer,
                            "--jobs", "1", "--json", "--out", os.devnull, str(corpus)], capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        assert r.returncode == 0, r.stderr
        summaries.append(json.loads(r.stdout.splitlines()[-1])["summary"])
    return {"seconds": statistics.median(times), "times": times, "summaries": summaries}


def spark_arm(args) -> None:
    """One Spark arm, in its own process: prints its timings as JSON."""
    import tracemark as tm
    from pyspark.sql import SparkSession

    from tracemark import spark as tms

    cores = int(args.master[len("local["):-1])
    size = Path(args.corpus).stat().st_size
    t = time.perf_counter()
    spark = (
        SparkSession.builder.master(args.master)
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", "2g")
        # Four file blocks per core, and as many shuffle partitions: enough to keep every core busy.
        .config("spark.sql.files.maxPartitionBytes", str(max(size // (4 * cores), 1 << 16)))
        .config("spark.sql.shuffle.partitions", str(4 * cores))
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter() - t
    key = tm.Key.load(args.key)
    warm = tms.scan(args.warmup, key, SCHEME, tokenizer=args.tokenizer, spark=spark)
    warm.unpersist()
    times, summaries = [], []
    for _ in range(REPEATS + 1):
        t = time.perf_counter()
        result = tms.scan(args.corpus, key, SCHEME, tokenizer=args.tokenizer, spark=spark)
        times.append(time.perf_counter() - t)
        summaries.append(result.summary)
        partitions = result.documents.rdd.getNumPartitions()
        result.unpersist()
    spark.stop()
    print(json.dumps({"seconds": statistics.median(times[1:]), "times": times[1:], "first": times[0],
                      "session_start": started,
                      "partitions": partitions, "summaries": summaries}))


def run_spark(master: str, key: Path, tokenizer: str, corpus: Path, warmup: Path) -> dict:
    r = subprocess.run([sys.executable, __file__, "--arm", master, "--key", str(key), "--tokenizer", tokenizer,
                        "--corpus", str(corpus), "--warmup", str(warmup)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cli", help="the tracemark binary")
    ap.add_argument("--quick", action="store_true", help="2,000 documents (a smoke run; does not write RESULTS.md)")
    ap.add_argument("--documents", type=int, default=20_000)
    ap.add_argument("--arm", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    ap.add_argument("--tokenizer", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--warmup", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.arm:
        args.master = args.arm
        return spark_arm(args)
    import pyspark

    import tracemark as tm

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    n = 2_000 if args.quick else args.documents
    tokenizer = fetch("tokenizer")
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        key = d / "bench.key"
        tm.Key.generate().save(key)
        corpus, warmup = d / "corpus.jsonl", d / "warmup.jsonl"
        size = make_corpus(corpus, tokenizer, n)
        make_corpus(warmup, tokenizer, 200)
        wait_until_idle()
        cli = run_cli(args.cli, key, tokenizer, corpus)
        arms = {}
        for master in ("local[1]", "local[2]"):
            wait_until_idle()
            arms[master] = run_spark(master, key, tokenizer, corpus, warmup)
    want = cli["summaries"][0]
    for master, arm in [("cli", cli), *arms.items()]:
        for got in arm["summaries"]:
            assert got["aggregate"]["counts"] == want["aggregate"]["counts"], master
            assert got["aggregate"]["outcome"] == want["aggregate"]["outcome"], master
            assert {k: got[k] for k in ("documents", "errors", "detected", "not_detected", "inconclusive")} == {
                k: want[k] for k in ("documents", "errors", "detected", "not_detected", "inconclusive")}, master
    tokens = want["aggregate"]["counts"]["seen"]
    base = n / cli["seconds"]
    rows = [("`tracemark scan --jobs 1`", 1, cli["times"], "", "", "")]
    for master, arm in arms.items():
        cores = int(master[len("local["):-1])
        rows.append((f"Spark `{master}`", cores, arm["times"], f"{arm['first']:.2f} s", arm["partitions"],
                     f"{arm['session_start']:.1f} s"))
    lines = [
        f"\nMeasured {date.today().isoformat()} on {cpu_name()} ({os.cpu_count()} logical CPUs), tracemark "
        f"{tm.__version__}, pyspark {pyspark.__version__} (Java 17); `make bench-spark`.\n",
        f"\n**One corpus, three ways** ({n:,} documents, {size / 1e6:.1f} MB of JSONL: 1,000-character pieces of the "
        f"project's human text, three in four as text and one in four as ids; {tokens:,} completion tokens; "
        f"DeepSeek tokenizer, {SCHEME}, pair dedup). Every arm gave the CLI's aggregate (counts and log10_p equal). "
        f"Wall time from the call to the result, each arm {REPEATS} times: the CLI a new process each time (tokenizer "
        "loading included), Spark in one session after a warm-up scan of 200 documents and a first scan of the "
        "corpus, reported apart (the JVM compiles its hot code then: what a session's first large scan costs); the "
        "rates are from the median. Spark's session start is apart too (paid once per application).\n",
        "\n| arm | cores | wall time (median) | each run | documents/s | documents/s per core | per core ÷ CLI "
        "| first scan | partitions | session start |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, cores, times, first, parts, start in rows:
        seconds = statistics.median(times)
        rate = n / seconds
        each = " / ".join(f"{x:.2f}" for x in times)
        lines.append(f"| {name} | {cores} | {seconds:.2f} s | {each} | {rate:,.0f} | {rate / cores:,.0f} | "
                     f"{rate / cores / base:.2f} | {first} | {parts} | {start} |")
    lines.append(
        "\nPer core, Spark does the CLI's native work plus its own: rows to the Python workers and back through "
        "Arrow, the cached per-document results, the shuffle of the deduplication, and JVM threads (scheduling, "
        "shuffle, garbage collection) that share the same cores; on this machine `local[2]` also shares its two "
        "cores with the driver. On a cluster each executor has its own cores; the `local[1]` row is the better "
        "guide to a rate per executor core there (not measured here: one machine)."
    )
    body = "\n".join(lines) + "\n"
    print(body)
    if not args.quick:
        write_section("Spark scan", body)
        print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
