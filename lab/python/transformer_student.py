"""The transformer student of the distillation experiment (`make distill`).

A teacher, SmolLM2-135M-Instruct watermarked with the distillation
experiment's kgw scheme under one API-account cohort's key, answers prompts;
a competitor harvests the answers and fine-tunes a *transformer* student on
them: SmolLM2-135M itself (dequantised from the GGUF we already fetch), full
fine-tune with torch on the CPU. Students differ in the watermarked share of
their training data (0, 1, 5, 10, 100%; the rest unwatermarked answers of the
same teacher) and in laundering: the watermarked answers paraphrased by the
unwatermarked model before training, or spliced sentence by sentence with
Debian-packaged human prose.

Each student is then tested with tracemark's exact tests (the `tracemark`
CLI): black box (its own answers to new prompts, every context, and only at
contexts of our outputs) and reading mode (its next-token predictions on our
watermarked texts). The control student (0%) is tested under 1,000 fresh keys
for calibration. Every stage is cached under the cache directory (harvests,
each student's answers and predictions), so an interrupted run resumes.

Teacher and student share a base model. What that shows: a fine-tuned
transformer inherits a watermark from its training data, and how much data
that takes when the rest of the data is the same model's unwatermarked
answers. What it does not show: how a student of another architecture, or one
trained from scratch on the harvest, would behave (a shared base starts out
predicting the teacher's tokens, so the fine-tune has little to learn except
the watermark's bias).

Usage: python lab/python/transformer_student.py [--quick] [--out report.md]
(environment: TRACEMARK_MODEL, the GGUF; TRACEMARK_CLI, the tracemark binary;
TRACEMARK_HUMAN_TEXT, the human-text JSONL).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from tracemark import Key
from tracemark.hf import TracemarkLogitsProcessor

SCHEME = "kgw:gamma=0.25,delta=2,context=lefthash:1"
"""The teacher's watermark: the distillation experiment's scheme (lab/src/distill)."""
ALPHA = 1e-6
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Plan:
    quick: bool
    harvest_prompts: int
    new_tokens: int
    train_tokens: int
    epochs: int
    batch: int
    lr: float
    student_tokens: int
    budgets: List[int]
    reading_budgets: List[int]
    control_keys: int
    students: List[Tuple[str, float, str]] = field(default_factory=list)

    @staticmethod
    def new(quick: bool) -> "Plan":
        if quick:
            return Plan(
                quick=True,
                harvest_prompts=12,
                new_tokens=48,
                train_tokens=500,
                epochs=3,
                batch=4,
                lr=1e-4,
                student_tokens=300,
                budgets=[150, 300],
                reading_budgets=[250, 500],
                control_keys=100,
                students=[("0%", 0.0, "marked"), ("100%", 1.0, "marked")],
            )
        return Plan(
            quick=False,
            harvest_prompts=100,
            new_tokens=200,
            train_tokens=10_000,
            epochs=2,
            batch=4,
            lr=1e-4,
            student_tokens=3_000,
            budgets=[500, 1_000, 2_000, 3_000],
            reading_budgets=[1_000, 2_000, 5_000, 12_000],
            control_keys=1_000,
            students=[
                ("0%", 0.0, "marked"),
                ("100%", 1.0, "marked"),
                ("10%", 0.10, "marked"),
                ("1%", 0.01, "marked"),
                ("5%", 0.05, "marked"),
                ("paraphrased 100%", 1.0, "paraphrased"),
                ("human-spliced 100%", 1.0, "spliced"),
                ("paraphrased 10%", 0.10, "paraphrased"),
                ("human-spliced 10%", 0.10, "spliced"),
            ],
        )

    def tag(self) -> str:
        return "quick" if self.quick else "full"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def data_lines(name: str) -> List[str]:
    """The lines of a file in lab/data, without comments and blank lines."""
    lines = (ROOT / "lab/data" / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def prompt_pool() -> List[str]:
    """The distillation prompts (lab/data's templates x topics, as the Rust
    harvest builds them), in this script's own fixed shuffle."""
    pool = [t.format(x) for t in data_lines("distill-templates.txt") for x in data_lines("distill-topics.txt")]
    random.Random(0x5EED).shuffle(pool)
    return pool


def read_jsonl(path: Path) -> List[dict]:
    with path.open() as f:
        return [json.loads(line) for line in f if line.strip()]


def write_jsonl(path: Path, rows: Iterable[dict]) -> None:
    tmp = path.with_suffix(path.suffix + ".part")
    with tmp.open("w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")
    tmp.rename(path)


def stored_key(path: Path) -> Key:
    """The run's master key: generated once with the OS RNG, then reloaded."""
    if path.exists():
        return Key.load(path)
    key = Key.generate()
    key.save(path)
    return key


def quick_key(label: str) -> Key:
    """The quick run's fixed key (a test fixture, never a deployment key)."""
    return Key.from_bytes(bytes((i * 37 + len(label) * 11 + ord(label[i % len(label)])) % 256 for i in range(32)))


class Lab:
    """The model, tokenizer and cache of one run."""

    def __init__(self, plan: Plan, cache: Path, cli: Path) -> None:
        self.plan = plan
        self.cache = cache
        self.cli = cli
        gguf = Path(os.environ["TRACEMARK_MODEL"])
        log(f"loading {gguf.name} (dequantised to f32)")
        self.tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        self.tok.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        self.model.eval()
        self.base = {k: v.clone() for k, v in self.model.state_dict().items()}
        self.eos = self.tok.convert_tokens_to_ids("<|im_end|>")
        self.stop = [self.eos, self.tok.convert_tokens_to_ids("<|endoftext|>")]
        self.pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else self.stop[1]
        self.vocab = self.model.config.vocab_size

    def tokenizer_json(self) -> Path:
        """The model's own tokenizer.json (what the CLI's `--tokenizer` takes),
        written to the run's cache once."""
        path = self.cache / "tokenizer.json"
        if not path.exists():
            self.tok.save_pretrained(self.cache / "tok")
            (self.cache / "tok" / "tokenizer.json").rename(path)
        return path

    def chat(self, user: str) -> List[int]:
        ids = self.tok.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True)
        if hasattr(ids, "input_ids"):
            ids = ids["input_ids"]
        return list(ids)

    def reset(self) -> None:
        self.model.load_state_dict(self.base)
        self.model.eval()

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[List[int]],
        max_new: int,
        key: Optional[Key],
        seed: int,
        temperature: float = 1.0,
        top_p: float = 1.0,
        batch: int = 16,
        scheme: str = SCHEME,
        top_k: int = 0,
    ) -> List[List[int]]:
        """Answers to `prompts`, decoded to text and re-encoded (as a harvester sees them)."""
        out: List[List[int]] = []
        for start in range(0, len(prompts), batch):
            rows = prompts[start : start + batch]
            width = max(len(r) for r in rows)
            ids = torch.tensor([[self.pad] * (width - len(r)) + r for r in rows])
            mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
            procs = [] if key is None else [TracemarkLogitsProcessor(key, scheme, self.vocab, pad_token_id=self.pad)]
            torch.manual_seed(seed + start)
            gen = self.model.generate(
                input_ids=ids,
                attention_mask=mask,
                max_new_tokens=max_new,
                do_sample=True,
                temperature=temperature,
                top_p=top_p,
                top_k=top_k,
                logits_processor=procs,
                eos_token_id=self.stop,
                pad_token_id=self.pad,
            )
            for row in gen[:, width:].tolist():
                cut = next((i for i, t in enumerate(row) if t in self.stop), len(row))
                text = self.tok.decode(row[:cut], skip_special_tokens=True)
                out.append(self.tok.encode(text, add_special_tokens=False))
        return out

    def train(self, docs: List[dict], seed: int, checkpoint: Optional[Path] = None, every_s: float = 600.0) -> float:
        """Full fine-tune on `docs` (prompt_ids + ids; loss on the answer and its end token).
        Returns the mean training loss of the last epoch.

        With `checkpoint`, the model, optimiser, data order and random states are
        written there (atomically) every `every_s` seconds, and a run that finds a
        checkpoint of the same data and seed resumes at its step: a training of
        hours survives the end of a session. The checkpoint is removed at the end."""
        p = self.plan
        self.reset()
        self.model.train()
        torch.manual_seed(seed)
        opt = torch.optim.AdamW(self.model.parameters(), lr=p.lr, weight_decay=0.0)
        order = list(range(len(docs)))
        rng = random.Random(seed)
        steps = math.ceil(len(docs) / p.batch) * p.epochs
        step, losses, first_epoch, first_start, resumed = 0, [], 0, 0, False
        ident = {"docs": len(docs), "tokens": tokens(docs), "seed": seed, "epochs": p.epochs, "batch": p.batch, "lr": p.lr}
        if checkpoint is not None and checkpoint.exists():
            state = torch.load(checkpoint, weights_only=False)
            if state["ident"] == ident:
                self.model.load_state_dict(state["model"])
                opt.load_state_dict(state["opt"])
                order, losses, step = state["order"], state["losses"], state["step"]
                first_epoch, first_start = state["epoch"], state["start"]
                rng.setstate(state["rng"])
                torch.set_rng_state(state["torch_rng"])
                resumed = True
                log(f"training resumed at step {step} of {steps} from {checkpoint.name}")
            else:
                log(f"{checkpoint.name} is from other data or settings: training from the start")
        saved, began, began_step = time.time(), time.time(), step
        for epoch in range(first_epoch, p.epochs):
            if not (resumed and epoch == first_epoch):  # a checkpoint holds its epoch's order
                rng.shuffle(order)
                losses = []
            for start in range(first_start if epoch == first_epoch else 0, len(order), p.batch):
                if checkpoint is not None and time.time() - saved >= every_s:
                    tmp = checkpoint.with_suffix(".tmp")
                    torch.save({"ident": ident, "model": self.model.state_dict(), "opt": opt.state_dict(),
                                "order": order, "losses": losses, "step": step, "epoch": epoch, "start": start,
                                "rng": rng.getstate(), "torch_rng": torch.get_rng_state()}, tmp)
                    tmp.replace(checkpoint)
                    rate = (time.time() - began) / max(step - began_step, 1)
                    log(f"training step {step} of {steps}, loss {sum(losses[-20:]) / max(len(losses[-20:]), 1):.3f}, "
                        f"{rate:.1f} s a step, checkpoint written")
                    saved = time.time()
                rows = [docs[i] for i in order[start : start + p.batch]]
                seqs = [r["prompt_ids"] + r["ids"] + [self.eos] for r in rows]
                width = max(len(s) for s in seqs)
                ids = torch.tensor([s + [self.pad] * (width - len(s)) for s in seqs])
                mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
                labels = ids.clone()
                for j, r in enumerate(rows):
                    labels[j, : len(r["prompt_ids"])] = -100
                    labels[j, len(seqs[j]) :] = -100
                lr = p.lr * min(1.0, (step + 1) / 3) * (1.0 - step / steps * 0.9)
                for g in opt.param_groups:
                    g["lr"] = lr
                loss = self.model(input_ids=ids, attention_mask=mask, labels=labels).loss
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(float(loss.detach()))
                step += 1
        self.model.eval()
        if checkpoint is not None:
            checkpoint.unlink(missing_ok=True)
        return sum(losses) / max(len(losses), 1)

    @torch.no_grad()
    def predictions(self, docs: List[dict], batch: int = 16) -> List[List[int]]:
        """The model's most likely next token after prompt_ids ++ ids[:i], for every i."""
        out = []
        for start in range(0, len(docs), batch):
            rows = docs[start : start + batch]
            seqs = [r["prompt_ids"] + r["ids"] for r in rows]
            width = max(len(s) for s in seqs)
            ids = torch.tensor([s + [self.pad] * (width - len(s)) for s in seqs])
            mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
            arg = self.model(input_ids=ids, attention_mask=mask).logits.argmax(-1)
            for j, r in enumerate(rows):
                n = len(r["prompt_ids"])
                out.append(arg[j, n - 1 : n - 1 + len(r["ids"])].tolist())
        return out


def paraphrase_request(question: str, answer: str) -> str:
    """The paraphrase request of `make eval` (lab/src/eval/generate.rs)."""
    return f"Rewrite the following answer to the question '{question}' in your own words:\n\n{answer}"


def harvest(lab: Lab, key: Key) -> Dict[str, List[dict]]:
    """Watermarked and plain answers to the harvest prompts, the watermarked ones
    paraphrased, and spliced with human prose; each cached."""
    p, sets = lab.plan, {}
    pool = prompt_pool()[: p.harvest_prompts]
    prompts = [lab.chat(q) for q in pool]
    # Plain answers fill the training sets (at most train_tokens): about as many
    # prompts as that needs, with a margin for short answers.
    plain_n = min(len(prompts), math.ceil(p.train_tokens / (0.6 * p.new_tokens)))
    for kind, k, seed, n in (("marked", key, 1, len(prompts)), ("plain", None, 2, plain_n)):
        path = lab.cache / f"harvest-{kind}.jsonl"
        if not path.exists():
            t = time.time()
            answers = lab.generate(prompts[:n], p.new_tokens, k, seed)
            write_jsonl(path, ({"q": q, "prompt_ids": pr, "ids": a} for q, pr, a in zip(pool, prompts, answers) if a))
            log(f"harvest {kind}: {sum(len(a) for a in answers)} tokens in {time.time() - t:.0f} s")
        sets[kind] = read_jsonl(path)
    sources = {src for _, _, src in p.students}
    path = lab.cache / "harvest-paraphrased.jsonl"
    if "paraphrased" in sources and not path.exists():
        t = time.time()
        marked = mixture(sets["marked"], [], 1.0, p.train_tokens)  # what the 100% student trains on
        reqs = [lab.chat(paraphrase_request(d["q"], lab.tok.decode(d["ids"]))) for d in marked]
        answers = lab.generate(reqs, p.new_tokens, None, 3, temperature=0.7, top_p=0.95, batch=8)
        write_jsonl(path, ({"q": d["q"], "prompt_ids": d["prompt_ids"], "ids": a} for d, a in zip(marked, answers) if a))
        log(f"paraphrased: {sum(len(a) for a in answers)} tokens in {time.time() - t:.0f} s")
    if "paraphrased" in sources:
        sets["paraphrased"] = read_jsonl(path)
    if "spliced" in sources:
        sets["spliced"] = splice(lab, sets["marked"])
    return sets


def human_sentences() -> List[str]:
    path = os.environ.get("TRACEMARK_HUMAN_TEXT")
    if not path:
        raise SystemExit("TRACEMARK_HUMAN_TEXT is not set (python3 scripts/fetch.py human-text)")
    out = []
    for doc in read_jsonl(Path(path)):
        if doc.get("category") != "prose":
            continue
        text = re.sub(r"\s+", " ", doc["text"])
        out += [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if 40 <= len(s.strip()) <= 300]
    return out


def splice(lab: Lab, marked: List[dict]) -> List[dict]:
    """Each watermarked answer with a human sentence after each of its sentences
    (about as many human tokens as watermarked ones)."""
    human = human_sentences()
    rng = random.Random(7)
    out = []
    for d in marked:
        parts = re.split(r"(?<=[.!?])\s+", lab.tok.decode(d["ids"]))
        text = " ".join(f"{s} {rng.choice(human)}" for s in parts)
        out.append({"q": d["q"], "prompt_ids": d["prompt_ids"], "ids": lab.tok.encode(text, add_special_tokens=False)})
    return out


def mixture(marked: List[dict], filler: List[dict], share: float, total: int) -> List[dict]:
    """`total` training tokens: `share` of them from `marked` (whole answers, in
    order), the rest from `filler`."""
    out, want, have = [], share * total, 0
    for d in marked:
        if have >= want:
            break
        out.append(d)
        have += len(d["ids"])
    for d in filler:
        if have >= total:
            break
        out.append(d)
        have += len(d["ids"])
    return out


def tokens(docs: Iterable[dict]) -> int:
    return sum(len(d["ids"]) for d in docs)


class Cli:
    """tracemark's exact tests, through the CLI (the verifier's code, not a copy)."""

    def __init__(self, binary: Path, vocab: int, tmp: Path) -> None:
        self.binary, self.vocab, self.tmp = binary, vocab, tmp

    def _run(self, key: Path, args: List[str], docs: List[dict], labels: Optional[List[str]] = None) -> dict:
        fd, name = tempfile.mkstemp(suffix=".jsonl", dir=self.tmp)
        os.close(fd)
        corpus = Path(name)
        write_jsonl(corpus, docs)
        cmd = [str(self.binary), "radioactivity", "--key", str(key), "--scheme", SCHEME, "--vocab", str(self.vocab)]
        cmd += ["--json", "--quiet", "--min-tokens", "1"]
        if labels:
            cmd += ["--derive-labels", ",".join(labels)]
        res = subprocess.run(cmd + args + [str(corpus)], capture_output=True, text=True)
        corpus.unlink()
        if res.returncode not in (0, 1):
            raise SystemExit(f"tracemark radioactivity failed ({res.returncode}): {res.stderr.strip()}")
        return json.loads(res.stdout)

    def log10_p(self, key: Path, mode: str, docs: List[dict], reference: Optional[Path]) -> float:
        out = self._run(key, self.mode_args(mode, reference), docs)
        return float(out["outcome"].get("log10_p", 0.0)) if out["outcome"]["status"] == "tested" else 0.0

    def keyring(self, master: Path, labels: List[str], mode: str, docs: List[dict], reference: Optional[Path]) -> List[float]:
        out = self._run(master, self.mode_args(mode, reference), docs, labels)
        return [float(k["tested"]["log10_p"]) if "tested" in k else 0.0 for k in out["keys"]]

    @staticmethod
    def mode_args(mode: str, reference: Optional[Path]) -> List[str]:
        if mode == "reading":
            return ["--reading"]
        if mode == "filtered":
            return ["--reference", str(reference)]
        return []


def prefix_by_tokens(docs: List[dict], budget: int) -> List[dict]:
    """The first `budget` tokens of `docs` (the last document cut)."""
    out, have = [], 0
    for d in docs:
        if have >= budget:
            break
        take = min(len(d["ids"]), budget - have)
        row = dict(d, ids=d["ids"][:take])
        if "predicted" in d:
            row["predicted"] = d["predicted"][:take]
        out.append(row)
        have += take
    return out


@dataclass
class Student:
    name: str
    share: float
    source: str
    train_tokens: int
    marked_tokens: int
    loss: float
    secs: float
    answers: List[dict]
    reading: List[dict]


def run_student(lab: Lab, sets: Dict[str, List[dict]], name: str, share: float, source: str, seed: int) -> Student:
    p = lab.plan
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    meta = lab.cache / f"student-{slug}.json"
    # The full run resumes from finished students; the quick run (make test) always trains its own.
    if meta.exists() and not p.quick:
        m = json.loads(meta.read_text())
        return Student(**m)
    t = time.time()
    marked = sets[source]
    data = mixture(marked, sets["plain"], share, p.train_tokens)
    loss = lab.train(data, seed)
    marked_tokens = tokens(d for d in data if d in marked)
    train_secs = time.time() - t
    prompts_text = prompt_pool()[p.harvest_prompts :]
    answers: List[dict] = []
    i = 0
    while tokens(answers) < p.student_tokens and i < len(prompts_text):
        qs = prompts_text[i : i + 16]
        prs = [lab.chat(q) for q in qs]
        for pr, a in zip(prs, lab.generate(prs, p.new_tokens, None, 1000 + i)):
            if a:
                answers.append({"prompt_ids": pr, "ids": a})
        i += 16
    reading_docs = prefix_by_tokens(reading_corpus(sets["marked"]), p.reading_budgets[-1])
    for d, pred in zip(reading_docs, lab.predictions(reading_docs)):
        d["predicted"] = pred
    s = Student(name, share, source, tokens(data), marked_tokens, loss, time.time() - t, answers, reading_docs)
    meta.write_text(json.dumps(s.__dict__))
    log(f"student {name}: {s.train_tokens} training tokens ({marked_tokens} watermarked), loss {loss:.3f}, "
        f"trained in {train_secs:.0f} s, {tokens(answers)} answer tokens, all in {s.secs:.0f} s")
    return s


def reading_corpus(marked: List[dict]) -> List[dict]:
    """Our watermarked answers (all that cohort was served), in a fixed shuffled
    order: a reader does not know which ones were harvested, so a prefix holds
    the trained-on ones only in proportion."""
    docs = [{"prompt_ids": d["prompt_ids"], "ids": d["ids"]} for d in marked]
    random.Random(0x2EAD).shuffle(docs)
    return docs


def binom_range(n: int, p: float, mass: float = 0.99) -> Tuple[int, int]:
    """The central `mass` range of Binomial(n, p), exactly."""
    pmf = [math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)) for k in range(n + 1)]
    tail = (1 - mass) / 2
    lo, acc = 0, 0.0
    while acc + pmf[lo] <= tail:
        acc += pmf[lo]
        lo += 1
    hi, acc = n, 0.0
    while acc + pmf[hi] <= tail:
        acc += pmf[hi]
        hi -= 1
    return lo, hi


def ks_distance(ps: List[float]) -> float:
    xs, n = sorted(ps), len(ps)
    return max(max((i + 1) / n - x, x - i / n) for i, x in enumerate(xs))


def calibrated(ps: List[float]) -> bool:
    """At most the top of the exact 99% binomial range below 1e-2 and 1e-3, and
    KS distance to uniform within its 1e-3 critical value."""
    n = len(ps)
    return (
        sum(p < 1e-2 for p in ps) <= binom_range(n, 1e-2)[1]
        and sum(p < 1e-3 for p in ps) <= binom_range(n, 1e-3)[1]
        and ks_distance(ps) <= 1.949 / math.sqrt(n)
    )


def svg_plot(path: Path, series: List[Tuple[str, List[Tuple[float, float]]]], title: str, xlabel: str) -> None:
    """A small log-x line chart of log10 p (no plotting library in the venv)."""
    w, h, l, r, t, b = 720, 420, 70, 190, 40, 50
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts] + [0.0, math.log10(ALPHA)]
    x0, x1 = math.log10(min(xs)), math.log10(max(xs))
    y0, y1 = min(ys), 0.0
    fx = lambda x: l + (math.log10(x) - x0) / max(x1 - x0, 1e-9) * (w - l - r)
    fy = lambda y: t + (y1 - y) / max(y1 - y0, 1e-9) * (h - t - b)
    colors = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666", "#1f78b4"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{title}</text>',
           f'<line x1="{l}" y1="{h - b}" x2="{w - r}" y2="{h - b}" stroke="black"/>',
           f'<line x1="{l}" y1="{t}" x2="{l}" y2="{h - b}" stroke="black"/>',
           f'<text x="{(l + w - r) / 2}" y="{h - 12}" text-anchor="middle">{xlabel}</text>',
           f'<text x="16" y="{(t + h - b) / 2}" transform="rotate(-90 16 {(t + h - b) / 2})" text-anchor="middle">log10 p</text>',
           f'<line x1="{l}" y1="{fy(math.log10(ALPHA)):.1f}" x2="{w - r}" y2="{fy(math.log10(ALPHA)):.1f}" stroke="#999" stroke-dasharray="4"/>',
           f'<text x="{w - r + 4}" y="{fy(math.log10(ALPHA)) + 4:.1f}" fill="#999">p = 1e-6</text>']
    for x in sorted(set(xs)):
        out.append(f'<text x="{fx(x):.1f}" y="{h - b + 16}" text-anchor="middle">{x:g}</text>')
    for k in range(6):
        y = y0 + (y1 - y0) * k / 5
        out.append(f'<text x="{l - 6}" y="{fy(y) + 4:.1f}" text-anchor="end">{y:.0f}</text>')
    for i, (name, pts) in enumerate(series):
        c = colors[i % len(colors)]
        d = " ".join(f"{'M' if j == 0 else 'L'}{fx(x):.1f},{fy(y):.1f}" for j, (x, y) in enumerate(pts))
        out.append(f'<path d="{d}" fill="none" stroke="{c}" stroke-width="2"/>')
        out.append(f'<text x="{w - r + 10}" y="{t + 16 * i + 20}" fill="{c}">{name}</text>')
    out.append("</svg>")
    path.write_text("\n".join(out) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small version that checks the pipeline (make test)")
    ap.add_argument("--out", type=Path, help="report path (default eval/results/distill-transformer-DATE.md)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    args = ap.parse_args()
    started = time.time()
    plan = Plan.new(args.quick)
    cache = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache/tracemark")) / f"distill-transformer-{plan.tag()}"
    cache.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    cli = Path(os.environ["TRACEMARK_CLI"])
    lab = Lab(plan, cache, cli)
    master_path = cache / "master.key"
    if plan.quick and not master_path.exists():
        quick_key("distill-transformer").save(master_path)
    master = stored_key(master_path)
    key = master.derive("cohort/1")
    key_path = cache / "cohort-1.key"
    if not key_path.exists():
        key.save(key_path)
    sets = harvest(lab, key)
    reference = cache / "reference.jsonl"
    write_jsonl(reference, ({"prompt_ids": d["prompt_ids"], "ids": d["ids"]} for d in sets["marked"]))
    harvest_secs = time.time() - started
    students = [run_student(lab, sets, n, s, src, 10 + i) for i, (n, s, src) in enumerate(plan.students)]
    tests = Cli(cli, lab.vocab, cache)

    rows = []
    for s in students:
        bb = [tests.log10_p(key_path, "black", prefix_by_tokens(s.answers, b), None) for b in plan.budgets]
        filt = tests.log10_p(key_path, "filtered", s.answers, reference)
        rd = [tests.log10_p(key_path, "reading", prefix_by_tokens(s.reading, b), None) for b in plan.reading_budgets]
        rows.append((s, bb, filt, rd))
        log(f"{s.name}: black box {bb[-1]:.1f}, filtered {filt:.1f}, reading {rd[-1]:.1f}")

    control = students[0]
    ctl_master = cache / "control-master.key"
    if plan.quick and not ctl_master.exists():
        quick_key("distill-transformer-controls").save(ctl_master)
    stored_key(ctl_master)
    labels = [f"control/{i}" for i in range(plan.control_keys)]
    calib = []
    for mode, docs in (("black box", control.answers), ("filtered", control.answers), ("reading mode", control.reading)):
        m = {"black box": "black", "filtered": "filtered", "reading mode": "reading"}[mode]
        ps = [10**x for x in tests.keyring(ctl_master, labels, m, docs, reference)]
        calib.append((mode, ps))

    out = args.out or (cache / "report.md" if plan.quick else ROOT / f"eval/results/distill-transformer-{datetime.date.today().isoformat()}.md")
    plot = out.with_name(out.stem + "-p-vs-tokens.svg")
    svg_plot(plot, [(s.name, list(zip(plan.reading_budgets, rd))) for s, _, _, rd in rows],
             "Reading mode: log10 p vs tokens of our texts read", "tokens of our watermarked texts")
    report = render(plan, students, rows, calib, master, sets, harvest_secs, time.time() - started, plot)
    out.write_text(report)
    log(f"report: {out}")
    if plan.quick:
        return quick_checks(rows, calib)
    return 0


def needed(budgets: List[int], ps: List[float]) -> str:
    for b, p in zip(budgets, ps):
        if p < math.log10(ALPHA):
            return f"{b:,}"
    return f"> {budgets[-1]:,}"


def render(plan, students, rows, calib, master, sets, harvest_secs, total_secs, plot) -> str:
    lines = [f"# Distillation into a transformer student, {datetime.date.today().isoformat()}", ""]
    lines.append(
        f"Teacher: SmolLM2-135M-Instruct (GGUF Q4_1, dequantised to f32, transformers on the CPU) watermarked with `{SCHEME}` "
        f"under the key of API-account cohort 1 (derived from master key `{master.id}`). The competitor harvests answers to "
        f"{plan.harvest_prompts} prompts ({tokens(sets['marked']):,} watermarked tokens, {tokens(sets['plain']):,} unwatermarked tokens "
        f"from the same teacher, sampled at temperature 1), decoded to text and re-encoded."
    )
    lines.append("")
    lines.append(
        f"Students: SmolLM2-135M-Instruct itself, fully fine-tuned (all 134.5M parameters, AdamW, lr {plan.lr:g} with warm-up and linear decay, "
        f"batch {plan.batch} answers, {plan.epochs} epoch(s), loss on the answers only) on {plan.train_tokens:,} answer tokens each, "
        f"of which the stated share is watermarked and the rest unwatermarked answers. Laundered students: the watermarked answers "
        f"*paraphrased* by the unwatermarked model before training (the paraphrase request of `make eval`, temperature 0.7, nucleus 0.95), "
        f"or *human-spliced* (a Debian-packaged prose sentence after each sentence of the answer, about as many human tokens as watermarked ones). "
        f"Each student answers {plan.student_tokens:,} tokens' worth of new prompts (temperature 1)."
    )
    lines.append("")
    lines.append(
        "**Teacher and student share a base model.** This shows that a fine-tuned transformer inherits the watermark from its training "
        "data, and how much watermarked data that takes when the rest of its data is the same model's unwatermarked answers. It does not show "
        "what a student of another architecture, or one trained from scratch, would inherit: a shared base already predicts the teacher's "
        "tokens, so the fine-tune has little to learn except the watermark's bias, which makes this a favourable case for detection; a "
        "different base has to learn the teacher's whole distribution first (the trigram and MLP students of `distill-*.md` are the "
        "opposite extreme)."
    )
    lines.append("")
    lines.append("## Radioactivity, by watermarked share of the training data")
    lines.append("")
    lines.append("log10 p of the exact tests under the cohort-1 key (dedup by (seed, token) pair across each corpus). Black box: the first N tokens "
                 "of the student's answers; filtered: all its answers, scored only at contexts of our watermarked outputs; reading mode: the "
                 "student's greedy next-token predictions on the first N tokens of all our watermarked answers to the harvest prompts, in a fixed "
                 "shuffled order (a reader does not know which were harvested; a student trained on a share of them meets its own in proportion).")
    lines.append("")
    head = "| student | training tokens (from our watermarked answers, laundered or not) | loss | " + " | ".join(f"black box N={b:,}" for b in plan.budgets) + " | filtered | " + " | ".join(f"reading N={b:,}" for b in plan.reading_budgets) + " |"
    lines += [head, "|" + "---|" * (4 + len(plan.budgets) + len(plan.reading_budgets)) + ""]
    lines[-1] = "|---|---:|---:|" + "---:|" * (len(plan.budgets) + 1 + len(plan.reading_budgets))
    for s, bb, filt, rd in rows:
        cells = [s.name, f"{s.train_tokens:,} ({s.marked_tokens:,})", f"{s.loss:.3f}"] + [f"{x:.1f}" for x in bb] + [f"{filt:.1f}"] + [f"{x:.1f}" for x in rd]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(f"![log10 p vs tokens](./{plot.name})")
    lines.append("")
    lines.append("## Tokens needed for p < 1e-6")
    lines.append("")
    lines.append("| student | black box (student tokens) | reading mode (tokens of our texts) |")
    lines.append("|---|---:|---:|")
    for s, bb, _, rd in rows:
        lines.append(f"| {s.name} | {needed(plan.budgets, bb)} | {needed(plan.reading_budgets, rd)} |")
    lines.append("")
    lines += extrapolation(plan, rows)
    lines.append("## Controls: calibration of the tests on the 0% student")
    lines.append("")
    n = plan.control_keys
    crit = 1.949 / math.sqrt(n)
    lo2, hi2 = binom_range(n, 1e-2)
    lo3, hi3 = binom_range(n, 1e-3)
    lines.append(f"The student trained only on unwatermarked answers, tested under {n:,} keys derived from a fresh master key: how many p-values "
                 f"fall below 1e-2 and 1e-3, against the central 99% range of Binomial({n}, alpha) that an exact test gives, and the "
                 f"Kolmogorov-Smirnov distance to uniform (critical value at 1e-3: {crit:.3f}). The tests are discrete and conservative, so "
                 "fewer small p-values than the range's centre is expected.")
    lines.append("")
    lines.append("| test | p < 1e-2 | 99% range | p < 1e-3 | 99% range | min p | KS distance | calibrated |")
    lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
    for mode, ps in calib:
        a, b = sum(p < 1e-2 for p in ps), sum(p < 1e-3 for p in ps)
        ks = ks_distance(ps)
        ok = calibrated(ps)
        lines.append(f"| {mode} | {a} | {lo2}-{hi2} | {b} | {lo3}-{hi3} | {min(ps):.5f} | {ks:.3f} | {'yes' if ok else '**no**'} |")
    lines.append("")
    student_secs = sum(s.secs for s in students)
    lines.append(f"Compute on this machine ({os.cpu_count()} CPU cores, torch {torch.__version__}): the students took {student_secs / 60:.0f} min "
                 f"in all (training, answers and reading; {min(s.secs for s in students) / 60:.0f}-{max(s.secs for s in students) / 60:.0f} min each, "
                 f"as recorded when each was made); this invocation {total_secs / 60:.0f} min, of which {harvest_secs / 60:.0f} min harvest "
                 "(cached across runs). Regenerate with `make distill` (resumable: the harvests and every finished student are cached).")
    return "\n".join(lines) + "\n"


def extrapolation(plan, rows) -> List[str]:
    """What the smallest share would need, from the unlaundered students that
    reached 1e-6 in reading mode: evidence per watermarked training token."""
    plain_rows = [(s, rd[-1]) for s, _, _, rd in rows if s.source == "marked" and s.marked_tokens > 0]
    strong = [(s, lp) for s, lp in plain_rows if lp < math.log10(ALPHA)]
    weak = [(s, lp) for s, lp in plain_rows if lp >= math.log10(ALPHA)]
    if not strong or not weak:
        return []
    # The weakest share that still reached 1e-6 gives the most conservative rate.
    s0, lp0 = min(strong, key=lambda x: x[0].marked_tokens)
    rate = -lp0 / s0.marked_tokens
    out = ["## What the weaker shares would need", ""]
    out.append(
        f"Reading mode over {plan.reading_budgets[-1]:,} tokens of our texts gave log10 p = {lp0:.1f} for the {s0.name} student, which "
        f"trained on {s0.marked_tokens:,} watermarked tokens: {rate:.2e} orders of magnitude per watermarked training token. If the evidence "
        "grows in proportion to the watermarked tokens a student saw (an assumption; the predicted column shows how the weaker "
        "students compare with it):"
    )
    out.append("")
    out.append("| student | watermarked training tokens | reading log10 p | predicted | watermarked tokens needed for 1e-6 | training set at this share |")
    out.append("|---|---:|---:|---:|---:|---:|")
    for s, lp in weak:
        need = 6.0 / rate
        share = s.marked_tokens / max(s.train_tokens, 1)
        out.append(f"| {s.name} | {s.marked_tokens:,} | {lp:.1f} | {-rate * s.marked_tokens:.1f} | ~{need:,.0f} | ~{need / share:,.0f} tokens |")
    out.append("")
    out.append(
        "Reading more of our texts also adds evidence (roughly in proportion to the tokens read, as the reading columns show), so a "
        "verifier with all of a cohort's served answers needs fewer: the budget here is the "
        f"{plan.reading_budgets[-1]:,} tokens of texts we kept. The training compute on this 2-core machine is the limit of this run: "
        f"each student took about {statistics.median([s.secs for s, *_ in rows]) / 60:.0f} minutes for {plan.train_tokens:,} tokens "
        f"x {plan.epochs} epochs."
    )
    out.append("")
    return out


def quick_checks(rows, calib) -> int:
    """The quick run's checks: the 100% student is caught in reading mode at 1e-3,
    the 0% student is not, and the control keys' p-values are calibrated (the
    report's criterion; its keys are fixed, so this is a fixed fixture)."""
    by = {s.name: rd[-1] for s, _, _, rd in rows}
    fails = []
    if not by["100%"] < -3:
        fails.append(f"100% student not caught in reading mode (log10 p {by['100%']:.1f})")
    if not by["0%"] > -3:
        fails.append(f"0% student caught in reading mode (log10 p {by['0%']:.1f})")
    for mode, ps in calib:
        if not calibrated(ps):
            fails.append(f"the control keys' p-values are not calibrated ({mode})")
    for f in fails:
        log(f"check failed: {f}")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
