#!/usr/bin/env python3
"""Side by side, in one process: tracemark against transformers' own watermarking.

1. Per decode step, inside transformers' LogitsProcessor protocol
   (`processor(input_ids, scores)`), for a 128,256-token vocabulary at batch 1
   and 8: tracemark's `TracemarkLogitsProcessor` (kgw left-hash and self-hash,
   tournament, gumbel) against `WatermarkLogitsProcessor` (left-hash and
   self-hash) and `SynthIDTextWatermarkLogitsProcessor`, next to the floor
   (`scores += 0` on the same tensor).
2. Detector throughput: scored tokens per second of tracemark's `Detector`
   against transformers' `WatermarkDetector`, on the same 1,000-token sequences.

Runs on one thread (torch.set_num_threads(1), RAYON_NUM_THREADS=1) and writes
the ratios into benches/RESULTS.md (section `python`).

    make bench-python      # or: python benches/python/compare.py [--quick]
"""

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from transformers import (  # noqa: E402
    LlamaConfig,
    SynthIDTextWatermarkLogitsProcessor,
    WatermarkDetector,
    WatermarkingConfig,
    WatermarkLogitsProcessor,
)

import tracemark as tm  # noqa: E402
from tracemark.hf import TracemarkLogitsProcessor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from report import RESULTS, write_section  # noqa: E402  (benches/report.py: one writer of RESULTS.md)

V = 128_256


def best_time(fn, min_seconds=1.0, min_reps=3):
    """Median of per-call times over repeated calls (at least min_seconds in all)."""
    fn()  # warm up (first call builds lazy state)
    times, start = [], time.perf_counter()
    while len(times) < min_reps or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    times.sort()
    return times[len(times) // 2]


def fmt(seconds):
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} µs"


def per_step(batch, quick):
    torch.manual_seed(0)
    input_ids = torch.randint(0, V, (batch, 64))
    base = torch.randn(batch, V)
    key = tm.Key.generate()
    rows = []

    def run(name, proc, copy=True, budget=1.0):
        def call():
            scores = base.clone() if copy else base
            proc(input_ids, scores)
        rows.append((name, max(best_time(call, min_seconds=0.2 if quick else budget) - clone, 1e-9)))

    rows.append(("floor: scores += 0", best_time(lambda: base.add_(0.0), min_seconds=0.2 if quick else 1.0)))
    # Every processor call gets fresh scores (tournament and gumbel overwrite them);
    # the copy is timed on its own and subtracted.
    clone = best_time(lambda: base.clone(), min_seconds=0.2 if quick else 1.0)
    run("tracemark kgw lefthash:1", TracemarkLogitsProcessor(key, "kgw:gamma=0.25,delta=2,context=lefthash:1", V))
    run("tracemark kgw selfhash:4", TracemarkLogitsProcessor(key, "kgw:gamma=0.25,delta=2,context=selfhash:4", V))
    # The same input every call: no repeated-context memory (which the contract would switch on), as measured before.
    run("tracemark tournament (m=30, k=40)", TracemarkLogitsProcessor(key, "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4", V, skip_repeated=False))
    run("tracemark gumbel", TracemarkLogitsProcessor(key, "gumbel:temperature=1,context=lefthash:4", V, skip_repeated=False))
    run("transformers WatermarkLogitsProcessor lefthash", WatermarkLogitsProcessor(V, "cpu", 0.25, 2.0, seeding_scheme="lefthash", context_width=1))
    run("transformers WatermarkLogitsProcessor selfhash", WatermarkLogitsProcessor(V, "cpu", 0.25, 2.0, seeding_scheme="selfhash", context_width=4), budget=3.0)
    synthid = SynthIDTextWatermarkLogitsProcessor(
        ngram_len=5, keys=list(range(101, 131)), sampling_table_size=2**16, sampling_table_seed=0,
        context_history_size=1024, device=torch.device("cpu"))
    run("transformers SynthIDTextWatermarkLogitsProcessor (30 layers)", synthid, budget=3.0)
    return rows


def detection(quick):
    torch.manual_seed(1)
    n_docs, length = (2, 300) if quick else (4, 1000)
    ids = torch.randint(0, V, (n_docs, length))
    config = LlamaConfig(vocab_size=V, pad_token_id=0, bos_token_id=1, eos_token_id=2)
    hf = WatermarkDetector(config, "cpu", WatermarkingConfig(greenlist_ratio=0.25, bias=2.0, seeding_scheme="lefthash", context_width=1))
    t_hf = best_time(lambda: hf(ids, return_dict=True), min_seconds=0.5 if quick else 3.0, min_reps=1)
    detector = tm.Detector(tm.Key.generate(), "kgw:gamma=0.25,delta=2,context=lefthash:1", V, min_scored=1)
    rows = [r.numpy() for r in ids]

    def ours():
        for r in rows:
            detector.detect_ids(r[:1], r[1:])
    t_ours = best_time(ours, min_seconds=0.5 if quick else 2.0)
    tokens = n_docs * (length - 1)
    return tokens / t_hf, tokens / t_ours


def cpu():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short timings (a smoke run; does not write RESULTS.md)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = [f"\nMeasured {date.today().isoformat()} on {cpu()}, one thread (torch {torch.__version__}, "
           f"transformers {__import__('transformers').__version__}, tracemark {tm.__version__}).\n"]
    for batch in (1, 8):
        rows = per_step(batch, args.quick)
        floor = rows[0][1]
        ref = dict(rows)["transformers WatermarkLogitsProcessor lefthash"]
        out.append(f"\n**Per decode step, V = {V:,}, batch {batch}** (the time to copy fresh scores for each call is measured separately and subtracted)\n")
        counterpart = {
            "tracemark kgw lefthash:1": "transformers WatermarkLogitsProcessor lefthash",
            "tracemark kgw selfhash:4": "transformers WatermarkLogitsProcessor selfhash",
            "tracemark tournament (m=30, k=40)": "transformers SynthIDTextWatermarkLogitsProcessor (30 layers)",
        }
        times = dict(rows)
        out.append("| processor | time | × floor | transformers lefthash ÷ this | its transformers counterpart ÷ this |")
        out.append("|---|---:|---:|---:|---:|")
        for name, t in rows:
            other = counterpart.get(name)
            like = f"{times[other] / t:,.0f}" if other else ""
            out.append(f"| {name} | {fmt(t)} | {t / floor:.1f} | {ref / t:.1f} | {like} |")
        print("\n".join(out[-len(rows) - 3:]), flush=True)
    hf_tps, ours_tps = detection(args.quick)
    out.append("\n**Detection throughput** (kgw left-hash h=1, 1,000-token sequences)\n")
    out.append("| detector | scored tokens/s | ratio |\n|---|---:|---:|")
    out.append(f"| transformers WatermarkDetector | {hf_tps:,.0f} | 1 |")
    out.append(f"| tracemark Detector (dedup on, exact p-value) | {ours_tps:,.0f} | {ours_tps / hf_tps:,.0f} |")
    print("\n".join(out[-4:]))
    if args.quick:
        return
    write_section("python", "\n".join(out) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
