"""Students of our watermarked teacher, served behind a real OpenAI-compatible
endpoint and audited only through it (issue 26: deliverables 3-5).

1. The harvest: `suspect_harvest.py`'s chunks (full run: >= 250,000
   watermarked answer tokens and the unwatermarked filler), or a small one
   generated here (`--quick`).
2. Students: SmolLM2-135M fully fine-tuned on `train_tokens` answer tokens
   (full run: 200,000) of which the stated share is watermarked (0, 1, 5, 10,
   100%), and the 10% and 100% students again on the watermarked answers
   paraphrased by the unwatermarked model (laundering). Students "from
   scratch" do not share the teacher's base: a small Llama (6 layers, 256
   wide, the teacher's tokenizer) randomly initialised and trained on the same
   data for 3 epochs at a higher learning rate. Each is exported to
   GGUF (`gguf_export.py`, checked against transformers) and cached: an
   interrupted run resumes at the first student without a GGUF.
3. Each student is served by llama-cpp-python's own server (log-probabilities
   on) and audited through `tracemark.suspect_api`: the harvest's own prompts
   (the accounts' requests whose answers the student was trained on, asked
   again with new seeds once the budget exceeds them; the 0% student gets the
   1% student's) and new prompts (lab/data/prompts.txt), black box and
   probability test, at growing query budgets.
4. The 0% student (it never saw text watermarked with the key) is audited under
   1,000 control keys: each test's p-values against the uniform.

Usage: python lab/python/suspect_students.py [--quick] [--threads N]
(environment: TRACEMARK_MODEL, TRACEMARK_CLI, TRACEMARK_CACHE).
"""

from __future__ import annotations

import argparse
import datetime
import fcntl
import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Plan:
    quick: bool
    train_tokens: int
    epochs: int
    answer_tokens: int
    budgets: List[int]
    control_keys: int
    students: List[Tuple[str, float, str]] = field(default_factory=list)

    @staticmethod
    def new(quick: bool) -> "Plan":
        if quick:
            return Plan(True, 1_500, 2, 32, [4, 8], 100, [("0%", 0.0, "marked"), ("100%", 1.0, "marked"),
                                                         ("from scratch, 100%", 1.0, "marked")])
        # In the order they are trained: the first two needed only the watermarked harvest (training
        # started while the unwatermarked half was still being generated); then the students of the
        # bar, 1% and its control 0%, then the rest.
        return Plan(False, 200_000, 1, 200, [50, 100, 200, 400, 800], 1_000, [
            ("100%", 1.0, "marked"), ("from scratch, 100%", 1.0, "marked"), ("1%", 0.01, "marked"),
            ("0%", 0.0, "marked"), ("10%", 0.10, "marked"), ("5%", 0.05, "marked"),
            ("from scratch, 0%", 0.0, "marked"), ("paraphrased 100%", 1.0, "paraphrased"),
            ("paraphrased 10%", 0.10, "paraphrased"),
        ])

    def ready(self, sets: Dict[str, list], share: float, source: str) -> bool:
        """Whether the harvest holds enough of each kind for a student of `share` from `source`."""
        from transformer_student import tokens

        if self.quick:  # the quick harvest is generated whole in this run
            return True
        need = {source: share * self.train_tokens}
        need["plain"] = need.get("plain", 0) + (1 - share) * self.train_tokens
        return all(tokens(sets.get(kind, [])) >= 0.99 * n for kind, n in need.items() if n > 0)


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def serve(gguf: Path, alias: str, threads: int):
    """llama-cpp-python's OpenAI-compatible server on `gguf`, in a thread; (url, stop)."""
    import socket

    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(server_settings=ServerSettings(host="127.0.0.1", port=port),
                     model_settings=[ModelSettings(model=str(gguf), model_alias=alias, n_ctx=1024, n_threads=threads,
                                                   n_threads_batch=threads, verbose=False, logits_all=True)])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 120
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError(f"the server for {gguf} did not start")
        time.sleep(0.05)

    def stop():
        server.should_exit = True
        thread.join(timeout=30)

    return f"http://127.0.0.1:{port}/v1", stop


# Texts read per student, at most (the reading test's largest budget).
READ_TEXTS = 100


def prefix_lines(path: Path, n: int, out: Path) -> Path:
    lines = [line for line in path.read_text().splitlines() if line.strip()][:n]
    out.write_text("".join(line + "\n" for line in lines))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--stop-after", type=int, default=-1,
                    help="train at most N students in this run, 0 for none (the others wait for a later one)")
    ap.add_argument("--interim", action="store_true",
                    help="while students wait, audit the ones trained so far and write an interim report")
    ap.add_argument("--max-queries", type=int, default=0,
                    help="audit with at most N queries per student (the budgets above N are left out; a later run "
                         "with a larger N reuses the cached answers)")
    args = ap.parse_args()
    import torch

    from tracemark import Key, suspect_api
    from transformer_student import Lab, log, mixture, paraphrase_request, quick_key, stored_key, tokens, write_jsonl, read_jsonl
    from transformer_student import Plan as LabPlan
    from gguf_export import check, export, scratch_student

    plan = Plan.new(args.quick)
    if args.max_queries:
        plan.budgets = [b for b in plan.budgets if b <= args.max_queries] or [args.max_queries]
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    threads = args.threads or os.cpu_count() or 1
    cache_root = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache/tracemark"))
    cache = cache_root / ("suspect-api-quick" if plan.quick else "suspect-api-full")
    cache.mkdir(parents=True, exist_ok=True)
    # One run per cache: two trainers of one student write the same checkpoint (a session lost a
    # checkpoint that way). The lock goes with the process, however it ends.
    lock = (cache / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log(f"another run holds {cache} (its .lock); wait for it or stop it")
        return 4
    cli = os.environ["TRACEMARK_CLI"]
    lab_plan = LabPlan.new(True)
    lab_plan.train_tokens, lab_plan.epochs, lab_plan.batch = plan.train_tokens, plan.epochs, 4
    lab = Lab(lab_plan, cache, Path(cli))
    started = time.time()

    # The key (cohort 1 of the run's master), with its serving manifest.
    master_path = cache / "master.key"
    if not master_path.exists():
        # Quick: a test fixture; full: the committed harvest's public experiment key.
        from suspect_harvest import experiment_master

        (quick_key("suspect-api") if plan.quick else experiment_master()).save(master_path)
    master = stored_key(master_path)
    key_path = cache / "cohort-1.key"
    if not key_path.exists():
        master.derive("cohort/1").save(key_path)
    key = Key.load(key_path)
    scheme = "kgw:gamma=0.25,delta=2,context=lefthash:1"
    if not Path(str(key_path) + ".serving.json").exists():
        subprocess.run([cli, "serving", "--key", str(key_path), "--scheme", scheme], check=True, capture_output=True)
    tok_json = lab.tokenizer_json()

    # 1. The harvest.
    if plan.quick:
        from transformer_student import prompt_pool

        sets = {}
        pool = prompt_pool()[:24]
        for kind, k, seed in (("marked", key, 1), ("plain", None, 2)):
            path = cache / f"harvest-{kind}.jsonl"
            if not path.exists():
                prompts = [lab.chat(q) for q in pool]
                answers = lab.generate(prompts, 64, k, seed)
                write_jsonl(path, ({"q": q, "prompt_ids": p, "ids": a} for q, p, a in zip(pool, prompts, answers) if a))
            sets[kind] = read_jsonl(path)
        write_jsonl(cache / "requests.jsonl", ({"messages": [{"role": "user", "content": d["q"]}]} for d in sets["marked"]))
    else:
        import suspect_harvest

        sets = {"marked": suspect_harvest.load("marked"), "plain": suspect_harvest.load("plain")}
        # The accounts' requests, as our serving logs hold them (rebuilt from the committed harvest).
        reqs = ({"account": d["account"], "messages": [{"role": "user", "content": d["q"]}]} for d in sets["marked"])
        write_jsonl(cache / "requests.jsonl", reqs)
    log(f"harvest: {tokens(sets['marked']):,} watermarked, {tokens(sets['plain']):,} plain answer tokens")

    def paraphrased() -> list:
        """The watermarked answers paraphrased by the unwatermarked teacher (generated once, cached)."""
        path = cache / "harvest-paraphrased.jsonl"
        if not path.exists():
            marked = mixture(sets["marked"], [], 1.0, plan.train_tokens)
            reqs = [lab.chat(paraphrase_request(d["q"], lab.tok.decode(d["ids"]))) for d in marked]
            answers = lab.generate(reqs, 256, None, 3, temperature=0.7, top_p=0.95, batch=8)
            write_jsonl(path, ({"q": d["q"], "prompt_ids": d["prompt_ids"], "ids": a} for d, a in zip(marked, answers) if a))
        return read_jsonl(path)

    # 2. Students, each exported to GGUF once; a student whose part of the harvest is not complete yet
    # waits for a later run (the audits need every student).
    students, waiting, trained = [], [], 0
    for i, (name, share, source) in enumerate(plan.students):
        gguf = cache / "students" / f"{slug(name)}.gguf"
        meta = gguf.with_suffix(".json")
        if not gguf.exists() and 0 <= args.stop_after <= trained:
            waiting.append(name)
            log(f"student {name}: waiting for a later run (--stop-after {args.stop_after})")
            continue
        if not gguf.exists() and source == "paraphrased" and "paraphrased" not in sets and sets["marked"] \
                and plan.ready(sets, 1.0, "marked"):
            sets["paraphrased"] = paraphrased()
        if not gguf.exists() and not plan.ready(sets, share, source):
            waiting.append(name)
            log(f"student {name}: waiting for the harvest ({share:.0%} of {plan.train_tokens:,} tokens from {source})")
            continue
        if not gguf.exists():
            gguf.parent.mkdir(exist_ok=True)
            t = time.time()
            data = mixture(sets[source], sets["plain"], share, plan.train_tokens)
            if name.startswith("from scratch"):
                # Lab.train resets to `base` and trains `model`: point both at a fresh small Llama.
                teacher, base, lr, epochs = lab.model, lab.base, lab.plan.lr, lab.plan.epochs
                lab.model = scratch_student(teacher.config)
                lab.base = {k: v.clone() for k, v in lab.model.state_dict().items()}
                lab.plan.lr, lab.plan.epochs = 1e-3, 3
                try:
                    loss = lab.train(data, 10 + i, checkpoint=gguf.with_suffix(".ckpt"))
                    student = lab.model
                finally:
                    lab.model, lab.base, lab.plan.lr, lab.plan.epochs = teacher, base, lr, epochs
            else:
                loss = lab.train(data, 10 + i, checkpoint=gguf.with_suffix(".ckpt"))
                student = lab.model
            marked_tokens = tokens(d for d in data if d in sets[source])
            part = gguf.with_suffix(".part")
            export(student, Path(os.environ["TRACEMARK_MODEL"]), part)
            diff = check(student, lab.tok, part)
            part.rename(gguf)
            meta.write_text(json.dumps({"name": name, "share": share, "source": source, "train_tokens": tokens(data),
                                        "marked_tokens": marked_tokens, "loss": loss, "secs": time.time() - t,
                                        "export_diff": diff}))
            log(f"student {name}: loss {loss:.3f}, {marked_tokens:,} watermarked of {tokens(data):,} tokens, "
                f"GGUF checked ({diff:.4f}), {time.time() - t:.0f} s")
            trained += 1
        students.append(json.loads(meta.read_text()))

    if waiting and not (args.interim and students):
        log(f"{len(waiting)} students wait ({', '.join(waiting)}): run this again (after lab/python/suspect_harvest.py "
            "if the harvest is short); the students trained so far are cached")
        return 3

    # 3. Audits through the endpoint (cached per student: an interim run's audits are reused).
    new_prompts = ROOT / "lab/data/prompts.txt"
    smallest_share = min(share for _, share, _ in plan.students if share > 0)

    def replayed(s: dict) -> Path:
        """The accounts' requests replayed to student `s`: the questions whose watermarked answers it
        was trained on (the prefix of the harvest that `mixture` took), in order, asked again with a
        new seed each time once the budget exceeds them. In the case we model, every answer the
        suspicious accounts harvested went into the rival's training, and our logs hold their
        requests; a small share of a fixed training budget is a few answers. The 0% student, the
        control, is asked the smallest share's questions."""
        share = s["share"] or smallest_share
        if s["source"] not in sets:
            sets[s["source"]] = paraphrased()
        trained, have = [], 0
        for d in sets[s["source"]]:
            if have >= share * plan.train_tokens:
                break
            trained.append(d["q"])
            have += len(d["ids"])
        path = cache / f"requests-{slug(s['name'])}.jsonl"
        limit = max(plan.budgets) // 2
        write_jsonl(path, ({"messages": [{"role": "user", "content": trained[i % len(trained)]}]}
                           for i in range(limit)))
        return path

    # Texts to read: the unwatermarked teacher's answers to the harvest's questions (never written
    # with the key), in the chat format, which begins with the model's BOS token (<|im_start|>):
    # llama-cpp-python's echo is aligned only then. At most READ_TEXTS of them: the server takes about
    # 15 s a text on one core (it sorts the whole vocabulary in Python at every position).
    read_texts = cache / "read-texts.jsonl"
    write_jsonl(read_texts, ({"prompt": lab.tok.decode(d["prompt_ids"] + d["ids"], skip_special_tokens=False)}
                             for d in sets["plain"][:min(max(plan.budgets) // 2, READ_TEXTS)]))

    rows = []
    for s in students:
        prompts = suspect_api.load_prompts(replayed(s), new_prompts, limit=max(plan.budgets) // 2, read=read_texts)
        gguf = cache / "students" / f"{slug(s['name'])}.gguf"
        url, stop = serve(gguf, f"student-{slug(s['name'])}", threads)
        try:
            summary = suspect_api.audit(url, key=key_path, tokenizer=tok_json, prompts=prompts,
                                        cache=cache / "api-cache" / slug(s["name"]), out=cache / "audits" / slug(s["name"]),
                                        model=f"student-{slug(s['name'])}", max_requests=len(prompts),
                                        max_tokens_total=10**9, max_tokens=plan.answer_tokens, cli=cli, concurrency=1)
        finally:
            stop()
        corpora = Path(summary["corpora"])
        by_budget = {}
        for b in plan.budgets:
            for origin in ("harvest", "new"):
                for test, mode in (("black-box", "text"), ("probability", "logprobs")):
                    src = corpora / f"{origin}-{test}.jsonl"
                    if src.exists():
                        sub = prefix_lines(src, b // 2, corpora / f"b{b}-{origin}-{test}.jsonl")
                        by_budget[(b, origin, test)] = suspect_api.run_test(cli, key_path, tok_json, sub, mode, None)
            src = corpora / "read-reading.jsonl"
            if src.exists() and b // 2 <= READ_TEXTS:
                # One line per piece of a text (cut at special tokens): the first b/2 texts' pieces.
                sub = corpora / f"b{b}-read-reading.jsonl"
                sub.write_text("".join(line + "\n" for line in src.read_text().splitlines()
                                       if line.strip() and json.loads(line)["text"] < b // 2))
                by_budget[(b, "read", "reading")] = suspect_api.run_test(cli, key_path, tok_json, sub, "logprobs", None)
        rows.append((s, summary, by_budget))
        log(f"audit {s['name']}: " + ", ".join(f"{t['origin']}/{t['test']} {t['log10_p']}" for t in summary["tests"]))

    if waiting:
        # An interim report: the students trained so far, no calibration (it needs the 0% student).
        out = args.out or ROOT / f"eval/results/suspect-api-interim-{datetime.date.today().isoformat()}.md"
        out.write_text(render(plan, rows, None, time.time() - started, waiting))
        log(f"interim report: {out}; {len(waiting)} students wait ({', '.join(waiting)})")
        return 3

    # 4. Calibration: the 0% student under control keys (derived from a control master).
    control = next(r for r in rows if r[0]["name"] == "0%")
    ctl_master = cache / "control-master.key"
    if plan.quick and not ctl_master.exists():
        quick_key("suspect-api-controls").save(ctl_master)
    stored_key(ctl_master)
    labels = ",".join(f"control/{i}" for i in range(plan.control_keys))
    calib = {}
    for test, flag, name in (("black-box", [], "all-black-box.jsonl"), ("probability", ["--logprobs"], "all-probability.jsonl"),
                             ("reading", ["--logprobs"], "read-reading.jsonl")):
        r = subprocess.run([cli, "radioactivity", "--json", "--key", str(ctl_master), "--derive-labels", labels,
                            "--scheme", scheme, "--tokenizer", str(tok_json), *flag,
                            str(Path(control[1]["corpora"]) / name)], capture_output=True, text=True)
        keys = json.loads(r.stdout)["keys"]
        calib[test] = [10 ** k["tested"]["log10_p"] for k in keys if k.get("tested")]

    out = args.out or (cache / "report.md" if plan.quick else ROOT / f"eval/results/suspect-api-{datetime.date.today().isoformat()}.md")
    out.write_text(render(plan, rows, calib, time.time() - started))
    log(f"report: {out}")
    if plan.quick:
        ok = all(sum(p < a for p in ps) <= max(3, 2.5 * a * len(ps)) for ps in calib.values() for a in (0.01, 0.1))
        return 0 if ok else 1
    return 0


def render(plan: Plan, rows, calib, secs: float, waiting: List[str] = ()) -> str:
    interim = (f"**Interim report**: {len(rows)} of {len(plan.students)} students trained and audited; waiting: "
               f"{', '.join(waiting)}. No calibration yet (it audits the 0% student under control keys), so these "
               "p-values are the tests' own, not yet checked against the control keys on this endpoint.")
    lines = [f"# A suspect model audited through its API ({'quick' if plan.quick else 'full'} run)", "",
             *([interim, ""] if waiting else []),
             f"Students: SmolLM2-135M fine-tuned on {plan.train_tokens:,} answer tokens ({plan.epochs} epoch(s)), exported to GGUF "
             "and served by llama-cpp-python's OpenAI-compatible server with log-probabilities (top 5). Each is audited only "
             f"through the endpoint by `tracemark.suspect_api`, {plan.answer_tokens} tokens per answer, the harvest's own prompts "
             "(the accounts' requests whose answers the student was trained on, asked again with a new seed once the budget "
             "exceeds them; the 0% student is asked the 1% student's) and new prompts alternating, and texts to read: the "
             "unwatermarked teacher's answers to the harvest's questions, echoed with their log-probabilities (the reading "
             "test). The students \"from scratch\" are a small Llama trained from random weights instead. log10 p of each "
             "test at each budget (queries of each origin; the reading test's are texts read):", "",
             "| student | train tokens (watermarked) | loss | queries per origin | harvest black box | harvest probability "
             "| new black box | new probability | read (reading test) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s, summary, by in rows:
        for b in plan.budgets:
            cells = []
            for o, t in (("harvest", "black-box"), ("harvest", "probability"), ("new", "black-box"), ("new", "probability"),
                         ("read", "reading")):
                v = by.get((b, o, t))
                cells.append("n/a" if v is None else f"{v:.1f}")
            lines.append(f"| {s['name']} | {s['train_tokens']:,} ({s['marked_tokens']:,}) | {s['loss']:.3f} | {b // 2} | "
                         + " | ".join(cells) + " |")
    # The budget each student needs: the smallest at which each test is below 1e-6.
    tests = (("harvest", "black-box"), ("harvest", "probability"), ("new", "black-box"), ("new", "probability"),
             ("read", "reading"))
    lines += ["", "Queries of one origin (texts, for the reading test) each test needed to reach p < 1e-6 (\"> N\": not "
              "within the budgets run):", "",
              "| student | harvest black box | harvest probability | new black box | new probability | reading |",
              "|---|---:|---:|---:|---:|---:|"]
    for s, summary, by in rows:
        cells = []
        for o, t in tests:
            run = [b for b in plan.budgets if by.get((b, o, t)) is not None]
            hit = next((b for b in run if by[(b, o, t)] < -6), None)
            cells.append(str(hit // 2) if hit else (f"> {max(run) // 2}" if run else "n/a"))
        lines.append(f"| {s['name']} | " + " | ".join(cells) + " |")
    lines += ["", "Query budget spent per student: " + "; ".join(
        f"{s['name']}: {summ['answers']} queries ({summ['prompts'].get('read', 0)} of them texts read), "
        f"{summ['completion_tokens_total']:,} completion and {summ.get('prompt_tokens_total', 0):,} prompt tokens"
        for s, summ, _ in rows), ""]
    if calib is None:
        return "\n".join(lines + [f"Total time {secs / 60:.0f} minutes on this machine.", ""])
    from suspect_calibrate import binomial_range

    lines += ["## Calibration: the 0% student under control keys", "",
              "Each test on the 0% student's responses under control keys (derived from a control master that never "
              "watermarked anything): the number of keys below each level against the 99% binomial range of a calibrated "
              "test.", "",
              "| test | keys | p < 0.1 | p < 0.01 | p < 0.001 |", "|---|---:|---:|---:|---:|"]
    for t, ps in calib.items():
        n, cells = len(ps), []
        for a in (0.1, 0.01, 0.001):
            lo, hi = binomial_range(n, a)
            k = sum(p < a for p in ps)
            cells.append(f"{k} ({lo}-{hi}: {'inside' if lo <= k <= hi else 'OUTSIDE'})")
        lines.append(f"| {t} | {n} | " + " | ".join(cells) + " |")
    lines += ["", f"Total time {secs / 60:.0f} minutes on this machine.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
