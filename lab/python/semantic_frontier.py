"""The frontier's semantic arms (issue 25, deliverable 6): the semantic layer,
the token layer and the layered verdict on real SmolLM2 answers, clean and
after every attack of the frontier, SmolLM2's own paraphrase once and twice
among them; the quality column (ΔNLL, the sentence layer's retry cost); and
per-account aggregation of paraphrased answers.

Arms, all SmolLM2-135M-Instruct (transformers, CPU) on the evaluation prompts
(lab/data/prompts.txt) under one key:

- plain: unwatermarked, temperature 1 (the quality baseline and the
  false-positive column);
- token only: `kgw:gamma=0.25,delta=2,context=lefthash:1` through
  `TracemarkLogitsProcessor` (batched `model.generate`);
- layered: the same token layer with the sentence layer
  `semantic:gamma=0.25,planes=8,chain=previous` on top
  (`tracemark.hf.generate_layered`: rejection sampling per sentence, at most
  16 candidates, the real all-MiniLM-L6-v2 embedder), one answer at a time.

Every answer is tested as text, as a verifier would (`Detector.detect_text`
with `semantic=` and `embedder=`; no prompt, so the first token is not
scored): the token layer's p-value, the semantic layer's (the exact binomial
over the distinct scored sentences, SPEC §15.3) and the layered verdict
(min of 2 p_token and 2 p_semantic, SPEC §15.4). "Semantic alone" is the
semantic layer's own test on the layered answers (the token layer does not
move sentence regions: both layers sample from the same watermarked
distribution). Attacks (fixed seeds): 30% of tokens substituted, inserted
or deleted (on the answer's ids, decoded back to text), the unwatermarked
model's paraphrase (`make eval`'s request, temperature 0.7, nucleus 0.95)
once and twice (the paraphrase paraphrased), sentences shuffled, 30% of
sentences deleted, and the answer spliced between two passages of Debian
prose each about as long as the answer.

Accounts: the paraphrased (once) layered answers in disjoint groups of 20,
each group scanned together by `tracemark scan --semantic` (sentences
deduplicated by region key across the group).

Usage: python lab/python/semantic_frontier.py [--quick] [--answers N] [--out report.md]
(environment: TRACEMARK_MODEL, TRACEMARK_EMBEDDER, TRACEMARK_HUMAN_TEXT,
TRACEMARK_CLI; answers are cached and resumable under
<cache>/semantic-frontier-{quick,full}).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

import tracemark as tm
from frontier import delete, delta_nll, insert, model_view, prompts, substitute
from tracemark.hf import DEFAULT_MAX_CANDIDATES, TracemarkLogitsProcessor, generate_layered
from transformer_student import ROOT, Lab, Plan, log, paraphrase_request, quick_key, read_jsonl, stored_key, write_jsonl

TOKEN = "kgw:gamma=0.25,delta=2,context=lefthash:1"
SEMANTIC = "semantic:gamma=0.25,planes=8,chain=previous"
ATTACKS = ["clean", "sub30", "ins30", "del30", "para1", "para2", "reorder", "sentdel30", "splice"]
ATTACK_NAMES = {
    "clean": "clean",
    "sub30": "30% tokens substituted",
    "ins30": "30% tokens inserted",
    "del30": "30% tokens deleted",
    "para1": "paraphrased once",
    "para2": "paraphrased twice",
    "reorder": "sentences shuffled",
    "sentdel30": "30% sentences deleted",
    "splice": "spliced into prose",
}
# (row name, arm, which p-value)
ROWS = [
    ("token only: token layer", "token", "token"),
    ("layered: token layer alone", "layered", "token"),
    ("layered: semantic layer alone", "layered", "semantic"),
    ("layered: layered verdict", "layered", "layered"),
]
ACCOUNT = 20


def append_jsonl(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")


def layered_answers(lab: Lab, key: "tm.Key", semantic: "tm.Semantic", embedder: "tm.Embedder",
                    chats: List[List[int]], tokens: int, path: Path) -> List[dict]:
    """The layered answers, one at a time, each appended to `path` (resumable)."""
    done = read_jsonl(path) if path.exists() else []
    for i in range(len(done), len(chats)):
        proc = TracemarkLogitsProcessor(key, TOKEN, lab.vocab)
        out = generate_layered(lab.model, lab.tok, chats[i], proc, semantic, embedder, tokens,
                               eos_token_id=lab.eos, seed=1000 + i)
        st = out.stats
        row = {
            "prompt_ids": chats[i],
            "text": lab.tok.decode(out.ids, skip_special_tokens=True),
            "stats": {
                "sentences": st.sentences, "candidates": st.candidates,
                "tested": len(st.candidates_per_sentence), "max": max(st.candidates_per_sentence, default=0),
                "cap_hits": st.cap_hits, "generated": st.tokens_generated, "kept": st.tokens_kept,
                "wall": st.wall_time, "embed": st.embed_time,
            },
        }
        append_jsonl(path, row)
        done.append(row)
        log(f"layered {i + 1}/{len(chats)}: {st.tokens_kept} tokens kept of {st.tokens_generated}, "
            f"{st.candidates} candidates for {len(st.candidates_per_sentence)} sentences, {st.wall_time:.0f} s")
    return done


def batch_answers(lab: Lab, chats: List[List[int]], tokens: int, key: Optional["tm.Key"], path: Path) -> List[dict]:
    if not path.exists():
        t = time.time()
        ids = lab.generate(chats, tokens, key, 77, scheme=TOKEN, batch=16)
        write_jsonl(path, ({"prompt_ids": c, "text": lab.tok.decode(a, skip_special_tokens=True)} for c, a in zip(chats, ids)))
        log(f"{path.name}: {sum(len(a) for a in ids)} tokens in {time.time() - t:.0f} s")
    return read_jsonl(path)


def paraphrases(lab: Lab, docs: List[dict], question: Dict[tuple, str], tokens: int, path: Path) -> List[dict]:
    if not path.exists():
        t = time.time()
        reqs = [lab.chat(paraphrase_request(question[tuple(d["prompt_ids"])], d["text"])) for d in docs]
        ids = lab.generate(reqs, tokens, None, 3, temperature=0.7, top_p=0.95, batch=8)
        write_jsonl(path, ({"prompt_ids": d["prompt_ids"], "text": lab.tok.decode(a, skip_special_tokens=True)}
                           for d, a in zip(docs, ids)))
        log(f"{path.name}: {sum(len(a) for a in ids)} tokens in {time.time() - t:.0f} s")
    return read_jsonl(path)


def human_passages(lab: Lab, n: int, tokens: int) -> List[str]:
    """`n` passages of about `tokens` tokens of Debian prose, in corpus order."""
    out: List[str] = []
    for line in Path(os.environ["TRACEMARK_HUMAN_TEXT"]).read_text().splitlines():
        d = json.loads(line)
        if d.get("category") != "prose":
            continue
        ids = lab.tok.encode(" ".join(d["text"].split()), add_special_tokens=False)
        for s in range(0, len(ids) - tokens, 4 * tokens):
            out.append(lab.tok.decode(ids[s : s + tokens]))
            if len(out) >= n:
                return out
    return out


def attacked(lab: Lab, docs: List[dict], attack: str, extra: Dict[str, List[dict]], human: List[str]) -> List[str]:
    """The texts after one attack (a fixed seed per attack)."""
    rng = random.Random(ATTACKS.index(attack) + 11)
    texts = [d["text"] for d in docs]
    if attack == "clean":
        return texts
    if attack in ("para1", "para2"):
        return [d["text"] for d in extra[attack]]
    if attack in ("sub30", "ins30", "del30"):
        out = []
        for t in texts:
            ids = lab.tok.encode(t, add_special_tokens=False)
            ids = {"sub30": lambda: substitute(ids, 0.3, lab.vocab, rng), "ins30": lambda: insert(ids, 0.3, lab.vocab, rng),
                   "del30": lambda: delete(ids, 0.3, rng)}[attack]()
            out.append(lab.tok.decode(ids, skip_special_tokens=True))
        return out
    if attack in ("reorder", "sentdel30"):
        out = []
        for t in texts:
            sentences = [t[a:b] for a, b in tm.sentence_spans(t)]
            if attack == "reorder":
                rng.shuffle(sentences)
            else:
                drop = set(rng.sample(range(len(sentences)), max(1, round(0.3 * len(sentences))))) if sentences else set()
                sentences = [s for i, s in enumerate(sentences) if i not in drop]
            out.append(" ".join(sentences))
        return out
    if attack == "splice":
        return [f"{human[(2 * i) % len(human)]}\n\n{t}\n\n{human[(2 * i + 1) % len(human)]}" for i, t in enumerate(texts)]
    raise ValueError(attack)


def test(det: "tm.Detector", lab: Lab, semantic: "tm.Semantic", embedder: "tm.Embedder", text: str) -> Dict[str, float]:
    """log10 p of the token layer, the semantic layer and the layered verdict (0 when untestable)."""
    if not text.strip():
        return {"token": 0.0, "semantic": 0.0, "layered": 0.0}
    d = det.detect_text(lab.tok, None, text, semantic=semantic, embedder=embedder)
    layered = d.layered or {}

    def num(x):
        return 0.0 if x is None else float(x)

    return {"token": num(layered.get("token_log10_p")), "semantic": num(layered.get("semantic_log10_p")),
            "layered": num(layered.get("log10_p"))}


def account_scan(cli: str, key_path: Path, tokenizer: str, embedder_dir: str, texts: List[str], path: Path) -> dict:
    """`tracemark scan --semantic` over one account's texts: the aggregate's log10 p per layer."""
    write_jsonl(path, ({"text": t} for t in texts))
    out = subprocess.run([cli, "scan", "--json", "--key", str(key_path), "--scheme", TOKEN, "--tokenizer", tokenizer,
                          "--semantic", SEMANTIC, "--embedder", embedder_dir, str(path)],
                         capture_output=True, text=True, check=False)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"tracemark scan failed ({out.returncode}): {out.stderr[-2000:]}")
    summary = json.loads(out.stdout.strip().splitlines()[-1])["summary"]["aggregate"]

    def log10_p(x: Optional[dict]) -> float:
        if not x:
            return 0.0
        o = x.get("outcome", x)
        v = o.get("log10_p") if isinstance(o, dict) else None
        return 0.0 if v is None else float(v)

    return {"token": log10_p(summary), "semantic": log10_p(summary.get("semantic")),
            "layered": float((summary.get("layered") or {}).get("log10_p") or 0.0),
            "sentences": (summary.get("semantic") or {}).get("counts", {}).get("scored", 0)}


def rate(xs: List[float], level: float) -> float:
    return sum(x <= np.log10(level) for x in xs) / len(xs) if xs else float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--answers", type=int, default=0, help="answers per arm (default 40; quick 3)")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    args = ap.parse_args()
    started = time.time()
    n = args.answers or (3 if args.quick else 40)
    tokens = 48 if args.quick else 200
    cache = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache/tracemark")) / f"semantic-frontier-{'quick' if args.quick else 'full'}"
    cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    lab = Lab(Plan.new(True), cache, Path("."))
    key_path = cache / "key.key"
    if args.quick and not key_path.exists():
        quick_key("semantic-frontier").save(key_path)
    key = stored_key(key_path)
    embedder_dir = os.environ["TRACEMARK_EMBEDDER"]
    embedder = tm.Embedder(embedder_dir)
    semantic = tm.Semantic(key, SEMANTIC)
    qs = prompts()[:n]
    chats = [lab.chat(q) for q in qs]
    question = {tuple(c): q for q, c in zip(qs, chats)}

    sets: Dict[str, List[dict]] = {
        "plain": batch_answers(lab, chats, tokens, None, cache / f"plain-{n}.jsonl"),
        "token": batch_answers(lab, chats, tokens, key, cache / f"token-{n}.jsonl"),
        "layered": layered_answers(lab, key, semantic, embedder, chats, tokens, cache / "layered.jsonl")[:n],
    }
    extra: Dict[str, Dict[str, List[dict]]] = {}
    for arm in ("token", "layered"):
        once = paraphrases(lab, sets[arm], question, tokens, cache / f"{arm}-para1-{n}.jsonl")
        twice = paraphrases(lab, [dict(d, prompt_ids=s["prompt_ids"]) for d, s in zip(once, sets[arm])], question, tokens,
                            cache / f"{arm}-para2-{n}.jsonl")
        extra[arm] = {"para1": once, "para2": twice}
    human = human_passages(lab, 2 * n, tokens)

    det = tm.Detector(key, TOKEN, lab.vocab, min_tokens=1)
    results: Dict[str, Dict[str, List[Dict[str, float]]]] = {}
    t = time.time()
    for arm in ("token", "layered"):
        results[arm] = {}
        for attack in ATTACKS:
            texts = attacked(lab, sets[arm], attack, extra[arm], human)
            results[arm][attack] = [test(det, lab, semantic, embedder, x) for x in texts]
        log(f"{arm}: tested ({time.time() - t:.0f} s)")
    plain = [test(det, lab, semantic, embedder, d["text"]) for d in sets["plain"]]

    # Quality: NLL per token under the unwatermarked model, given the prompt.
    def nll(docs: List[dict]) -> List[float]:
        rows = [{"prompt_ids": d["prompt_ids"], "ids": lab.tok.encode(d["text"], add_special_tokens=False)} for d in docs]
        rows = [r for r in rows if r["ids"]]
        return [v["nll"] for v in model_view(lab, [], rows)]

    nlls = {arm: nll(sets[arm]) for arm in ("plain", "token", "layered")}

    # Accounts: disjoint groups of ACCOUNT paraphrased layered answers,
    # scanned by the CLI with SmolLM2's own tokenizer.json.
    tok_json = lab.tokenizer_json()
    accounts = []
    texts = [d["text"] for d in extra["layered"]["para1"]]
    size = ACCOUNT if not args.quick else len(texts)
    for a in range(len(texts) // size):
        accounts.append(account_scan(os.environ["TRACEMARK_CLI"], key_path, str(tok_json), embedder_dir,
                                     texts[a * size : (a + 1) * size], cache / f"account-{a}.jsonl"))

    out = args.out or (cache / "report.md" if args.quick else ROOT / f"eval/results/semantic-frontier-{datetime.date.today().isoformat()}.md")
    lengths = {arm: [len(lab.tok.encode(d["text"], add_special_tokens=False)) for d in sets[arm]] for arm in sets}
    out.write_text(render(n, tokens, sets, results, plain, nlls, lengths, accounts, size, time.time() - started))
    log(f"report: {out}")
    if args.quick:
        # The pipeline ran end to end: every arm answered and every test returned.
        ok = all(len(results[a][x]) == n for a in results for x in ATTACKS) and len(plain) == n and accounts
        return 0 if ok else 1
    return 0


def render(n, tokens, sets, results, plain, nlls, lengths, accounts, size, secs) -> str:
    lines = [f"# The semantic layer on the frontier ({datetime.date.today().isoformat()})", ""]
    lines.append("Issue 25, deliverable 6. Written by `lab/python/semantic_frontier.py` (`make semantic-frontier`); "
                 f"{n} answers per arm of at most {tokens} new tokens; token layer `{TOKEN}`, sentence layer `{SEMANTIC}` "
                 f"(cap {DEFAULT_MAX_CANDIDATES} candidates per sentence); this invocation took {secs / 60:.0f} min on the shared 2-core machine (answers and paraphrases already in the cache are not generated again). "
                 "Every answer is tested as text, without its prompt. 'Semantic layer alone' is the semantic layer's own exact "
                 "test on the layered answers; the layered verdict is min(2 p_token, 2 p_semantic) (SPEC §15.4).")
    lines.append("")
    for level in (1e-6, 1e-3, 1e-2):
        lines.append(f"**Share of answers detected at {level:g}:**")
        lines.append("")
        lines.append("| row | " + " | ".join(ATTACK_NAMES[a] for a in ATTACKS) + " | plain answers (false positives) |")
        lines.append("|---|" + "---|" * (len(ATTACKS) + 1))
        for name, arm, which in ROWS:
            cells = [f"{rate([r[which] for r in results[arm][a]], level):.3f}" for a in ATTACKS]
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {rate([p[which] for p in plain], level):.3f} |")
        lines.append("")
    lines.append("**Median log10 p:**")
    lines.append("")
    lines.append("| row | " + " | ".join(ATTACK_NAMES[a] for a in ATTACKS) + " |")
    lines.append("|---|" + "---|" * len(ATTACKS))
    for name, arm, which in ROWS:
        cells = [f"{float(np.median([r[which] for r in results[arm][a]])):.2f}" for a in ATTACKS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    st = [d["stats"] for d in sets["layered"]]
    cand, tested = sum(s["candidates"] for s in st), sum(s["tested"] for s in st)
    gen, kept = sum(s["generated"] for s in st), sum(s["kept"] for s in st)
    lines.append("**Quality and cost.** Mean NLL per token under the unwatermarked model (given the prompt), against the plain "
                 "arm, with two standard errors:")
    lines.append("")
    lines.append("| arm | answers | mean tokens | ΔNLL ± 2 SE |")
    lines.append("|---|---|---|---|")
    for arm in ("plain", "token", "layered"):
        d, se = delta_nll(nlls[arm], nlls["plain"]) if arm != "plain" else (0.0, 0.0)
        lines.append(f"| {arm} | {len(nlls[arm])} | {float(np.mean(lengths[arm])):.1f} | {d:+.3f} ± {se:.3f} |")
    lines.append("")
    lines.append(f"Sentence layer: {cand} candidates for {tested} tested sentences ({cand / max(tested, 1):.2f} per sentence, "
                 f"max {max((s['max'] for s in st), default=0)}), {sum(s['cap_hits'] for s in st)} cap hits, "
                 f"{gen} tokens sampled for {kept} kept ({gen / max(kept, 1):.2f}), "
                 f"{sum(s['wall'] for s in st) / 60:.1f} min of generation for the layered arm "
                 f"({sum(s['embed'] for s in st):.0f} s embedding).")
    lines.append("")
    lines.append(f"**Accounts.** The paraphrased (once) layered answers in {len(accounts)} disjoint group(s) of {size}, each "
                 "scanned together by `tracemark scan --semantic` (log10 p of the aggregate):")
    lines.append("")
    lines.append("| account | scored sentences | token layer | semantic layer | layered |")
    lines.append("|---|---|---|---|---|")
    for i, a in enumerate(accounts):
        lines.append(f"| {i} | {a['sentences']} | {a['token']:.2f} | {a['semantic']:.2f} | {a['layered']:.2f} |")
    lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
