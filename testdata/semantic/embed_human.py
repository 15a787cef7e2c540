#!/usr/bin/env python3
"""Embeds sentences of the human-text corpus for the semantic layer (issue 25).

Splits `python3 scripts/fetch.py human-text` into two halves by a public rule:
a document is in the *reference* half when the first byte of SHA-256 of its
`id` is below 128, else in the *held-out* half. The reference half gives the
public reference mean (`make_reference_mean.py`); the held-out half is for
calibration (`calibrate.py`), so the mean is never measured on the text
it is tested against.

Per document: the sentences of SPEC §15.1 (`tracemark.sentences`) with at
least MIN_WORDS words (split on white space), at most PER_DOC of them, in
order. Per half and category at most DOCS documents, the first ones in
corpus order. Embeddings come from `tracemark.Embedder` (SPEC §15.2).

    nice -n 10 "$VENV/bin/python" testdata/semantic/embed_human.py OUT.npz [CORPUS]
    nice -n 19 "$VENV/bin/python" testdata/semantic/embed_human.py OUT.npz --all-held-out --per-doc 10
    nice -n 19 "$VENV/bin/python" testdata/semantic/embed_human.py OUT.npz MULTILINGUAL --all-documents --per-doc 10

`--all-documents` takes every document of CORPUS as held out (`half` 1): for
a corpus the reference mean was not measured on, such as `scripts/fetch.py
human-text-multilingual` (German, French, Spanish, Russian and Japanese
man pages and fortunes) or `scripts/fetch.py human-text-fortunes` (English
fortunes), otherwise as `--all-held-out`.

`--all-held-out` takes every document of the held-out half (no per-category
limit) and none of the reference half, in the order of SHA-256 of their ids
(a public shuffle, so that any prefix is a sample of the half), and rewrites
OUT after every block of about 2,000 sentences (whole documents), so a run
cut short leaves a usable prefix; `--per-doc N` changes PER_DOC.

writes OUT.npz with `emb` (float32, sentences x 384), `doc` (int32 document
index per sentence), `half` (0 reference, 1 held-out, per document),
`category` (per document) and `ids` (per document).
"""

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tracemark as tm

MIN_WORDS = 5
PER_DOC = 24
DOCS = {"prose": 250, "docs": 250, "code": 150, "licence": 40}
ROOT = Path(__file__).resolve().parent.parent.parent


def main():
    args = sys.argv[1:]
    per_doc, all_documents = PER_DOC, "--all-documents" in args
    all_held_out = "--all-held-out" in args or all_documents
    if "--per-doc" in args:
        per_doc = int(args[args.index("--per-doc") + 1])
        del args[args.index("--per-doc"):args.index("--per-doc") + 2]
    args = [a for a in args if not a.startswith("--")]
    out = args[0]
    corpus = args[1] if len(args) > 1 else subprocess.check_output(
        [sys.executable, str(ROOT / "scripts" / "fetch.py"), "human-text"], text=True).strip()
    taken = {}
    docs, cats, ids, halves, sents, owner = [], [], [], [], [], []
    for line in open(corpus, encoding="utf-8"):
        d = json.loads(line)
        half = 0 if hashlib.sha256(d["id"].encode()).digest()[0] < 128 and not all_documents else 1
        cat = d["category"]
        if all_held_out:
            if half == 0:
                continue
        elif taken.get((half, cat), 0) >= DOCS.get(cat, 0):
            continue
        ss = [s for s in tm.sentences(d["text"]) if len(s.split()) >= MIN_WORDS][:per_doc]
        if not ss:
            continue
        taken[(half, cat)] = taken.get((half, cat), 0) + 1
        i = len(ids)
        ids.append(d["id"]); cats.append(cat); halves.append(half)
        sents.extend(ss); owner.extend([i] * len(ss))
    print(f"{len(ids)} documents, {len(sents)} sentences: {taken}", file=sys.stderr)
    e = tm.Embedder()
    if all_held_out:
        embed_in_blocks(out, e, ids, cats, halves, sents, owner)
        return
    emb = np.concatenate([e.embed(sents[i:i + 256]) for i in range(0, len(sents), 256)])
    np.savez_compressed(out, emb=emb.astype(np.float32), doc=np.array(owner, np.int32),
                        half=np.array(halves, np.int8), category=np.array(cats), ids=np.array(ids))


def embed_in_blocks(out, e, ids, cats, halves, sents, owner):
    order = sorted(range(len(ids)), key=lambda i: hashlib.sha256(ids[i].encode()).digest())
    by_doc = {}
    for s, i in zip(sents, owner):
        by_doc.setdefault(i, []).append(s)
    done_docs, embs, doc_of = [], [], []
    block, block_docs = [], []
    for n, i in enumerate(order):
        block += by_doc[i]
        block_docs.append(i)
        if len(block) < 2000 and n + 1 < len(order):
            continue
        embs.append(np.asarray(e.embed(block), dtype=np.float32))
        for i2 in block_docs:
            doc_of.extend([len(done_docs)] * len(by_doc[i2]))
            done_docs.append(i2)
        block, block_docs = [], []
        np.savez_compressed(out, emb=np.concatenate(embs), doc=np.array(doc_of, np.int32),
                            half=np.array([halves[i] for i in done_docs], np.int8),
                            category=np.array([cats[i] for i in done_docs]),
                            ids=np.array([ids[i] for i in done_docs]))
        print(f"{len(done_docs)} documents, {len(doc_of)} sentences embedded", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
