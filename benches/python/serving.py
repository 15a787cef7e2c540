#!/usr/bin/env python3
"""The watermark's cost where answers are served, side by side in one process
(`make bench-serving`; writes benches/RESULTS.md, section `serving`):

1. llama.cpp (llama-cpp-python, CPU, the SmolLM2 GGUF): generated tokens per
   second without a processor, with an identity processor (the cost of
   llama-cpp-python's processor hook itself) and with the watermark, every
   scheme, the arms back to back in each round over the same prompts and seeds.
2. The Python protocol path (`TracemarkLogitsProcessor(input_ids, scores)`,
   what transformers calls each step) against one binding call
   (`Scheme.process_batch` on the rows' context windows) and the core's own
   time for the same rows (timed inside Rust), kgw at V = 128,256, batch 1
   and 8, with 64- and 2,048-token histories.
3. The device path (`tracemark.device`, torch) on CPU against the core, same
   rows: what a GPU replaces (no GPU here).

Timings are medians of repeated calls on this machine's cores (llama.cpp on
2 threads; the per-step timings on one); run it on an idle machine.

    make bench-serving          # or: python benches/python/serving.py [--quick]
"""

import os

os.environ.setdefault("RAYON_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from datetime import date  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import tracemark as tm  # noqa: E402
from tracemark.device import DeviceScheme  # noqa: E402
from tracemark.hf import TracemarkLogitsProcessor  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import best_time, cpu, fmt  # noqa: E402
from report import RESULTS, write_section  # noqa: E402

V = 128_256
SCHEMES = {
    "kgw δ=2 h=1": "kgw:gamma=0.25,delta=2,context=lefthash:1",
    "kgw δ=2 self-hash h=4": "kgw:gamma=0.25,delta=2,context=selfhash:4",
    "tournament m=30 k=40": "tournament:layers=30,top_k=40,temperature=1,context=lefthash:4",
    "gumbel h=4": "gumbel:temperature=1,context=lefthash:4",
}
PROMPTS = [
    "Explain how a bicycle gear works to a curious child.",
    "Write a short story about a lighthouse keeper.",
    "What are the main causes of the seasons on Earth?",
]


def llama_cpp_rows(quick):
    import llama_cpp

    from tracemark.llama_cpp import TracemarkLlamaProcessor

    model = os.environ["TRACEMARK_MODEL"]
    llm = llama_cpp.Llama(model_path=model, n_ctx=1024, n_threads=2, n_threads_batch=2, verbose=False, seed=0)
    key = tm.Key.generate()
    tokens = 32 if quick else 128
    rounds = 1 if quick else 7
    # Chat answers sampled as served, the same seeds in both arms; tokens/s counts the generated tokens.
    sampling = dict(temperature=0.8, top_k=40, top_p=0.95, min_p=0.05, repeat_penalty=1.1)

    def run(lps_factory):
        n, t = 0, 0.0
        for i, prompt in enumerate(PROMPTS):
            lps = lps_factory()
            start = time.perf_counter()
            messages = [{"role": "user", "content": prompt}]
            r = llm.create_chat_completion(messages, max_tokens=tokens, seed=i, logits_processor=lps, **sampling)
            t += time.perf_counter() - start
            n += r["usage"]["completion_tokens"]
        return n / t

    run(lambda: None)  # warm up

    def identity(input_ids, scores):
        return scores

    class Timed:
        """The watermark processor, with the time spent inside it accumulated."""

        def __init__(self, scheme):
            self.inner = TracemarkLlamaProcessor(scheme)
            self.seconds = 0.0
            self.calls = 0

        def __call__(self, input_ids, scores):
            t = time.perf_counter()
            out = self.inner(input_ids, scores)
            self.seconds += time.perf_counter() - t
            self.calls += 1
            return out

    out = []
    for label, spec in SCHEMES.items():
        scheme = tm.Scheme(key, spec, llm.n_vocab())
        inside = {"seconds": 0.0, "calls": 0, "wall": 0.0}

        def watermarked():
            timed = Timed(scheme)
            watermarked.last = timed
            return llama_cpp.LogitsProcessorList([timed])

        arms = {
            "none": lambda: None,
            # llama-cpp-python's processor hook alone: what any processor costs before it does anything
            "hook": lambda: llama_cpp.LogitsProcessorList([identity]),
            "watermark": watermarked,
        }
        speeds = {name: [] for name in arms}
        for r in range(rounds):
            order = list(arms)[r % 3 :] + list(arms)[: r % 3]  # rotate which arm goes first
            for name in order:
                if name == "watermark":
                    timers = []

                    def factory():
                        lps = watermarked()
                        timers.append(watermarked.last)
                        return lps

                    start = time.perf_counter()
                    speeds[name].append(run(factory))
                    inside["wall"] += time.perf_counter() - start
                    inside["seconds"] += sum(t.seconds for t in timers)
                    inside["calls"] += sum(t.calls for t in timers)
                else:
                    speeds[name].append(run(arms[name]))
        # Paired per round (the arms of one round ran back to back), then the median over rounds.
        own = statistics.median(1 - w / h for w, h in zip(speeds["watermark"], speeds["hook"]))
        total = statistics.median(1 - w / n for w, n in zip(speeds["watermark"], speeds["none"]))
        med = {name: statistics.median(v) for name, v in speeds.items()}
        per_call = inside["seconds"] / max(inside["calls"], 1)
        share = inside["seconds"] / inside["wall"]
        out.append((label, med["none"], med["hook"], med["watermark"], own, total, per_call, share))
        print(f"llama.cpp {label}: {med['none']:.1f} / {med['hook']:.1f} / {med['watermark']:.1f} tok/s "
              f"(watermark {100 * own:+.2f}% over the hook, {100 * total:+.2f}% over none; "
              f"inside the watermark {per_call * 1e6:.1f} µs a token, {100 * share:.2f}% of the wall time)", flush=True)
    return out, tokens, rounds


def protocol_rows(quick):
    key = tm.Key.generate()
    spec = SCHEMES["kgw δ=2 h=1"]
    scheme = tm.Scheme(key, spec, V)
    out = []
    budget = 0.2 if quick else 1.0
    for batch in (1, 8):
        for length in (64, 2048):
            torch.manual_seed(0)
            ids = torch.randint(0, V, (batch, length))
            base = torch.randn(batch, V)
            windows = ids[:, -1:].numpy()
            proc = TracemarkLogitsProcessor(key, spec, V)
            rows = base.numpy()
            # All three work in place on the same rows (kgw's cost does not depend on the values),
            # so no path pays for allocating or copying scores.

            def through_python():
                proc(ids, base)

            def binding():
                scheme.process_batch(windows, rows)

            t_py = best_time(through_python, min_seconds=budget)
            t_binding = best_time(binding, min_seconds=budget)
            # The core's own time for the same rows, timed inside Rust (no Python on the path).
            t_core = scheme.time_process_batch(windows, rows, reps=200 if quick else 2000)
            out.append((batch, length, t_py, t_binding, t_core))
            print(f"protocol kgw batch {batch} history {length}: {fmt(t_py)} vs binding {fmt(t_binding)} "
                  f"vs core {fmt(t_core)} ({t_py / t_core:.2f}x)", flush=True)
    return out


def device_rows(quick):
    key = tm.Key.generate()
    out = []
    budget = 0.2 if quick else 1.0
    for label, spec in SCHEMES.items():
        scheme = tm.Scheme(key, spec, V)
        for batch in (1, 8):
            torch.manual_seed(0)
            hist = torch.randint(0, V, (batch, 8)).numpy()
            base = torch.randn(batch, V)
            d = DeviceScheme(scheme.config, V)
            clone = best_time(lambda: base.clone(), min_seconds=budget)
            t_core = max(best_time(lambda: scheme.process_batch(hist, base.clone().numpy()), min_seconds=budget) - clone, 1e-9)

            def device():
                rows = d.row_seeds([scheme] * batch, hist)
                d.apply(base, rows)

            t_dev = best_time(device, min_seconds=budget)
            out.append((label, batch, t_dev, t_core))
            print(f"device path {label} batch {batch}: {fmt(t_dev)} vs core {fmt(t_core)} ({t_dev / t_core:.1f}x)", flush=True)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short timings (a smoke run; does not write RESULTS.md)")
    ap.add_argument("--protocol-only", action="store_true",
                    help="only the Python protocol path's rows, printed (does not write RESULTS.md)")
    args = ap.parse_args()
    if args.protocol_only:
        torch.set_num_threads(1)
        protocol_rows(args.quick)
        return
    import llama_cpp

    llama, tokens, rounds = llama_cpp_rows(args.quick)
    torch.set_num_threads(1)
    protocol = protocol_rows(args.quick)
    device = device_rows(args.quick)
    out = [
        f"\nMeasured {date.today().isoformat()} on {cpu()} (torch {torch.__version__}, "
        f"llama-cpp-python {llama_cpp.__version__}, tracemark {tm.__version__}); `make bench-serving`.\n",
        f"\n**llama.cpp on CPU** (SmolLM2-135M Q4_1 GGUF, 2 threads; {len(PROMPTS)} chat prompts × {tokens} tokens at most, "
        f"temperature 0.8, top-k 40, top-p 0.95; {rounds} rounds)\n",
        "Three arms per round, back to back: no processor; llama-cpp-python's processor hook with an identity "
        "processor (the hook's own cost: a Python call and a copy of the candidates each token); the watermark. "
        "The A/B costs are medians over rounds of the paired per-round ratios; on this shared 2-core machine their "
        "noise is a few percent (compare the first two columns), larger than the watermark itself. The last two "
        "columns measure the watermark directly in the same runs: the time spent inside the processor per generated "
        "token, and its share of the watermarked generations' wall time.\n",
        "| scheme | no processor, tokens/s | identity processor | watermarked | A/B cost vs identity | A/B cost vs none "
        "| inside the watermark per token | share of the wall time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, none, hook, marked, own, total, per_call, share in llama:
        out.append(f"| {label} | {none:.1f} | {hook:.1f} | {marked:.1f} | {100 * own:+.2f}% | {100 * total:+.2f}% "
                   f"| {per_call * 1e6:.1f} µs | {100 * share:.2f}% |")
    out += [
        f"\n**Python protocol path** (transformers' `processor(input_ids, scores)`, kgw δ=2 h=1, V = {V:,}, one thread) "
        "against the core's own time for the same rows (`Scheme.time_process_batch`: the median of 2,000 calls timed inside Rust)\n",
        "| batch | history | through Python | one binding call (`Scheme.process_batch`) | core (timed in Rust) | Python ÷ core |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for batch, length, t_py, t_binding, t_core in protocol:
        out.append(f"| {batch} | {length:,} | {fmt(t_py)} | {fmt(t_binding)} | {fmt(t_core)} | {t_py / t_core:.2f} |")
    out += [
        f"\n**Device path on CPU** (`tracemark.device` in torch, one thread, V = {V:,}: seeds from the core, "
        "keyed values and step in torch) against the core on the same rows; on a GPU the rows never leave the device\n",
        "| scheme | batch | device path (CPU torch) | core | ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for label, batch, t_dev, t_core in device:
        out.append(f"| {label} | {batch} | {fmt(t_dev)} | {fmt(t_core)} | {t_dev / t_core:.1f} |")
    print("\n".join(out))
    if args.quick:
        return
    write_section("serving", "\n".join(out) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
